"""`lvmjax fit` and `lvmjax evaluate` of the neural models: runs, their files, and one-line errors for bad input.

The classical models' runs are in test_cli_classical.py."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvmjax import app, applications, cli
from lvmjax.app import batches, registry
from lvmjax.app import figures as app_figures
from lvmjax.app.specs import neural
from lvmjax.errors import RunError

NEURAL_MODELS = tuple(spec.name for spec in registry.specs() if spec.networks is not None)

pytestmark = pytest.mark.standard_promotion

TINY = ["--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--batch-size", "100", "--quiet"]


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One tiny run of every model on digits, fitted once for the module."""
    root = tmp_path_factory.mktemp("runs")
    for model in NEURAL_MODELS:
        assert cli.main(["fit", model, "--data", "digits", "--out", str(root / model), *TINY]) == 0
    return root


@pytest.mark.parametrize("model", NEURAL_MODELS)
def test_fit_writes_config_metrics_and_checkpoint(fitted, model):
    run_dir = fitted / model
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == model and config["data"] == "digits" and config["epochs"] == 2
    assert config["data_dim"] == 64 and config["image_shape"] == [8, 8]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in metrics] == [1, 2]
    assert all(np.isfinite(entry["train_objective"]) for entry in metrics)
    assert (run_dir / "checkpoint").is_dir()
    assert not list(fitted.glob(f".{model}.partial-*"))  # the staging directory was renamed


@pytest.mark.parametrize("model", NEURAL_MODELS)
def test_evaluate_json_has_the_stated_keys(fitted, model, capsys):
    code, out, err = run_cli(capsys, "evaluate", str(fitted / model), "--num-samples", "50", "--json")
    assert code == 0
    report = json.loads(out)  # ONE JSON object on stdout
    # Progress on stderr, a line per batch of test images when it is not a terminal.
    assert err.splitlines() == [f"evaluate {fitted / model} test batch 1/1"]  # the ae's reconstructions too
    assert {"model", "dataset", "num_test", "test_elbo", "test_nll", "num_samples"} <= report.keys()
    assert report["model"] == model and report["dataset"] == "digits"
    assert report["num_test"] == 297 and report["num_samples"] == 50
    if model == "ae":
        assert report["test_elbo"] is None and report["test_nll"] is None
        assert report["test_reconstruction_nll"] > 0
        return
    # A negative log-likelihood is above the negative ELBO's lower bound on it... and below it:
    # −log p(x) <= −ELBO, for an estimate with K = 50 up to its error.
    assert 0 < report["test_nll"] <= -report["test_elbo"] + 0.05
    if model in ("vae", "iwae"):
        assert report["amortization_gap"] >= 0
        np.testing.assert_allclose(
            report["approximation_gap"] + report["amortization_gap"],
            -report["test_nll"] - report["test_elbo"],
            rtol=1e-4,
            atol=1e-4,
        )


def test_evaluation_runs_in_equal_test_batches_with_progress(fitted, monkeypatch):
    """297 test images in batches of at most 200: two of 149, the second padded by one row that is dropped;
    batch b draws with fold_in(key, b)."""
    run = app.load_run(fitted / "vae")
    dataset = app.load_data(run.config)
    monkeypatch.setattr(batches, "EVALUATION_BATCH", 200)
    calls = []
    report = app.evaluate(
        run.config,
        run.params,
        dataset,
        num_samples=50,
        refine_steps=5,
        per_datapoint=True,
        progress=lambda *args: calls.append(args),
    )
    assert calls == [(0, 2), (1, 2), (2, 2)]
    assert report["num_test"] == 297 and len(report["test_log_marginals"]) == 297
    test = jnp.asarray(dataset.test)
    padded = jnp.concatenate([test[149:], test[149:150]])
    second = neural._gap_report(
        jax.random.fold_in(jax.random.PRNGKey(0), 1), run.vae, run.params, padded, 5, 50, batches.chunk_size(50)
    )
    np.testing.assert_array_equal(report["test_log_marginals"][149:], np.asarray(second.log_marginal[:148]))


def test_evaluate_prints_a_table_without_json(fitted, capsys):
    code, out, _ = run_cli(capsys, "evaluate", str(fitted / "ae"), "--num-samples", "10")
    assert code == 0 and "test_reconstruction_nll" in out


