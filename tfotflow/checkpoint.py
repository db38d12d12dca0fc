"""Checkpoints that survive a kill: atomic, self-checking files of weights and optimizer state.

A checkpoint is one ``.npz`` file holding every model weight, every optimizer variable
(iteration count and learning rate included) and a JSON record of the training state. It is
written to a temporary file in the same folder, fsynced, and renamed over the previous one, so
a kill at any moment leaves either the old or the new checkpoint, complete. A SHA-256 of the
arrays is stored inside and checked on load: a truncated or corrupted file is refused with a
clear error, and nothing is restored from it.
"""

import hashlib
import io
import json
import os
import pathlib
import tempfile
import zipfile

import numpy as np


class CheckpointError(OSError):
    """A checkpoint is missing, truncated, corrupted, or does not fit the model."""


def new_file_mode():
    """The permissions any new file of the user gets: 0o666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path, payload):
    """Writes ``payload`` to ``path`` atomically (temporary file, fsync, rename, fsync dir).

    The file gets the permissions any new file of the user gets (0o666 less the umask), not
    the owner-only ones of the temporary file: runs and data are often shared.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, new_file_mode())
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _digest(arrays):
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def save(path, model, *, state=None):
    """Saves ``model``'s weights, its optimizer's variables and ``state`` (JSON) to ``path``.

    Args:
        path: the checkpoint file (``.npz``).
        model: a Keras model (its optimizer's variables are saved when it has one).
        state: JSON-serialisable training state (epoch, best validation NLL, …).
    """
    arrays = {f"weight/{i}": np.asarray(v) for i, v in enumerate(model.weights)}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and optimizer.built:
        arrays.update({f"optimizer/{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    record = {
        "state": state or {},
        "sha256": _digest(arrays),
        "weights": [v.path for v in model.weights],
    }
    buffer = io.BytesIO()
    np.savez(
        buffer, __record__=np.frombuffer(json.dumps(record).encode(), dtype=np.uint8), **arrays
    )
    atomic_write_bytes(path, buffer.getvalue())


def read(path):
    """Reads and verifies a checkpoint; returns ``(arrays, record)``.

    Raises:
        CheckpointError: if the file is missing, unreadable, truncated or fails its checksum.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        record = json.loads(arrays.pop("__record__").tobytes().decode())
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted ({type(error).__name__}: {error}); "
            "it was not used"
        ) from error
    if _digest(arrays) != record.get("sha256"):
        raise CheckpointError(f"checkpoint {path} fails its checksum: it is corrupted; not used")
    return arrays, record


def restore(path, model, *, contents=None):
    """Restores weights and optimizer variables saved by :func:`save`; returns the state.

    The optimizer is built first if needed, so a fresh model resumes with identical optimizer
    state and iteration count. ``contents``, the ``(arrays, record)`` :func:`read` already
    returned for ``path``, spares a second read of the file.

    Raises:
        CheckpointError: for an unreadable checkpoint or one saved from a different model.
    """
    arrays, record = read(path) if contents is None else contents
    weights = [arrays[f"weight/{i}"] for i in range(len(model.weights)) if f"weight/{i}" in arrays]
    shapes = [tuple(v.shape) for v in model.weights]
    if [w.shape for w in weights] != shapes:
        raise CheckpointError(
            f"checkpoint {path} holds weights of shapes {[w.shape for w in weights]}, "
            f"the model has {shapes}"
        )
    optimizer_arrays = sorted(
        (int(key.split("/")[1]), value)
        for key, value in arrays.items()
        if key.startswith("optimizer/")
    )
    optimizer = getattr(model, "optimizer", None)
    if optimizer_arrays and optimizer is not None:
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        if len(optimizer.variables) != len(optimizer_arrays):
            raise CheckpointError(
                f"checkpoint {path} holds {len(optimizer_arrays)} optimizer variables, "
                f"the model's optimizer has {len(optimizer.variables)}"
            )
        for variable, (_, value) in zip(optimizer.variables, optimizer_arrays):
            variable.assign(value)
    for variable, value in zip(model.weights, weights):
        variable.assign(value)
    return record["state"]
