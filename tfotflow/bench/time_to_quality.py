"""Time to a given validation NLL, and inference at matched accuracy: OT-Flow against its peers.

The paper's speed claims are about accuracy per second, not per-iteration cost: FFJORD's
one-probe Hutchinson step is cheap, but its adaptive solver needs more and more evaluations
as its paths bend during training, while OT-Flow's straight paths keep a few RK4 steps
accurate. So each model trains on the same data for a budget of *training* seconds (the clock
stops while it is scored; tracing of the first step is not counted, of later phases it is),
its validation NLL is scored on a geometric schedule of training time
(:mod:`tfotflow.bench.clock`), and then:

* **time to quality**: every score is an exact log-density from each model's reference solve
  (OT-Flow: 4× the training steps it has when scored; FFJORD: exact autodiff trace,
  DormandPrince rtol 1e-5; BayesFlow flow matching: exact trace, fixed 5th-order steps
  doubled until log p moves by less than 0.01 nats), so none is credited with discretization
  or trace-estimation error, on validation rows. Against each peer the target is the worse of
  the two best validation NLLs (a level both reached); each model's time is the training time
  at which its validation NLL first reached it, its bracket narrowed by the checkpoints kept
  between scores (:func:`refine_crossings`); the speed-up is the peer's time over OT-Flow's.
  Each model's quality is its test NLL at its best-validation checkpoint, the only score of
  the test rows (selection on validation).
* **alike treatment**: OT-Flow is ``tfotflow train``'s own path; every peer trains and is
  scored in the same coordinates, the affine map the run sets from the training rows
  (:class:`Standardized`, its log-determinant counted), and races with XLA or without,
  whichever a short probe of its step found faster (:func:`faster_compilation`; OT-Flow
  with the product's rule). What each got is recorded in the row's ``fair``.
* **inference at matched accuracy**: each trained model is then scored at every cheaper
  setting (fewer steps; looser tolerance); the cheapest one that, with every more accurate
  setting, stays within 0.01 nats of the reference NLL is chosen, and exact ``log_prob``
  throughput is timed there, interleaved with the others'.

On a conditional data set (points x with conditions y) every score is the conditional NLL
−log p(x | y) and the peers are those that take conditions (BayesFlow's flow matching; TFP's
FFJORD has none); on the linear-Gaussian task the posterior samples' mean and covariance are
also compared with the exact posterior's (:func:`posterior_moments`).

FFJORD runs as TFP ships it: ``tfb.FFJORD`` with the default DormandPrince solver, one-probe
Hutchinson trace in training, and Adam. BayesFlow's ``FlowMatching`` runs with its defaults
(benchmark-only extra; left out when BayesFlow is not installed).

This module runs the race (:func:`compete`, :func:`run`) and the comparison at matched
accuracy; the contenders are in :mod:`tfotflow.bench.contenders`, each set's settings and
budgets in :mod:`tfotflow.bench.problems`, and the readings across seeds in
:mod:`tfotflow.bench.race_summaries`. The evidence is in ``benchmarks/README.md``.
"""

import functools
import importlib.util
import math

import numpy as np
import tensorflow as tf

from tfotflow import datasets
from tfotflow._keras import keras
from tfotflow.bench.clock import Clock, log_score, race, refine_crossings
from tfotflow.bench.contenders import (
    SCORING_PROBE_ROWS,
    TIGHTENING_ROWS,
    TOLERANCE_NATS,
    FFJORDContender,
    FlowMatchingContender,
    OTFlowContender,
    Standardized,
    faster_compilation,
    faster_scoring,
    first_rows,
    mean_nll,
    reference_nll,
    shared_affine,
)
from tfotflow.bench.peers import matched_hidden_width
from tfotflow.bench.problems import PROBLEMS, load_problem, quick_problem
from tfotflow.bench.race_summaries import across_seeds, head_to_head
from tfotflow.bench.timing import interleaved_medians, peak_memory_gb
from tfotflow.datasets import conditional
from tfotflow.hardware import machine
from tfotflow.validation import batch_points_and_conditions


