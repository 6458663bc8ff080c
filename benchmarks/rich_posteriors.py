"""Richer posteriors and priors on the embedded digits: test NLL, test ELBO and both gaps of every pair.

    python -m benchmarks.rich_posteriors [--posterior P ...] [--prior P ...] [--epochs E]
                                         [--components K] [--ais-steps T] [--json FILE] [--figure FILE]
                                         [--quick] [--from-json FILE ...]

Every pair of a posterior q(z | x) (diagonal, full-rank, iaf, realnvp, spline; `make_vae(posterior=...)`)
and a prior p(z) (normal, mixture, vamp; `make_vae(prior=...)`) is trained as `lvmjax fit vae --data
digits --posterior P --prior Q --epochs 300` would train it (the tour's split and VAE budget: MLP
(256, 256), d = 16, batch 128, Adam 1e-3 with cosine decay, seed 0; 4 flow layers of (64, 64); K = 10
mixture components or pseudo-inputs), then evaluated on the 297 test digits as `lvmjax evaluate`
evaluates it: the test ELBO of the encoder's q, the test NLL importance-sampled with K = 5000 draws from
the refined q (200 SVI steps per test image from the encoder's output), and the two gaps of Cremer et
al. (2018),

    log p(x) − ELBO(q_φ(x)) = [log p(x) − ELBO(q*)] + [ELBO(q*) − ELBO(q_φ(x))]
                            =  approximation gap    +  amortization gap.

With `--ais-steps T` (T > 0) log p(x) is also estimated by AIS (T temperatures × 16 chains from the
encoder's q, or from the prior for an IAF, whose density at an arbitrary z is not available), and the
approximation gap is then measured against it. The goal of the issue: a flow posterior closes at least
half of the diagonal VAE's approximation gap. Each model is trained once (one seed), so differences of a
few hundredths of a nat between pairs are within what another seed would move them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import jax

from benchmarks.common import machine
from lvmjax import amortized, app, variational

EPOCHS = 300  # the tour's VAE budget (`lvmjax.tour.experiments.FULL`)


def measure(posterior: str, prior: str, epochs: int, components: int, ais_steps: int, nll_samples: int) -> dict:
    config = app.FitConfig(
        model="vae", data="digits", epochs=epochs, posterior=posterior, prior=prior, components=components
    )
    dataset = app.load_data(config)
    started = time.perf_counter()
    fit = app.fit(config, dataset)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    # One evaluation: with AIS it keeps the importance-sampled NLL beside AIS's (test_nll_is).
    estimator = "ais" if ais_steps else "is"
    report = app.evaluate(config, fit.params, dataset, nll_samples, 200, 0, estimator=estimator, ais_steps=ais_steps)
    diagnostics = report["diagnostics"]
    result = {
        "posterior": posterior,
        "prior": prior,
        "train_seconds": train_seconds,
        "evaluate_seconds": time.perf_counter() - started,
        "test_elbo": report["test_elbo"],
        "refined_elbo": report["refined_elbo"],
        "amortization_gap": report["amortization_gap"],
        "active_units": diagnostics["active_units"],
        "rate": diagnostics["rate"],
        "mutual_information": diagnostics["mutual_information"],
    }
    if not ais_steps:
        return result | {key: report[key] for key in ("test_nll", "test_nll_stderr", "approximation_gap")}
    return result | {
        "test_nll": report["test_nll_is"],
        "test_nll_stderr": report["test_nll_is_stderr"],
        "approximation_gap": -report["test_nll_is"] - report["refined_elbo"],
        "ais_test_nll": report["test_nll"],
        "ais_test_nll_stderr": report["test_nll_stderr"],
        "ais_approximation_gap": report["approximation_gap"],
        "ais_estimator": report["nll_estimator"],
    }


def markdown(results: list[dict], ais: bool) -> str:
    header = "| q(z \\| x) | p(z) | train s | test ELBO | test NLL | approximation gap | amortization gap |"
    header += " AIS NLL | gap to AIS |" if ais else ""
    header += " active units | rate |"
    columns = header.replace("\\|", "").count("|") - 1  # the escaped bar of q(z | x) is not a column
    lines = [header, "| " + " | ".join(["---"] * columns) + " |"]
    for r in results:
        cells = [
            r["posterior"],
            r["prior"],
            f"{r['train_seconds']:.0f}",
            f"−{-r['test_elbo']:.2f}",
            f"{r['test_nll']:.2f} ± {r['test_nll_stderr']:.3f}",
            f"{r['approximation_gap']:.2f}",
            f"{r['amortization_gap']:.2f}",
        ]
        if ais and "ais_test_nll" in r:
            cells += [f"{r['ais_test_nll']:.2f} ± {r['ais_test_nll_stderr']:.3f}", f"{r['ais_approximation_gap']:.2f}"]
        elif ais:
            cells += ["not run", ""]
        cells += [str(r["active_units"]), f"{r['rate']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(results: list[dict], path: str, machine_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    posteriors = list(dict.fromkeys(r["posterior"] for r in results))
    priors = list(dict.fromkeys(r["prior"] for r in results))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    width = 0.8 / len(priors)
    for j, prior in enumerate(priors):
        by_posterior = {r["posterior"]: r for r in results if r["prior"] == prior}
        x = np.arange(len(posteriors)) + (j - (len(priors) - 1) / 2) * width
        nll = [by_posterior[p]["test_nll"] if p in by_posterior else np.nan for p in posteriors]
        gap = [by_posterior[p]["approximation_gap"] if p in by_posterior else np.nan for p in posteriors]
        axes[0].bar(x, nll, width, label=f"p(z) {prior}")
        axes[1].bar(x, gap, width, label=f"p(z) {prior}")
    for axis, title in zip(axes, ("test NLL (nats, K = 5000)", "approximation gap (nats)"), strict=True):
        axis.set_xticks(np.arange(len(posteriors)), posteriors)
        axis.set_title(title)
        axis.legend(fontsize=8)
    axes[1].set_ylim(0, 1.35 * max(r["approximation_gap"] for r in results))  # room for the legend
    low = min(r["test_nll"] for r in results)
    axes[0].set_ylim(low - 1.0, max(r["test_nll"] for r in results) + 0.5)
    fig.suptitle(f"digits VAE, 297 test images, q(z | x) × p(z); {machine_name}", fontsize=10)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posterior", choices=variational.POSTERIORS, action="append")
    parser.add_argument("--prior", choices=amortized.PRIORS, action="append")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--ais-steps", type=int, default=0)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--figure", help="draw the test NLLs and approximation gaps to this file")
    parser.add_argument("--quick", action="store_true", help="3 epochs and K = 100: a smoke test")
    parser.add_argument(
        "--from-json", nargs="+", metavar="FILE", help="measure nothing: the table and figure of saved --json files"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        saved = [json.load(open(path)) for path in args.from_json]
        results = [result for part in saved for result in part["results"]]
        print(f"Machine: {saved[0]['machine']}; jax {saved[0]['jax']}; {saved[0]['epochs']} epochs")
        print(markdown(results, any("ais_test_nll" in result for result in results)))
        if args.figure:
            figure(results, args.figure, saved[0]["machine"])
        return 0
    epochs, nll_samples = (3, 100) if args.quick else (args.epochs, 5000)
    results = []
    for posterior, prior in itertools.product(args.posterior or variational.POSTERIORS, args.prior or amortized.PRIORS):
        results.append(measure(posterior, prior, epochs, args.components, args.ais_steps, nll_samples))
        r = results[-1]
        print(
            f"{posterior:>9} {prior:>7}: NLL {r['test_nll']:.3f} ELBO {r['test_elbo']:.3f} "
            f"gaps {r['approximation_gap']:.3f} + {r['amortization_gap']:.3f} "
            f"({r['train_seconds']:.0f} s + {r['evaluate_seconds']:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        if args.json:  # after every model, so that a long run keeps what it measured
            with open(args.json, "w") as file:
                json.dump({"machine": machine(), "jax": jax.__version__, "epochs": epochs, "results": results}, file)
    print(f"Machine: {machine()}; jax {jax.__version__}; {epochs} epochs")
    print(markdown(results, bool(args.ais_steps)))
    if args.figure:
        figure(results, args.figure, machine())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
