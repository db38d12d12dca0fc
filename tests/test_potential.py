"""Potential: closed-form gradient and trace against autodiff, Taylor tests, config, errors."""

import numpy as np
import pytest
import tensorflow as tf

from tfotflow import testing
from tfotflow.potential import Potential

CASES = [(1, 3, 2), (2, 8, 2), (5, 16, 3), (4, 7, 5), (12, 6, 3)]  # (d, width, num_layers)


def make_potential(d, width, num_layers, seed=0, rank=10, condition_dim=0, time_features=0):
    """A float64 potential with every parameter random (the default init hides bugs in w, b)."""
    tf.keras.utils.set_random_seed(seed)
    potential = Potential(
        width=width,
        num_layers=num_layers,
        rank=rank,
        condition_dim=condition_dim,
        time_features=time_features,
        dtype="float64",
    )
    potential.build((None, d))
    rng = np.random.default_rng(seed)
    for variable in potential.weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape))
    return potential


def autodiff_gradient_and_trace(potential, x, t):
    s = tf.concat([x, tf.fill([x.shape[0], 1], tf.constant(t, x.dtype))], axis=1)
    with tf.GradientTape() as outer:
        outer.watch(s)
        with tf.GradientTape() as inner:
            inner.watch(s)
            phi = potential(s[:, :-1], t=s[:, -1:])
        gradient = inner.gradient(phi, s)
    hessian = outer.batch_jacobian(gradient, s)  # [n, d+1, d+1]
    d = x.shape[1]
    return gradient, tf.linalg.trace(hessian[:, :d, :d])


