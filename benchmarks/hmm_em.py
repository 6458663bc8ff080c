"""Hidden Markov models: Baum–Welch against hmmlearn and dynamax, and the forward algorithm, side by side.

    python -m benchmarks.hmm_em [--sequences S] [--steps T] [--states K] [--dim D] [--iterations N]
                                [--repeats R] [--peer-repeats R] [--hmmlearn-threads N]
                                [--lengths T1,T2,...] [--only em|forward] [--figure FILE] [--json FILE] [--quick]

Baum–Welch (`hmm_em`): S = 100 sequences of T = 1,000 steps, sampled (seeded)
from a known random HMM with K = 8 states and full-covariance Gaussian emissions
in D = 4, fit by each side for exactly N = 50 iterations (tolerance off) from the
same θ_0 (lvmjax's `hmm.initial_params`), as plain maximum likelihood with no
covariance regularization on every side:

- lvmjax `hmm.fit_em(..., reg_covar=0, init_params=θ_0)`, float32;
- hmmlearn `GaussianHMM(covariance_type="full", covars_prior=0, min_covar=0, init_params="")`
  on the concatenated sequences with `lengths`, float64 (numpy; hmmlearn's default
  "log" implementation unless `--hmmlearn-implementation scaling`);
- dynamax `GaussianHMM.fit_em`, float32, with its priors as close to maximum
  likelihood as it accepts. dynamax's M-step is always the mode of a posterior, and
  two of its priors cannot be switched off:
  - π and A: Dirichlet concentrations 1 + 1e-6 (its default is 1.1). At exactly 1
    tfp's `Dirichlet.mode()` is NaN for a row with any expected count below float32's
    resolution at 1 (~6e-8), and the fit turns to NaN within a few iterations.
  - the emissions: a normal-inverse-Wishart prior with κ_0 = 0 and Ψ_0 = 0, which
    makes the means exactly μ_k = Σ γ x / Σ γ, but ν_0 can go no lower than D
    (`emission_prior_extra_df = 0`: tfp's Wishart refuses ν < D), so every
    covariance is the maximum-likelihood one times Σ γ / (Σ γ + 2D + 2):
    shrunk by 10 / 12,500 ≈ 0.08% per state at the default sizes, by ~4% at --quick's.
  dynamax's `fit_em` compiles its loop anew on every call, so it is timed inside one
  `jax.jit` (its documented `verbose=False` use), which is cached like lvmjax's.

Seconds are steady state: the median of `--repeats` fits after a warm-up whose
extra time (tracing and compilation) is shown apart; hmmlearn has no warm-up and
runs `--peer-repeats` times (once by default: it takes tens of seconds). The
quality figure of each side is the mean log-likelihood per time step of its final
θ (after the last M-step), by its own forward pass; every final θ is also scored
by hmmlearn's float64 forward pass, so the sides' θ are compared without the
rounding of their own evaluations.

The forward algorithm (`hmm_forward`): `hmm.log_marginal` of one sequence of each
length T in `--lengths`, jitted, sequential (`lax.scan`) and parallel
(`parallel=True`, an associative scan: O(log T) depth but O(T K³) work, which a
CPU pays for) and dynamax's `marginal_log_prob` (its sequential `hmm_filter` after
the emission log-likelihoods), each including the emission log-likelihoods;
the relative difference of each log p(x) from lvmjax's sequential one and, with
hmmlearn installed, the relative error of each against hmmlearn's float64 log p(x). The figure
(`benchmarks/figures/hmm_forward.png` unless `--no-figure`) draws seconds
against T.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import statistics
import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import Row, machine, not_installed, print_rows
from lvmjax.models import hmm

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_FIGURE = ROOT / "benchmarks" / "figures" / "hmm_forward.png"
DEFAULT_LENGTHS = (1_000, 10_000, 100_000)
TRUTH_SEED, DATA_SEED, START_SEED = 0, 1, 2


def true_params(num_states: int, data_dim: int, seed: int = TRUTH_SEED) -> hmm.Params:
    """A random HMM with distinct but overlapping states: sticky transitions (0.8 on the diagonal plus a
    Dirichlet share of the rest), means N(0, 3² I), covariances W Wᵀ / D + 0.5 I with W standard normal."""
    rng = np.random.default_rng(seed)
    initial = rng.dirichlet(np.ones(num_states))
    transition = 0.8 * np.eye(num_states) + 0.2 * rng.dirichlet(np.ones(num_states), num_states)
    means = rng.normal(size=(num_states, data_dim)) * 3
    factors = rng.normal(size=(num_states, data_dim, data_dim))
    covariances = factors @ np.swapaxes(factors, 1, 2) / data_dim + 0.5 * np.eye(data_dim)
    as32 = lambda array: jnp.asarray(array, jnp.float32)  # noqa: E731
    return hmm.Params(as32(initial), as32(transition), hmm.GaussianEmission(as32(means), as32(covariances)))


def sample_sequences(params: hmm.Params, num_sequences: int, num_steps: int, seed: int = DATA_SEED) -> np.ndarray:
    """`hmm.sample` of `num_sequences` sequences of `num_steps`: float32 (S, T, D)."""
    keys = jax.random.split(jax.random.key(seed), num_sequences)
    _, observations = jax.vmap(lambda key: hmm.sample(key, params, num_steps))(keys)
    return np.asarray(observations, np.float32)


def hmmlearn_model(num_states: int, params: hmm.Params, iterations: int = 1, implementation: str = "log"):
    """hmmlearn's `GaussianHMM` at θ (float64), maximum likelihood: no covariance prior, no floor."""
    from hmmlearn.hmm import GaussianHMM

    model = GaussianHMM(
        num_states,
        covariance_type="full",
        n_iter=iterations,
        tol=-np.inf,
        init_params="",
        covars_prior=0.0,
        min_covar=0.0,
        implementation=implementation,
    )
    model.startprob_ = np.asarray(params.initial_probs, np.float64)
    model.transmat_ = np.asarray(params.transition_matrix, np.float64)
    model.means_ = np.asarray(params.emission.means, np.float64)
    model.covars_ = np.asarray(params.emission.covariances, np.float64)
    return model


