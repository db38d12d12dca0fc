"""The generalization suite's exact densities, against independent computations."""

import numpy as np
import pytest
import scipy.stats

from tfotflow.bench import suite


@pytest.mark.parametrize("character", ["mixture", "student_t"])
def test_mixture_log_prob_equals_scipy(character):
    distribution = suite.make(character, 5, draw=3)
    x = distribution.sample(np.random.default_rng(0), 200)
    covariances = distribution.scales @ np.swapaxes(distribution.scales, 1, 2)
    components = []
    for k, (mean, covariance) in enumerate(zip(distribution.means, covariances)):
        if distribution.nu is None:
            log_p = scipy.stats.multivariate_normal(mean, covariance).logpdf(x)
        else:
            log_p = scipy.stats.multivariate_t(mean, covariance, df=distribution.nu[k]).logpdf(x)
        components.append(np.log(distribution.weights[k]) + log_p)
    expected = scipy.special.logsumexp(np.stack(components), axis=0)
    np.testing.assert_allclose(distribution.log_prob(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("character", suite.CHARACTERS)
def test_density_integrates_to_one_in_2d(character):
    distribution = suite.make(character, 2, draw=1)
    grid = np.linspace(-30.0, 30.0, 1501)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    mass = np.exp(distribution.log_prob(points)).sum() * (grid[1] - grid[0]) ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_banana_log_prob_is_the_change_of_variables():
    """log p(x) = log N(z) − log |det ∂x/∂z|, the Jacobian by finite differences."""
    distribution = suite.make("banana", 5, draw=2)
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 5)) * distribution.scales

    def forward(z):
        y = z.copy()
        y[:, 1:4:2] += distribution.bends * (z[:, 0:4:2] ** 2 - distribution.scales[0:4:2] ** 2)
        return y @ distribution.rotation.T

    x = forward(z)
    step = 1e-6
    for i in range(len(z)):
        jacobian = np.stack(
            [
                (forward(z[i : i + 1] + step * e) - forward(z[i : i + 1] - step * e))[0]
                / (2 * step)
                for e in np.eye(5)
            ],
            axis=1,
        )
        log_normal = scipy.stats.norm(0, distribution.scales).logpdf(z[i]).sum()
        expected = log_normal - np.log(abs(np.linalg.det(jacobian)))
        assert distribution.log_prob(x[i : i + 1])[0] == pytest.approx(expected, abs=1e-6)


def test_a_set_is_fixed_by_its_draw(tmp_path):
    first = np.load(suite.write(tmp_path / "a", "banana", 4, draw=7, rows=50))
    again = np.load(suite.write(tmp_path / "b", "banana", 4, draw=7, rows=50))
    other = np.load(suite.write(tmp_path / "c", "banana", 4, draw=8, rows=50))
    np.testing.assert_array_equal(first, again)
    assert first.shape == (50, 4) and not np.allclose(first, other)


def test_bad_character_is_named():
    with pytest.raises(ValueError, match="character"):
        suite.make("spiral", 4, draw=0)


def test_a_suite_name_parses_and_loads_as_a_file_with_its_true_density(tmp_path):
    from tfotflow.bench.contenders import OTFlowContender
    from tfotflow.bench.problems import load_problem

    assert suite.parse("student_t_d16_draw3") == ("student_t", 16, 3)
    assert suite.parse("8gaussians") is None and suite.parse("spiral_d4_draw0") is None
    data, problem = load_problem("banana_d4_draw0", quick=True, data_dir=tmp_path)
    assert data.train.shape == (2000, 4) and data.metadata.source["sha256"]
    expected = suite.make("banana", 4, 0).log_prob(data.test[:10].astype(np.float64))
    np.testing.assert_allclose(data.metadata.log_prob(data.test[:10]), expected)
    assert problem["budgets"]["otflow"] == problem["budgets"]["bayesflow_fm_defaults"]
    assert set(problem["variants"]) == {
        "otflow_likelihood",
        "otflow_fm_deep",
        "otflow_fm_ot",
        "otflow_steps3000",
        "otflow_steps4000",
        "otflow_wide",
        "otflow_rk2",
        "otflow_batch256",
        "otflow_batch256_rate01",
    }
    # 1,600 training rows: the rule's main phase is likelihood; a variant may ask for the other
    rule = OTFlowContender(data).config["train"]
    other = OTFlowContender(data, overrides={"main_phase": "flow_matching"})
    assert rule["iterations"] > 0 and other.config["train"]["iterations"] == 0
    assert other.config["model"]["num_steps"] == 8


def test_the_generalization_summary_takes_medians_over_seeds():
    from tfotflow.bench.race_summaries import generalization_summary

    def race(seconds, best, test, doublings=None):
        curve = [[0, 0.0, 9.0], [10, seconds, best]]
        result = {"curve": curve, "best_nll": best, "test_nll_at_best": test}
        result.update(first_iteration_seconds=1.0, parameters=100)
        return result if doublings is None else {**result, "doublings": doublings}

    rows = [
        {
            "dataset": "mixture_d4_draw9.npy",
            "seed": seed,
            "exact_test_nll": 5.0,
            "races": {
                "otflow": race(10.0 * (seed + 1), 6.0, 6.1, doublings=seed),
                "bayesflow_fm_defaults": race(40.0, 6.0, 6.2),
            },
        }
        for seed in range(3)
    ]
    rows.append({"dataset": "8gaussians", "seed": 0, "races": {}})  # not of the suite
    (entry,) = generalization_summary(rows)
    assert entry["d"] == 4 and entry["character"] == "mixture" and entry["seeds"] == [0, 1, 2]
    assert entry["speedup_vs_bayesflow"] == pytest.approx(2.0)  # 40/20, the middle seed
    assert entry["speedup_vs_ffjord"] is None and entry["ffjord_test_nll"] is None
    assert entry["otflow_test_nll"] == 6.1 and entry["bayesflow_test_nll"] == 6.2
    assert entry["doublings"] == 2 and entry["otflow_wall_s"] == pytest.approx(21.0)
