"""Fits the ``miniboone_mixture`` data set's Gaussian mixture and writes its parameters.

Run: python benchmarks/fit_miniboone_mixture.py DIR [--components K]
DIR holds miniboone/val.npy and miniboone/test.npy (MINIBOONE's published splits after the MAF
preprocessing). scikit-learn's GaussianMixture (full covariances, k-means start, seed 0) is
fitted to their 6,932 rows; the entropy of the fitted mixture is estimated from 6,000,000
draws (a standard error of about 0.005 nats); the weights, means, Cholesky factors, entropy
and its standard error are written to tfotflow/datasets/data/miniboone_mixture.npz, and its
SHA-256 printed (pin it in tfotflow/datasets/mixture.py).
"""

import argparse
import hashlib
import io
import pathlib

import numpy as np

from tfotflow.checkpoint import atomic_write_bytes
from tfotflow.datasets.mixture import PARAMETERS, Mixture

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=pathlib.Path)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--reg-covar", type=float, default=1e-3)
    args = parser.parse_args()
    from sklearn.mixture import GaussianMixture

    rows = np.concatenate(
        [np.load(args.data_dir / "miniboone" / f"{split}.npy") for split in ("val", "test")]
    )
    fit = GaussianMixture(
        args.components, covariance_type="full", reg_covar=args.reg_covar, random_state=0
    ).fit(rows)
    print(f"{len(rows)} rows, d = {rows.shape[1]}; mean log-likelihood {fit.score(rows):.4f}")
    scales = np.linalg.cholesky(fit.covariances_)
    mixture = Mixture(fit.weights_, fit.means_, scales)
    assert np.allclose(mixture.log_prob(rows[:100]), fit.score_samples(rows[:100]), atol=1e-8)
    entropy, se = mixture.entropy(np.random.RandomState(2026), n=6_000_000)
    print(f"entropy {entropy:.4f} ± {se:.4f} (standard error, 6,000,000 draws)")
    buffer = io.BytesIO()
    np.savez(
        buffer,
        weights=fit.weights_,
        means=fit.means_,
        scales=scales,
        entropy=np.float64(entropy),
        entropy_se=np.float64(se),
    )
    out = pathlib.Path(__file__).parents[1] / "tfotflow" / "datasets" / "data" / PARAMETERS
    out.parent.mkdir(exist_ok=True)
    atomic_write_bytes(out, buffer.getvalue())
    print(f"wrote {out}; sha256 {hashlib.sha256(buffer.getvalue()).hexdigest()}")