def hmmlearn_score(params: hmm.Params, data: np.ndarray) -> float:
    """Mean log-likelihood per step of θ over the sequences (S, T, D), by hmmlearn's float64 forward pass."""
    num_sequences, num_steps, dim = data.shape
    model = hmmlearn_model(params.initial_probs.shape[0], params)
    return float(model.score(data.reshape(-1, dim).astype(np.float64), [num_steps] * num_sequences)) / (
        num_sequences * num_steps
    )


# The Dirichlet concentration of dynamax's π and A: 1 (no prior) makes tfp's Dirichlet mode NaN as soon as an
# expected count rounds away against 1 in float32; 1 + 1e-6 is a pseudo-count of ~1e-6.
DYNAMAX_CONCENTRATION = 1.0 + 1e-6


def dynamax_model(num_states: int, data_dim: int):
    """dynamax's `GaussianHMM` with the weakest priors it accepts (see the module's docstring)."""
    from dynamax.hidden_markov_model import GaussianHMM

    return GaussianHMM(
        num_states,
        data_dim,
        initial_probs_concentration=DYNAMAX_CONCENTRATION,
        transition_matrix_concentration=DYNAMAX_CONCENTRATION,
        emission_prior_concentration=0.0,
        emission_prior_scale=0.0,
        emission_prior_extra_df=0.0,
    )


def _quiet(fn: Callable) -> Callable:
    """`fn` with the DeprecationWarnings that dynamax's tfp calls raise while JAX traces them silenced."""

    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with _dynamax_quiet():
            return fn(*args, **kwargs)

    return quiet


@contextlib.contextmanager
def _dynamax_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def dynamax_params(model, params: hmm.Params):
    """dynamax's (params, props) at θ."""
    with _dynamax_quiet():  # initialize() draws (and discards) emissions from the prior
        return model.initialize(
            jax.random.key(0),
            initial_probs=params.initial_probs,
            transition_matrix=params.transition_matrix,
            emission_means=params.emission.means,
            emission_covariances=params.emission.covariances,
        )


