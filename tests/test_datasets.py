"""Datasets: toy generators and densities, the contract checks, MAF preprocessing, downloads."""

import hashlib
import io
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from tfotflow import datasets
from tfotflow.datasets import Dataset, DatasetError, Metadata, conditional, tabular, toy
from tfotflow.datasets.download import DownloadError, download, extract_tar

from .conftest import shared_file

TOYS = [
    "8gaussians",
    "checkerboard",
    "swissroll",
    "circles",
    "moons",
    "pinwheel",
    "2spirals",
    "rings",
]


@pytest.mark.parametrize("name", TOYS)
def test_toy_sets_have_shape_and_are_deterministic(name):
    sizes = dict(num_train=503, num_val=31, num_test=47)
    first = datasets.load(name, seed=3, **sizes)
    again = datasets.load(name, seed=3, **sizes)
    other = datasets.load(name, seed=4, **sizes)
    assert [s.shape for s in (first.train, first.val, first.test)] == [(503, 2), (31, 2), (47, 2)]
    np.testing.assert_array_equal(first.train, again.train)
    assert not np.array_equal(first.train, other.train)
    assert not np.array_equal(first.train[:31], first.val)
    assert first.metadata.dim == 2 and first.metadata.hyperparameters["width"] == 32
    assert np.abs(first.train).max() < 10


def test_toy_scales_match_the_reference_generators():
    """Moments the FFJORD generators are known for: 8gaussians on radius 4/1.414, etc."""
    data = datasets.load("8gaussians", num_train=20000, num_val=1, num_test=1).train
    radius = np.linalg.norm(data, axis=1)
    assert abs(np.median(radius) - 4 / 1.414) < 0.05
    board = datasets.load("checkerboard", num_train=20000, num_val=1, num_test=1).train
    assert np.all(np.isfinite(toy.checkerboard_log_prob(board)))  # every sample on the support
    assert board.min() >= -4 and board.max() < 4


@pytest.mark.parametrize("name", ["8gaussians", "checkerboard"])
def test_exact_log_density_integrates_to_one(name):
    grid = np.linspace(-6, 6, 1201)
    step = grid[1] - grid[0]
    xx, yy = np.meshgrid(grid, grid)
    density = np.exp(toy.LOG_PROBS[name](np.stack([xx.ravel(), yy.ravel()], 1)))
    assert abs(density.sum() * step**2 - 1.0) < 5e-3


def test_exact_log_density_matches_samples():
    """Samples' mean log-density estimates −entropy (Monte Carlo, 100k samples)."""
    data = datasets.load("8gaussians", num_train=100_000, num_val=1, num_test=1)
    estimate = -np.mean(data.metadata.log_prob(data.train))
    assert abs(estimate - data.metadata.entropy) < 0.01
    assert abs(data.metadata.entropy - 2.8319) < 1e-3
    board = datasets.load("checkerboard", num_train=10, num_val=1, num_test=1)
    assert board.metadata.entropy == pytest.approx(np.log(32))


def test_contract_violations_name_the_plugin():
    meta = Metadata("demo", 2, "demo", "none")
    good = np.zeros((4, 2))
    cases = [
        (Dataset(good, good, np.zeros((4, 3)), meta), r"'demo', split 'test'.*\[n, 2\].*\(4, 3\)"),
        (Dataset(good, good.astype(int), good, meta), r"split 'val'.*float32 or float64.*int"),
        (Dataset(np.array([[0.0, np.nan]]), good, good, meta), r"'train'.*1 NaN or Inf.*row 0"),
        ({"train": good}, r"must return a tfotflow.datasets.Dataset. Received: dict"),
    ]
    for result, message in cases:
        with pytest.raises(DatasetError, match=message):
            datasets.check_dataset(result, plugin="demo")


CONDITIONAL = {"rotating_gaussians": (2, 1), "banana": (2, 1), "linear_gaussian": (10, 10)}


