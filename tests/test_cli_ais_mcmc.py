"""`lvmjax evaluate --estimator ais` and `--bdmc`, `lvmjax impute --method mcmc`: the test NLL by annealed importance
sampling with the gaps measured against it, BDMC on simulated data, imputation by NUTS, and clear refusals for the
models whose log p(x) is exact."""

import json

import numpy as np
import pytest

from lvmjax import cli

pytestmark = pytest.mark.standard_promotion  # the runs are trained with optax
TINY = ["--epochs", "2", "--hidden", "8", "--latent-dim", "2", "--batch-size", "64", "--quiet"]
AIS = ["--estimator", "ais", "--ais-steps", "20", "--ais-chains", "4", "--num-samples", "50", "--json", "--quiet"]


def evaluate(capsys, run_dir, *options):
    assert cli.main(["evaluate", str(run_dir), *options]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ais")
    for model in ("vae", "svi"):
        assert cli.main(["fit", model, "--out", str(root / model), *TINY]) == 0
    assert cli.main(["fit", "fa", "--latent-dim", "2", "--out", str(root / "fa"), "--quiet"]) == 0
    return root


def test_the_vae_nll_by_ais_and_its_gaps(runs, capsys):
    by_is = evaluate(capsys, runs / "vae", "--num-samples", "50", "--json", "--quiet")
    by_ais = evaluate(capsys, runs / "vae", *AIS)
    assert by_is["nll_estimator"] == "importance sampling, K = 50 from the refined q"
    assert by_ais["nll_estimator"] == "AIS, 20 steps × 4 chains from the encoder's q"
    # The importance-sampled NLL is kept, and the ELBOs (and so the amortization gap) are the same draws.
    assert by_ais["test_nll_is"] == by_is["test_nll"] and by_ais["test_nll_is_stderr"] == by_is["test_nll_stderr"]
    for key in ("test_elbo", "refined_elbo", "amortization_gap"):
        assert by_ais[key] == by_is[key]
    # The approximation gap is log p(x) − ELBO(q*), now against the AIS estimate.
    assert by_ais["approximation_gap"] == pytest.approx(-by_ais["test_nll"] - by_ais["refined_elbo"], abs=1e-4)
    assert by_ais["test_nll_stderr"] > 0 and by_ais["test_nll"] != by_is["test_nll"]


def test_svi_anneals_from_the_prior(runs, capsys):
    report = evaluate(capsys, runs / "svi", *AIS)
    assert report["nll_estimator"] == "AIS, 20 steps × 4 chains from the prior"
    assert report["test_nll"] > 0 and report["test_nll_stderr"] > 0 and "test_nll_is" in report


def test_an_exact_model_names_its_estimator_and_refuses_ais(runs, capsys):
    assert evaluate(capsys, runs / "fa", "--json", "--quiet")["nll_estimator"] == "exact"
    assert cli.main(["evaluate", str(runs / "fa"), *AIS]) == 2
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "fa's log p(x) is exact; --estimator ais is for the models whose log p(x)" in lines[0]


def test_bdmc_brackets_the_log_likelihood_of_simulated_data(runs, capsys):
    report = evaluate(capsys, runs / "vae", *AIS, "--bdmc", "6")
    bounds = report["bdmc"]
    assert bounds["num_simulated"] == 6 and bounds["ais_steps"] == 20 and bounds["ais_chains"] == 4
    # In expectation lower <= log p(x) <= upper: the gap is non-negative up to its standard errors.
    noise = 4 * (bounds["lower_stderr"] ** 2 + bounds["upper_stderr"] ** 2) ** 0.5
    assert bounds["gap"] == pytest.approx(bounds["upper"] - bounds["lower"], abs=1e-4)
    assert bounds["gap"] > -noise and bounds["lower"] < 0 and bounds["upper"] < 0
    assert cli.main(["evaluate", str(runs / "fa"), "--bdmc", "3", "--quiet"]) == 2
    assert "--bdmc is for the models whose log p(x) is estimated" in capsys.readouterr().err


def test_impute_by_mcmc_fills_the_missing_half_and_keeps_the_observed_one(runs, capsys, tmp_path):
    out = tmp_path / "mcmc.png"
    assert (
        cli.main(["impute", str(runs / "vae"), "--method", "mcmc", "-n", "4", "--num-samples", "40", "--out", str(out)])
        == 0
    )
    assert "imputed top-half of 4 test datapoints under vae" in capsys.readouterr().out
    imputed = np.load(out.with_suffix(".npy"))
    assert imputed.shape == (4, 64) and np.all((imputed >= 0) & (imputed <= 1))
    assert cli.main(["impute", str(runs / "fa"), "--method", "mcmc", "--out", str(tmp_path / "fa.png")]) == 2
    assert "--method mcmc draws a continuous z by NUTS, for vae, iwae, svi; fa imputes with --method is" in (
        capsys.readouterr().err
    )