def from_dynamax(params) -> hmm.Params:
    return hmm.Params(
        params.initial.probs,
        params.transitions.transition_matrix,
        hmm.GaussianEmission(params.emissions.means, params.emissions.covs),
    )


def _mean_log_likelihood(params: hmm.Params, data: jax.Array) -> jax.Array:
    return jnp.sum(jax.vmap(hmm.log_marginal, in_axes=(None, 0))(params, data)) / (data.shape[0] * data.shape[1])


def timed_together(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """`timed` of several functions, their repeats interleaved (a, b, a, b, ...) so that a load that comes and
    goes on a shared machine falls on each alike: {name: (seconds of the first call, median of the repeats)}."""
    first, times = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        begin = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - begin
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            begin = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - begin)
    return {name: (first[name], statistics.median(times[name])) for name in fns}


def run(
    num_sequences=100,
    num_steps=1_000,
    num_states=8,
    data_dim=4,
    iterations=50,
    repeats=3,
    peer_repeats=1,
    skip_hmmlearn=False,
    skip_dynamax=False,
    hmmlearn_implementation="log",
    hmmlearn_threads=None,
) -> list[Row]:
    """Baum–Welch by lvmjax, hmmlearn and dynamax from the same start: one `Row` per peer."""
    truth = true_params(num_states, data_dim)
    data = sample_sequences(truth, num_sequences, num_steps)
    device_data = jnp.asarray(data)
    lengths = np.full(num_sequences, num_steps)
    start = jax.jit(hmm.initial_params, static_argnums=(2, 3, 4))(
        jax.random.key(START_SEED), device_data, num_states, "gaussian", "full", jnp.asarray(lengths)
    )
    total = num_sequences * num_steps
    use_hmmlearn = not skip_hmmlearn and _has("hmmlearn")
    use_dynamax = not skip_dynamax and _has("dynamax")
    result = {}

    def fit():
        params, info = hmm.fit_em(
            jax.random.key(0),
            data,
            num_states,
            "gaussian",
            "full",
            lengths=lengths,
            max_iter=iterations,
            tol=-1.0,
            reg_covar=0.0,
            init_params=start,
        )
        result["lvmjax"], result["info"] = jax.block_until_ready((params, info))

    fits = {"lvmjax": fit}
    if use_dynamax:
        model = dynamax_model(num_states, data_dim)
        peer_start, props = dynamax_params(model, start)
        peer_fit = jax.jit(
            _quiet(
                lambda params, emissions: model.fit_em(params, props, emissions, num_iters=iterations, verbose=False)
            )
        )

        def fit_dynamax():
            result["dynamax"], _ = jax.block_until_ready(peer_fit(peer_start, device_data))

        fits["dynamax"] = fit_dynamax
    seconds = timed_together(fits, repeats)
    first, ours = seconds["lvmjax"]
    params = result["lvmjax"]
    assert int(result["info"].num_iterations) == iterations
    ours_ll = float(jax.jit(_mean_log_likelihood)(params, device_data))
    ours_score = hmmlearn_score(params, data) if use_hmmlearn else None
    workload = (
        f"{iterations} Baum–Welch iterations, S = {num_sequences} sequences × T = {num_steps:,}, K = {num_states}, "
        f"D = {data_dim}, full covariances, same start; quality: mean log-likelihood per step of the final θ"
    )
    quality = lambda value: f"log-lik/step {value:.6f}"  # noqa: E731
    scored = "both final θ scored by hmmlearn (float64): lvmjax {:.6f}, {} {:.6f} (difference {:.1e})"
    rows = []

    # --- hmmlearn -------------------------------------------------------------------------------
    row = Row(
        "hmm_em",
        workload + "; maximum likelihood on both sides; lvmjax float32, hmmlearn float64",
        ours,
        first - ours,
        "hmmlearn",
        None,
        quality(ours_ll),
    )
    rows.append(row)
    if skip_hmmlearn:
        row.note = "skipped: --skip-hmmlearn"
    elif not use_hmmlearn:
        row.note = not_installed("hmmlearn")
    else:
        import hmmlearn

        concatenated = data.reshape(-1, data_dim).astype(np.float64)
        times = []
        for _ in range(max(1, peer_repeats)):
            reference = hmmlearn_model(num_states, start, iterations, hmmlearn_implementation)
            begin = time.perf_counter()
            with warnings.catch_warnings(), _blas_threads(hmmlearn_threads):
                warnings.simplefilter("ignore")
                reference.fit(concatenated, lengths)
            times.append(time.perf_counter() - begin)
        assert reference.monitor_.iter == iterations
        theirs_ll = float(reference.score(concatenated, lengths)) / total
        threads = "" if hmmlearn_threads is None else f", {hmmlearn_threads} BLAS thread(s)"
        row.peer = f"hmmlearn {hmmlearn.__version__} ({hmmlearn_implementation}{threads})"
        row.peer_seconds = statistics.median(times)
        row.peer_quality = quality(theirs_ll)
        row.note = scored.format(ours_score, "hmmlearn", theirs_ll, ours_score - theirs_ll)

    # --- dynamax ----------------------------------------------------------------------------------
    row = Row(
        "hmm_em",
        workload + "; dynamax with its weakest priors (covariances shrunk by Σγ / (Σγ + 2D + 2)); both float32",
        ours,
        first - ours,
        "dynamax",
        None,
        quality(ours_ll),
    )
    rows.append(row)
    if not use_dynamax:
        row.note = "skipped: --skip-dynamax" if skip_dynamax else not_installed("dynamax")
        return rows
    from importlib.metadata import version

    peer_first, theirs_seconds = seconds["dynamax"]
    theirs = result["dynamax"]
    log_marginals = jax.jit(_quiet(jax.vmap(model.marginal_log_prob, in_axes=(None, 0))))
    theirs_ll = float(jnp.sum(log_marginals(theirs, device_data))) / total
    row.peer = f"dynamax {version('dynamax')}"
    row.peer_seconds = theirs_seconds
    row.peer_quality = quality(theirs_ll)
    row.note = f"dynamax compile {peer_first - theirs_seconds:.2f} s"
    if ours_score is not None:
        theirs_score = hmmlearn_score(from_dynamax(theirs), data)
        row.note += "; " + scored.format(ours_score, "dynamax", theirs_score, ours_score - theirs_score)
    return rows