def one_line_error(capsys, *argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_sample_impute_and_plot_write_their_figures_and_arrays(fitted, tmp_path, capsys):
    run_dir = fitted / "vae"
    code, out, err = run_cli(capsys, "sample", str(run_dir), "-n", "12", "--out", str(tmp_path / "s.png"))
    assert code == 0, err
    images = np.load(tmp_path / "s.npy")
    assert images.shape == (12, 64) and images.min() >= 0 and images.max() <= 1
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG_SIGNATURE
    assert out.startswith("12 images generated by vae")

    code, out, err = run_cli(
        capsys, "impute", str(run_dir), "-n", "20", "--num-samples", "50", "--out", str(tmp_path / "i.png")
    )
    assert code == 0, err
    imputed = np.load(tmp_path / "i.npy")
    truth = app.load_data(app.load_run(run_dir).config).test[:20]
    observed = applications.observed_mask("top-half", 64, (8, 8))
    np.testing.assert_array_equal(imputed[:, observed], truth[:, observed])  # what was seen stays
    assert imputed.min() >= 0 and imputed.max() <= 1  # pixel probabilities where missing
    assert f"mean squared error {app_figures.squared_error(imputed, truth, observed):.4f}" in out
    assert (tmp_path / "i.png").read_bytes()[:8] == PNG_SIGNATURE

    code, out, err = run_cli(capsys, "plot", str(run_dir), "--out", str(tmp_path / "figures"))
    assert code == 0, err
    written = sorted(path.name for path in (tmp_path / "figures").iterdir())
    assert written == sorted(Path(line).name for line in out.split())
    assert written == [
        "imputation.png",
        "interpolations.png",
        "latent_space.png",
        "reconstructions.png",
        "samples.png",
        "training.png",
    ]


def test_sample_impute_and_plot_refuse_what_they_cannot_do_and_keep_existing_files(fitted, tmp_path, capsys):
    one_line_error(capsys, "sample", str(fitted / "ae"), message="ae is a deterministic autoencoder")
    one_line_error(
        capsys,
        "impute",
        str(fitted / "ae"),
        "--out",
        str(tmp_path / "a.png"),
        message="ae is a deterministic autoencoder",
    )
    one_line_error(
        capsys, "sample", str(fitted / "vae"), "--out", str(tmp_path / "s.jpg"), message="--out must name a .png file"
    )
    one_line_error(capsys, "impute", str(fitted / "vae"), "--mask", "upper", message="invalid choice: 'upper'")
    one_line_error(capsys, "sample", str(tmp_path), message="is not a run directory")
    kept = tmp_path / "s.npy"
    kept.write_bytes(b"keep me")
    one_line_error(
        capsys, "sample", str(fitted / "vae"), "--out", str(tmp_path / "s.png"), message="s.npy already exists"
    )
    assert kept.read_bytes() == b"keep me" and not (tmp_path / "s.png").exists()
    assert (
        run_cli(capsys, "sample", str(fitted / "vae"), "-n", "3", "--out", str(tmp_path / "s.png"), "--overwrite")[0]
        == 0
    )
    assert np.load(kept).shape == (3, 64)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "notes.txt").write_text("keep me")
    one_line_error(capsys, "plot", str(fitted / "vae"), "--out", str(tmp_path / "figures"), message="already holds")
    assert [path.name for path in (tmp_path / "figures").iterdir()] == ["notes.txt"]
    assert sorted(path.name for path in (tmp_path).iterdir()) == ["figures", "s.npy", "s.png"]


def test_bad_command_lines_get_one_line_errors(tmp_path, capsys):
    out = str(tmp_path / "run")
    one_line_error(capsys, "fit", "gan", "--out", out, message="invalid choice: 'gan'")
    one_line_error(capsys, "fit", "vae", "--data", "cifar", "--out", out, message="unknown dataset 'cifar'")
    one_line_error(
        capsys,
        "fit",
        "vae",
        "--data",
        "binarized-mnist",
        "--out",
        out,
        message="binarized-mnist needs --data-dir, a directory",
    )
    one_line_error(capsys, "fit", "vae", "--epochs", "0", "--out", out, message="--epochs: must be at least 1, got 0")
    one_line_error(
        capsys, "fit", "vae", "--batch-size", "-5", "--out", out, message="--batch-size: must be at least 1, got -5"
    )
    one_line_error(capsys, "fit", "vae", "--lr", "abc", "--out", out, message="--lr: expected a number")
    one_line_error(capsys, "fit", "vae", message="the following arguments are required: --out")
    one_line_error(capsys, "evaluate", str(tmp_path), message="is not a run directory")
    assert not (tmp_path / "run").exists()


def test_a_wrong_file_format_gets_one_line(tmp_path, capsys):
    (tmp_path / "binarized_mnist.npz").write_bytes(b"not a zip file")
    one_line_error(
        capsys,
        "fit",
        "vae",
        "--data",
        "binarized-mnist",
        "--data-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "run"),
        message="binarized_mnist.npz",
    )


def test_non_binary_data_is_refused_for_a_bernoulli_likelihood(tmp_path, capsys):
    rng = np.random.default_rng(0)
    arrays = {split: (rng.random((10, 784)) < 0.5).astype(np.uint8) for split in ("train", "valid", "test")}
    arrays["train"][0, 0] = 3
    np.savez(tmp_path / "binarized_mnist.npz", **arrays)
    one_line_error(
        capsys,
        "fit",
        "vae",
        "--data",
        "binarized-mnist",
        "--data-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "run"),
        message="not 0 or 1",
    )


