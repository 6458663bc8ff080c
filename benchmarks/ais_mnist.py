"""How many nats importance sampling leaves on the table on binarized MNIST: IS against AIS and BDMC.

    python -m benchmarks.ais_mnist [--quick] [--epochs N] [--num-train N] [--num-test N] [--is-samples K]
                                   [--ais-steps 100,1000,10000] [--ais-chains C] [--ais-subset N] [--leapfrog L]
                                   [--bdmc N] [--bdmc-steps 100,1000] [--chunk B] [--params FILE]
                                   [--data-dir DIR] [--json FILE]

The model is mnist_quality's burda-vae (784-200-200-50, tanh, Bernoulli decoder, mean-field
Gaussian q; Burda et al. 2016), trained on the ELBO with mnist_quality's own reduced schedule
(`schedule_for`, `train_lvmjax`: batches of 100, Adam at 10⁻³, 10 epochs unless `--epochs`).
`--params FILE` keeps the trained parameters: read from FILE where it exists (an .npz this
script wrote), else trained and written there before anything is evaluated, so the evaluation
can be run again without training.

On the first `--num-test` test images, three estimators of log p(x; θ), each a stochastic
lower bound in expectation:

- importance sampling from the encoder's q (`amortized.log_marginal` through mnist_quality's
  evaluator, the same keys), K = `--is-samples` (5000, as Burda et al.):
      log p̂(x) = log (1/K) Σ_k p(x, z_k; θ) / q(z_k | x),   z_k ~ q(z | x; φ);
- annealed importance sampling (`lvmjax.log_marginal_ais`; Neal 2001) from p0 = the same q(z | x)
  of each image, `--ais-chains` chains, HMC with `--leapfrog` leapfrog steps and the library's
  defaults otherwise (sigmoidal schedule, one step size per image adapted toward acceptance 0.65),
  at each number of temperatures T in `--ais-steps`, vmapped over `--chunk` images at a time.
  The longest T runs on the first `--ais-subset` images only; every row says on how many images
  it was computed, and the IS and shorter-AIS estimates of those images are reported beside it.
- bidirectional Monte Carlo (`lvmjax.bdmc`; Grosse et al. 2015, Wu et al. 2017) on `--bdmc`
  images simulated from the trained model, (z, x) ~ p(z) p(x | z; θ) with binary x: forward AIS
  from q(z | x) gives E[lower] ≤ log p(x; θ), reverse AIS from the exact posterior sample z gives
  E[upper] ≥ log p(x; θ), at each T of `--bdmc-steps` (default: those of `--ais-steps`), with the
  same chains and kernel as AIS; IS with K = `--is-samples` on the same simulated images too.

Each estimator's NLL is −(1/N) Σ_i log p̂(x_i) ± its standard error over the N images, and each
AIS row gives NLL_IS − NLL_AIS = (1/N) Σ_i [log p̂_AIS(x_i) − log p̂_IS(x_i)], the nats importance
sampling leaves on the table, with its paired standard error over the same images. Seconds are
wall-clock, the ahead-of-time compilation apart. `--quick` trains 1 epoch on 512 images and
evaluates 8 test images with K = 100, AIS and BDMC at T = 20 with 2 chains, 4 simulated images:
it checks that everything runs, it measures nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import traverse_util

from benchmarks import mnist_quality
from benchmarks.common import DEFAULT_DATA_DIR, machine
from lvmjax import bdmc, log_marginal_ais, sample
from lvmjax import data as data_lib

Params = Any

MODEL_NAME = "burda-vae"
AIS_SEED, BDMC_SEED = 3, 4  # mnist_quality's seeds are 0 (init), 1 (training) and 2 (IS, reused here)
INFO_KEY = "__training__"  # the npz entry holding the training's description, as a JSON string


@dataclasses.dataclass(frozen=True)
class Settings:
    epochs: int | None = None  # None: the reduced schedule's epochs of burda-vae
    num_train: int = 50_000
    num_test: int = 1000
    is_samples: int = 5000
    ais_steps: tuple[int, ...] = (100, 1000, 10_000)
    ais_chains: int = 8
    ais_subset: int | None = 100  # images of the longest schedule; None: all num_test
    leapfrog: int = 10
    bdmc: int = 50
    bdmc_steps: tuple[int, ...] | None = (100, 1000)  # None: every T of ais_steps
    chunk: int = 50  # images vmapped together in one AIS or BDMC call


QUICK = Settings(
    epochs=1,
    num_train=512,
    num_test=8,
    is_samples=100,
    ais_steps=(20,),
    ais_chains=2,
    ais_subset=None,
    bdmc=4,
    bdmc_steps=None,
)


class Estimates(NamedTuple):
    """One estimator's run on N images."""

    log_marginal: np.ndarray  # shape=(N,): log p̂(x_i)
    stderr: np.ndarray  # shape=(N,): the Monte Carlo (delta-method) standard error of each log p̂(x_i)
    seconds: float  # wall-clock seconds of the evaluation, compilation excluded
    compile_seconds: float


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def save_params(path: str | os.PathLike, params: Params, training: dict) -> None:
    """Writes the parameters (and the description of their training) to the .npz `path`, atomically."""
    arrays = {name: np.asarray(leaf) for name, leaf in traverse_util.flatten_dict(params, sep="/").items()}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{INFO_KEY: np.array(json.dumps(training))})
    staging = pathlib.Path(f"{path}.partial")
    staging.write_bytes(buffer.getvalue())
    os.replace(staging, path)