def _calls(fn: Callable, params, x, values: dict, name: str) -> Callable[[], None]:
    """A call of `fn(params, x)` that blocks and keeps its value as `values[name]`."""

    def once():
        values[name] = float(jax.block_until_ready(fn(params, x)))

    return once


def _compared(values: dict[str, float], name: str) -> str:
    relative = abs(values[name] - values["sequential"]) / abs(values["sequential"])
    return f"log p(x) {values[name]:.3f} (relative difference {relative:.1e})"


def run_forward(lengths=DEFAULT_LENGTHS, num_states=8, data_dim=4, repeats=5, skip_dynamax=False) -> list[Row]:
    """`hmm.log_marginal`, sequential against parallel and against dynamax, on one sequence of each length:
    two `Row`s per length (peer `lvmjax parallel=True`, then dynamax), lvmjax's being the sequential pass."""
    truth = true_params(num_states, data_dim)
    longest = sample_sequences(truth, 1, max(lengths), seed=DATA_SEED + 1)[0]
    passes = {
        "sequential": (jax.jit(lambda params, x: hmm.log_marginal(params, x)), truth),
        "parallel": (jax.jit(lambda params, x: hmm.log_marginal(params, x, parallel=True)), truth),
    }
    use_dynamax = not skip_dynamax and _has("dynamax")
    if use_dynamax:
        from importlib.metadata import version

        model = dynamax_model(num_states, data_dim)
        passes["dynamax"] = (jax.jit(_quiet(model.marginal_log_prob)), dynamax_params(model, truth)[0])
    rows = []
    for length in lengths:
        x = jnp.asarray(longest[:length])
        values: dict[str, float] = {}
        seconds = timed_together(
            {name: _calls(fn, params, x, values, name) for name, (fn, params) in passes.items()}, repeats
        )
        reference = values["sequential"]
        first, ours = seconds["sequential"]
        workload = f"log p(x) of one sequence, T = {length:,}, K = {num_states}, D = {data_dim}, float32, jitted"
        quality = f"log p(x) {reference:.3f}"
        parallel_first, parallel_seconds = seconds["parallel"]
        note = f"parallel compile {parallel_first - parallel_seconds:.2f} s"
        if _has("hmmlearn"):  # the float64 log p(x), to tell which float32 pass rounds more
            exact = hmmlearn_model(num_states, truth).score(np.asarray(x, np.float64))
            errors = ", ".join(f"{name} {abs(value - exact) / abs(exact):.1e}" for name, value in values.items())
            note += f"; hmmlearn float64 log p(x) {exact:.3f}, relative errors: {errors}"
        rows.append(
            Row(
                f"hmm_forward_T{length}",
                workload,
                ours,
                first - ours,
                "lvmjax parallel=True",
                parallel_seconds,
                quality,
                _compared(values, "parallel"),
                note,
            )
        )
        row = Row(f"hmm_forward_T{length}", workload, ours, first - ours, "dynamax", None, quality)
        if use_dynamax:
            row.peer, row.peer_seconds = f"dynamax {version('dynamax')} hmm_filter", seconds["dynamax"][1]
            row.peer_quality = _compared(values, "dynamax")
        else:
            row.note = "skipped: --skip-dynamax" if skip_dynamax else not_installed("dynamax")
        rows.append(row)
    return rows


