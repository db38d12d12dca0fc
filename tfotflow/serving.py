"""Serving export: a trained model as a TensorFlow SavedModel with ``log_prob`` and ``sample``.

The SavedModel holds the potential's weights and the compiled graphs of the exact density
(one ODE solve with the closed-form trace) and of sampling; it loads with
``tf.saved_model.load`` alone, with neither tfotflow, TensorFlow Probability nor Keras
installed, and serves through TensorFlow Serving. Signatures (d the data dimension, k the
condition width; the model's evaluation step count is fixed in the graph):

```none
unconditional:  log_prob(x [n, d])                    → {"log_prob": [n]}
                sample(num_samples [], seed [2])       → {"samples": [num_samples, d]}
conditional:    log_prob(x [n, d], condition [n, k])  → {"log_prob": [n]}      log p(x | y)
                sample(condition [m, k], seed [2])     → {"samples": [m, d]}    one per row
```

``seed`` is a stateless seed (two int32): the same seed gives the same samples. A latent flow
(exported with its autoencoder, :mod:`tfotflow.latent`) takes and returns points of width D:
``log_prob`` encodes x and gives the codes' log-density (the latent NLL's), and ``sample``
decodes the flow's samples (images, flattened). As in a
SavedModel written by Keras's ``Model.export``, ``serve`` returns what the model's call
returns, the log-density tensor (``served.serve(x)``, or ``served.serve(x, condition)``), and
``serving_default`` is the ``log_prob`` signature.
"""

import pathlib

import tensorflow as tf


class _Serving(tf.Module):
    """The exported module: the potential's variables and the two signature functions."""

    def __init__(self, model, input_signature=None, autoencoder=None):
        super().__init__(name="tfotflow_serving")
        # Keras 3 variables wrap tf.Variables that tf.Module does not find by itself: the
        # potential's and the normalization's (μ, σ or L), and the autoencoder's.
        parts = [model] if autoencoder is None else [model, autoencoder]
        self.weights = [variable.value for part in parts for variable in part.weights]
        d, k, dtype = model.dim, model.condition_dim, tf.as_dtype(model.precision)
        points, *conditions = input_signature or _input_signature(model, autoencoder)

        def encode(x):
            return x if autoencoder is None else tf.cast(autoencoder.encoder(x), dtype)

        def decode(codes):
            return codes if autoencoder is None else autoencoder.decoder(codes)

        seed = tf.TensorSpec([2], tf.int32, name="seed")
        if k:
            (conditions,) = conditions

            @tf.function(input_signature=[points, conditions])
            def log_prob(x, condition):
                return {"log_prob": model.log_prob(encode(x), condition)}

            @tf.function(input_signature=[points, conditions])
            def serve(x, condition):
                return model.log_prob(encode(x), condition)

            @tf.function(input_signature=[conditions, seed])
            def sample(condition, seed):
                z = tf.random.stateless_normal(
                    tf.stack([tf.shape(condition)[0], d]), seed, dtype=dtype
                )
                kwargs = model.bijector_kwargs(condition)
                return {"samples": decode(model.bijector.forward(z, **kwargs))}

        else:

            @tf.function(input_signature=[points])
            def log_prob(x):
                return {"log_prob": model.log_prob(encode(x))}

            @tf.function(input_signature=[points])
            def serve(x):
                return model.log_prob(encode(x))

            @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="num_samples"), seed])
            def sample(num_samples, seed):
                z = tf.random.stateless_normal(tf.stack([num_samples, d]), seed, dtype=dtype)
                return {"samples": decode(model.bijector.forward(z))}

        self.log_prob, self.sample, self.serve = log_prob, sample, serve


def _input_signature(model, autoencoder=None):
    """The points' spec [None, d] (and the conditions' [None, k]) in the model's dtype; with
    an ``autoencoder``, [None, D] float32 points."""
    dtype = tf.as_dtype(model.precision)
    if autoencoder is None:
        specs = [tf.TensorSpec([None, model.dim], dtype, name="x")]
    else:
        specs = [tf.TensorSpec([None, autoencoder.input_dim], tf.float32, name="x")]
    if model.condition_dim:
        specs.append(tf.TensorSpec([None, model.condition_dim], dtype, name="condition"))
    return specs


def check_input_signature(model, input_signature):
    """``input_signature`` as ``[x_spec]`` or ``[x_spec, condition_spec]`` (named ``x`` and
    ``condition``) compatible with ``model``'s, or None for the default [None, d] / [None, k].

    Raises:
        ValueError: naming ``input_signature`` and what was received, when it has the wrong
            number of specs, or a spec is not [n, d] / [n, k] in the model's dtype.
    """
    if input_signature is None:
        return None
    specs = [input_signature] if isinstance(input_signature, tf.TensorSpec) else input_signature
    expected = _input_signature(model)
    if (
        not isinstance(specs, (list, tuple))
        or len(specs) != len(expected)
        or not all(isinstance(spec, tf.TensorSpec) for spec in specs)
        or not all(
            spec.dtype == default.dtype
            and spec.shape.rank == 2
            and spec.shape[-1] == default.shape[-1]
            for spec, default in zip(specs, expected)
        )
    ):
        wanted = " and ".join(
            f"TensorSpec([n, {spec.shape[-1]}], {spec.dtype.name})" for spec in expected
        )
        raise ValueError(
            f"`input_signature` must be {len(expected)} tf.TensorSpec: {wanted}. "
            f"Received: input_signature={input_signature!r}"
        )
    return [
        tf.TensorSpec(spec.shape, spec.dtype, name=default.name)
        for spec, default in zip(specs, expected)
    ]


def export(model, path, *, input_signature=None, autoencoder=None):
    """Writes ``model`` (an :class:`tfotflow.OTFlowModel`) as a SavedModel to ``path``.

    Args:
        model: the trained model.
        path: a directory (created; an existing SavedModel there is replaced).
        input_signature: the points' ``tf.TensorSpec`` (and the conditions', for a
            conditional model), e.g. with a fixed batch size. Defaults to [None, d] (and
            [None, k]) in the model's dtype.
        autoencoder: for a latent flow, its :class:`tfotflow.latent.Autoencoder`: the
            SavedModel then takes points of width D and samples decoded points.

    Returns:
        The path, a ``pathlib.Path``.

    Example (serving side, no tfotflow needed):

    ```python
    served = tf.saved_model.load(path)
    served.signatures["log_prob"](x=x)["log_prob"]
    served.signatures["sample"](num_samples=tf.constant(100), seed=tf.constant([1, 2]))
    ```
    """
    path = pathlib.Path(path)
    if autoencoder is not None and input_signature is not None:
        raise ValueError("`input_signature` is for a flow of the points, not a latent flow")
    module = _Serving(model, check_input_signature(model, input_signature), autoencoder)
    signatures = {
        "log_prob": module.log_prob,
        "sample": module.sample,
        "serving_default": module.log_prob,
    }
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path