def posterior_moments(contenders, data, *, conditions=5, samples=4000, seed=0):
    """Posterior samples' mean and covariance against the exact posterior's (linear-Gaussian
    task): for each of the first ``conditions`` test observations x, ``samples`` draws of
    θ | x from each model; the largest absolute errors of the mean and of the covariance
    entries, averaged over the observations."""
    observations = data.conditions["test"][:conditions]
    means, variance = conditional.linear_gaussian_posterior(observations)
    rows = {}
    for contender in contenders:
        mean_errors, covariance_errors = [], []
        for i, x in enumerate(observations):
            draws = contender.sample(samples, tf.constant(x), seed=1000 * seed + i)
            draws = np.asarray(draws, np.float64)
            mean_errors.append(np.max(np.abs(draws.mean(0) - means[i])))
            covariance = np.cov(draws, rowvar=False)
            covariance_errors.append(np.max(np.abs(covariance - variance * np.eye(len(x)))))
        rows[contender.name] = {
            "mean_max_abs_error": float(np.mean(mean_errors)),
            "covariance_max_abs_error": float(np.mean(covariance_errors)),
        }
    sampling_noise = math.sqrt(variance / samples)  # the standard error of a mean entry
    return {
        "exact_variance": variance,
        "observations": conditions,
        "samples": samples,
        "mean_standard_error": sampling_noise,
        "models": rows,
    }


EQUAL_NLL_NATS = 0.05  # models of equal quality: test NLLs within this of each other


def equal_quality_checkpoints(races, names, test_nll_at):
    """The checkpoints at which the races ``names`` (in ``races``, a dict of race results)
    are of equal quality: the level ``target_nll``, the worst of their best validation NLLs
    (one each of them reached), and for each the ``index`` of its first score at or below it
    (of its curve), that score's ``iteration``, ``seconds``, ``validation_nll`` and
    ``test_nll`` (``test_nll_at(name, index)``); ``test_nll_spread`` (the largest minus the
    smallest of those test NLLs) and ``equal`` (whether it is within
    :data:`EQUAL_NLL_NATS`)."""
    target = max(races[name]["best_nll"] for name in names)
    index, at = {}, {}
    for name in names:
        curve = races[name]["curve"]
        index[name] = next(i for i, point in enumerate(curve) if point[2] <= target)
        iteration, seconds, validation_nll = curve[index[name]]
        at[name] = {
            "iteration": iteration,
            "seconds": seconds,
            "validation_nll": validation_nll,
            "test_nll": test_nll_at(name, index[name]),
        }
    test_nlls = [point["test_nll"] for point in at.values()]
    spread = max(test_nlls) - min(test_nlls)
    return {
        "target_nll": target,
        "index": index,
        "at": at,
        "test_nll_spread": spread,
        "equal": spread <= EQUAL_NLL_NATS,
    }


def matched_accuracy(contenders, test, *, batch, rounds):
    """The cheapest setting that keeps each model's NLL within 0.01 nats of its reference
    NLL (it and every more accurate setting tried), and the ``log_prob`` throughput there."""
    rows, timed = {}, {}
    x, y = batch_points_and_conditions(first_rows(test, batch), contenders[0].condition_dim)
    x = tf.constant(x)
    args = [x] + ([] if y is None else [tf.constant(y)])
    for contender in contenders:
        reference = mean_nll(contender, contender.reference_setting(), test)
        tried = {str(s): mean_nll(contender, s, test) for s in contender.settings()}
        chosen = contender.reference_setting()
        for setting in reversed(contender.settings()):  # most accurate first
            if abs(tried[str(setting)] - reference) > TOLERANCE_NATS:
                break
            chosen = setting
        rows[contender.name] = {
            "reference_setting": contender.reference_setting(),
            "reference_nll": reference,
            "tried": tried,
            "setting": chosen,
            "nll": tried.get(str(chosen), reference),
            "function_evaluations": contender.evaluations(chosen, x),
        }
        timed[contender.name] = functools.partial(contender.log_prob_fn(chosen), *args)
    seconds = interleaved_medians(timed, rounds=rounds)
    for name, row in rows.items():
        row["log_prob_seconds"] = seconds[name]
        row["log_prob_per_second"] = batch / seconds[name]
    return rows


def race_splits(data, dtype, test_size):
    """The training split, and the first ``test_size`` validation and test rows of ``data``,
    as ``dtype``: arrays, or (points, conditions) pairs of a conditional set."""

    def cast(split):
        if data.metadata.condition_dim:
            return tuple(part.astype(dtype) for part in split)
        return split.astype(dtype)

    return (
        cast(data.split("train")),
        first_rows(cast(data.split("val")), test_size),
        first_rows(cast(data.split("test")), test_size),
    )