def test_an_existing_run_dir_is_left_untouched(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me")
    one_line_error(capsys, "fit", "vae", "--out", str(run_dir), *TINY, message="already exists")
    assert [path.name for path in run_dir.iterdir()] == ["notes.txt"]
    assert (run_dir / "notes.txt").read_text() == "keep me"


def test_evaluating_data_of_the_wrong_dimension_is_refused(fitted, tmp_path):
    run_dir = tmp_path / "copy"
    __import__("shutil").copytree(fitted / "vae", run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["data_dim"], config["image_shape"] = 100, None  # as if fitted to 100-dimensional data, not images
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match=r"does not match config.json \(a vae model for 100-dimensional data"):
        app.evaluate_run(run_dir, num_samples=10)


def test_the_installed_command_exits_non_zero_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lvmjax", "fit", "vae", "--epochs", "0", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lvmjax fit: argument --epochs: must be at least 1, got 0 (see lvmjax fit --help)"
    ]


def test_help_explains_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--data",
        "--data-dir",
        "--out",
        "--epochs",
        "--batch-size",
        "--latent-dim",
        "--num-samples",
        "--lr",
        "--seed",
        "--hidden",
        "--architecture",
        "--quiet",
        "--components",
        "--covariance",
        "--max-iter",
        "--n-init",
        "--test-fraction",
    ):
        assert option in out
    assert "(default: 600)" in out and "(default: 0.001)" in out


SHARED_DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "binarized_mnist.npz").exists(), reason="../shared/data is absent")
def test_fit_on_binarized_mnist(tmp_path, capsys):
    code, _, err = run_cli(
        capsys,
        "fit",
        "vae",
        "--data",
        "binarized-mnist",
        "--data-dir",
        str(SHARED_DATA),
        "--out",
        str(tmp_path / "mnist"),
        "--epochs",
        "2",
        "--hidden",
        "32",
        "--latent-dim",
        "4",
        "--batch-size",
        "500",
        "--quiet",
    )
    assert code == 0, err
    config = json.loads((tmp_path / "mnist" / "config.json").read_text())
    assert config["data_dim"] == 784 and config["image_shape"] == [28, 28]
    lines = (tmp_path / "mnist" / "metrics.jsonl").read_text().splitlines()
    first, second = (json.loads(line)["train_objective"] for line in lines)
    assert first + 20 < second < 0, (first, second)  # the per-image ELBO climbs by tens of nats


def test_tour_refuses_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("keep me")
    one_line_error(capsys, "tour", "--out", str(tmp_path / "kept"), message="already exists")
    assert (tmp_path / "kept" / "notes.txt").read_text() == "keep me"
    one_line_error(capsys, "tour", "--data", "cifar", "--out", str(tmp_path / "t"), message="unknown dataset 'cifar'")
    assert not (tmp_path / "t").exists()


def test_a_bug_shows_its_traceback_and_asks_for_a_report(monkeypatch, tmp_path, capsys):
    """Only the library's own errors are user errors; anything else is a bug, shown in full."""

    def broken_fit(*args, **kwargs):
        raise ZeroDivisionError("a bug inside fit")

    monkeypatch.setattr(app, "fit", broken_fit)
    assert cli.main(["fit", "vae", "--data", "digits", "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug inside fit" in err
    assert "this is a bug in lvmjax, not a problem with your input; please report it" in err


def test_library_errors_name_arguments_in_python_and_flags_on_the_command_line(tmp_path, capsys):
    with pytest.raises(RunError, match=r"^batch_size 4096 is larger than the 1500 training datapoints\.$"):
        app.fit(app.FitConfig(model="vae", batch_size=4096))
    assert cli.main(["fit", "vae", "--batch-size", "4096", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == "lvmjax: error: --batch-size 4096 is larger than the 1500 training datapoints.\n"
    assert not (tmp_path / "run").exists()


def test_a_flow_posterior_and_a_vamp_prior_are_saved_and_honoured(tmp_path, capsys):
    run_dir = tmp_path / "iaf"
    flags = ["--posterior", "iaf", "--prior", "vamp", "--components", "7", "--flow-layers", "2"]
    schedule = ["--beta", "0.5", "--warmup-epochs", "1", "--free-bits", "0.05"]
    assert cli.main(["fit", "vae", "--data", "digits", "--out", str(run_dir), *flags, *schedule, *TINY]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["posterior"], config["prior"], config["components"], config["flow_layers"]) == ("iaf", "vamp", 7, 2)
    assert (config["beta"], config["warmup_epochs"], config["free_bits"], config["gradient"]) == (
        0.5,
        1,
        0.05,
        "reparam",
    )
    run = app.load_run(run_dir)  # read back with the networks of its config: 7 pseudo-inputs, 2 flow layers
    # (the evaluation of a flow run, its diagnostics included, is the tour's vae-flow row: test_tour.py)
    assert run.params["prior"]["pseudo_inputs"].shape == (7, 64) and len(run.params["flow"]) == 2
    code, _, _ = run_cli(capsys, "sample", str(run_dir), "--out", str(tmp_path / "samples.png"))
    assert code == 0 and np.load(tmp_path / "samples.npy").shape[1] == 64
    code, _, err = run_cli(capsys, "fit", "iwae", "--data", "digits", "--out", str(tmp_path / "x"), "--gradient", "stl")
    assert code == 2 and err.strip() == "lvmjax: error: --gradient of iwae must be one of reparam, dreg, got 'stl'."
    assert not (tmp_path / "x").exists()
