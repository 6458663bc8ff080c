"""`lvmjax fit gmm|mob|fa|ppca` and `lvmjax evaluate`: exact test metrics, users' data files, bad input."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvmjax import app, applications, cli
from lvmjax.app import registry
from lvmjax.data import load_file
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian

CLASSICAL_MODELS = tuple(  # the sequence models (test_cli_hmm.py) take other data
    spec.name
    for spec in registry.specs()
    if spec.nll_method == "exact" and spec.data_kind is not app.DataKind.SEQUENCES
)

FAST = ["--max-iter", "25", "--quiet"]
LOG_MARGINALS = {
    "gmm": gaussian_mixture.log_marginal,
    "mob": bernoulli_mixture.log_marginal,
    "fa": linear_gaussian.log_marginal,
    "ppca": linear_gaussian.log_marginal,
}


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def mixture_rows(num_rows=300, seed=0):
    """Three well-separated Gaussian clusters in 3-D, with their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, num_rows)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 6.0, -1.0]])
    return centres[labels] + rng.normal(size=(num_rows, 3)), labels


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """One run of every classical model on digits, fitted once for the module."""
    root = tmp_path_factory.mktemp("classical")
    sizes = {
        "gmm": ["--components", "4", "--covariance", "diag"],
        "mob": ["--components", "5"],
        "fa": ["--latent-dim", "4"],
        "ppca": ["--latent-dim", "4"],
    }
    for model in CLASSICAL_MODELS:
        assert cli.main(["fit", model, "--out", str(root / model), *sizes[model], *FAST]) == 0
    return root


@pytest.mark.parametrize("model", CLASSICAL_MODELS)
def test_evaluate_reports_the_exact_test_nll(digits_runs, model, capsys):
    code, out, _ = run_cli(capsys, "evaluate", str(digits_runs / model), "--json")
    assert code == 0
    report = json.loads(out)
    assert {"model", "dataset", "num_test", "test_elbo", "test_nll", "test_nll_stderr", "bic"} <= report.keys()
    assert report["model"] == model and report["dataset"] == "digits" and report["num_test"] == 297
    assert report["test_nll_stderr"] == 0.0 and report["test_elbo"] == -report["test_nll"]
    # The same number, recomputed from the checkpoint and the data outside the run machinery.
    run = app.load_run(digits_runs / model)
    params = run.spec.model_params(run.params)
    test = jnp.asarray(app.load_data(run.config).test)
    expected = -float(jnp.mean(jax.jit(jax.vmap(LOG_MARGINALS[model], in_axes=(None, 0)))(params, test)))
    np.testing.assert_allclose(report["test_nll"], expected, rtol=1e-6)
    penalty = run.spec.num_free_parameters(run.config, 64) * np.log(1500)
    np.testing.assert_allclose(report["bic"], 2 * 1500 * report["train_nll"] + penalty, rtol=1e-6)
    if model in ("gmm", "mob"):
        assert sum(report["cluster_sizes"]) == 297
        assert report["adjusted_rand_index"] > 0.1  # clusters of digits share something with the digits


@pytest.mark.parametrize("model", ["gmm", "mob", "fa"])
def test_the_em_trace_never_decreases(digits_runs, model):
    lines = (digits_runs / model / "metrics.jsonl").read_text().splitlines()
    trace = np.array([json.loads(line)["train_objective"] for line in lines])
    assert 2 <= len(trace) <= 25
    assert np.all(np.diff(trace) >= -1e-4 * np.abs(trace[1:])), trace


def test_the_real_valued_models_see_dequantized_digits_and_mob_binary_ones(digits_runs):
    mob = app.load_data(app.load_run(digits_runs / "mob").config)
    gmm = app.load_data(app.load_run(digits_runs / "gmm").config)
    assert mob.binary and set(np.unique(mob.train)) == {0.0, 1.0}
    assert not gmm.binary and 0 <= gmm.train.min() and gmm.train.max() < 1
    # Each dequantized pixel falls in the 1/17-wide bin of its integer value, which the binarization thresholds at 8.
    np.testing.assert_array_equal(np.floor(gmm.train * 17) >= 8, mob.train == 1)