def grid_options(peer, base, point):
    """The constructor's options of ``peer`` at a grid ``point`` over the problem's ``base``
    options (``widths_factor`` scales BayesFlow's widths)."""
    options = {**base, **point}
    factor = options.pop("widths_factor", None)
    if factor is not None:
        options["widths"] = tuple(factor * width for width in options["widths"])
    return options


def build_peer(name, options, problem, train, ours, affine, *, seed):
    """The peer ``name`` ("ffjord" or "bayesflow_fm…") built from ``options`` (its
    constructor's arguments; FFJORD's ``hidden`` None is OT-Flow's weight count, and either
    width is multiplied by ``width_factor`` when given), in the coordinates of ``affine``
    (None: the data's), with its faster compilation by :func:`faster_compilation` on
    ``train``. Returns ``(contender, settings as recorded, the compilation probe's
    seconds)``, or None for a peer that cannot race here (FFJORD on a conditional set,
    BayesFlow not installed)."""
    d, k, dtype = ours.data.metadata.dim, ours.condition_dim, problem["dtype"]
    options = dict(options)
    if name == "ffjord":
        if k:  # FFJORD takes no conditions
            return None
        hidden = options["hidden"] or matched_hidden_width(d, ours.num_parameters)
        options["hidden"] = round(options.pop("width_factor", 1) * hidden)
        make = functools.partial(FFJORDContender, d, dtype=dtype, **options)
        options["solver"] = "DormandPrince (TFP defaults)"
    elif name.startswith("bayesflow_fm"):
        if not bayesflow_available():
            return None
        if options.get("defaults"):  # BasicWorkflow's offline fit: 100 epochs of batch 32
            rows = len(batch_points_and_conditions(train, k)[0])
            options["total_steps"] = 100 * math.ceil(rows / 32)
        make = functools.partial(
            FlowMatchingContender, d, name=name, dtype=dtype, condition_dim=k, **options
        )
    else:
        raise ValueError(f"unknown contender {name!r}")

    def build(jit_compile):
        peer = make(jit_compile=jit_compile)
        return peer if affine is None else Standardized(peer, affine)

    jit, probe = faster_compilation(build, train, batch=problem["batch"][name], seed=seed)
    return build(jit), {**options, "jit_compile": jit}, probe


# How OT-Flow's settings were chosen, recorded beside each race (benchmarks/README.md says on
# which sets each was tuned, and when it was frozen).
OTFLOW_TUNING = "frozen: the set's recommended settings, else tfotflow.settings.recipe's"


UNTUNED = "none: the problem's settings"


def tuned_options(tuned, problem, d):
    """``(tuning, options)``: each contender's options in ``problem``, a peer of ``tuned``
    (results of :func:`tfotflow.bench.tuning.tune`) at the point its grid chose, and for each
    contender how its settings were chosen (OT-Flow's: :data:`OTFLOW_TUNING` and the
    problem's overrides; a tuned peer's: its grid). Raises ValueError for a result of another
    dimension than ``d`` or for a peer the problem does not race."""
    options = {name: problem[name] for name in problem["batch"]}
    tuning = {
        name: OTFLOW_TUNING + (f"; overridden: {problem[name]}" if problem[name] else "")
        if name.startswith("otflow")
        else UNTUNED
        for name in options
    }
    for result in tuned:
        peer = result["peer"]
        if peer not in options:
            raise ValueError(f"`tuned` names {peer!r}, which this race does not run")
        if result["d"] != d:
            raise ValueError(
                f"`tuned` holds {peer!r} tuned at d = {result['d']} for a race at d = {d}"
            )
        options[peer] = grid_options(peer, problem[peer], result["chosen"])
        tuning[peer] = {
            "grid_points": len(result["grid"]),
            "tuning_set": result["dataset"],
            "budget_s": result["budget_seconds"],
            "chosen": result["chosen"],
        }
    return tuning, options


