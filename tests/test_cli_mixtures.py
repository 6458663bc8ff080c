"""Mixtures a statistician can trust from the command line: collapsed components flagged, --reg-covar and
--prior conjugate, and `lvmjax select` choosing a model's size by BIC and held-out log-likelihood."""

import json

import numpy as np
import pytest

from lvmjax import cli

FAST = ["--max-iter", "40", "--quiet"]


def run_cli(capsys, *argv):
    code = cli.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "", (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def repeated_point(tmp_path_factory):
    """Two Gaussian clusters in 3-D and one point far from both, repeated 6 times: maximum-likelihood EM from
    a k-means++ start puts a component on the copies, its variance held up by reg_covar alone."""
    rng = np.random.default_rng(0)
    repeated = np.repeat(np.array([[-6.0, 5.0, -4.0]]), 6, axis=0)
    data = np.concatenate([rng.normal(size=(200, 3)), rng.normal(size=(150, 3)) + 4.0, repeated])
    path = tmp_path_factory.mktemp("data") / "repeated.npy"
    np.save(path, data.astype(np.float32))
    return path


@pytest.fixture(scope="module")
def four_clusters(tmp_path_factory):
    """Four well-separated Gaussian clusters in 6-D, 500 rows: a fifth full-covariance component costs 28
    parameters, about 28 / (2 x 320) = 0.04 nats per held-out point, well above the noise of 80 of them."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 6)) * 6
    labels = rng.integers(0, 4, 500)
    path = tmp_path_factory.mktemp("data") / "four.npy"
    np.save(path, (centres[labels] + rng.normal(size=(500, 6))).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def collapsed_run(repeated_point, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ml"
    code = cli.main(["fit", "gmm", "--data", str(repeated_point), "--components", "3", "--out", str(out), *FAST])
    assert code == 0
    return out


def test_fit_flags_a_collapsed_component_in_one_line_and_saves_it(repeated_point, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "fit", "gmm", "--data", repeated_point, "--components", 3, "--out", out, *FAST)
    assert code == 0 and stdout == ""
    (warning,) = err.strip().splitlines()  # --quiet keeps the warning, and only it
    assert warning.startswith("lvmjax: warning: 1 of 3 components collapsed (component ")
    assert "holds 5 training points, smallest variance 1e-06" in warning  # 5 of the 6 copies are training rows
    for flag in ("--components", "--reg-covar", "--covariance diag", "--prior conjugate"):
        assert flag in warning
    (entry,) = json.loads((out / "config.json").read_text())["diagnostics"]["collapsed_components"]
    assert entry["training_points"] == 5 and entry["smallest_variance"] == pytest.approx(1e-6, rel=1e-3)


def test_evaluate_reports_which_component_collapsed(collapsed_run, capsys):
    code, out, _ = run_cli(capsys, "evaluate", collapsed_run, "--json", "--quiet")
    report = json.loads(out)
    assert code == 0 and report["collapsed_components"] == 1
    (entry,) = report["collapsed"]
    assert entry["training_points"] == 5 and entry["smallest_variance"] < 1e-5
    saved = json.loads((collapsed_run / "config.json").read_text())["diagnostics"]["collapsed_components"]
    assert report["collapsed"] == saved


def test_restarts_prefer_a_sound_maximum_to_a_collapsed_one(repeated_point, tmp_path, capsys):
    out = tmp_path / "restarts"
    argv = ["fit", "gmm", "--data", repeated_point, "--components", 3, "--n-init", 10]
    code, _, err = run_cli(capsys, *argv, "--out", out, *FAST)
    assert code == 0 and err == ""
    assert json.loads((out / "config.json").read_text())["diagnostics"] == {"collapsed_components": []}


def test_the_conjugate_prior_keeps_every_component_spread(repeated_point, tmp_path, capsys):
    out = tmp_path / "map"
    argv = ["fit", "gmm", "--data", repeated_point, "--components", 3, "--prior", "conjugate"]
    code, _, err = run_cli(capsys, *argv, "--out", out, *FAST)
    assert code == 0 and err == ""
    assert json.loads((out / "config.json").read_text())["prior"] == "conjugate"
    code, stdout, _ = run_cli(capsys, "evaluate", out, "--json", "--quiet")
    assert code == 0 and json.loads(stdout)["collapsed_components"] == 0


def test_reg_covar_is_saved_with_the_run_and_read_back_by_evaluate(repeated_point, tmp_path, capsys):
    out = tmp_path / "reg"
    argv = ["fit", "gmm", "--data", repeated_point, "--components", 3, "--reg-covar", 0.01]
    code, _, err = run_cli(capsys, *argv, "--out", out, *FAST)
    # the copies' component now has variance 0.01, still reg_covar's alone: flagged against the run's own value
    assert code == 0 and "smallest variance 0.01), held up by --reg-covar alone" in err
    assert json.loads((out / "config.json").read_text())["reg_covar"] == 0.01
    code, stdout, _ = run_cli(capsys, "evaluate", out, "--json", "--quiet")
    (entry,) = json.loads(stdout)["collapsed"]  # 0.01 is far above 10 x the default 1e-6
    assert code == 0 and entry["smallest_variance"] == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reg-covar", "-1"], "argument --reg-covar: must be a non-negative number, got -1"),
        (["--reg-covar", "1e-3", "--prior", "conjugate"], "--reg-covar is for maximum-likelihood EM"),
        (["--prior", "wishart"], "argument --prior: invalid choice"),
    ],
)
def test_bad_regularization_is_one_line_and_writes_nothing(repeated_point, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    one_line_error(capsys, "fit", "gmm", "--data", repeated_point, "--out", out, *extra, *FAST, message=message)
    assert not out.exists()


@pytest.fixture(scope="module")
def selection(four_clusters, tmp_path_factory):
    out = tmp_path_factory.mktemp("select") / "gmm"
    argv = ["select", "gmm", "--data", four_clusters, "--components", "2-6", "--covariance", "full,spherical"]
    code = cli.main([str(arg) for arg in [*argv, "--n-init", 4, "--json", "--out", out, *FAST]])
    return code, out


def test_select_chooses_the_four_clusters_by_bic_in_every_covariance_family(selection, capsys):
    code, out = selection
    assert code == 0
    report = json.loads((out / "selection.json").read_text())
    rows = report["candidates"]
    assert [(row["components"], row["covariance"]) for row in rows] == [
        (k, covariance) for covariance in ("full", "spherical") for k in range(2, 7)
    ]
    for covariance in ("full", "spherical"):
        family = [row for row in rows if row["covariance"] == covariance]
        assert min(family, key=lambda row: row["bic"])["components"] == 4
    best = min(rows, key=lambda row: row["bic"])
    assert report["chosen"] == {"components": 4, "covariance": best["covariance"]}
    assert [row["chosen"] for row in rows] == [row is best for row in rows]
    assert report["num_fit"] + report["num_validation"] == 400  # the training split: 80% of 500 rows
    assert report["num_validation"] == 80
    assert (out / "selection.png").stat().st_size > 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["components"] == 4 and saved["num_train"] == 400  # refitted on the whole training split


def test_the_selected_run_is_a_run(selection, tmp_path, capsys):
    _, out = selection
    code, stdout, _ = run_cli(capsys, "evaluate", out, "--json", "--quiet")
    assert code == 0 and len(json.loads(stdout)["cluster_sizes"]) == 4
    assert run_cli(capsys, "sample", out, "-n", 5, "--out", tmp_path / "s.png")[0] == 0
    assert run_cli(capsys, "impute", out, "-n", 3, "--mask", "random", "--out", tmp_path / "i.png")[0] == 0
    assert run_cli(capsys, "plot", out, "--out", tmp_path / "figures")[0] == 0


def test_select_by_heldout_likelihood_chooses_the_four_clusters_and_prints_it_last(four_clusters, tmp_path, capsys):
    out = tmp_path / "heldout"
    argv = ["select", "gmm", "--data", four_clusters, "--components", "3-6", "--criterion", "heldout"]
    code, stdout, _ = run_cli(capsys, *argv, "--json", "--out", out, *FAST)
    report = json.loads(stdout)
    assert code == 0 and list(report)[-1] == "chosen" and report["criterion"] == "heldout"
    heldout = [row["heldout_log_likelihood"] for row in report["candidates"]]
    assert [row["components"] for row in report["candidates"]] == [3, 4, 5, 6]
    assert np.argmax(heldout) == 1 and heldout[1] - max(heldout[2:]) > 0.02
    assert report["chosen"] == {"components": 4, "covariance": "full"}
    assert stdout.strip().splitlines()[-1].endswith('"chosen": {"components": 4, "covariance": "full"}}')


def test_select_chooses_the_latent_dimension_of_factor_analysis(tmp_path, capsys):
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(2, 8)) * 2
    data = rng.normal(size=(400, 2)) @ weights + rng.normal(size=(400, 8)) * np.linspace(0.3, 1.0, 8)
    np.save(tmp_path / "fa.npy", data.astype(np.float32))
    out = tmp_path / "fa"
    code, stdout, _ = run_cli(
        capsys, "select", "fa", "--data", tmp_path / "fa.npy", "--latent-dim", "1-4", "--json", "--out", out, *FAST
    )
    report = json.loads(stdout)
    assert code == 0 and report["chosen"] == {"latent_dim": 2}
    assert json.loads((out / "config.json").read_text())["latent_dim"] == 2


def test_select_compares_mixtures_of_bernoullis(tmp_path, capsys):
    rng = np.random.default_rng(3)
    prototypes = rng.random((3, 20)) < 0.5
    labels = rng.integers(0, 3, 300)
    flips = rng.random((300, 20)) < 0.05
    np.save(tmp_path / "bits.npy", (prototypes[labels] ^ flips).astype(np.float32))
    out = tmp_path / "mob"
    code, stdout, _ = run_cli(
        capsys, "select", "mob", "--data", tmp_path / "bits.npy", "--components", "2-4", "--json", "--out", out, *FAST
    )
    assert code == 0 and json.loads(stdout)["chosen"] == {"components": 3}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gmm", "--components", "1-1000"], "must be between 1 and the number of training datapoints (320)"),
        (["gmm", "--components", ""], "argument --components: expected sizes such as 1-10 or 2,4,8"),
        (["gmm", "--components", "5-2"], "argument --components: expected sizes of at least 1"),
        (["gmm", "--covariance", "full,tied"], "argument --covariance: expected covariance types"),
        (["gmm", "--latent-dim", "1-3"], "gmm is sized by --components, not --latent-dim."),
        (["mob", "--covariance", "diag"], "mob has no --covariance option"),
        (["vae"], "select compares candidates of gmm, mob, fa, ppca"),
        (["hmm"], "hmm's data are sequences"),
        (["gmm", "--reg-covar", "-0.5"], "argument --reg-covar: must be a non-negative number"),
        (["gmm", "--criterion", "aic"], "argument --criterion: invalid choice"),
    ],
)
def test_bad_selections_are_one_line_and_write_nothing(four_clusters, tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    one_line_error(capsys, "select", *argv, "--data", four_clusters, "--out", out, *FAST, message=message)
    assert not out.exists()


def test_select_refuses_an_existing_run_dir_before_fitting(four_clusters, tmp_path, capsys):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    one_line_error(capsys, "select", "gmm", "--data", four_clusters, "--out", out, *FAST, message="already exists")
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("weight_prior", ["dirichlet-process", "dirichlet"])
def test_bgmm_switches_off_the_components_the_data_do_not_need(four_clusters, tmp_path, capsys, weight_prior):
    out = tmp_path / "bgmm"
    argv = ["fit", "bgmm", "--data", four_clusters, "--components", 10, "--weight-prior", weight_prior]
    code, _, err = run_cli(capsys, *argv, "--n-init", 2, "--out", out, *FAST)
    assert code == 0 and err == ""
    saved = json.loads((out / "config.json").read_text())
    assert saved["weight_prior"] == weight_prior and saved["components"] == 10
    code, stdout, _ = run_cli(capsys, "evaluate", out, "--json", "--quiet")
    report = json.loads(stdout)
    assert code == 0 and report["effective_components"] == 4 and report["nll_estimator"] == "posterior predictive"
    weights = np.sort(report["expected_weights"])[::-1]
    assert weights[:4].min() > 0.15 and weights[4:].max() < 0.01
    assert np.isfinite(report["test_nll"]) and report["test_elbo"] is None
    assert run_cli(capsys, "sample", out, "-n", 5, "--out", tmp_path / "s.png")[0] == 0


def test_bgmm_refuses_an_unknown_weight_prior_and_ais(four_clusters, tmp_path, capsys):
    out = tmp_path / "bgmm"
    argv = ["fit", "bgmm", "--data", four_clusters, "--weight-prior", "pitman-yor", "--out", out]
    one_line_error(capsys, *argv, *FAST, message="argument --weight-prior: invalid choice: 'pitman-yor'")
    assert not out.exists()
    assert run_cli(capsys, "fit", "bgmm", "--data", four_clusters, "--components", 5, "--out", out, *FAST)[0] == 0
    one_line_error(
        capsys,
        "evaluate",
        out,
        "--estimator",
        "ais",
        message="bgmm's log p(x) is the posterior predictive's, in closed form; --estimator ais is for",
    )


def test_a_covariance_float32_cannot_factor_is_refused_with_what_to_try(tmp_path, capsys):
    """Standardized digits, 10 full covariances: a pixel constant within a cluster leaves a direction of
    variance reg_covar beside others of hundreds, and float32's Cholesky factor of it is NaN."""
    datasets = pytest.importorskip("sklearn.datasets")
    pixels = datasets.load_digits().data
    pixels = pixels[:, pixels.std(axis=0) > 0]
    np.save(tmp_path / "digits.npy", ((pixels - pixels.mean(0)) / pixels.std(0)).astype(np.float32))
    out = tmp_path / "run"
    argv = ["fit", "gmm", "--data", tmp_path / "digits.npy", "--components", 10, "--out", out]
    message = "EM's objective became non-finite for gmm on digits.npy: a covariance collapsed below what"
    one_line_error(capsys, *argv, *FAST, message=message)
    assert not out.exists()
    code, _, err = run_cli(capsys, *argv, "--prior", "conjugate", *FAST)
    assert code == 0 and err == ""