@pytest.mark.parametrize("suffix", [".csv"])  # every format's reading is in test_data.py
def test_a_users_file_is_split_with_the_seed_and_evaluated_from_anywhere(tmp_path, capsys, monkeypatch, suffix):
    rows, _ = mixture_rows()
    path = tmp_path / f"points{suffix}"
    if suffix == ".npy":
        np.save(path, rows)
    elif suffix == ".npz":
        np.savez(path, rows)
    else:
        np.savetxt(path, rows, delimiter=",", header="a,b,c", comments="")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(
        capsys, "fit", "gmm", "--data", path.name, "--components", "3", "--seed", "3", "--out", "run", *FAST
    )
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"] == str(path) and config["test_fraction"] == 0.2  # absolute, for evaluate
    monkeypatch.chdir(tmp_path.parent)
    code, out, _ = run_cli(capsys, "evaluate", str(tmp_path / "run"), "--json")
    report = json.loads(out)
    assert code == 0 and report["dataset"] == path.name and report["num_test"] == 60
    # The split is the permutation of the seed: the held-out rows are exactly those of load_file.
    split = load_file(path, 0.2, seed=3)
    np.testing.assert_array_equal(
        np.sort(split.test, axis=0),
        np.sort(rows[np.random.default_rng(3).permutation(300)[:60]].astype(np.float32), axis=0),
    )
    # Three separated clusters of unit variance with weights 1/3: the truth's NLL is about
    # 3/2 log(2πe) + log 3 = 5.36 nats, and 60 test points estimate it to ±0.16 (one standard error).
    assert abs(report["test_nll"] - 5.36) < 4 * 0.16

    # Rows without an image shape: imputation hides a random half of the entries, samples are an array.
    one_line_error(capsys, "impute", str(tmp_path / "run"), message="needs images")
    code, out, err = run_cli(
        capsys,
        "impute",
        str(tmp_path / "run"),
        "--mask",
        "random",
        "-n",
        "10",
        "--seed",
        "2",
        "--out",
        str(tmp_path / "imputed.png"),
    )
    assert code == 0, err
    assert not (tmp_path / "imputed.png").exists()
    run = app.load_run(tmp_path / "run")
    observed = applications.observed_mask("random", 3, key=jax.random.split(jax.random.PRNGKey(2))[0])
    expected = jax.vmap(
        lambda x: applications.impute_gaussian_mixture(run.spec.model_params(run.params), x, observed)[1]
    )(jnp.asarray(split.test[:10]))
    np.testing.assert_allclose(np.load(tmp_path / "imputed.npy"), expected, rtol=1e-5)
    code, out, err = run_cli(capsys, "sample", str(tmp_path / "run"), "-n", "7")
    assert code == 0 and out.startswith("7 datapoints generated by gmm") and "samples.png" not in out
    assert np.load(tmp_path / "run" / "samples.npy").shape == (7, 3)


