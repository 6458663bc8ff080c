"""Evaluating a run on its test split: `evaluate` asks the model's spec, `evaluate_run` reads a run directory."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from lvmjax.app import registry
from lvmjax.app.config import FitConfig
from lvmjax.app.datasets import load_data
from lvmjax.app.rundir import load_run, read_vocabulary
from lvmjax.app.spec import EvaluationSettings, Run
from lvmjax.data import Dataset
from lvmjax.errors import RunError

__all__ = ["ESTIMATORS", "evaluate", "evaluate_run", "load_run_data"]


def evaluate_run(
    run_dir: str | os.PathLike,
    num_samples: int = 5000,
    data_dir: str | None = None,
    refine_steps: int = 200,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    estimator: str = "is",
    ais_steps: int = 1000,
    ais_chains: int = 16,
    bdmc: int = 0,
) -> dict:
    """Test-split metrics of a saved run, in nats per datapoint; see `evaluate`."""
    if num_samples < 1:
        raise RunError(f"{{num_samples}} must be at least 1, got {num_samples}.")
    run = load_run(run_dir)
    _check_estimator(run.config, estimator, ais_steps, ais_chains, bdmc)
    dataset = load_run_data(run, run_dir, data_dir)
    return evaluate(
        run.config,
        run.params,
        dataset,
        num_samples,
        refine_steps,
        seed,
        progress=progress,
        estimator=estimator,
        ais_steps=ais_steps,
        ais_chains=ais_chains,
        bdmc=bdmc,
    )


ESTIMATORS = ("is", "ais")


def _check_estimator(config: FitConfig, estimator: str, ais_steps: int, ais_chains: int, bdmc: int = 0) -> None:
    """AIS and BDMC are for the models whose log p(x) is estimated; the others' is exact, or undefined."""
    if estimator not in ESTIMATORS:
        raise RunError(f"{{estimator}} must be one of {', '.join(ESTIMATORS)}, got {estimator!r}.")
    if bdmc < 0:
        raise RunError(f"{{bdmc}} must be at least 0, got {bdmc}.")
    if estimator == "ais" or bdmc:
        what = "{estimator} ais" if estimator == "ais" else "{bdmc}"
        if config.spec.nll_method != "importance sampling":
            known = {"exact": "is exact", "posterior predictive": "is the posterior predictive's, in closed form"}.get(
                config.spec.nll_method or "", "is not defined"
            )
            estimated = ", ".join(s.name for s in registry.specs() if s.nll_method == "importance sampling")
            raise RunError(
                f"{config.model}'s log p(x) {known}; {what} is for the models whose log p(x) is "
                f"estimated ({estimated})."
            )
        for name, value in (("ais_steps", ais_steps), ("ais_chains", ais_chains)):
            if value < 1:
                raise RunError(f"{{{name}}} must be at least 1, got {value}.")


def load_run_data(run: Run, run_dir: str | os.PathLike, data_dir: str | None = None) -> Dataset:
    """The data `run` was fitted to (`load_data`), refused if its columns do not match the model's."""
    dataset = load_data(run.config, data_dir)
    if dataset.test.shape[1] != run.data_dim:
        what = "words in its vocabulary" if dataset.vocabulary is not None else "columns"
        raise RunError(
            f"the test data has {dataset.test.shape[1]} {what} but the model of {run_dir} was trained "
            f"on {run.data_dim}; use it on the data it was fitted to."
        )
    vocabulary = dataset.vocabulary
    saved = read_vocabulary(run_dir) if vocabulary is not None else None
    if vocabulary is not None and saved is not None and saved != vocabulary:
        word = next(index for index, pair in enumerate(zip(saved, vocabulary, strict=True)) if pair[0] != pair[1])
        raise RunError(
            f"the vocabulary of {dataset.name} is not the one {run_dir} was fitted with (word {word} is "
            f"{vocabulary[word]!r}, the run's {saved[word]!r}); the data changed since 'lvmjax fit'."
        )
    return dataset


def evaluate(
    config: FitConfig,
    params,
    dataset: Dataset,
    num_samples: int = 5000,
    refine_steps: int = 200,
    seed: int = 0,
    per_datapoint: bool = False,
    progress: Callable[[int, int], None] | None = None,
    estimator: str = "is",
    ais_steps: int = 1000,
    ais_chains: int = 16,
    bdmc: int = 0,
) -> dict:
    """Test-split metrics of a fitted model, in nats per datapoint (`ModelSpec.evaluate`).

    - vae, iwae: test ELBO of the encoder's q; test NLL = −log p(x) importance-sampled with
      `num_samples` draws from the refined q; the approximation and amortization gaps.
    - svi: φ_i fitted to each test datapoint with θ fixed, then the same ELBO and NLL.
    - ae: no likelihood, so test_elbo and test_nll are None; the reconstruction term instead.
    - gmm, mob, fa, ppca: exact test NLL (num_samples is unused), test_elbo = −test_nll (the
      exact posterior is the q), the training NLL and BIC, and for the mixtures the cluster
      sizes and, where the data has labels, the adjusted Rand index of the test clusters.

    Args:
      config: the run's configuration.
      params: its parameters, as `fit` returns them in `FitResult.params` (or `load_run` reads them).
      dataset: the data it was fitted to; the test split is evaluated.
      num_samples: K of an importance-sampled test NLL.
      refine_steps: SVI steps of the refinement (vae, iwae) or, twice as many, of the test φ_i (svi).
      seed: of every draw.
      per_datapoint: also return "test_log_marginals", log p(x_i) (or its estimate) for every
        test datapoint, for the models that have a likelihood.
      estimator: of the NLL of the models whose log p(x) is estimated: "is", importance
        sampling with `num_samples` draws from the refined q; or "ais", annealed importance
        sampling (`lvmjax.ais.log_marginal_ais`, `ais_steps` temperatures, `ais_chains`
        chains) from the encoder's q (vae, iwae) or the prior (svi), which the gaps are
        then measured against (the importance-sampled NLL is kept as "test_nll_is").
      ais_steps, ais_chains: AIS's temperatures and chains per test datapoint.
      bdmc: simulate this many datapoints (x, z) ~ p(x, z; θ) from the model and report
        BDMC's lower and upper bounds on their log p(x) (`lvmjax.ais.bdmc`, with the
        AIS settings above, from the prior): their gap says how far AIS is from the truth.
      progress: `progress(done, total)` before the first and after each batch of at most
        `batches.EVALUATION_BATCH` test datapoints of a model evaluated in batches (batch b
        draws with the key fold_in(key(seed), b); the batches have equal sizes, so one
        program serves all).
    """
    if num_samples < 1:
        raise RunError(f"{{num_samples}} must be at least 1, got {num_samples}.")
    _check_estimator(config, estimator, ais_steps, ais_chains, bdmc)
    report = {
        "model": config.model,
        "dataset": dataset.name,
        "num_test": int(np.shape(dataset.test)[0]),
        "num_samples": num_samples,
    }
    settings = EvaluationSettings(
        num_samples, refine_steps, seed, per_datapoint, progress, estimator, ais_steps, ais_chains, bdmc
    )
    metrics = config.spec.evaluate(config, params, dataset, settings)
    metrics.setdefault("nll_estimator", config.spec.nll_method)  # "exact", or None without a likelihood
    return report | metrics