def compete(
    data,
    problem,
    *,
    budgets=None,
    inference_batch=2000,
    rounds=3,
    seed=0,
    on_score=None,
    posterior_samples=4000,
    only=None,
    inference=True,
    tuned=(),
):
    """Races OT-Flow against each peer on ``data`` and compares them at matched accuracy.

    The contenders are the names in ``problem["batch"]`` ("otflow…", "ffjord",
    "bayesflow_fm…"), each built from ``problem[name]``; ``only`` keeps the named ones, and
    OT-Flow's "otflow" too unless it names another OT-Flow setting. The first OT-Flow setting
    kept is the one the peers are compared with. ``budgets`` maps contender names to training
    seconds (default: the problem's); ``on_score(name, point)`` sees each curve point as it is
    scored; on the linear-Gaussian task each model draws ``posterior_samples`` per observation
    for :func:`posterior_moments`.
    """
    d, k, dtype = data.metadata.dim, data.metadata.condition_dim, problem["dtype"]
    train, validation, test = race_splits(data, dtype, problem["test_size"])
    keras.utils.set_random_seed(seed)
    names = list(problem["batch"])
    if only is not None:
        named_ours = [name for name in names if name.startswith("otflow") and name in only]
        names = [name for name in names if name in only or (name == "otflow" and not named_ours)]
    first = next(name for name in names if name.startswith("otflow"))
    ours = OTFlowContender(data, name=first, overrides=problem[first], seed=seed)
    affine = shared_affine(ours)  # every contender trains in the same coordinates
    preprocessing = "none" if affine is None else f"{ours.config['model']['normalization']}"
    contenders, settings = [ours], {ours.name: ours.run_settings}
    fair = {"xla": {ours.name: ours.xla}, "xla_probe": {}, "preprocessing": {}}
    tuning, options = tuned_options(tuned, problem, d)
    fair["preprocessing"][ours.name] = preprocessing
    for name in names:
        if name == ours.name:
            continue
        if name.startswith("otflow"):
            contenders.append(OTFlowContender(data, name=name, overrides=problem[name], seed=seed))
            fair["xla"][name] = contenders[-1].xla
            fair["preprocessing"][name] = preprocessing
            settings[name] = contenders[-1].run_settings
            continue
        built = build_peer(name, options[name], problem, train, ours, affine, seed=seed)
        if built is None:
            continue
        contender, settings[name], fair["xla_probe"][name] = built
        contenders.append(contender)
        fair["xla"][name], fair["preprocessing"][name] = contender.xla, preprocessing
    budgets = {**problem["budgets"], **(budgets or {})}
    # Each contender's scores and log-density timings run compiled its faster way, by a probe
    # on the first validation rows (untimed, as the scores are).
    probe_rows = first_rows(validation, SCORING_PROBE_ROWS)
    fair["scoring_xla_probe"] = {c.name: faster_scoring(c, probe_rows) for c in contenders}
    fair["scoring_xla"] = {c.name: c.scoring_xla for c in contenders}
    tightening_rows = first_rows(validation, TIGHTENING_ROWS)
    races, clocks, ended = {}, {}, {}
    for contender in contenders:
        batch, budget = problem["batch"][contender.name], budgets[contender.name]
        clock = clocks[contender.name] = Clock(
            lambda c=contender: reference_nll(c, validation, tightening_rows),
            budget_seconds=budget,
            factor=problem.get("score_factor", 1.4),
            on_score=None if on_score is None else functools.partial(on_score, contender.name),
            snapshot=contender.snapshot,
            restore=contender.restore,
        )
        if isinstance(contender, OTFlowContender):
            races[contender.name] = contender.run(clock)
            batch = contender.config["train"]["batch_size"]
        else:
            batches = iter(contender.batches(train, batch=batch, seed=seed))
            races[contender.name] = race(contender.step, batches, clock)
        ended[contender.name] = contender.snapshot()
        races[contender.name].update(
            budget_seconds=budget, batch_size=batch, parameters=contender.num_parameters
        )
    refine_crossings(clocks, ours.name)
    by_name = {contender.name: contender for contender in contenders}

    def test_nll_at(name, index):  # the test NLL of the model at its curve's index-th score
        clocks[name].restore_score(index)
        return reference_nll(by_name[name], test, tightening_rows)

    for name, clock in clocks.items():
        races[name].update(clock.result())
        races[name]["test_nll_at_best"] = test_nll_at(name, races[name]["best_index"])
        races[name]["reference_setting"] = by_name[name].reference_setting()
    checkpoints = None
    if inference:  # at matched accuracy: every contender, or the problem's choice of them
        matched_names = problem.get("matched_accuracy", [c.name for c in contenders])
        chosen = [c for c in contenders if c.name in matched_names or c is ours]
        checkpoints = equal_quality_checkpoints(races, [c.name for c in chosen], test_nll_at)
    for contender in contenders:  # the models as they ended
        contender.restore(ended[contender.name])
    fair["budget_s"] = {name: race_["budget_seconds"] for name, race_ in races.items()}
    fair["still_improving"] = {name: race_["still_improving"] for name, race_ in races.items()}
    fair["tuning"] = {name: tuning[name] for name in races}
    versus = {peer: head_to_head(races, ours.name, peer) for peer in races if peer != ours.name}
    test_x, test_y = batch_points_and_conditions(test, k)
    test_points = len(test_x)
    exact = data.metadata.log_prob  # the true density, when known: its NLL on these points
    exact_nll = None
    if exact is not None:
        exact_nll = -float(np.mean(exact(test_x) if test_y is None else exact(test_x, test_y)))
    posterior = (
        posterior_moments(contenders, data, samples=posterior_samples)
        if data.metadata.name == "linear_gaussian"
        else None
    )
    matched = None
    if inference:
        for contender in chosen:  # each model at its first score at the common level
            clocks[contender.name].restore_score(checkpoints["index"][contender.name])
        matched = matched_accuracy(
            chosen, test, batch=min(inference_batch, test_points), rounds=rounds
        )
    return {
        "dataset": data.metadata.name,
        "d": d,
        "condition_dim": k,
        "dtype": dtype,
        "test_points": test_points,
        "true_entropy": data.metadata.entropy,
        "exact_test_nll": exact_nll,
        "races": races,
        "versus": versus,
        "inference": matched,
        "inference_checkpoints": checkpoints,
        "inference_speedups": {
            name: row["log_prob_seconds"] / matched[ours.name]["log_prob_seconds"]
            for name, row in (matched or {}).items()
            if name != ours.name
        },
        **({"posterior": posterior} if posterior else {}),
        "settings": settings,
        "fair": fair,
        "seed": seed,
        "peak_memory_gb": peak_memory_gb(),
        "machine": machine(),
    }


