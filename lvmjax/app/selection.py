"""Model selection: every candidate size (and covariance type) of a model fitted, scored by BIC and by held-out
log-likelihood, and the chosen one refitted and saved as a run.

A model takes part when its spec names the setting that sizes it (`ModelSpec.selection`: "components" for
the mixtures, "latent_dim" for factor analysis and PPCA) and has an exact log p(x) and a parameter count.
The training split is divided once, by the seed, into a fitting part and a validation part (the test
split is never looked at). Each candidate is fitted on the fitting part, with its restarts in parallel
(`n_init`), and scored by

    BIC = -2 Σ_i log p(x_i; θ̂) + (free parameters) log N     over the fitting part (lower is better)
    held-out log-likelihood = (1/M) Σ_j log p(x_j; θ̂)        over the validation part (higher is better)

A candidate with a collapsed component (a Gaussian mixture's component held up by `reg_covar` alone) is
a spurious maximum of the likelihood, whose BIC and held-out score mean nothing; like mclust, which
reports no BIC for a singular fit, select never chooses one while another candidate is sound.

The chosen candidate (by `criterion`) is then fitted again on the whole training split, and that fit is
the run that `lvmjax evaluate`, `sample`, `impute` and `plot` read (`save_selection`: the run directory,
with the candidates' table as RUN_DIR/selection.json and their figure as RUN_DIR/selection.png).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lvmjax import plots
from lvmjax.app import registry
from lvmjax.app.config import FitConfig
from lvmjax.app.rundir import save_run
from lvmjax.app.spec import EvaluationSettings, FitResult
from lvmjax.data import Dataset
from lvmjax.errors import RunError

__all__ = [
    "CRITERIA",
    "SELECTION_FIGURE",
    "SELECTION_FILE",
    "Candidate",
    "Selection",
    "candidate_configs",
    "report",
    "save_selection",
    "select",
    "selection_figure",
    "validation_split",
]

CRITERIA = ("bic", "heldout")
SELECTION_FILE, SELECTION_FIGURE = "selection.json", "selection.png"


class Candidate(NamedTuple):
    """One candidate's scores."""

    config: FitConfig
    bic: float  # over the fitting part
    heldout_log_likelihood: float  # mean log p(x) per validation datapoint
    train_log_likelihood: float  # mean log p(x) per fitting datapoint
    collapsed_components: int | None  # for the Gaussian mixtures; None where it does not apply
    seconds: float


class Selection(NamedTuple):
    """The candidates, the chosen one, and its fit on the whole training split."""

    candidates: list[Candidate]
    chosen: int  # index into candidates
    criterion: str
    result: FitResult  # of candidates[chosen].config, on the whole training split
    num_fit: int  # datapoints the candidates were fitted on
    num_validation: int  # and scored on


def candidate_configs(base: FitConfig, sizes: Sequence[int], covariances: Sequence[str] | None) -> list[FitConfig]:
    """`base` at every size (the field `base.spec.selection`) and, for a model with a covariance option,
    every covariance type: sizes vary fastest within each covariance type."""
    spec = base.spec
    if spec.selection is None:
        takes_part = ", ".join(other.name for other in registry.specs() if other.selection is not None)
        reason = spec.reasons.get("select", f"{spec.name} has no exact log p(x) to score candidates by")
        raise RunError(f"{reason.rstrip('.')}; select compares candidates of {takes_part}.")
    if not sizes:
        raise RunError(f"{{{spec.selection}}} must list at least one candidate.")
    if covariances is not None and "covariance" not in spec.options:
        raise RunError(f"{spec.name} has no {{covariance}} option; list only {{{spec.selection}}}.")
    covariance_types = list(covariances) if covariances else [base.covariance]
    if not covariance_types:
        raise RunError("{covariance} must list at least one covariance type.")
    field = spec.selection
    return [
        dataclasses.replace(base, covariance=covariance, **{field: size})  # type: ignore[arg-type]
        for covariance in covariance_types
        for size in sizes
    ]


