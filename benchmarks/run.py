"""Every benchmark, one table: lvmjax against the tool a user would pick instead, on this machine.

    python -m benchmarks.run [--quick] [--only NAME] [--json FILE]

Each row is one workload run by both sides with the same model, sizes, batch,
steps and precision, back to back in this process: lvmjax's steady-state seconds
(median of repeats after a warm-up), its compile seconds apart, the peer's
seconds, and the ratio peer / lvmjax (above 1: lvmjax is faster), with the
quality figure of each side. A peer that is not installed is reported as
skipped (`pip install -e ".[bench]"` installs them). `--quick` runs tiny sizes,
to check that everything works, not to measure. Each benchmark also runs alone:
`python -m benchmarks.NAME --help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable

import jax

from benchmarks import ais_mcmc, bgmm, evaluation, gmm_em, hmm_em, lda, mnist_quality, svi_step, vae_training
from benchmarks.common import Row, format_table, machine

BENCHMARKS: dict[str, Callable[[bool], list[Row]]] = {
    "vae_training": lambda quick: vae_training.run(quick),
    "iwae_training_k5": lambda quick: vae_training.run(quick, num_samples=5),
    "iwae_training_k50": lambda quick: vae_training.run(quick, num_samples=50),
    "evaluation": lambda quick: evaluation.run(quick),
    "svi_step": lambda quick: svi_step.run(quick),
    "gmm_em": lambda quick: (
        gmm_em.run(num_data=2000, data_dim=4, components=3, iterations=5, repeats=1) if quick else gmm_em.run()
    ),
    "gmm_em_diag": lambda quick: (
        gmm_em.run(num_data=2000, data_dim=4, components=3, covariance="diag", iterations=5, repeats=1)
        # 20 of the 100 iterations: an iteration costs the same throughout, and scikit-learn takes ~5 s for each.
        if quick
        else gmm_em.run(num_data=1_000_000, data_dim=64, components=64, covariance="diag", iterations=20, repeats=1)
    ),
    "bgmm": lambda quick: bgmm.run(quick),
    "hmm_em": lambda quick: hmm_em.run(**hmm_em.QUICK_EM) if quick else hmm_em.run(),
    "hmm_forward": lambda quick: hmm_em.run_forward(**hmm_em.QUICK_FORWARD) if quick else hmm_em.run_forward(),
    "mnist_quality": lambda quick: mnist_quality.run(quick),
    "ais_throughput": lambda quick: ais_mcmc.run_ais(**ais_mcmc.QUICK_AIS) if quick else ais_mcmc.run_ais(),
    "nuts_ess": lambda quick: ais_mcmc.run_nuts(**ais_mcmc.QUICK_NUTS) if quick else ais_mcmc.run_nuts(),
    "lda": lambda quick: lda.run(quick),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")
    parser.add_argument(
        "--only", choices=sorted(BENCHMARKS), action="append", help="run only this benchmark (repeatable)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows and the machine to FILE as JSON")
    args = parser.parse_args(argv)
    rows = []
    for name in args.only or BENCHMARKS:
        print(f"running {name}...", file=sys.stderr, flush=True)
        rows += BENCHMARKS[name](args.quick)
    description = f"{machine()}, jax {jax.__version__}" + (
        " (--quick: sizes too small to mean anything)" if args.quick else ""
    )
    print(f"machine: {description}")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "machine": description,
                    "quick": args.quick,
                    "rows": [dataclasses.asdict(row) | {"ratio": row.ratio} for row in rows],
                },
                file,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
