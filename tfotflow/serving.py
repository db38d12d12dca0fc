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

``seed`` is a stateless seed (two int32): the same seed gives the same samples.
"""

import pathlib

import tensorflow as tf


class _Serving(tf.Module):
    """The exported module: the potential's variables and the two signature functions."""

    def __init__(self, model):
        super().__init__(name="tfotflow_serving")
        # Keras 3 variables wrap tf.Variables that tf.Module does not find by itself.
        self.weights = [variable.value for variable in model.potential.weights]
        d, k, dtype = model.dim, model.condition_dim, tf.as_dtype(model.precision)
        points = tf.TensorSpec([None, d], dtype, name="x")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        if k:
            conditions = tf.TensorSpec([None, k], dtype, name="condition")

            @tf.function(input_signature=[points, conditions])
            def log_prob(x, condition):
                return {"log_prob": model.log_prob(x, condition)}

            @tf.function(input_signature=[conditions, seed])
            def sample(condition, seed):
                z = tf.random.stateless_normal(
                    tf.stack([tf.shape(condition)[0], d]), seed, dtype=dtype
                )
                return {"samples": model.bijector.forward(z, conditional_input=condition)}

        else:

            @tf.function(input_signature=[points])
            def log_prob(x):
                return {"log_prob": model.log_prob(x)}

            @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="num_samples"), seed])
            def sample(num_samples, seed):
                z = tf.random.stateless_normal(tf.stack([num_samples, d]), seed, dtype=dtype)
                return {"samples": model.bijector.forward(z)}

        self.log_prob, self.sample = log_prob, sample


def export(model, path):
    """Writes ``model`` (an :class:`tfotflow.OTFlowModel`) as a SavedModel to ``path``.

    Args:
        model: the trained model.
        path: a directory (created; an existing SavedModel there is replaced).

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
    module = _Serving(model)
    tf.saved_model.save(
        module, str(path), signatures={"log_prob": module.log_prob, "sample": module.sample}
    )
    return path
