"""``miniboone_mixture``: a 43-d Gaussian mixture fitted to MINIBOONE's published rows, a
real-dimension data set with an exact log-density and as many rows as one wants.

Why it is a fair benchmark: the density is neither a flow nor a flow-matching field (no
contender's family), it carries MINIBOONE's correlations, scales and multimodality, and
since it can be sampled without end, a race can train on 100,000 rows and score on 20,000
held-out ones without any contender overfitting a small table. Its exact log-density gives
every model's gap to the truth, and its entropy (the best achievable test NLL) is known to a
stated Monte Carlo error.

The mixture's parameters ship with tfotflow (``data/miniboone_mixture.npz``, checked against
its SHA-256 on load); ``benchmarks/fit_miniboone_mixture.py`` made them with scikit-learn's
``GaussianMixture`` (full covariances, fitted to the 6,932 rows of MINIBOONE's validation and
test splits after the MAF preprocessing) and estimated the entropy:

```none
log p(x) = log Σ_k w_k N(x; μ_k, L_k L_kᵀ)
H = −E log p(X) ≈ −mean over 6,000,000 draws (standard error stated in the file)
```
"""

import functools
import hashlib
import importlib.resources
import math

import numpy as np

from tfotflow.datasets.core import Dataset, DatasetError, Metadata, split_streams

PARAMETERS = "miniboone_mixture.npz"
SHA256 = "9fd59844d831ba4c0c19ed6182d32a25e652a4b8cb803ce68222b3eeae9e7aea"
CITATION = (
    "A Gaussian mixture fitted by tfotflow to MiniBooNE particle-identification data (UCI "
    "Machine Learning Repository, CC BY 4.0) after the MAF preprocessing of Papamakarios et "
    "al. (2017); sampled, so no rows of the original are shipped."
)


class Mixture:
    """A mixture of multivariate normal (``nu`` None) or Student-t components with full
    scale matrices, in float64.

    ```none
    log p(x) = log Σ_k w_k p_k(x),  δ_k = ‖L_k⁻¹ (x − μ_k)‖²
    normal:  log p_k = −δ_k / 2 − (d/2) log 2π − log |L_k|
    t_ν:     log p_k = log Γ((ν + d)/2) − log Γ(ν/2) − (d/2) log νπ − log |L_k|
                       − ((ν + d)/2) log(1 + δ_k / ν)
    ```

    Args:
        weights: [K], positive, summing to 1.
        means: [K, d].
        scales: [K, d, d], lower-triangular Cholesky factors L_k of the scale matrices (the
            covariances of normal components).
        nu: the t components' degrees of freedom ν [K], or None for normal components.
    """

    def __init__(self, weights, means, scales, nu=None):
        self.weights = np.asarray(weights, np.float64)
        self.means = np.asarray(means, np.float64)
        self.scales = np.asarray(scales, np.float64)
        self.nu = None if nu is None else np.asarray(nu, np.float64)
        self.inverse_scales = np.linalg.inv(self.scales)
        self.dim = self.means.shape[1]
        diagonals = np.diagonal(self.scales, axis1=1, axis2=2)
        self._constants = np.log(self.weights) - np.sum(np.log(diagonals), axis=1)
        if self.nu is None:
            self._constants -= 0.5 * self.dim * math.log(2 * math.pi)
        else:
            nu, d = self.nu, self.dim
            lgamma = np.vectorize(math.lgamma)
            self._constants += lgamma((nu + d) / 2) - lgamma(nu / 2) - 0.5 * d * np.log(nu * np.pi)

    def log_prob(self, x, chunk=20_000):
        """log p(x) [n] of points ``x`` [n, d]."""
        x = np.asarray(x, np.float64)
        out = np.empty(len(x))
        for start in range(0, len(x), chunk):
            rows = x[start : start + chunk]
            centred = rows[None] - self.means[:, None]  # [K, n, d]
            whitened = np.einsum("kij,knj->kni", self.inverse_scales, centred)
            delta = np.sum(whitened**2, axis=2)  # [K, n]
            if self.nu is None:
                terms = self._constants[:, None] - 0.5 * delta
            else:
                nu = self.nu[:, None]
                terms = self._constants[:, None] - 0.5 * (nu + self.dim) * np.log1p(delta / nu)
            top = terms.max(axis=0)
            out[start : start + chunk] = top + np.log(np.exp(terms - top).sum(axis=0))
        return out

    def sample(self, rng, n):
        """``n`` draws [n, d] with the numpy generator (or ``RandomState``) ``rng``: the
        components, the normal draws, then for t components one χ² draw per row."""
        components = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.standard_normal((n, self.dim))
        x = np.einsum("nij,nj->ni", self.scales[components], noise)
        if self.nu is not None:
            nu = self.nu[components]
            x /= np.sqrt(rng.chisquare(nu) / nu)[:, None]
        return self.means[components] + x

    def entropy(self, rng, n=1_000_000, chunk=100_000):
        """The Monte Carlo estimate of H = −E log p(X) from ``n`` draws, and its standard
        error: (estimate, standard error)."""
        values = np.concatenate(
            [self.log_prob(self.sample(rng, min(chunk, n - i))) for i in range(0, n, chunk)]
        )
        return float(-values.mean()), float(values.std(ddof=1) / math.sqrt(n))


@functools.cache
def load_parameters():
    """The shipped mixture and its entropy: (``Mixture``, entropy, standard error)."""
    resource = importlib.resources.files("tfotflow.datasets") / "data" / PARAMETERS
    raw = resource.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        raise DatasetError(
            f"{resource} has SHA-256 {digest}, expected {SHA256}: the installed parameters "
            "are damaged; reinstall tfotflow"
        )
    import io

    with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
        mixture = Mixture(arrays["weights"], arrays["means"], arrays["scales"])
        return mixture, float(arrays["entropy"]), float(arrays["entropy_se"])


def load_mixture(
    *, seed=0, data_dir=None, num_train=100_000, num_val=10_000, num_test=20_000, dtype="float32"
):
    """Draws the train, validation and test splits from the mixture (independent streams
    fixed by ``seed``).

    Args:
        seed: the draws' seed. Defaults to 0.
        data_dir: unused (the parameters ship with tfotflow).
        num_train: training rows. Defaults to 100,000.
        num_val: validation rows. Defaults to 10,000.
        num_test: test rows. Defaults to 20,000.
        dtype: "float32" or "float64". Defaults to "float32".
    """
    del data_dir
    mixture, entropy, _ = load_parameters()
    streams = split_streams(seed, num_train, num_val, num_test)
    splits = [mixture.sample(rng, n).astype(dtype) for rng, n in streams]
    metadata = Metadata(
        name="miniboone_mixture",
        dim=mixture.dim,
        description=(
            f"{len(mixture.weights)}-component Gaussian mixture fitted to MINIBOONE, "
            f"{mixture.dim}-d"
        ),
        citation=CITATION,
        log_prob=mixture.log_prob,
        entropy=entropy,
    )
    return Dataset(*splits, metadata=metadata)