def load_params(path: str | os.PathLike, template: Params) -> tuple[Params, dict]:
    """(parameters, description of their training) from a file of `save_params`, checked against `template`."""
    with np.load(path, allow_pickle=False) as archive:
        training = json.loads(str(archive[INFO_KEY]))
        params = traverse_util.unflatten_dict({name: archive[name] for name in archive.files if name != INFO_KEY}, "/")
    shapes = lambda tree: jax.tree.map(lambda leaf: (tuple(leaf.shape), str(leaf.dtype)), tree)  # noqa: E731
    if shapes(params) != shapes(template):
        raise ValueError(f"{path} does not hold the parameters of {MODEL_NAME} ({mnist_quality.MODELS[MODEL_NAME]}).")
    return params, training


def trained_params(
    settings: Settings, dataset: data_lib.Dataset, vae, path: str | os.PathLike | None
) -> tuple[Params, dict]:
    """The parameters read from `path` where it exists; else trained as mnist_quality trains burda-vae (and
    written to `path` if given)."""
    template = jax.eval_shape(vae.init, jax.random.PRNGKey(mnist_quality.INIT_SEED))
    if path is not None and pathlib.Path(path).is_file():
        params, training = load_params(path, template)
        progress(f"{MODEL_NAME}: parameters read from {path} ({training['epochs']} epochs)")
        return params, training | {"loaded_from": str(path)}
    model = mnist_quality.MODELS[MODEL_NAME]
    schedule = mnist_quality.schedule_for(model, "reduced", settings.epochs)
    images = np.ascontiguousarray(dataset.train[: settings.num_train])
    trained = mnist_quality.train_lvmjax(model, schedule, images, MODEL_NAME)
    training = {
        "model": MODEL_NAME,
        "architecture": model.architecture,
        "objective": model.objective_name,
        "schedule": dataclasses.asdict(schedule),
        "epochs": schedule.epochs,
        "num_train": int(images.shape[0]),
        "compile_seconds": trained.compile_seconds,
        "seconds": trained.compile_seconds + sum(trained.epoch_seconds),
        "seconds_per_epoch": trained.epoch_seconds,
        "loaded_from": None,
    }
    params = trained.params[-1]
    if path is not None:
        save_params(path, params, training)
        progress(f"{MODEL_NAME}: parameters written to {path}")
    return params, training


def _compiled(fn: Callable, *args) -> tuple[Callable, float]:
    """`jax.jit(fn)` compiled ahead of time for `args`, and the seconds that took."""
    begin = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - begin