def relative_error(received, expected):
    return float(np.max(np.abs(received - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("d, width, num_layers", CASES)
def test_gradient_and_trace_match_autodiff(d, width, num_layers, rng):
    potential = make_potential(d, width, num_layers)
    x = tf.constant(rng.normal(size=(9, d)))
    expected_gradient, expected_trace = autodiff_gradient_and_trace(potential, x, 0.3)
    gradient, trace = potential.gradient_and_trace(x, 0.3)
    assert relative_error(gradient.numpy(), expected_gradient.numpy()) < 1e-10
    assert relative_error(trace.numpy(), expected_trace.numpy()) < 1e-10
    gradient_x, dphi_dt = potential.gradient(x, 0.3)
    np.testing.assert_allclose(gradient_x, expected_gradient[:, :d], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dphi_dt, expected_gradient[:, d], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d, width, num_layers, time_features", [(1, 3, 2, 1), (4, 7, 3, 3)])
def test_time_features_keep_the_gradient_and_trace_exact(d, width, num_layers, time_features, rng):
    """With Fourier features of t the closed forms still match autodiff, ∂ₜΦ included (the
    features' chain rule), and the opening kernel reads 2F more inputs."""
    potential = make_potential(d, width, num_layers, time_features=time_features)
    assert potential.kernels[0].shape == (d + 1 + 2 * time_features, width)
    x = tf.constant(rng.normal(size=(9, d)))
    for t in (0.0, 0.3, 0.9):
        expected_gradient, expected_trace = autodiff_gradient_and_trace(potential, x, t)
        gradient, trace = potential.gradient_and_trace(x, t)
        assert gradient.shape == (9, d + 1)
        assert relative_error(gradient.numpy(), expected_gradient.numpy()) < 1e-10
        assert relative_error(trace.numpy(), expected_trace.numpy()) < 1e-10
    plain = make_potential(d, width, num_layers)
    assert np.any(potential(x, t=0.3).numpy() != plain(x, t=0.3).numpy())


def test_time_features_of_a_conditional_potential_match_autodiff(rng):
    d, k = 3, 2
    potential = make_potential(d, 6, 3, condition_dim=k, time_features=2)
    x = tf.constant(rng.normal(size=(7, d)))
    y = tf.constant(rng.normal(size=(7, k)))
    t = tf.constant(np.full([7, 1], 0.4))
    with tf.GradientTape(persistent=True) as outer:
        outer.watch([x, t])
        with tf.GradientTape(persistent=True) as inner:
            inner.watch([x, t])
            phi = potential(x, t=t, condition=y)
        gradient_x, gradient_t = inner.gradient(phi, [x, t])
    hessian = outer.batch_jacobian(gradient_x, x)
    gradient, trace = potential.gradient_and_trace(x, 0.4, y)
    np.testing.assert_allclose(gradient[:, :d], gradient_x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gradient[:, -1], gradient_t[:, 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(trace, tf.linalg.trace(hessian), rtol=1e-10, atol=1e-12)


def test_rank_is_capped_at_d_plus_one():
    potential = make_potential(2, 4, 2, rank=10)
    assert potential.A.shape == (3, 3)
    assert make_potential(6, 4, 2, rank=3).A.shape == (3, 7)


@pytest.mark.parametrize("d, width, num_layers", [(3, 8, 2), (3, 8, 4)])
def test_taylor_remainders_have_order_one_and_two(d, width, num_layers, rng):
    """|Φ(s+εv) − Φ(s)| = O(ε) and |Φ(s+εv) − Φ(s) − ε ∇Φ·v| = O(ε²), ∇Φ closed form."""
    potential = make_potential(d, width, num_layers)
    x, v = rng.normal(size=(1, d)), rng.normal(size=(1, d + 1))
    t = 0.4
    phi0 = float(potential(x, t=t)[0])
    gradient, _ = potential.gradient_and_trace(x, t)
    slope = float(np.sum(gradient.numpy() * v))
    zeroth, first = [], []
    for epsilon in [1e-2 / 2**k for k in range(6)]:
        phi = float(potential(x + epsilon * v[:, :d], t=t + epsilon * v[0, d])[0])
        zeroth.append(abs(phi - phi0))
        first.append(abs(phi - phi0 - epsilon * slope))
    zeroth_rates = np.log2(np.array(zeroth[:-1]) / np.array(zeroth[1:]))
    first_rates = np.log2(np.array(first[:-1]) / np.array(first[1:]))
    assert np.allclose(zeroth_rates, 1.0, atol=0.1), zeroth_rates
    assert np.allclose(first_rates, 2.0, atol=0.1), first_rates


def test_trace_taylor_second_order(rng):
    """The trace is the Laplacian: Σ_i [Φ(x+εe_i) − 2Φ(x) + Φ(x−εe_i)]/ε² → tr ∇²Φ as O(ε²)."""
    d = 3
    potential = make_potential(d, 8, 3)
    x = rng.normal(size=(1, d))
    _, trace = potential.gradient_and_trace(x, 0.2)
    errors = []
    for epsilon in [0.1, 0.05, 0.025]:
        laplacian = 0.0
        for i in range(d):
            e = np.zeros((1, d))
            e[0, i] = epsilon
            laplacian += (
                float(
                    potential(x + e, t=0.2)[0]
                    - 2 * potential(x, t=0.2)[0]
                    + potential(x - e, t=0.2)[0]
                )
                / epsilon**2
            )
        errors.append(abs(laplacian - float(trace[0])))
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.allclose(rates, 2.0, atol=0.2), rates


def test_batch_axes_and_float32(rng):
    potential = Potential(width=8, num_layers=3)
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    assert potential(x, t=0.1).shape == (2, 3)
    gradient, trace = potential.gradient_and_trace(x, 0.1)
    assert gradient.shape == (2, 3, 5) and gradient.dtype == tf.float32
    assert trace.shape == (2, 3)
    flat_gradient, flat_trace = potential.gradient_and_trace(x.reshape(6, 4), 0.1)
    np.testing.assert_allclose(gradient.numpy().reshape(6, 5), flat_gradient, rtol=1e-6)
    np.testing.assert_allclose(trace.numpy().reshape(6), flat_trace, rtol=1e-6)


def test_initialization_follows_the_paper():
    potential = Potential(width=5, num_layers=2, rank=10, dtype="float64")
    potential.build((None, 3))
    np.testing.assert_array_equal(potential.w.numpy(), np.ones(5))
    np.testing.assert_array_equal(potential.b.numpy(), np.zeros(4))
    assert float(potential.c.numpy()) == 0.0
    assert np.all(potential.biases[0].numpy() == 0.0)
    assert np.any(potential.kernels[1].numpy() != 0.0)


def test_config_round_trip_and_keras_file(tmp_path, rng):
    from tfotflow._keras import keras

    potential = make_potential(3, 6, 3, time_features=2)
    x = rng.normal(size=(4, 3))
    testing.check_config_round_trip(potential, x, t=0.5)
    model = keras.Sequential([keras.Input((3,), dtype="float64"), potential])
    path = tmp_path / "potential.keras"
    model.save(path)
    loaded = keras.models.load_model(path).layers[0]
    assert isinstance(loaded, Potential)
    assert loaded.get_config() == potential.get_config()
    for a, b in zip(potential.gradient_and_trace(x, 0.5), loaded.gradient_and_trace(x, 0.5)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(potential(x, t=0.5).numpy(), loaded(x, t=0.5).numpy())


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"width": 0}, ValueError, "Received: width=0"),
        ({"num_layers": 1}, ValueError, "Received: num_layers=1"),
        ({"rank": 0}, ValueError, "Received: rank=0"),
        ({"time_features": -1}, ValueError, "Received: time_features=-1"),
        ({"width": 2.5}, TypeError, "Received: width=2.5"),
        ({"num_layers": "2"}, TypeError, "Received: num_layers='2'"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        Potential(**kwargs)


def test_bad_inputs(rng):
    potential = make_potential(3, 4, 2)
    with pytest.raises(ValueError, match=r"x.shape=\[5, 4\]"):
        potential.gradient_and_trace(rng.normal(size=(5, 4)), 0.0)
    with pytest.raises(TypeError, match="x.dtype=int64"):
        potential.gradient_and_trace(np.ones((5, 3), dtype=np.int64), 0.0)
    with pytest.raises(TypeError, match="floating"):
        potential.gradient(tf.ones((5, 3), dtype=tf.int32), 0.0)


def test_from_state_dict_rejects_bad_dicts(rng):
    good = {
        "A": rng.normal(size=(3, 3)),
        "c.weight": rng.normal(size=(1, 3)),
        "c.bias": rng.normal(size=(1,)),
        "w.weight": rng.normal(size=(1, 4)),
        "N.layers.0.weight": rng.normal(size=(4, 3)),
        "N.layers.0.bias": rng.normal(size=(4,)),
        "N.layers.1.weight": rng.normal(size=(4, 4)),
        "N.layers.1.bias": rng.normal(size=(4,)),
    }
    potential = Potential.from_state_dict(good)
    assert (potential.dim, potential.width, potential.num_layers, potential.rank) == (2, 4, 2, 3)
    with pytest.raises(KeyError, match="w.weight"):
        Potential.from_state_dict({k: v for k, v in good.items() if k != "w.weight"})
    with pytest.raises(ValueError, match=r"N.layers.1.weight.*Received: \(4, 5\)"):
        Potential.from_state_dict({**good, "N.layers.1.weight": rng.normal(size=(4, 5))})
    with pytest.raises(ValueError, match="num_layers=1"):
        Potential.from_state_dict(
            {k: v for k, v in good.items() if not k.startswith("N.layers.1")}
        )
    three = {
        **good,
        "N.layers.2.weight": rng.normal(size=(4, 4)),
        "N.layers.2.bias": rng.normal(size=(4,)),
    }
    assert Potential.from_state_dict(three).num_layers == 3
    with pytest.raises(KeyError, match=r"layers \[0, 2\] but lacks \['N.layers.1.weight'\]"):
        Potential.from_state_dict({k: v for k, v in three.items() if "layers.1." not in k})
    with pytest.raises(ValueError, match=r"state_dict\['A'\]` must be a matrix"):
        Potential.from_state_dict({**good, "A": rng.normal(size=3)})


@pytest.mark.parametrize("num_layers", [2, 4])
def test_chunked_trace_matches_autodiff_with_the_same_gradients(num_layers, rng, monkeypatch):
    """Large batches run the trace recurrence over uneven batch chunks; nothing else changes."""
    from tfotflow import hardware

    d = 3
    layer = make_potential(d, 5, num_layers)
    x = tf.constant(rng.normal(size=(11, d)))
    s = tf.concat([x, tf.fill([11, 1], tf.constant(0.3, tf.float64))], axis=1)

    def trace_and_gradients():
        with tf.GradientTape() as tape:
            tape.watch(s)
            gradient, trace = layer.space_time_gradient_and_trace(s)
            loss = tf.reduce_sum(trace**2) + tf.reduce_sum(tf.sin(gradient))
        return trace, tape.gradient(loss, [s, *layer.trainable_variables])

    monkeypatch.setattr(hardware, "trace_chunk_elements", lambda itemsize: None)
    whole_trace, whole = trace_and_gradients()
    # 6 chunks of 2, 2, …, 1 rows
    monkeypatch.setattr(hardware, "trace_chunk_elements", lambda itemsize: 2 * d * 5)
    chunked_trace, chunked = trace_and_gradients()
    _, expected_trace = autodiff_gradient_and_trace(layer, x, 0.3)
    assert relative_error(chunked_trace.numpy(), expected_trace.numpy()) < 1e-10
    np.testing.assert_allclose(chunked_trace, whole_trace, rtol=1e-13)
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
