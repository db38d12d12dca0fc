"""Figures of a trained flow (PNG, matplotlib's Agg backend; needs the ``plot`` extra).

- 2-D data: the learned density as a heat map, samples next to the data, and trajectories
  x(t) from data to the normal (the straight OT paths are the point of the method).
- d > 2: pairwise marginals of chosen dimensions, data against samples.

For a conditional model the samples are drawn one per test condition (so they follow the
same joint law as the data they are shown against), the trajectories start from test pairs,
and the density is drawn as p(x | y) for three test conditions.
"""

import io
import pathlib

import numpy as np

from tfotflow import latent, ode
from tfotflow.checkpoint import atomic_write_bytes


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("plotting needs matplotlib: pip install 'tfotflow[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return pathlib.Path(path)


def _heading(figure, title):
    if title:
        figure.suptitle(title)
        figure.tight_layout()


def trajectories(model, x, *, condition=None, num_steps=None, points=9):
    """x(t) at ``points`` equally spaced times from t = 0 (data) to 1 (normal); [points, n, d].

    ``condition``: one row per point for a conditional model."""
    num_steps = num_steps or model.eval_num_steps
    path = [np.asarray(x)]
    current = np.asarray(x)
    per_segment = max(1, num_steps // (points - 1))
    for k in range(points - 1):
        state = ode.integrate(
            model.potential,
            current.astype(model.precision),
            num_steps=per_segment,
            alpha_transport=model.alpha[0],
            time_span=(k / (points - 1), (k + 1) / (points - 1)),
            condition=None if condition is None else np.asarray(condition, model.precision),
        )
        current = state.x.numpy()
        path.append(current)
    return np.stack(path)


def draw_samples(model, n, conditions=None, *, seed=0):
    """``n`` samples [n, d]; for a conditional model one per row of ``conditions`` (n rows)."""
    if conditions is None:
        return np.asarray(model.sample(n, seed=(seed, 1)))
    return np.asarray(model.sample(1, np.asarray(conditions[:n]), seed=(seed, 1)))[0]


def shown_conditions(conditions, count=3):
    """``count`` test conditions to draw p(x | y) at: for a scalar y its 10/50/90 %
    quantiles, else the first rows."""
    conditions = np.asarray(conditions)
    if conditions.shape[1] == 1:
        return np.percentile(conditions, [10, 50, 90], axis=0)[:count]
    return conditions[:count]


def plot_2d(
    model,
    data,
    directory,
    *,
    conditions=None,
    seed=0,
    grid_size=200,
    num_samples=4000,
    title=None,
):
    """Writes density.png, samples.png and trajectories.png for a 2-D model; returns the paths.

    ``conditions``: the test conditions, one row per data point, for a conditional model.
    ``title``: a heading for every figure (e.g. the data set and its test NLL)."""
    plt = _pyplot()
    directory = pathlib.Path(directory)
    low, high = np.percentile(data, 0.5, axis=0), np.percentile(data, 99.5, axis=0)
    margin = 0.15 * (high - low)
    low, high = low - margin, high + margin
    xs, ys = np.linspace(low[0], high[0], grid_size), np.linspace(low[1], high[1], grid_size)
    xx, yy = np.meshgrid(xs, ys)
    grid = np.stack([xx.ravel(), yy.ravel()], 1).astype(model.precision)
    panels = [None] if conditions is None else list(shown_conditions(conditions))
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4), squeeze=False)
    for axis, y in zip(axes[0], panels):
        condition = None if y is None else y.astype(model.precision)
        density = np.exp(np.asarray(model.log_prob(grid, condition)))
        image = axis.imshow(
            density.reshape(grid_size, grid_size),
            origin="lower",
            extent=(low[0], high[0], low[1], high[1]),
            cmap="viridis",
            aspect="auto",
        )
        figure.colorbar(image, ax=axis, label="density")
        axis.set_xlabel("x0")
        axis.set_ylabel("x1")
        given = "" if y is None else " | y = (" + ", ".join(f"{v:.2f}" for v in y) + ")"
        axis.set_title(f"learned density p(x{given})")
    _heading(figure, title)
    paths = [_save(figure, directory / "density.png")]

    samples = draw_samples(model, num_samples, conditions, seed=seed)
    shown = data[: len(samples)]
    figure, axes = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
    axes[0].scatter(shown[:, 0], shown[:, 1], s=1, alpha=0.5)
    axes[0].set_title("data")
    axes[1].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.5, color="tab:orange")
    axes[1].set_title("samples")
    axes[0].set_xlim(low[0], high[0])
    axes[0].set_ylim(low[1], high[1])
    _heading(figure, title)
    paths.append(_save(figure, directory / "samples.png"))

    path = trajectories(
        model, shown[:300], condition=None if conditions is None else conditions[:300]
    )
    figure, axis = plt.subplots(figsize=(5, 5))
    for i in range(path.shape[1]):
        axis.plot(path[:, i, 0], path[:, i, 1], lw=0.5, color="gray", alpha=0.6)
    axis.scatter(path[0, :, 0], path[0, :, 1], s=3, label="x(0): data")
    axis.scatter(path[-1, :, 0], path[-1, :, 1], s=3, label="x(1): normal")
    axis.legend(loc="upper right")
    axis.set_title("trajectories t: 0 → 1")
    _heading(figure, title)
    paths.append(_save(figure, directory / "trajectories.png"))
    return paths