def importance_sampled(vae, params: Params, images: np.ndarray, num_samples: int) -> Estimates:
    """IS from the encoder's q with mnist_quality's evaluator and keys (`estimate_nll`'s), per image."""
    keys = jax.random.split(jax.random.PRNGKey(mnist_quality.EVAL_SEED), images.shape[0])
    evaluator, compile_seconds = _compiled(mnist_quality.make_evaluator(vae, num_samples), params, keys, images)
    begin = time.perf_counter()
    log_marginal = np.asarray(jax.block_until_ready(evaluator(params, keys, images)), np.float64)
    seconds = time.perf_counter() - begin
    # mnist_quality's evaluator returns log p̂ alone; the Monte Carlo stderr of each image is not kept there.
    return Estimates(log_marginal, np.full_like(log_marginal, math.nan), seconds, compile_seconds)


def _in_chunks(fn: Callable, params: Params, arrays: Sequence, chunk: int, label: str):
    """`fn(params, *arrays)` on `chunk` rows at a time (the last one padded), jitted once; (outputs, seconds,
    compile seconds), the outputs' leading axis the rows of `arrays`."""
    num = len(arrays[0])
    chunk = min(chunk, num)
    rows = lambda start: np.minimum(np.arange(start, start + chunk), num - 1)  # noqa: E731
    compiled, compile_seconds = _compiled(fn, params, *(array[rows(0)] for array in arrays))
    outputs, begin = [], time.perf_counter()
    for start in range(0, num, chunk):
        outputs.append(jax.device_get(compiled(params, *(array[rows(start)] for array in arrays))))
        done = min(start + chunk, num)
        elapsed = time.perf_counter() - begin
        progress(f"{label}: {done}/{num} images, {elapsed:.0f} s, about {elapsed * (num / done - 1):.0f} s to go")
    seconds = time.perf_counter() - begin
    joined = jax.tree.map(lambda *parts: np.concatenate(parts)[:num], *outputs)
    return joined, seconds, compile_seconds


def _estimates(estimate, seconds: float, compile_seconds: float) -> Estimates:
    return Estimates(
        np.asarray(estimate.log_marginal, np.float64), np.asarray(estimate.stderr, np.float64), seconds, compile_seconds
    )


def annealed(vae, params: Params, images: np.ndarray, num_steps: int, settings: Settings) -> Estimates:
    """AIS from each image's q(z | x), T = `num_steps`; image i's key is fold_in(fold_in(key, T), i)."""

    def log_marginals(params, keys, images):
        def one(key, x):
            return log_marginal_ais(
                key,
                vae.model,
                params,
                x,
                num_steps,
                settings.ais_chains,
                proposal=vae.encode(params, x),
                num_leapfrog_steps=settings.leapfrog,
            )

        return jax.vmap(one)(keys, images)

    keys = _image_keys(AIS_SEED, num_steps, images.shape[0])
    estimate, seconds, compile_seconds = _in_chunks(
        log_marginals, params, (keys, images), settings.chunk, f"AIS T = {num_steps}"
    )
    return _estimates(estimate, seconds, compile_seconds)


def _image_keys(seed: int, num_steps: int, num: int) -> jax.Array:
    """One key per image, the same whatever the chunks or the number of images."""
    key = jax.random.fold_in(jax.random.key(seed), num_steps)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, np.arange(num))


def simulate(vae, params: Params, num: int) -> tuple[np.ndarray, np.ndarray]:
    """(z, x) of `num` draws z ~ p(z), x ~ p(x | z; θ) (binary pixels): z is an exact posterior sample of x."""
    keys = jax.random.split(jax.random.fold_in(jax.random.key(BDMC_SEED), 0), num)
    z, x = jax.jit(jax.vmap(lambda key: sample(key, vae.model, params)))(keys)
    return np.asarray(z), np.asarray(x)