@contextlib.contextmanager
def _blas_threads(threads: int | None):
    """numpy's BLAS limited to `threads` (threadpoolctl) while inside; as installed for None. hmmlearn's BLAS
    calls are 4 × 4, too small to gain from threads, and its OpenBLAS threads, spinning against another
    process for the two cores, can make a fit several times slower."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        yield


def _has(package: str) -> bool:
    try:
        __import__(package)
    except ImportError:
        return False
    return True


def draw(rows: list[Row], path) -> pathlib.Path:
    """Seconds against T of the forward benchmark's rows: sequential, parallel, dynamax (log-log)."""
    from matplotlib.figure import Figure

    from lvmjax import plots

    lengths = sorted({int(row.benchmark.rsplit("T", 1)[1]) for row in rows})
    by_length = {length: [row for row in rows if row.benchmark == f"hmm_forward_T{length}"] for length in lengths}
    lines = {"lvmjax sequential (lax.scan)": [by_length[length][0].lvmjax_seconds for length in lengths]}
    lines["lvmjax parallel=True (associative scan)"] = [by_length[length][0].peer_seconds for length in lengths]
    if all(by_length[length][1].peer_seconds is not None for length in lengths):
        lines[f"{by_length[lengths[0]][1].peer} (sequential)"] = [
            by_length[length][1].peer_seconds for length in lengths
        ]
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axis = figure.subplots()
    for label, seconds in lines.items():
        axis.plot(lengths, seconds, marker="o", label=label)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("T (time steps of the sequence)")
    axis.set_ylabel("seconds per log p(x) (median, jitted)")
    first = by_length[lengths[0]][0].workload
    states = first.split("K = ")[1].split(",")[0]
    dim = first.split("D = ")[1].split(",")[0]
    axis.set_title(
        f"HMM forward algorithm, K = {states}, D = {dim}, float32\n{machine()}, jax {jax.__version__}", fontsize=9
    )
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    return plots.save(figure, path)


