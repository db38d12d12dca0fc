"""A rich progress bar for Keras training: live loss, NLL, L, R, validation NLL, lr and ETA."""

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tfotflow._keras import keras


class ProgressBar(keras.callbacks.Callback):
    """Shows training progress in optimizer steps out of ``total`` on ``console`` (stderr).

    Args:
        total: the run's total number of optimizer steps.
        console: a ``rich.console.Console``.
        label: the phase shown before the bar. Defaults to "train".
    """

    def __init__(self, total, console, label="train"):
        super().__init__()
        self.total = total
        self.progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=console,
        )
        self.validation = ""
        self.task = None

    def on_train_begin(self, logs=None):
        self.progress.start()
        done = int(self.model.optimizer.iterations.numpy())  # > 0 when resuming
        # Until the first step returns, the step's graph is being built and compiled.
        self.task = self.progress.add_task(
            "train", total=self.total, completed=done, metrics="compiling the training step…"
        )

    def on_train_batch_end(self, batch, logs=None):
        shown = " ".join(f"{name}={float(value):.4g}" for name, value in (logs or {}).items())
        rate = float(self.model.optimizer.learning_rate.numpy())
        self.progress.update(
            self.task,
            completed=int(self.model.optimizer.iterations.numpy()),
            metrics=f"{shown} {self.validation} lr={rate:.2g}",
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs and "val_nll" in logs:
            self.validation = f"val_nll={float(logs['val_nll']):.4g}"

    def on_train_end(self, logs=None):
        self.stop()

    def stop(self):
        """Stops the display (an interrupted run), leaving what was shown."""
        self.progress.stop()
