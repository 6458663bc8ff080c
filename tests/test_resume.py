"""Checkpoints and --resume: an interrupted run, even one killed with SIGKILL, ends with the
parameters of an uninterrupted run, bitwise."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lvmjax import app, cli
from lvmjax.errors import RunError

pytestmark = pytest.mark.standard_promotion

OPTIONS = [
    "--epochs",
    "6",
    "--hidden",
    "16",
    "--latent-dim",
    "2",
    "--batch-size",
    "500",
    "--checkpoint-every",
    "2",
    "--quiet",
]


def fit_cli(out, *extra):
    return cli.main(["fit", "vae", "--out", str(out), *OPTIONS, *extra])


def assert_same_params(first, second):
    leaves = zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second), strict=True)
    for left, right in leaves:
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The run directory of the uninterrupted run."""
    out = tmp_path_factory.mktemp("runs") / "whole"
    assert fit_cli(out) == 0
    return out


@pytest.fixture(scope="module")
def uninterrupted(whole):
    return app.load_run(whole)


def test_a_finished_run_keeps_its_last_training_checkpoint(whole):
    run_dir = whole
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["6"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in metrics] == [1, 2, 3, 4, 5, 6]


def test_ctrl_c_keeps_the_last_checkpoint_and_resume_finishes_the_same_run(
    uninterrupted, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "interrupted"
    original = app.fit

    def interrupt_after_epoch_three(config, dataset, progress, checkpoints, mesh=None):
        def progress_then_stop(epoch, metrics):
            progress(epoch, metrics)
            if epoch == 3:
                raise KeyboardInterrupt

        return original(config, dataset, progress_then_stop, checkpoints, mesh)

    monkeypatch.setattr(app, "fit", interrupt_after_epoch_three)
    assert fit_cli(out) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"lvmjax: interrupted; {out} keeps its last checkpoint (epoch 2); repeat the command with --resume to continue"
    ]
    monkeypatch.setattr(app, "fit", original)
    with pytest.raises(RunError, match=r"unfinished \(it stopped after epoch 2\).*with resume\."):
        app.load_run(out)
    assert fit_cli(out, "--resume") == 0
    assert_same_params(app.load_run(out).params, uninterrupted.params)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in metrics] == [1, 2, 3, 4, 5, 6]


def test_sigkill_at_any_moment_leaves_a_readable_checkpoint(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "lvmjax", "fit", "vae", "--out", str(out), *OPTIONS]
    command[command.index("--checkpoint-every") + 1] = "1"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "3").is_dir():  # orbax renames a checkpoint into place when complete
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert not (out / "checkpoint").exists()  # unfinished
    assert fit_cli(out, "--resume", "--checkpoint-every", "1") == 0
    assert_same_params(app.load_run(out).params, uninterrupted.params)


def test_resume_refuses_what_it_cannot_continue(whole, tmp_path, capsys):
    assert fit_cli(whole, "--resume") == 2
    assert "is a finished run; there is nothing to resume" in capsys.readouterr().err
    out = tmp_path / "partial"
    app.start_run(
        out,
        app.FitConfig(model="vae", epochs=6, hidden=(16,), latent_dim=2, batch_size=500),
        app.load_data(app.FitConfig(model="vae")),
    )
    assert fit_cli(out, "--resume", "--lr", "0.01") == 2
    err = capsys.readouterr().err.strip()
    assert "--lr differs (saved 0.001, given 0.01); repeat the original command's settings with --resume" in err
    assert "\n" not in err
    assert fit_cli(tmp_path / "absent", "--resume") == 2
    assert "does not exist" in capsys.readouterr().err


def test_non_finite_steps_are_skipped_until_too_many_in_a_row_stop_the_run(tmp_path, capsys):
    """--lr 1e30: the first Adam step throws the weights to ±1e30, after which every objective is NaN.

    With the limit at one epoch's steps, epoch 1 skips all but its first step and is saved;
    epoch 2 reaches the limit, and the run stops with one line, leaving epoch 1's checkpoint.
    """
    steps = app.load_data(app.FitConfig(model="vae")).train.shape[0] // 500
    out = tmp_path / "diverged"
    diverging = ["--lr", "1e30", "--max-skipped-steps", str(steps), "--checkpoint-every", "1"]
    code = fit_cli(out, *diverging)
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "Traceback" not in error
    # epoch 1: one step applied, then steps − 1 skipped; epoch 2: all skipped, the limit reached within it
    assert (
        f"{2 * steps - 1} training steps in a row had a non-finite objective or gradient (NaN or inf) by the "
        f"end of epoch 2, so training stopped; lower --lr. {out} keeps its last checkpoint (epoch 1); fit again "
        "into a new --out."
    ) in error
    assert app.Checkpoints(out, every=1).latest_epoch() == 1
    # The checkpoint reads back: --resume continues from epoch 1 (its history carries the skips in a row)
    # and stops in epoch 2 with the same line.
    assert fit_cli(out, *diverging, "--resume") == 2
    assert capsys.readouterr().err.strip() == error