def bayesflow_available():
    """Whether BayesFlow (the benchmark-only extra) is installed."""
    return importlib.util.find_spec("bayesflow") is not None


def run(
    quick=False,
    names=("8gaussians",),
    miniboone_dir=None,
    seeds=(0,),
    on_row=None,
    contenders=None,
    score_factor=None,
    inference=True,
    tuned=(),
):
    """Races on each named toy set, and on MINIBOONE when ``miniboone_dir`` holds its splits,
    once per seed; the curves are printed to stderr as they are scored.

    After the first seed, the comparison at matched accuracy is skipped, and so are the
    contenders a problem names in ``first_seed_only`` unless ``contenders`` names them; with
    several seeds the result's ``across_seeds`` holds each data set's medians
    (:func:`across_seeds`). ``on_row`` sees each finished race's row (e.g. to save it before
    the next begins). ``contenders`` names the ones to race besides OT-Flow (default: all but
    the problem's ``variants``); ``score_factor`` spaces the scores further apart (each after
    that factor more training time; default 1.4), which saves the peers' slow exact scores at
    high dimension; ``inference=False`` skips the comparison at matched accuracy (e.g. for
    seeds run apart from the first); ``tuned`` sets peers at the points their tuning grids
    chose (:func:`compete`)."""
    jobs = []
    for name in names:
        jobs.append(load_problem(name, quick=quick))
    if miniboone_dir is not None:
        data = datasets.load("miniboone", data_dir=miniboone_dir, train_split="val")
        jobs.append((data, PROBLEMS["miniboone"]))
    rows, summaries = [], []
    for data, problem in jobs:
        options = dict(on_score=log_score)
        if quick:
            problem = quick_problem(problem)
            options = dict(inference_batch=256, rounds=1, posterior_samples=200)
        if contenders is None:  # a problem's variants race only when named
            chosen = [n for n in problem["batch"] if n not in problem.get("variants", ())]
        else:
            chosen = [n for n in problem["batch"] if n in contenders]
        once = () if contenders is not None else problem.get("first_seed_only", ())
        later = [n for n in chosen if n not in once]
        seeded = []
        for i, seed in enumerate(seeds):
            row = compete(
                data,
                problem if score_factor is None else {**problem, "score_factor": score_factor},
                seed=seed,
                only=chosen if i == 0 else later,
                inference=inference and i == 0,
                tuned=tuned,
                **options,
            )
            seeded.append(row)
            if on_row is not None:
                on_row(row)
        rows.extend(seeded)
        if len(seeds) > 1:
            summaries.append(across_seeds(seeded))
    result = {"benchmark": "time_to_quality", "quick": quick, "rows": rows}
    return {**result, "across_seeds": summaries} if summaries else result
