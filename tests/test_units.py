"""Densities in the data's own units: the flow works on standardized points and a TFP affine
bijector, chained after it, carries the Jacobian (float64)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfotflow.model import OTFlowModel

tfd = tfp.distributions


def adapted(rng, normalization, data, condition_dim=0, conditions=None, spread=1.0):
    model = OTFlowModel(
        data.shape[1],
        width=6,
        num_steps=3,
        dtype="float64",
        normalization=normalization,
        condition_dim=condition_dim,
    )
    for variable in model.potential.trainable_variables:  # a non-trivial flow
        variable.assign(rng.normal(scale=0.3, size=variable.shape))
    model.adapt(data, conditions, spread=spread)
    return model


def correlated(rng, n=500):
    mixing = np.array([[3.0, 0.0, 0.0], [2.0, 0.5, 0.0], [-1.0, 0.3, 0.02]])
    return rng.normal(size=(n, 3)) @ mixing.T + [1e4, -5.0, 0.3]


@pytest.mark.parametrize("spread", [1.0, 2.0])
@pytest.mark.parametrize("normalization", ["diagonal", "whiten"])
def test_log_prob_in_data_units_is_the_flows_less_the_log_determinant(rng, normalization, spread):
    data = correlated(rng)
    model = adapted(rng, normalization, data, spread=spread)
    x = data[:7]
    mean = data.mean(axis=0)
    if normalization == "whiten":
        L = np.linalg.cholesky(np.cov(data, rowvar=False, bias=True)) / spread
        standardized = np.linalg.solve(L, (x - mean).T).T
        log_det = np.sum(np.log(np.diag(L)))
    else:
        std = data.std(axis=0) / spread
        standardized, log_det = (x - mean) / std, np.sum(np.log(std))
    flow_coordinates = np.asarray(model.standardize(data)[0])
    np.testing.assert_allclose(flow_coordinates.std(axis=0), spread, rtol=1e-10)
    base = tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64))
    flow_only = tfd.TransformedDistribution(base, model.flow).log_prob(standardized)
    expected = np.asarray(flow_only) - log_det
    np.testing.assert_allclose(model.log_prob(x), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        model.distribution.log_prob(x, bijector_kwargs=model.bijector_kwargs()),
        expected,
        rtol=0,
        atol=1e-10,
    )
    chain = model.bijector
    np.testing.assert_allclose(
        chain.inverse_log_det_jacobian(x, event_ndims=1, **model.bijector_kwargs())
        - model.flow.inverse_log_det_jacobian(standardized, event_ndims=1),
        -log_det,
        rtol=0,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        chain.inverse(x, **model.bijector_kwargs()), model.flow.inverse(standardized), atol=1e-10
    )
    loss, terms = model.objective(x, num_steps=3)
    np.testing.assert_allclose(terms["nll"], -np.mean(expected), rtol=0, atol=1e-10)


def test_the_density_integrates_to_one_in_data_units(rng):
    """A 2-D table scaled by 1e3 and shifted by 1e4: ∫ p = 1 on a grid in the data's units."""
    data = rng.normal(size=(2000, 2)) * 1e3 + 1e4
    model = adapted(rng, "diagonal", data)
    lows, highs = data.mean(axis=0) - 7e3, data.mean(axis=0) + 7e3
    a, b = (np.linspace(low, high, 301) for low, high in zip(lows, highs))
    grid = np.stack(np.meshgrid(a, b, indexing="ij"), axis=-1).reshape(-1, 2)
    density = np.exp(np.asarray(model.log_prob(grid, num_steps=4))).reshape(301, 301)
    mass = np.trapezoid(np.trapezoid(density, b, axis=1), a)
    assert mass == pytest.approx(1.0, abs=5e-3)


@pytest.mark.parametrize(
    "normalization, regress", [("diagonal", True), ("whiten", True), ("diagonal", False)]
)
def test_conditions_are_standardized_and_sampling_is_in_data_units(rng, normalization, regress):
    """log p(x | y) = log p̃(x̃ | ỹ) − log |det|, with x̃ from an independent least-squares fit
    of the points on [y, 1] (the linear-Gaussian fit of p(x | y)) or, without ``regress``, from
    the points' own mean and deviation."""
    conditions = rng.normal(size=(500, 2)) * [50.0, 2.0] + [300.0, -1.0]
    data = correlated(rng)[:, :2] + conditions @ [[0.5, 0.0], [40.0, -3.0]]
    model = OTFlowModel(
        2, width=6, num_steps=3, dtype="float64", normalization=normalization, condition_dim=2
    )
    for variable in model.potential.trainable_variables:  # a non-trivial flow
        variable.assign(rng.normal(scale=0.3, size=variable.shape))
    model.adapt(data, conditions, regress=regress)
    np.testing.assert_allclose(model.condition_loc, conditions.mean(axis=0))
    design = np.column_stack([conditions, np.ones(len(conditions))])
    coefficients = np.linalg.lstsq(design, data, rcond=None)[0] if regress else np.zeros((3, 2))
    residuals = data - design @ coefficients  # the points' mean is left in when not regressed
    mean = design.mean(axis=0) @ coefficients + residuals.mean(axis=0)
    x, y = data[:4], conditions[:4]
    centred = x - design[:4] @ coefficients - residuals.mean(axis=0)
    if normalization == "whiten":
        L = np.linalg.cholesky(np.cov(residuals, rowvar=False, bias=True))
        standardized, log_det = np.linalg.solve(L, centred.T).T, np.sum(np.log(np.diag(L)))
    else:
        std = residuals.std(axis=0)
        standardized, log_det = centred / std, np.sum(np.log(std))
    np.testing.assert_allclose(model.loc, mean, rtol=1e-12)
    flow_only = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64)), model.flow
    ).log_prob(
        standardized,
        bijector_kwargs={"conditional_input": (y - conditions.mean(0)) / conditions.std(0)},
    )
    np.testing.assert_allclose(model.standardize(x, y)[0], standardized, atol=1e-10)
    np.testing.assert_allclose(
        model.log_prob(x, y), np.asarray(flow_only) - log_det, rtol=0, atol=1e-10
    )
    loss, terms = model.objective(x, y, num_steps=3)
    np.testing.assert_allclose(terms["nll"], -np.mean(flow_only) + log_det, rtol=0, atol=1e-10)
    samples = model.sample(3, y[0], seed=(1, 2))
    z = model.bijector.inverse(samples, **model.bijector_kwargs(y[0]))
    back = model.bijector.forward(z, **model.bijector_kwargs(y[0]))
    round_trip = (np.asarray(back) - samples) / residuals.std(axis=0)  # in the flow's scale
    np.testing.assert_allclose(round_trip, 0.0, atol=1e-4)  # the RK4 round trip at 3 steps
    expected = mean + (y[0] - conditions.mean(0)) @ coefficients[:2]  # the fit's mean at y
    assert np.all(np.abs(np.asarray(samples) - expected) < 6 * residuals.std(axis=0))


