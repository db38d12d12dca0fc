"""Every public door of the model and the bijectors names a bad input: a wrong width, rank,
condition width or a non-numeric dtype raises a ValueError or TypeError naming the argument
and what it received, never TensorFlow's InvalidArgumentError."""

import numpy as np
import pytest

from tfotflow import OTFlow, OTFlowModel, Potential

WIDE = np.zeros((4, 5), np.float32)  # d = 5 where the model's is 2
SCALAR = np.float32(1.0)
WORDS = np.array([["a", "b"]])
OBJECTS = np.array([[object(), object()]], dtype=object)


def model(**options):
    built = OTFlowModel(2, width=4, num_steps=1, **options)
    if options.get("condition_dim"):
        rng = np.random.default_rng(0)
        built.adapt(rng.normal(size=(20, 2)), rng.normal(size=(20, options["condition_dim"])))
    return built


def flow():
    potential = Potential(width=4)
    potential.build((None, 2))
    return OTFlow(potential, num_steps=1)


UNCONDITIONAL = {
    "log_prob": lambda m, x: m.log_prob(x),
    "score_samples": lambda m, x: m.score_samples(x),
    "call": lambda m, x: m(x),
    "bijector.forward": lambda m, x: m.bijector.forward(x),
    "bijector.inverse": lambda m, x: m.bijector.inverse(x),
    "bijector.inverse_log_det_jacobian": lambda m, x: m.bijector.inverse_log_det_jacobian(
        x, event_ndims=1
    ),
    "bijector.forward_log_det_jacobian": lambda m, x: m.bijector.forward_log_det_jacobian(
        x, event_ndims=1
    ),
    "distribution.log_prob": lambda m, x: m.distribution.log_prob(x),
}


BAD = {
    "width": (WIDE, ValueError, r"\[4, 5\]"),
    "rank": (SCALAR, ValueError, "scalar|\\[\\]"),
    "strings": (WORDS, TypeError, "string|dtype=<U"),
    "objects": (OBJECTS, TypeError, "not numeric|dtype=object"),
}
# Keras's call converts an array of objects itself, and TFP's chain and distribution any input
# before their parts see it; they refuse what is not numeric with their own ValueError. The
# width and rank are named (the chain's first part in the inverse, and the flow, first in the
# forward, check them).
CONVERTED_FIRST = {
    "call": {"objects"},
    "distribution.log_prob": {"objects", "strings"},
    **{name: {"objects", "strings"} for name in UNCONDITIONAL if name.startswith("bijector.")},
}


@pytest.mark.parametrize(
    "method, bad, error, received",
    [
        pytest.param(method, *BAD[kind], id=f"{kind}-{method}")
        for method in sorted(UNCONDITIONAL)
        for kind in BAD
        if kind not in CONVERTED_FIRST.get(method, ())
    ],
)
def test_the_model_names_a_bad_input(method, bad, error, received):
    with pytest.raises(error, match=received) as caught:
        UNCONDITIONAL[method](model(), bad)
    assert "`" in str(caught.value)  # the argument is named


@pytest.mark.parametrize(
    "method",
    ["forward", "inverse", "forward_log_det_jacobian", "inverse_log_det_jacobian"],
)
@pytest.mark.parametrize(
    "bad, error, received",
    [
        (WIDE, ValueError, r"\[4, 5\]"),
        (SCALAR, ValueError, "scalar"),
        (WORDS, TypeError, "string"),
    ],
    ids=["width", "rank", "strings"],
)
def test_the_flow_bijector_names_a_bad_input(method, bad, error, received):
    bijector = flow()
    kwargs = {"event_ndims": 1} if "log_det" in method else {}
    with pytest.raises(error, match=f"`[xy]`.*{received}"):
        getattr(bijector, method)(bad, **kwargs)


CONDITIONAL = {
    "log_prob": lambda m, y: m.log_prob(np.zeros((4, 2), np.float32), y),
    "sample": lambda m, y: m.sample(3, y),
    "score_samples": lambda m, y: m.score_samples(np.zeros((4, 2), np.float32), y),
    "bijector.forward": lambda m, y: m.bijector.forward(
        np.zeros((4, 2), np.float32), **m.bijector_kwargs(y)
    ),
}


@pytest.mark.parametrize("method", sorted(CONDITIONAL))
def test_the_conditional_model_names_a_bad_condition_width(method):
    with pytest.raises(ValueError, match=r"`condition.*3\]. Received: .*(\[4, 2\]|\[2\])"):
        CONDITIONAL[method](model(condition_dim=3), np.zeros((4, 2), np.float32))


def test_sample_names_a_bad_count():
    with pytest.raises(TypeError, match="`n` must be an integer"):
        model().sample("3")
    with pytest.raises(ValueError, match="`n` must be at least 1"):
        model().sample(0)
