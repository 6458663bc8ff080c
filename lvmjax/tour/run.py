"""`run_tour`: the tour's stages in order, their progress, and the report directory written whole.

The directory is written by `app.rundir.write_dir`, the one atomic create-or-replace of
the application layer: everything goes into a staging sibling renamed into place at
the end. Which directories the tour may take (`_check_out_dir`) is the tour's policy:
an empty one, or with `overwrite` an earlier tour's report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from lvmjax import __version__, app
from lvmjax import data as data_lib
from lvmjax.app.rundir import write_dir
from lvmjax.errors import RunError
from lvmjax.tour import experiments
from lvmjax.tour.experiments import ANOMALIES, FULL, LATENT, QUICK, SEQUENCE_MODEL, TOPIC_MODELS, TOUR_MODELS
from lvmjax.tour.figures import FIGURES, FIGURES_DIR, draw_figures
from lvmjax.tour.html import render_html
from lvmjax.tour.machine import load_average, machine_info
from lvmjax.tour.markdown import jsonable, render_markdown, report_blocks

__all__ = ["Progress", "run_tour"]

Progress = Callable[[str, int, int, str], None]  # progress(stage, done, total, status)


def run_tour(
    out_dir: str | os.PathLike,
    data: str = "digits",
    quick: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
    data_dir: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Fits, evaluates and draws every model of the tour, and writes the report to `out_dir`.

    Args:
      out_dir: the directory to create: report.html, report.md, metrics.json and
        figures/*.png. It must not exist (or be an empty directory); everything is
        written to a temporary sibling renamed into place at the end.
      data: the dataset; the tour needs binary and real-valued versions of an image
        dataset, which only "digits" has.
      quick: the `QUICK` budgets (tiny epochs and K) instead of `FULL`; the report has
        the same structure, its numbers are only a smoke test.
      seed: of every model and every draw.
      progress: `progress(stage, done, total, status)`, called as each stage starts,
        advances (training epochs included) and ends.
      data_dir: where the dataset's files are (unused by digits).
      overwrite: replace an existing out_dir if it holds an earlier tour's report
        (its metrics.json says so); only once the new report is complete.

    Returns:
      The metrics, as written to metrics.json.

    Raises:
      RunError: for an existing out_dir or a dataset the tour cannot show.
      DataError: for an unknown dataset.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir).absolute()
    _check_out_dir(out_dir, overwrite)
    _check_data(data)
    settings = QUICK if quick else FULL
    stages = _Stages(progress)
    load_average_start = load_average()

    configs = experiments.fit_configs(data, data_dir, seed, settings)
    with stages("load data") as advance:
        datasets = experiments.load_datasets(configs, advance)
    binary = datasets[LATENT]

    fits = {}
    for name in TOUR_MODELS:
        config = configs[name]
        spec = config.spec
        with stages(f"fit {name}", config.epochs if spec.checkpointed else 1) as advance:
            on_epoch: Callable[[int, dict], None] | None
            if spec.checkpointed:

                def on_epoch(epoch, entry, advance=advance):
                    advance(epoch, f"objective {entry['train_objective']:.2f}")
            else:
                advance(0, f"{spec.history_unit}s")
                on_epoch = None
            fits[name] = app.fit(config, datasets[name], on_epoch)
    runs = {name: experiments.make_run(configs[name], fits[name]) for name in TOUR_MODELS}

    with stages("evaluate", len(TOUR_MODELS) + 1) as advance:
        evaluations = {}
        for done, name in enumerate(TOUR_MODELS):
            advance(done, name)
            evaluations[name] = app.evaluate(
                configs[name],
                fits[name].params,
                datasets[name],
                settings.nll_samples,
                settings.refine_steps,
                seed,
                per_datapoint=True,
            )
        advance(len(TOUR_MODELS), "refinement time")
        refine_seconds = experiments.time_refinement(runs["vae"], datasets["vae"].test, settings.refine_steps, seed)
    models = experiments.model_metrics(fits, evaluations, refine_seconds, settings.refine_steps)

    sequence_configs = experiments.sequence_configs(seed, settings)
    with stages(f"fit and evaluate {SEQUENCE_MODEL} (nile)", len(sequence_configs)) as advance:
        nile = app.load_data(sequence_configs[SEQUENCE_MODEL])
        for done, (name, config) in enumerate(sequence_configs.items()):
            advance(done, f"{name}, {config.states} states")
            fits[name] = app.fit(config, nile)
            runs[name] = experiments.make_run(config, fits[name])
            evaluations[name] = app.evaluate(config, fits[name].params, nile, per_datapoint=True)
        datasets[SEQUENCE_MODEL] = nile
        sequences = experiments.sequence_story(runs, fits, evaluations, nile)
    models[SEQUENCE_MODEL] = sequences["entry"]
    configs |= sequence_configs

    topic_configs = experiments.topic_configs(seed, settings)
    with stages(
        f"fit and evaluate {', '.join(TOPIC_MODELS)} ({experiments.TOPIC_DATA})", 2 * len(topic_configs)
    ) as advance:
        corpus = app.load_data(topic_configs[TOPIC_MODELS[0]])
        for done, (name, config) in enumerate(topic_configs.items()):
            advance(2 * done, f"fit {name}, {config.topics} topics")
            fits[name] = app.fit(config, corpus)
            runs[name] = experiments.make_run(config, fits[name])
            advance(2 * done + 1, f"evaluate {name}")
            evaluations[name] = app.evaluate(config, fits[name].params, corpus, seed=seed)
        datasets[TOPIC_MODELS[0]] = corpus
        topic_story = experiments.topic_story(fits, evaluations, corpus)
    configs |= topic_configs

    with stages("estimators versus K", len(settings.estimator_samples)) as advance:
        estimators = experiments.estimator_comparison(runs["vae"], datasets["vae"].test, settings, seed, advance)

    with stages("AIS, BDMC and NUTS", len(settings.ais_steps) + 3) as advance:
        gold = experiments.gold_standard(runs["vae"], datasets["vae"].test, settings, seed, advance)

    with stages("imputation", len(experiments.IMPUTED)) as advance:
        imputation = experiments.imputation(runs, datasets, settings, seed, advance)

    with stages("latent space"):
        latent = experiments.latent_space(runs[LATENT], datasets[LATENT])

    anomalies = {
        name: experiments.least_likely(evaluations[name]["test_log_marginals"], datasets[name].test_labels)
        for name in ANOMALIES
    }

    report: dict = {}

    def fill(staging: Path) -> None:
        with stages("figures", len(FIGURES)) as advance:
            captions = draw_figures(
                staging / FIGURES_DIR,
                runs,
                fits,
                datasets,
                estimators,
                imputation,
                latent,
                anomalies,
                seed,
                advance,
                gold,
            )
        metrics = {
            "tour": {
                "lvmjax": __version__,
                "data": binary.name,
                "quick": quick,
                "seed": seed,
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "num_train": int(binary.train.shape[0]),
                "num_test": int(binary.test.shape[0]),
            },
            "machine": machine_info() | {"load_average_start": load_average_start},
            "settings": dataclasses.asdict(settings)
            | {"configs": {name: dataclasses.asdict(config) for name, config in configs.items()}},
            "models": models,
            "sequences": sequences["story"],
            "topics": topic_story,
            "estimators": estimators,
            "gold_standard": gold["metrics"],
            "imputation": imputation["metrics"],
            "latent_space": latent["metrics"],
            "anomalies": anomalies,
            "figures": {name: f"{FIGURES_DIR}/{name}.png" for name in captions},
            "stages": {},
        }
        with stages("report", 3) as advance:
            metrics["stages"] = dict(stages.seconds)
            metrics["machine"]["load_average_end"] = load_average()
            metrics["total_seconds"] = time.perf_counter() - started
            blocks = report_blocks(metrics, captions)
            (staging / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
            advance(1, "report.md")
            (staging / "report.html").write_text(render_html(blocks, staging), encoding="utf-8")
            advance(2, "report.html")
        metrics["stages"] = dict(stages.seconds)
        report["metrics"] = jsonable(metrics)
        (staging / "metrics.json").write_text(json.dumps(report["metrics"], indent=2, allow_nan=False) + "\n")
        _check_out_dir(out_dir, overwrite)  # nothing appeared there while the tour ran

    write_dir(out_dir, fill, replace=overwrite)
    return report["metrics"]


# --- Input checks ------------------------------------------------------------------------


def _check_out_dir(out_dir: Path, overwrite: bool = False) -> None:
    """Refuses an `out_dir` that the tour may not take: anything but an empty directory, or with
    `overwrite` an earlier tour's report."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        return  # an empty directory is replaced by the final rename
    if overwrite and out_dir.is_dir():
        if _is_tour_report(out_dir):
            return
        raise RunError(
            f"{out_dir} is not the report of an earlier tour (it has no tour metrics.json); "
            "{overwrite} replaces only those, so choose a new {out_dir} (nothing in it was changed)."
        )
    if out_dir.exists():
        kind = "directory" if out_dir.is_dir() else "file"
        raise RunError(
            f"{out_dir} already exists (a non-empty {kind}); choose a new {{out_dir}}, or "
            "{overwrite} to replace an earlier tour's report (nothing in it was changed)."
        )


def _is_tour_report(directory: Path) -> bool:
    try:
        return "tour" in json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def _check_data(data: str) -> None:
    if data == "digits":
        return
    if data not in data_lib.DATASETS and Path(data).suffix.lower() not in data_lib.FILE_SUFFIXES:
        data_lib.load_dataset(data)  # raises the DataError that names the known datasets
    raise RunError(
        f"the tour needs an image dataset with a binary and a real-valued version, and only "
        f"digits has both ({data!r} has no real-valued version or no image shape); use "
        "'lvmjax fit' for other data."
    )


# --- Stages --------------------------------------------------------------------------------


class _Stages:
    """Runs named stages, reporting progress and keeping the wall-clock seconds of each."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, total: int = 1):
        def advance(done: int, status: str = "") -> None:
            if self.progress is not None:
                self.progress(name, done, total, status)

        start = time.perf_counter()
        advance(0, "started")
        yield advance
        self.seconds[name] = time.perf_counter() - start
        advance(total, f"done in {self.seconds[name]:.1f}s")