@pytest.mark.parametrize("name", CONDITIONAL)
def test_conditional_sets_pair_points_with_conditions(name):
    sizes = dict(num_train=301, num_val=31, num_test=47)
    data = datasets.load(name, seed=3, **sizes)
    again = datasets.load(name, seed=3, **sizes)
    d, k = CONDITIONAL[name]
    assert data.conditional and data.metadata.condition_dim == k and data.dim == d
    for split, n in zip(("train", "val", "test"), (301, 31, 47)):
        points, conditions = data.split(split)
        assert points.shape == (n, d) and conditions.shape == (n, k)
    np.testing.assert_array_equal(data.conditions["train"], again.conditions["train"])


@pytest.mark.parametrize("name", ["rotating_gaussians", "banana"])
@pytest.mark.parametrize("y", [-0.8, 0.1, 1.0])
def test_conditional_log_density_integrates_to_one_for_each_y(name, y):
    first, second = np.linspace(-9, 9, 901), np.linspace(-40, 40, 4001)  # banana: x₂ ≈ x₁²
    xx, yy = np.meshgrid(first, second)
    points = np.stack([xx.ravel(), yy.ravel()], 1)
    log_prob = conditional.LOG_PROBS[name](points, np.full((len(points), 1), y))
    cell = (first[1] - first[0]) * (second[1] - second[0])
    assert abs(np.exp(log_prob).sum() * cell - 1.0) < 1e-3


@pytest.mark.parametrize("name", CONDITIONAL)
def test_conditional_entropy_matches_samples(name):
    """−mean log p(x | y) over (x, y) pairs estimates H(X | Y) (Monte Carlo, 100k pairs)."""
    data = datasets.load(name, num_train=100_000, num_val=1, num_test=1)
    log_prob = data.metadata.log_prob(data.train, data.conditions["train"])
    standard_error = np.std(log_prob) / np.sqrt(len(log_prob))
    assert abs(-np.mean(log_prob) - data.metadata.entropy) < 4 * standard_error


def test_linear_gaussian_posterior_is_the_bayes_posterior(rng):
    """N(x/2, 0.05 I): the posterior mean and variance from 400k simulations near x = 0.3."""
    theta, x = conditional.linear_gaussian(np.random.RandomState(0), 400_000)
    near = np.abs(x[:, 0] - 0.3) < 0.01
    mean, variance = conditional.linear_gaussian_posterior(np.full((1, 10), 0.3))
    assert abs(theta[near, 0].mean() - mean[0, 0]) < 0.01
    assert abs(theta[near, 0].var() - variance) < 0.005


def test_conditional_contract_violations_name_the_plugin():
    meta = Metadata("demo", 2, "demo", "none", condition_dim=1)
    good = np.zeros((4, 2))
    y = {"train": np.zeros((4, 1)), "val": np.zeros((4, 1)), "test": np.zeros((4, 1))}
    cases = [
        (Dataset(good, good, good, meta), r"condition_dim=1: Dataset.conditions must map"),
        (
            Dataset(good, good, good, meta, conditions={**y, "val": np.zeros((3, 1))}),
            r"conditions of split 'val'.*\[4, 1\].*\(3, 1\)",
        ),
        (
            Dataset(good, good, good, meta, conditions={**y, "test": np.full((4, 1), np.inf)}),
            r"conditions of split 'test'.*4 NaN or Inf",
        ),
        (
            Dataset(good, good, good, Metadata("demo", 2, "demo", "none"), conditions=y),
            r"returned conditions but metadata.condition_dim is 0",
        ),
    ]
    for result, message in cases:
        with pytest.raises(DatasetError, match=message):
            datasets.check_dataset(result, plugin="demo")


def test_bad_toy_options():
    with pytest.raises(DatasetError, match="num_train"):
        datasets.load("moons", num_train=0)