def validation_split(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """The training split divided by `seed` into a fitting part (as `train`) and a validation part (as
    `test`); the test split is left out."""
    if dataset.train_lengths is not None:
        raise RunError("model selection needs independent rows; a sequence dataset cannot be divided this way.")
    num_train = dataset.train.shape[0]
    num_validation = round(fraction * num_train)
    if not 1 <= num_validation < num_train:
        raise RunError(
            f"{{validation_fraction}} {fraction} of the {num_train} training datapoints leaves no validation "
            "or no fitting datapoints; choose another."
        )
    order = np.random.default_rng(seed).permutation(num_train)
    fit_rows, validation_rows = np.sort(order[num_validation:]), np.sort(order[:num_validation])
    labels = dataset.train_labels
    return dataset._replace(
        train=dataset.train[fit_rows],
        test=dataset.train[validation_rows],
        valid=None,
        train_labels=None if labels is None else labels[fit_rows],
        test_labels=None if labels is None else labels[validation_rows],
    )


def select(
    configs: Sequence[FitConfig],
    dataset: Dataset,
    criterion: str = "bic",
    validation_fraction: float = 0.2,
    progress: Callable[[int, int, Candidate], None] | None = None,
) -> Selection:
    """Fits and scores every candidate of `configs` (see the module's docstring) and refits the chosen one.

    Args:
      configs: the candidates (`candidate_configs`), one model.
      dataset: the data, as `load_data` gives it for the first config.
      criterion: "bic" (lowest BIC) or "heldout" (highest held-out log-likelihood).
      validation_fraction: the share of the training split held out for validation.
      progress: `progress(done, total, candidate)` after each candidate.

    Returns:
      The `Selection`. Every candidate is checked against the data's size before any is fitted.
    """
    if criterion not in CRITERIA:
        raise RunError(f"{{criterion}} must be one of {', '.join(CRITERIA)}, got {criterion!r}.")
    split = validation_split(dataset, validation_fraction, configs[0].seed)
    num_fit, data_dim = split.train.shape
    for config in configs:  # every candidate fits, or nothing is fitted
        config.spec.check(config, num_fit, data_dim)
    settings = EvaluationSettings(num_samples=1, refine_steps=0, seed=0, per_datapoint=False, progress=None)
    candidates = []
    for done, config in enumerate(configs, start=1):
        result = config.spec.fit(config, split)
        report = config.spec.evaluate(config, result.params, split, settings)
        train_log_likelihood = -report["train_nll"]
        heldout = -report["test_nll"]
        if not (math.isfinite(heldout) and math.isfinite(train_log_likelihood)):
            raise RunError(f"{config.spec.name} with {config.spec.size(config)} gave a non-finite log-likelihood.")
        candidate = Candidate(
            config, report["bic"], heldout, train_log_likelihood, report.get("collapsed_components"), result.seconds
        )
        candidates.append(candidate)
        if progress is not None:
            progress(done, len(configs), candidate)
    sound = np.array([not candidate.collapsed_components for candidate in candidates])
    if not sound.any():
        raise RunError(
            "every candidate has a collapsed component (a spurious maximum of the likelihood); select with "
            "{prior} conjugate, a larger {reg_covar}, or smaller sizes."
        )
    if criterion == "bic":
        scores = np.array([-candidate.bic for candidate in candidates])
    else:
        scores = np.array([candidate.heldout_log_likelihood for candidate in candidates])
    chosen = int(np.argmax(np.where(sound, scores, -np.inf)))
    result = candidates[chosen].config.spec.fit(candidates[chosen].config, dataset)
    return Selection(candidates, chosen, criterion, result, num_fit, split.test.shape[0])


def _size_field(candidate: Candidate) -> str:
    """The `FitConfig` field that sizes the candidate's model (`ModelSpec.selection`)."""
    field = candidate.config.spec.selection
    assert field is not None, "candidate_configs admits only models with a size to select"
    return field


def _describe(candidate: Candidate) -> dict:
    """A candidate's settings: its size, and its covariance type where the model has one."""
    spec = candidate.config.spec
    described: dict = {_size_field(candidate): getattr(candidate.config, _size_field(candidate))}
    if "covariance" in spec.options:
        described["covariance"] = candidate.config.covariance
    return described


def report(selection: Selection) -> dict:
    """The selection as JSON: every candidate's scores, then the chosen one's settings (the last key)."""
    spec = selection.candidates[0].config.spec
    rows = [
        _describe(candidate)
        | {
            "bic": candidate.bic,
            "heldout_log_likelihood": candidate.heldout_log_likelihood,
            "train_log_likelihood": candidate.train_log_likelihood,
            "collapsed_components": candidate.collapsed_components,
            "seconds": candidate.seconds,
            "chosen": index == selection.chosen,
        }
        for index, candidate in enumerate(selection.candidates)
    ]
    return {
        "model": spec.name,
        "criterion": selection.criterion,
        "num_fit": selection.num_fit,
        "num_validation": selection.num_validation,
        "candidates": rows,
        "chosen": _describe(selection.candidates[selection.chosen]),
    }


def selection_figure(selection: Selection):
    """BIC and held-out log-likelihood of every candidate against its size, one line per covariance type."""
    spec = selection.candidates[0].config.spec
    field = _size_field(selection.candidates[0])
    family_of = (lambda config: config.covariance) if "covariance" in spec.options else (lambda config: spec.name)
    sizes: dict[str, list[int]] = {}
    bic: dict[str, list[float]] = {}
    heldout: dict[str, list[float]] = {}
    collapsed: dict[str, list[bool]] = {}
    for candidate in selection.candidates:
        family = family_of(candidate.config)
        sizes.setdefault(family, []).append(getattr(candidate.config, field))
        bic.setdefault(family, []).append(candidate.bic)
        heldout.setdefault(family, []).append(candidate.heldout_log_likelihood)
        collapsed.setdefault(family, []).append(bool(candidate.collapsed_components))
    chosen = selection.candidates[selection.chosen]
    settings = ", ".join(f"{name} {value}" for name, value in _describe(chosen).items())
    title = (
        f"{spec.name}: {selection.num_fit} fitting, {selection.num_validation} validation datapoints; "
        f"chosen by {selection.criterion}: {settings}"
    )
    size = getattr(chosen.config, field)
    return plots.model_selection(
        sizes, bic, heldout, (family_of(chosen.config), size), field, title, excluded=collapsed
    )


def save_selection(run_dir: str | os.PathLike, selection: Selection) -> Path:
    """The chosen fit as a run directory (`rundir.save_run`), with RUN_DIR/selection.json (`report`) and
    RUN_DIR/selection.png (`selection_figure`); written whole or not at all."""

    def extra(staging: Path) -> None:
        (staging / SELECTION_FILE).write_text(json.dumps(report(selection), indent=2) + "\n")
        plots.save(selection_figure(selection), staging / SELECTION_FIGURE)

    chosen = selection.candidates[selection.chosen].config
    return save_run(run_dir, chosen, selection.result, extra)