def test_a_linear_function_of_the_conditions_is_refused_as_degenerate(rng):
    conditions = rng.normal(size=(50, 1))
    data = np.column_stack([rng.normal(size=50), 3 * conditions[:, 0] + 1])
    model = OTFlowModel(2, width=4, dtype="float64", condition_dim=1)
    with pytest.raises(ValueError, match="column 1 is a linear function of the conditions"):
        model.adapt(data, conditions)
    model.adapt(data, conditions, regress=False)  # the plain standardization is well posed
    with pytest.raises(ValueError, match="k \\+ 2 = 3"):
        model.adapt(data[:2], conditions[:2])


def test_adapt_refuses_what_it_cannot_standardize(rng):
    model = OTFlowModel(2, width=4, dtype="float64")
    with pytest.raises(ValueError, match="constant column"):
        model.adapt(np.stack([rng.normal(size=10), np.ones(10)], axis=1))
    with pytest.raises(ValueError, match=r"`data` must be \[n, 2\]"):
        model.adapt(rng.normal(size=(10, 3)))
    whitened = OTFlowModel(2, width=4, dtype="float64", normalization="whiten")
    with pytest.raises(ValueError, match="singular covariance"):
        column = rng.normal(size=10)
        whitened.adapt(np.stack([column, 2 * column], axis=1))
    with pytest.raises(ValueError, match="spread=0"):
        model.adapt(rng.normal(size=(10, 2)), spread=0)
    with pytest.raises(ValueError, match="normalization=None"):
        OTFlowModel(2, width=4, normalization=None).adapt(rng.normal(size=(10, 2)))
    with pytest.raises(ValueError, match="`normalization` must be one of"):
        OTFlowModel(2, normalization="standard")


def test_normalization_is_saved_with_the_model(rng, tmp_path):
    import keras

    model = adapted(rng, "whiten", correlated(rng))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = correlated(rng)[:5]
    np.testing.assert_allclose(loaded.log_prob(x), model.log_prob(x), rtol=1e-12)
    assert loaded.normalization == "whiten"


def test_the_saved_model_serves_data_units(rng, tmp_path):
    data = correlated(rng)
    model = adapted(rng, "whiten", data)
    path = model.export(tmp_path / "served", verbose=False)
    served = tf.saved_model.load(str(path))
    x = data[:6]
    np.testing.assert_allclose(
        served.signatures["log_prob"](x=tf.constant(x))["log_prob"],
        model.log_prob(x),
        rtol=0,
        atol=1e-10,
    )
    samples = served.signatures["sample"](num_samples=tf.constant(4), seed=tf.constant([1, 2]))
    z = tf.random.stateless_normal([4, 3], seed=[1, 2], dtype=tf.float64)
    np.testing.assert_allclose(samples["samples"], model.bijector.forward(z), rtol=1e-10)


@pytest.mark.slow  # a training run of the recipe, shortened
def test_samples_after_a_fit_match_the_data_mean_and_spread(rng, tmp_path):
    """After a fit on a Gaussian table far from N(0, I), 100k samples have the data's mean
    and standard deviation to within 1 % of its spread."""
    from tfotflow import datasets, runs, settings

    data = datasets.from_array(rng.normal(size=(10_000, 2)) * [300.0, 0.02] + [-5e3, 7.0])
    config = settings.build_config(
        "gaussian",
        recommended=settings.recommended_settings(data),
        overrides={"iterations": 300, "warm_start": 300},
        seed=0,
        data_dir=None,
        options={},
        source=data.metadata.source,
    )
    model, _ = runs.train_run(tmp_path / "run", config, data=data)
    samples = np.asarray(model.sample(100_000, seed=(3, 4)), np.float64)
    spread = data.train.std(axis=0)
    assert np.all(np.abs(samples.mean(axis=0) - data.train.mean(axis=0)) < 0.01 * spread)
    assert np.all(np.abs(samples.std(axis=0) - spread) < 0.01 * spread)