def test_mixture_samples_are_prototypes_and_plot_shows_the_components(digits_runs, tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", str(digits_runs / "mob"), "-n", "40", "--out", str(tmp_path / "s.png"))
    assert code == 0, err
    prototypes = jax.nn.sigmoid(
        (lambda run: run.spec.model_params(run.params))(app.load_run(digits_runs / "mob")).probs_logits
    )
    distances = np.abs(np.load(tmp_path / "s.npy")[:, None] - np.asarray(prototypes)[None]).max(axis=2)
    assert distances.min(axis=1).max() < 1e-6
    code, _, err = run_cli(capsys, "plot", str(digits_runs / "gmm"), "--out", str(tmp_path / "figures"))
    assert code == 0, err
    assert sorted(path.name for path in (tmp_path / "figures").iterdir()) == [
        "components.png",
        "imputation.png",
        "samples.png",
        "training.png",
    ]


def test_bad_input_for_the_classical_models_gets_one_line(tmp_path, capsys):
    out = str(tmp_path / "run")
    rows, _ = mixture_rows(20)
    np.save(tmp_path / "real.npy", rows)
    binary = (rows > 0).astype(np.float32)
    np.save(tmp_path / "binary.npy", binary)
    constant = rows.copy()
    constant[:, 1] = 2.0
    np.save(tmp_path / "constant.npy", constant)
    with_nan = rows.copy()
    with_nan[4, 2] = np.nan
    np.save(tmp_path / "nan.npy", with_nan)
    one_line_error(
        capsys,
        "fit",
        "gmm",
        "--data",
        "binarized-mnist",
        "--out",
        out,
        message="binarized-mnist has only the values 0 and 1",
    )
    one_line_error(
        capsys,
        "fit",
        "gmm",
        "--data",
        str(tmp_path / "binary.npy"),
        "--out",
        out,
        message="use a binary model (vae, iwae, ae, svi, mob)",
    )
    one_line_error(capsys, "fit", "mob", "--data", str(tmp_path / "real.npy"), "--out", out, message="not 0 or 1")
    one_line_error(
        capsys,
        "fit",
        "gmm",
        "--data",
        str(tmp_path / "real.npy"),
        "--components",
        "17",
        "--out",
        out,
        message="components must be between 1 and the number of training datapoints (16)",
    )
    one_line_error(
        capsys,
        "fit",
        "fa",
        "--data",
        str(tmp_path / "constant.npy"),
        "--latent-dim",
        "1",
        "--out",
        out,
        message="column 1 is constant",
    )
    one_line_error(
        capsys,
        "fit",
        "ppca",
        "--data",
        str(tmp_path / "real.npy"),
        "--latent-dim",
        "3",
        "--out",
        out,
        message="latent-dim 3 must be below the data dimension D=3",
    )
    one_line_error(
        capsys,
        "fit",
        "gmm",
        "--data",
        str(tmp_path / "nan.npy"),
        "--out",
        out,
        message="NaN or infinite (the first in row 4, column 2)",
    )
    one_line_error(
        capsys, "fit", "gmm", "--data", str(tmp_path / "missing.csv"), "--out", out, message="does not exist"
    )
    one_line_error(
        capsys,
        "fit",
        "gmm",
        "--data",
        str(tmp_path / "real.npy"),
        "--test-fraction",
        "1.5",
        "--out",
        out,
        message="--test-fraction: must be strictly between 0 and 1",
    )
    one_line_error(capsys, "fit", "gmm", "--covariance", "tied", "--out", out, message="invalid choice: 'tied'")
    assert not (tmp_path / "run").exists()


def test_factor_analysis_below_float32_resolution_is_refused_and_fitted_in_float64(tmp_path, capsys):
    """scikit-learn's wine (13 unscaled features, variances from 0.01 to 1e5): in float32 the data's covariance
    cannot resolve the fitted noise variances, so `fit` refuses to report its log-likelihood (exit 2, nothing
    written) and names the cure; with --precision float64 the run's log-likelihood is scipy's, in float64."""
    from scipy.stats import multivariate_normal
    from sklearn.datasets import load_wine

    np.save(tmp_path / "wine.npy", load_wine().data)
    argv = ["fit", "fa", "--data", str(tmp_path / "wine.npy"), "--latent-dim", "2", "--quiet"]
    one_line_error(
        capsys,
        *argv,
        "--out",
        str(tmp_path / "float32"),
        message="is rounding noise (off by up to 13.7 nats per datapoint) and nothing was saved; fit again "
        "with --precision float64.",
    )
    assert not (tmp_path / "float32").exists()
    assert cli.main([*argv, "--out", str(tmp_path / "float64"), "--precision", "float64"]) == 0
    run = app.load_run(tmp_path / "float64")
    assert run.config.precision == "float64" and run.params["weight"].dtype == np.float64
    code, out, _ = run_cli(capsys, "evaluate", str(tmp_path / "float64"), "--json")
    report = json.loads(out)
    weight, bias, noise_variance = (np.asarray(run.params[name]) for name in ("weight", "bias", "noise_variance"))
    train = app.load_data(run.config).train.astype(np.float64)
    expected = -np.mean(multivariate_normal(bias, weight @ weight.T + np.diag(noise_variance)).logpdf(train))
    assert code == 0 and report["train_nll"] == pytest.approx(expected, rel=1e-9)