def test_as_tf_data_batches_and_shuffles():
    array = np.arange(20, dtype=np.float64).reshape(10, 2)
    batches = list(datasets.as_tf_data(array, batch_size=4, seed=1))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    rows = np.concatenate([b.numpy() for b in batches])
    assert sorted(rows[:, 0]) == sorted(array[:, 0]) and not np.array_equal(rows, array)


# ----------------------------------------------------------------------------- MAF tabular


def test_split_rule_gives_the_documented_sizes():
    """The 10% / 10% rule applied to the raw row counts of the MAF files."""
    raw_rows = {"power": 2_049_280, "gas": 1_052_065, "miniboone": 36_488}
    for name, rows in raw_rows.items():
        sizes = tuple(len(s) for s in tabular.split_last(np.empty((rows, 0))))
        assert sizes == tabular.SPLIT_SIZES[name]
    n = 350_136  # HEPMASS signal rows of 1000_train.csv: only validation is split off
    assert (n - int(0.1 * n), int(0.1 * n)) == tabular.SPLIT_SIZES["hepmass"][:2]


def test_power_preprocessing_on_a_synthetic_file(tmp_path, rng):
    raw = rng.normal(size=(1000, 8)) * 5 + 3
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", raw)
    data = datasets.load("power", data_dir=tmp_path, verify=False)
    assert [len(s) for s in (data.train, data.val, data.test)] == [810, 90, 100]
    assert data.metadata.dim == 6
    both = np.vstack([data.train, data.val])
    np.testing.assert_allclose(both.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(both.std(0), 1, atol=1e-12)
    again = datasets.load("power", data_dir=tmp_path, verify=False)
    np.testing.assert_array_equal(data.test, again.test)  # the MAF seed 42 is fixed
    with pytest.raises(DatasetError, match=r"\(810, 90, 100\).*expected.*download"):
        datasets.load("power", data_dir=tmp_path)


def test_gas_drops_correlated_columns(tmp_path, rng):
    pandas = pytest.importorskip("pandas")
    base = rng.normal(size=(500, 9))
    columns = {f"s{i}": base[:, i] for i in range(9)}
    columns["s_copy"] = base[:, 2] * 2 + 1e-4 * rng.normal(size=500)  # correlated with s2
    frame = pandas.DataFrame({"Meth": 1.0, "Eth": 2.0, "Time": np.arange(500.0), **columns})
    (tmp_path / "gas").mkdir()
    frame.to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    data = datasets.load("gas", data_dir=tmp_path, verify=False)
    assert data.metadata.dim == 9  # Meth, Eth, Time and one of the correlated pair dropped
    assert [len(s) for s in (data.train, data.val, data.test)] == [405, 45, 50]
    whole = np.vstack([data.train, data.val, data.test])
    np.testing.assert_allclose(whole.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(whole.std(0, ddof=1), 1, atol=1e-12)


def test_hepmass_keeps_signal_and_drops_discrete_features(tmp_path, rng):
    pandas = pytest.importorskip("pandas")

    def table(n, extra_column):
        features = rng.normal(size=(n, 4))
        features[:, 3] = rng.integers(0, 3, size=n)  # over-discrete: its smallest value repeats
        label = rng.integers(0, 2, size=n).astype(float)
        frame = pandas.DataFrame(np.column_stack([label, features]), columns=["# label", *"abcd"])
        if extra_column:
            frame["mass"] = 1000.0
        return frame

    (tmp_path / "hepmass").mkdir()
    train, test = table(2000, False), table(600, True)
    train.to_csv(tmp_path / "hepmass" / "1000_train.csv", index=False)
    test.to_csv(tmp_path / "hepmass" / "1000_test.csv", index=False)
    data = datasets.load("hepmass", data_dir=tmp_path, verify=False)
    signal = int((train["# label"] == 1).sum())
    assert len(data.train) + len(data.val) == signal and len(data.val) == int(0.1 * signal)
    assert len(data.test) == int((test["# label"] == 1).sum())
    assert data.metadata.dim == 3


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DatasetError, match=r"BSDS300.hdf5.*tfotflow datasets download bsds300"):
        datasets.load("bsds300", data_dir=tmp_path)


def test_miniboone_real_validation_and_test_splits():
    folder = shared_file("data/miniboone/val.npy").parent
    digests = {
        "val.npy": "104f35c387c982cd550e5d6142e8b4075d746001508e65c1a90efcb83301839d",
        "test.npy": "01b3fc605f334e951fed477a09a7fcd69cdc440d9204111ca253ecdf0e7590de",
    }
    for file, digest in digests.items():
        assert hashlib.sha256((folder / file).read_bytes()).hexdigest() == digest
    with pytest.raises(DatasetError, match="train_split='val'"):
        datasets.load("miniboone", data_dir=folder.parent)
    data = datasets.load("miniboone", data_dir=folder.parent, train_split="val")
    assert data.val.shape == (3284, 43) and data.test.shape == (3648, 43)
    assert data.train is not None and np.array_equal(data.train, data.val)
    assert data.metadata.hyperparameters["width"] == 256
    # Standardised with the train+validation statistics: near, not exactly, zero mean.
    assert np.abs(data.val.mean(0)).max() < 0.3 and np.abs(data.test.std(0) - 1).max() < 0.5


def test_miniboone_split_and_standardisation_from_raw(tmp_path, rng):
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", rng.normal(size=(36_488, 43)) * 3 + 1)
    data = datasets.load("miniboone", data_dir=tmp_path)  # verified sizes
    assert (len(data.train), len(data.val), len(data.test)) == (29_556, 3_284, 3_648)
    np.testing.assert_allclose(np.vstack([data.train, data.val]).mean(0), 0, atol=1e-12)


def _damaged_arrays(folder, rng):
    """Three damaged ``.npy`` files: truncated, pickled objects, and 1-D."""
    good = folder / "good.npy"
    np.save(good, rng.normal(size=(50, 43)))
    truncated = good.read_bytes()[:200]
    pickled = folder / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    flat = folder / "flat.npy"
    np.save(flat, np.ones(43))
    return {
        "truncated": truncated,
        "pickled": pickled.read_bytes(),
        "flat": flat.read_bytes(),
    }


@pytest.mark.parametrize("damage", ["truncated", "pickled", "flat"])
@pytest.mark.parametrize("file", ["data.npy", "val.npy"])
def test_damaged_data_arrays_are_named(tmp_path, rng, damage, file):
    """A damaged array (raw or pre-split) gets an error naming its file and the cure."""
    folder = tmp_path / "miniboone"
    folder.mkdir()
    contents = _damaged_arrays(tmp_path, rng)[damage]
    if file == "val.npy":
        np.save(folder / "test.npy", rng.normal(size=(5, 43)))
    (folder / file).write_bytes(contents)
    expected = r"(cannot be read|expected a 2-D numeric array)"
    with pytest.raises(DatasetError, match=rf"{folder / file}.*{expected}") as caught:
        datasets.load("miniboone", data_dir=tmp_path, train_split="val")
    assert "tfotflow datasets download miniboone" in str(caught.value)


def test_damaged_csv_is_named(tmp_path):
    pytest.importorskip("pandas")
    (tmp_path / "hepmass").mkdir()
    for file in tabular.FILES["hepmass"]:
        (tmp_path / file).write_bytes(b"\x00\xff\xfe not a csv \x00")
    with pytest.raises(DatasetError, match=r"1000_train.csv cannot be read"):
        datasets.load("hepmass", data_dir=tmp_path, verify=False)


# ----------------------------------------------------------------------------- downloads


class FakeServer:
    """Serves ``payload``, honouring Range requests; can cut the connection after N bytes."""

    def __init__(self, payload, cut_after=None):
        self.payload, self.cut_after, self.ranges = payload, cut_after, []

    def __call__(self, request, timeout=None):
        header = request.headers.get("Range")
        start = int(header.split("=")[1].rstrip("-")) if header else 0
        self.ranges.append(start)
        body = self.payload[start:]
        sent = body if self.cut_after is None else body[: self.cut_after]
        self.cut_after = None  # only the first connection is cut
        response = io.BytesIO(sent)
        response.status = 206 if header else 200
        response.headers = {"Content-Length": str(len(body))}
        response.__enter__ = lambda: response
        return _Context(response)


class _Context:
    def __init__(self, response):
        self.response = response

    def __enter__(self):
        return self.response

    def __exit__(self, *exc):
        return False


def test_truncated_download_is_kept_partial_then_resumed(tmp_path):
    payload = bytes(range(256)) * 100
    server = FakeServer(payload, cut_after=1000)
    target = tmp_path / "file.bin"
    digest = hashlib.sha256(payload).hexdigest()
    with pytest.raises(DownloadError, match="received 1000 of 25600"):
        download("http://x/file", target, checksum=digest, opener=server)
    assert not target.exists() and (tmp_path / "file.bin.part").stat().st_size == 1000
    seen = []
    download(
        "http://x/file",
        target,
        checksum=digest,
        opener=server,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert target.read_bytes() == payload and server.ranges == [0, 1000]
    assert seen[-1] == (25600, 25600) and not (tmp_path / "file.bin.part").exists()


def test_corrupted_download_is_deleted_not_used(tmp_path):
    server = FakeServer(b"corrupted bytes")
    with pytest.raises(DownloadError, match="corrupted"):
        download("http://x/f", tmp_path / "f", checksum="0" * 64, opener=server)
    assert not (tmp_path / "f").exists() and not (tmp_path / "f.part").exists()


def test_fetch_downloads_unpacks_and_verifies(tmp_path, rng):
    data = tabular.fetch("miniboone", tmp_path, opener=FakeServer(_miniboone_archive(rng)))
    assert data.test.shape == (3648, 43)
    assert (tmp_path / "miniboone" / "data.npy").exists()
    assert not (tmp_path / "maf-data.tar.gz").exists()


def _miniboone_archive(rng):
    buffer = io.BytesIO()
    np.save(buffer, rng.normal(size=(36_488, 43)))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("data/miniboone/data.npy")
        info.size = len(buffer.getvalue())
        tar.addfile(info, io.BytesIO(buffer.getvalue()))
    return archive.getvalue()


def test_a_corrupt_archive_left_behind_is_downloaded_again(tmp_path, rng):
    payload = _miniboone_archive(rng)
    (tmp_path / "maf-data.tar.gz").write_bytes(payload[: len(payload) // 2])
    server = FakeServer(payload)
    data = tabular.fetch("miniboone", tmp_path, opener=server)
    assert server.ranges == [0] and data.test.shape == (3648, 43)
    assert not (tmp_path / "maf-data.tar.gz").exists()


def test_a_freshly_downloaded_corrupt_archive_is_deleted_and_named(tmp_path):
    server = FakeServer(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError, match="cannot be unpacked.*downloads it again"):
        tabular.fetch("miniboone", tmp_path, opener=server)
    assert not (tmp_path / "maf-data.tar.gz").exists() and server.ranges == [0]


def test_unpacking_keeps_the_users_own_files(tmp_path, rng):
    """The archive's files replace their namesakes only: nothing else in the folder goes."""
    folder = tmp_path / "miniboone"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    np.save(folder / "val.npy", np.ones((3, 43)))
    buffer = io.BytesIO()
    np.save(buffer, rng.normal(size=(36_488, 43)))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name in ("data/miniboone/data.npy", "data/power/data.npy"):
            info = tarfile.TarInfo(name)
            info.size = len(buffer.getvalue())
            tar.addfile(info, io.BytesIO(buffer.getvalue()))
    (tmp_path / "maf-data.tar.gz").write_bytes(archive.getvalue())
    installed = extract_tar(tmp_path / "maf-data.tar.gz", tmp_path, members_under="data")
    assert installed == ["miniboone", "power"]
    (tmp_path / "maf-data.tar.gz").unlink()
    assert (folder / "notes.txt").read_text() == "mine"
    np.testing.assert_array_equal(np.load(folder / "val.npy"), np.ones((3, 43)))
    assert (folder / "data.npy").exists() and (tmp_path / "power" / "data.npy").exists()
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())


@pytest.mark.parametrize("filters", [True, False], ids=["data filter", "no filters"])
def test_unpacking_refuses_members_that_leave_the_folder_on_any_python(
    tmp_path, monkeypatch, filters
):
    """With tarfile's ``data`` filter, or on a Python without extraction filters (before
    3.10.12 and 3.11.4), files unpack, and a member written or linked outside the folder is
    refused with nothing written outside."""
    if not filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python's tarfile has no extraction filters")

    def archive(name, *members):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for member in members:
                info = tarfile.TarInfo(member["name"])
                if "link" in member:
                    info.type, info.linkname = tarfile.SYMTYPE, member["link"]
                    tar.addfile(info)
                else:
                    info.size = 3
                    tar.addfile(info, io.BytesIO(b"abc"))
        (tmp_path / name).write_bytes(buffer.getvalue())
        return tmp_path / name

    target = tmp_path / "target"
    good = archive("good.tar.gz", {"name": "data/a/x.txt"})
    assert extract_tar(good, target, members_under="data") == ["a"]
    assert (target / "a" / "x.txt").read_bytes() == b"abc"
    for bad in ({"name": "data/../../escaped.txt"}, {"name": "data/out", "link": "/etc/passwd"}):
        with pytest.raises(tarfile.TarError):
            extract_tar(archive("bad.tar.gz", bad), target, members_under="data")
    assert not (target / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (target / "out").exists()
    assert not any(path.name.startswith(".") for path in target.iterdir())


def test_a_silent_server_times_out_and_is_retried(tmp_path):
    """A connection that never answers fails after the attempts, with the reason named."""
    calls = []

    def silent(request):
        calls.append(request.full_url)
        raise TimeoutError("timed out")

    with pytest.raises(DownloadError, match=r"3 attempts failed \(timeout 0.5 s each\)"):
        download("http://example.invalid/a", tmp_path / "a", opener=silent, timeout=0.5)
    assert len(calls) == 3 and not (tmp_path / "a").exists()


def test_the_default_opener_has_a_timeout(tmp_path, monkeypatch):
    seen = {}

    def opener(request, timeout=None):
        seen["timeout"] = timeout
        raise urllib.error.URLError("refused")

    monkeypatch.setattr(urllib.request, "urlopen", opener)
    with pytest.raises(DownloadError, match="URLError"):
        download("http://example.invalid/a", tmp_path / "a", timeout=7, attempts=1)
    assert seen["timeout"] == 7


def test_data_set_options_are_checked_against_the_loader_before_it_runs():
    with pytest.raises(
        TypeError,
        match=r"unknown option\(s\) 'bogus_option' for data set "
        r"'8gaussians'; it takes: num_train, num_val, num_test, dtype",
    ):
        datasets.load("8gaussians", bogus_option=1)
    with pytest.raises(
        ValueError,
        match=r"`num_train`=10000000000000 rows of '8gaussians' "
        r"need at least .* GiB",
    ):
        datasets.load("8gaussians", num_train=10**13)
    with pytest.raises(TypeError, match="`num_train` of '8gaussians' must be an integer"):
        datasets.load("8gaussians", num_train=1.5)
    with pytest.raises(TypeError, match="unknown option.*for data set 'miniboone'"):
        datasets.load("miniboone", num_train=10)  # a file-based set takes no row counts
