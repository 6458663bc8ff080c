"""The application layer: runs of the command line's models, fitted, saved, evaluated and drawn.

    config = FitConfig(model="vae", data="digits")
    result = fit(config)                        # trains; returns parameters and metrics
    save_run("runs/vae", config, result)        # config.json, metrics.jsonl, checkpoint/
    report = evaluate_run("runs/vae")           # test ELBO, test NLL, amortization gap

Every model is a `ModelSpec` in the `registry`; nothing here tests a model's name.
One module per job: `config` (the run's settings), `registry` and `specs/` (the
models), `datasets` (the data a run takes), `fitting`, `training_loop` (epochs and
checkpoints), `checkpoints` (orbax), `rundir` (the run directory, written whole or
not at all), `evaluation`, `batches`, `compiled` (shared batch programs) and
`figures` (what a saved run can show), `selection` (candidates compared by BIC and held-out
log-likelihood, the chosen one saved as a run).
"""

from lvmjax.app import registry
from lvmjax.app.checkpoints import Checkpoints
from lvmjax.app.config import FitConfig, check_config_against_data, check_mesh
from lvmjax.app.datasets import load_data
from lvmjax.app.evaluation import ESTIMATORS, evaluate, evaluate_run, load_run_data
from lvmjax.app.fitting import fit
from lvmjax.app.rundir import (
    check_new_run_dir,
    finish_run,
    load_run,
    read_history,
    resume_run,
    save_run,
    start_run,
)
from lvmjax.app.selection import CRITERIA, candidate_configs, save_selection, select
from lvmjax.app.spec import DataKind, EvaluationSettings, FitResult, ModelSpec, Run

__all__ = [
    "CRITERIA",
    "ESTIMATORS",
    "Checkpoints",
    "DataKind",
    "EvaluationSettings",
    "FitConfig",
    "FitResult",
    "ModelSpec",
    "Run",
    "candidate_configs",
    "check_config_against_data",
    "check_mesh",
    "check_new_run_dir",
    "evaluate",
    "evaluate_run",
    "finish_run",
    "fit",
    "load_data",
    "load_run",
    "load_run_data",
    "read_history",
    "registry",
    "resume_run",
    "save_run",
    "save_selection",
    "select",
    "start_run",
]