def plot_marginals(
    model,
    data,
    directory,
    *,
    conditions=None,
    dims=(0, 1, 2, 3),
    seed=0,
    num_samples=2000,
    title=None,
):
    """Writes marginals.png: pairwise scatter of ``dims``, data (blue) vs samples (orange).

    ``conditions``: the test conditions, one row per data point, for a conditional model.
    ``title``: a heading (e.g. the data set and its test NLL)."""
    plt = _pyplot()
    dims = list(dims)
    samples = draw_samples(model, num_samples, conditions, seed=seed)
    shown = data[: len(samples)]
    k = len(dims)
    figure, axes = plt.subplots(k, k, figsize=(2.2 * k, 2.2 * k), squeeze=False)
    for row, i in enumerate(dims):
        for col, j in enumerate(dims):
            axis = axes[row][col]
            if i == j:
                bins = np.linspace(*np.percentile(shown[:, i], [0.5, 99.5]), 40)
                axis.hist(shown[:, i], bins=bins, alpha=0.5, density=True)
                axis.hist(samples[:, i], bins=bins, alpha=0.5, density=True)
            else:
                # Samples first, the data on top: the data stay visible where both lie.
                axis.scatter(samples[:, j], samples[:, i], s=0.5, alpha=0.3, color="tab:orange")
                axis.scatter(shown[:, j], shown[:, i], s=0.5, alpha=0.3, color="tab:blue")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == k - 1:
                axis.set_xlabel(f"x{j}")
            if col == 0:
                axis.set_ylabel(f"x{i}")
    _heading(
        figure,
        "data (blue) vs samples (orange)"
        if title is None
        else f"{title}\ndata (blue) vs samples (orange)",
    )
    return [_save(figure, pathlib.Path(directory) / "marginals.png")]


