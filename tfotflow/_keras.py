"""Keras 3 on the TensorFlow backend, imported once for the whole package.

tfotflow's layers run TensorFlow ops (``tf.function``, XLA, TFP bijectors), so Keras must use
its TensorFlow backend. The backend is selected before Keras is first imported, unless the user
chose another one, in which case the import fails with a clear message.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "tfotflow needs Keras 3 on the TensorFlow backend. "
        f"Received: KERAS_BACKEND={keras.backend.backend()!r}. "
        "Unset KERAS_BACKEND or set it to 'tensorflow'."
    )

__all__ = ["keras"]