def forward_summary(rows: list[Row]) -> str:
    """The forward benchmark's rows in milliseconds, one line per T (the table's seconds round them to 0)."""
    lines = ["T, milliseconds per log p(x): lvmjax sequential, lvmjax parallel, dynamax"]
    for sequential, peer in zip(rows[::2], rows[1::2], strict=True):
        dynamax = "skipped" if peer.peer_seconds is None else f"{1e3 * peer.peer_seconds:.3f}"
        lines.append(
            f"{sequential.benchmark.rsplit('T', 1)[1]:>8}  {1e3 * sequential.lvmjax_seconds:9.3f}  "
            f"{1e3 * sequential.peer_seconds:9.3f}  {dynamax:>9}"
        )
    return "\n".join(lines)


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("em", "forward"), help="run only Baum–Welch or only the forward pass")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs, measures nothing")
    parser.add_argument("--sequences", type=int, default=100, help="S of Baum–Welch (default 100)")
    parser.add_argument("--steps", type=int, default=1_000, help="T of each sequence of Baum–Welch (default 1000)")
    parser.add_argument("--states", type=int, default=8, help="K (default 8)")
    parser.add_argument("--dim", type=int, default=4, help="D (default 4)")
    parser.add_argument("--iterations", type=int, default=50, help="Baum–Welch iterations (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits of lvmjax and dynamax (default 3)")
    parser.add_argument("--peer-repeats", type=int, default=1, help="timed fits of hmmlearn (default 1)")
    parser.add_argument(
        "--hmmlearn-implementation", choices=("log", "scaling"), default="log", help="hmmlearn's forward–backward"
    )
    parser.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)), help="T of the forward benchmark")
    parser.add_argument("--forward-repeats", type=int, default=5, help="timed calls per forward pass (default 5)")
    parser.add_argument(
        "--hmmlearn-threads", type=int, help="numpy's BLAS threads during hmmlearn's fit (default: as installed)"
    )
    parser.add_argument("--skip-hmmlearn", action="store_true")
    parser.add_argument("--skip-dynamax", action="store_true")
    parser.add_argument(
        "--figure", metavar="FILE", help=f"where to draw the forward timings (default {DEFAULT_FIGURE})"
    )
    parser.add_argument("--no-figure", action="store_true", help="draw no figure")
    parser.add_argument("--json", metavar="FILE", help="also write the rows, the machine and the load to FILE")
    args = parser.parse_args(argv)
    if args.quick:
        em, forward = QUICK_EM, QUICK_FORWARD
    else:
        em = dict(
            num_sequences=args.sequences,
            num_steps=args.steps,
            num_states=args.states,
            data_dim=args.dim,
            iterations=args.iterations,
            repeats=args.repeats,
            peer_repeats=args.peer_repeats,
        )
        lengths = tuple(int(length) for length in args.lengths.split(","))
        forward = dict(lengths=lengths, num_states=args.states, data_dim=args.dim, repeats=args.forward_repeats)
    load_before = os.getloadavg()
    rows = []
    if args.only in (None, "em"):
        rows += run(
            **em,
            skip_hmmlearn=args.skip_hmmlearn,
            skip_dynamax=args.skip_dynamax,
            hmmlearn_implementation=args.hmmlearn_implementation,
            hmmlearn_threads=args.hmmlearn_threads,
        )
    forward_rows = []
    if args.only in (None, "forward"):
        forward_rows = run_forward(**forward, skip_dynamax=args.skip_dynamax)
    rows += forward_rows
    load_after = os.getloadavg()
    print_rows(rows)
    for row in rows:
        if row.note and row.peer_quality:
            print(f"{row.benchmark} against {row.peer}: {row.note}")
    if forward_rows:
        print(forward_summary(forward_rows))
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {load_after}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "machine": machine(),
                    "jax": jax.__version__,
                    "quick": args.quick,
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                    "rows": [dataclasses.asdict(row) | {"ratio": row.ratio} for row in rows],
                },
                file,
                indent=2,
            )
    figure = None if args.no_figure else args.figure or (None if args.quick else DEFAULT_FIGURE)
    if figure is not None and forward_rows:
        print(f"figure: {draw(forward_rows, figure)}")
    return rows


# The sizes of `--quick` (and of `python -m benchmarks.run --quick`): a few seconds, nothing measured.
QUICK_EM = dict(num_sequences=5, num_steps=100, num_states=3, data_dim=2, iterations=5, repeats=1, peer_repeats=1)
QUICK_FORWARD = dict(lengths=(100, 200), num_states=3, data_dim=2, repeats=1)


if __name__ == "__main__":
    main()