def bidirectional(
    vae, params: Params, x: np.ndarray, z: np.ndarray, num_steps: int, settings: Settings
) -> tuple[Estimates, Estimates]:
    """BDMC's (lower, upper) bounds on log p(x_i) of the simulated images, forward AIS from q(z | x)."""

    def bounds(params, keys, x, z):
        def one(key, x, z):
            return bdmc(
                key,
                vae.model,
                params,
                x,
                z,
                num_steps,
                settings.ais_chains,
                proposal=vae.encode(params, x),
                num_leapfrog_steps=settings.leapfrog,
            )

        return jax.vmap(one)(keys, x, z)

    keys = _image_keys(BDMC_SEED + 1, num_steps, x.shape[0])
    result, seconds, compile_seconds = _in_chunks(bounds, params, (keys, x, z), settings.chunk, f"BDMC T = {num_steps}")
    return _estimates(result.lower, seconds, compile_seconds), _estimates(result.upper, seconds, compile_seconds)


def mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
    """(mean, standard error of the mean over the entries); NaN stderr for one entry."""
    values = np.asarray(values, np.float64)
    stderr = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else math.nan
    return float(values.mean()), float(stderr)


def nll_row(name: str, estimates: Estimates, num: int, restricted: bool, **workload) -> dict:
    """The NLL of the first `num` images; `restricted` where they are a subset of those `estimates` ran on, whose
    seconds are then not this row's."""
    nll, stderr = mean_and_stderr(-estimates.log_marginal[:num])
    return {
        "estimator": name,
        **workload,
        "num_images": num,
        "nll": nll,
        "nll_stderr": stderr,
        # the average Monte Carlo stderr of one image's log p̂; None for IS, whose evaluator does not return it
        "mean_mc_stderr": None if np.isnan(estimates.stderr).all() else float(np.mean(estimates.stderr[:num])),
        "seconds": None if restricted else estimates.seconds,
        "compile_seconds": None if restricted else estimates.compile_seconds,
        "restricted_from": len(estimates.log_marginal) if restricted else None,
    }


def is_minus_ais(is_estimates: Estimates, ais_estimates: Estimates, num: int) -> dict:
    """NLL_IS − NLL_AIS on the first `num` images, with its paired standard error over them."""
    difference, stderr = mean_and_stderr(ais_estimates.log_marginal[:num] - is_estimates.log_marginal[:num])
    return {"mean": difference, "stderr": stderr}


def bdmc_row(lower: Estimates, upper: Estimates, is_estimates: Estimates, num_steps: int, settings: Settings) -> dict:
    """BDMC's bounds on log p(x) (nats per simulated image, ± stderr over the images) and their paired gap."""
    (lower_mean, lower_stderr), (upper_mean, upper_stderr) = map(
        mean_and_stderr, (lower.log_marginal, upper.log_marginal)
    )
    gap, gap_stderr = mean_and_stderr(upper.log_marginal - lower.log_marginal)
    is_mean, is_stderr = mean_and_stderr(is_estimates.log_marginal)
    upper_minus_is, upper_minus_is_stderr = mean_and_stderr(upper.log_marginal - is_estimates.log_marginal)
    num = len(lower.log_marginal)
    return {
        "num_simulated": num,
        "num_steps": num_steps,
        "num_chains": settings.ais_chains,
        "num_leapfrog_steps": settings.leapfrog,
        "lower": lower_mean,
        "lower_stderr": lower_stderr,
        "upper": upper_mean,
        "upper_stderr": upper_stderr,
        "gap": gap,
        "gap_stderr": gap_stderr,
        # the combined Monte Carlo stderr of the mean of each bound, from each image's chains (as `lvmjax evaluate`)
        "lower_mc_stderr": float(np.sqrt(np.sum(lower.stderr**2)) / num),
        "upper_mc_stderr": float(np.sqrt(np.sum(upper.stderr**2)) / num),
        "is_log_marginal": is_mean,
        "is_log_marginal_stderr": is_stderr,
        "upper_minus_is": upper_minus_is,
        "upper_minus_is_stderr": upper_minus_is_stderr,
        "seconds": lower.seconds,
        "compile_seconds": lower.compile_seconds,
    }


def _schedule_sizes(settings: Settings) -> dict[int, int]:
    """T -> the number of test images AIS runs on at T: the longest on the subset, the others on all."""
    longest = max(settings.ais_steps)
    subset = settings.num_test if settings.ais_subset is None else min(settings.ais_subset, settings.num_test)
    return {steps: subset if steps == longest else settings.num_test for steps in sorted(set(settings.ais_steps))}