def plot_races(result, path):
    """Validation NLL (test NLL in results scored before validation rows) against training
    time for every contender of every data set of a ``time_to_quality`` result (one panel per
    data set, log time axis, the true entropy, or the true density's NLL on the test rows, dotted
    and each peer's target level dashed); returns the path written."""
    plt = _pyplot()
    rows = result["rows"]
    figure, axes = plt.subplots(1, len(rows), figsize=(5.5 * len(rows), 4.2), squeeze=False)
    for axis, row in zip(axes[0], rows):
        for name, race in row["races"].items():
            curve = [(seconds, nll) for step, seconds, nll in race["curve"] if step]
            axis.plot(*zip(*curve), marker="o", markersize=3, label=name)
        if row.get("true_entropy") is not None:
            axis.axhline(row["true_entropy"], color="black", lw=0.8, ls=":", label="entropy")
        elif row.get("exact_test_nll") is not None:
            axis.axhline(
                row["exact_test_nll"], color="black", lw=0.8, ls=":", label="true density"
            )
        for versus in row.get("versus", {}).values():
            axis.axhline(versus["target_nll"], color="grey", lw=0.6, ls="--")
        best = min(race["best_nll"] for race in row["races"].values())
        worst_first = max(
            next(nll for step, _, nll in race["curve"] if step) for race in row["races"].values()
        )
        axis.set_ylim(best - 0.1 * abs(best) - 0.05, worst_first)
        axis.set_xscale("log")
        axis.set_xlabel("training time (s)")
        validated = all("test_nll_at_best" in race for race in row["races"].values())
        axis.set_ylabel(f"exact {'validation' if validated else 'test'} NLL (nats)")
        seed = f", seed {row['seed']}" if "seed" in row else ""
        axis.set_title(f"{row['dataset']} (d = {row['d']}{seed})")
        axis.legend(fontsize=8)
    return _save(figure, path)


def image_grid(images, image_shape, *, columns, padding=2):
    """Tiles ``images`` [n, H·W·C] (values in [0, 1]) into one picture, ``columns`` to a row,
    ``padding`` black pixels between tiles: [rows·(H + p) + p, columns·(W + p) + p] (· C for
    C > 1), rows = ⌈n / columns⌉."""
    height, width, channels = image_shape
    images = np.clip(np.asarray(images, dtype=np.float64), 0.0, 1.0)
    rows = -(-len(images) // columns)
    grid = np.zeros(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels)
    )
    for index, image in enumerate(images.reshape(-1, height, width, channels)):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid[..., 0] if channels == 1 else grid


def write_image(path, picture):
    """Writes ``picture`` ([H, W] grey or [H, W, 3] colour, in [0, 1]) as a PNG of exactly
    H × W pixels, atomically."""
    _pyplot()  # matplotlib, or the error naming the extra
    from matplotlib import image

    buffer = io.BytesIO()
    image.imsave(buffer, picture, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return pathlib.Path(path)


def plot_images(model, autoencoder, data, directory, *, seed=0, per_row=10):
    """The pictures of a latent flow of images (``data.metadata.image_shape``):

    - ``samples_by_class.png``: one row of decoded samples per class (conditional), or
      ``samples.png``, a square of samples (unconditional);
    - ``interpolations.png``: rows decoded along straight lines in the normal space between
      two test points (of the same class, given as the condition, for a conditional flow).
    """
    directory, meta = pathlib.Path(directory), data.metadata
    shape = meta.image_shape
    classes = meta.condition_dim if meta.classes else 0
    if classes:
        eye = np.eye(classes, dtype=model.precision)
        drawn = latent.draw(model, per_row, condition=eye, seed=seed, autoencoder=autoencoder)
        name = "samples_by_class.png"
    else:
        drawn = latent.draw(model, per_row * per_row, seed=seed, autoencoder=autoencoder)
        name = "samples.png"
    pictures = image_grid(latent.rows_by_condition(drawn), shape, columns=per_row)
    paths = [write_image(directory / name, pictures)]
    rows, labels = [], None if not classes else data.conditions["test"].argmax(axis=1)
    rng = np.random.RandomState(seed)
    for row in range(min(classes or 8, 10)):
        if classes:
            members = np.flatnonzero(labels == row)
            if len(members) < 2:
                continue
            start, end = rng.choice(members, 2, replace=False)
            condition = eye[row]
        else:
            start, end = rng.choice(len(data.test), 2, replace=False)
            condition = None
        rows.append(
            latent.interpolate(
                model,
                autoencoder,
                data.test[start],
                data.test[end],
                num_points=per_row,
                condition=condition,
            )
        )
    if rows:
        pictures = image_grid(np.concatenate(rows), shape, columns=per_row)
        paths.append(write_image(directory / "interpolations.png", pictures))
    return paths