def compare(settings: Settings, data_dir, params_path, report: Callable[[dict], None]) -> dict:
    """Trains (or reads) burda-vae and runs every estimator; `report(results)` after each part, so a run that
    stops keeps what it finished. Raises `DataError` where the data is not found."""
    dataset = data_lib.load_binarized_mnist(data_dir)
    vae = mnist_quality.make_network(mnist_quality.MODELS[MODEL_NAME])
    params, training = trained_params(settings, dataset, vae, params_path)
    test = np.ascontiguousarray(dataset.test[: settings.num_test])
    sizes = _schedule_sizes(settings)
    subset = min(sizes.values())
    results: dict[str, Any] = {"training": training, "rows": [], "bdmc": [], "per_image": {}}

    progress(f"IS K = {settings.is_samples} on {len(test)} test images")
    is_test = importance_sampled(vae, params, test, settings.is_samples)
    is_workload = {"num_samples": settings.is_samples}
    results["rows"].append(nll_row("IS", is_test, len(test), False, **is_workload))
    if subset < len(test):
        results["rows"].append(nll_row("IS", is_test, subset, True, **is_workload))
    results["per_image"]["is"] = is_test.log_marginal.tolist()
    report(results)

    bdmc_steps = settings.ais_steps if settings.bdmc_steps is None else settings.bdmc_steps
    if settings.bdmc:
        z, x = simulate(vae, params, settings.bdmc)
        is_simulated = importance_sampled(vae, params, x, settings.is_samples)
        for num_steps in sorted(set(bdmc_steps)):
            lower, upper = bidirectional(vae, params, x, z, num_steps, settings)
            results["bdmc"].append(bdmc_row(lower, upper, is_simulated, num_steps, settings))
            report(results)

    for num_steps, num in sizes.items():
        ais = annealed(vae, params, test[:num], num_steps, settings)
        workload = {"num_steps": num_steps, "num_chains": settings.ais_chains, "num_leapfrog_steps": settings.leapfrog}
        row = nll_row("AIS", ais, num, False, **workload)
        transitions = num * settings.ais_chains * (num_steps - 1)
        row |= {
            "is_minus_ais": is_minus_ais(is_test, ais, num),
            "transitions_per_second": transitions / ais.seconds,
            "gradients_per_second": transitions * (settings.leapfrog + 1) / ais.seconds,
        }
        results["rows"].append(row)
        if subset < num:
            results["rows"].append(
                nll_row("AIS", ais, subset, True, **workload) | {"is_minus_ais": is_minus_ais(is_test, ais, subset)}
            )
        results["per_image"][f"ais_{num_steps}"] = ais.log_marginal.tolist()
        report(results)
    return results


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def format_results(results: dict) -> str:
    """The rows ordered by the images they ran on, then the BDMC rows, as aligned text."""
    header = ("estimator", "images", "NLL ± se", "IS − this (paired)", "mean MC se", "seconds", "compile s")
    lines = [header]
    for row in sorted(results["rows"], key=lambda row: (-row["num_images"], row["estimator"] != "IS")):
        name = (
            f"IS, K = {row['num_samples']}"
            if row["estimator"] == "IS"
            else f"AIS, T = {row['num_steps']} × {row['num_chains']} chains, L = {row['num_leapfrog_steps']}"
        )
        difference = row.get("is_minus_ais")
        lines.append(
            (
                name,
                f"test[:{row['num_images']}]",
                f"{row['nll']:.3f} ± {row['nll_stderr']:.3f}",
                "" if difference is None else f"{difference['mean']:.3f} ± {difference['stderr']:.3f}",
                "" if row["mean_mc_stderr"] is None else f"{row['mean_mc_stderr']:.3f}",
                _seconds(row["seconds"]) if row["restricted_from"] is None else f"(of test[:{row['restricted_from']}])",
                _seconds(row["compile_seconds"]),
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    for row in results["bdmc"]:
        text.append(
            f"BDMC, T = {row['num_steps']} × {row['num_chains']} chains on {row['num_simulated']} simulated images: "
            f"log p(x) in [{row['lower']:.3f}, {row['upper']:.3f}] (± {row['lower_stderr']:.3f}, "
            f"{row['upper_stderr']:.3f} over images), gap {row['gap']:.3f} ± {row['gap_stderr']:.3f}; "
            f"IS {row['is_log_marginal']:.3f}, upper − IS {row['upper_minus_is']:.3f} ± "
            f"{row['upper_minus_is_stderr']:.3f}; {row['seconds']:.1f} s (+ {row['compile_seconds']:.1f} s compile)"
        )
    return "\n".join(text)


def _steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        steps = ()
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return steps


def main(argv=None) -> dict | None:
    """Runs the benchmark; the results (as written to --json), or None where the data is not found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs, measures nothing")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the reduced schedule's, 10)")
    parser.add_argument("--num-train", type=int, help=f"training images (default {Settings.num_train})")
    parser.add_argument("--num-test", type=int, help=f"test images evaluated (default {Settings.num_test})")
    parser.add_argument("--is-samples", type=int, help=f"K of importance sampling (default {Settings.is_samples})")
    parser.add_argument("--ais-steps", type=_steps, help="numbers of AIS temperatures T, comma-separated")
    parser.add_argument("--ais-chains", type=int, help=f"AIS chains per image (default {Settings.ais_chains})")
    parser.add_argument("--ais-subset", type=int, help="test images of the longest AIS schedule (default: 100)")
    parser.add_argument("--leapfrog", type=int, help=f"leapfrog steps per HMC transition (default {Settings.leapfrog})")
    parser.add_argument("--bdmc", type=int, help=f"simulated images of BDMC, 0 for none (default {Settings.bdmc})")
    parser.add_argument("--bdmc-steps", type=_steps, help="numbers of BDMC temperatures (default 100,1000)")
    parser.add_argument("--chunk", type=int, help=f"images per AIS or BDMC call (default {Settings.chunk})")
    parser.add_argument(
        "--params", metavar="FILE", help="read the trained parameters from FILE (.npz), or train and write them there"
    )
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="the folder of binarized_mnist.npz")
    parser.add_argument("--json", metavar="FILE", help="also write the results and the machine to FILE")
    args = parser.parse_args(argv)
    fields = [field.name for field in dataclasses.fields(Settings)]
    given = {field: getattr(args, field) for field in fields if getattr(args, field) is not None}
    settings = dataclasses.replace(QUICK if args.quick else Settings(), **given)
    begin, load_before = time.perf_counter(), os.getloadavg()

    def describe(results: dict) -> dict:
        return {
            "machine": f"{machine()}, jax {jax.__version__}",
            "jax": jax.__version__,
            "load_before": load_before,
            "load_now": os.getloadavg(),
            "quick": args.quick,
            "settings": dataclasses.asdict(settings),
            "data_dir": str(args.data_dir),
            "seconds_so_far": time.perf_counter() - begin,
        } | results

    def report(results: dict) -> None:
        if args.json:
            staging = pathlib.Path(f"{args.json}.partial")
            staging.write_text(json.dumps(describe(results), indent=2))
            os.replace(staging, args.json)

    try:
        results = compare(settings, args.data_dir, args.params, report)
    except data_lib.DataError as error:
        print(f"ais_mnist skipped: {error}")
        return None
    described = describe(results)
    report(results)
    training = results["training"]
    print(f"machine: {described['machine']}" + (" (--quick: sizes too small to mean anything)" if args.quick else ""))
    origin = f"read from {training['loaded_from']}" if training["loaded_from"] else f"{training['seconds']:.1f} s"
    print(
        f"{MODEL_NAME}: {mnist_quality.MODELS[MODEL_NAME].architecture}, ELBO, {training['epochs']} epochs of "
        f"{training['num_train']} images ({origin}); load average {load_before} before, {os.getloadavg()} after"
    )
    print(format_results(results))
    print(f"total {described['seconds_so_far']:.1f} s")
    return described


if __name__ == "__main__":
    main()
