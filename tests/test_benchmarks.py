"""`python -m benchmarks.run --quick`: the harness runs, and its table and JSON say what was measured.

Timings are never asserted (they are measured in benchmarks/, on a quiet machine); this only
proves that every part works at tiny sizes, with or without the optional peers installed.
"""

import json
import math
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is a package of the repository, not of the installed lvmjax

from benchmarks import run, vae_training  # noqa: E402

pytestmark = pytest.mark.standard_promotion


def test_the_harness_runs_each_benchmark_and_writes_its_rows(tmp_path, capsys):
    path = tmp_path / "results.json"
    names = ["evaluation", "gmm_em", "svi_step", "vae_training"]
    assert run.main(["--quick", *(f"--only={name}" for name in names), "--json", str(path)]) == 0
    table = capsys.readouterr().out
    written = json.loads(path.read_text())
    assert written["quick"] and "too small to mean anything" in written["machine"]
    assert sorted({row["benchmark"] for row in written["rows"]}) == names
    for row in written["rows"]:
        assert row["benchmark"] in table and row["lvmjax_seconds"] > 0 and row["compile_seconds"] >= 0
        if row["peer_seconds"] is None:  # a peer that is not installed is skipped, and says so
            assert row["note"].startswith("skipped") and row["ratio"] is None
        else:
            assert row["ratio"] == pytest.approx(row["peer_seconds"] / row["lvmjax_seconds"])
    rows = {row["benchmark"]: row for row in written["rows"]}
    # Same start, same iterations: EM reaches scikit-learn's log-likelihood (scikit-learn is a test dependency).
    gmm = rows["gmm_em"]
    ours, theirs = (float(gmm[key].split()[-1]) for key in ("lvmjax_quality", "peer_quality"))
    assert ours == pytest.approx(theirs, abs=1e-4)


def test_the_flop_count_is_three_times_two_multiply_adds_per_weight():
    sizes = vae_training.Sizes(data_dim=10, hidden=(4,), latent_dim=2)
    # encoder 10·4 + 4·4 (mean and log-scale), decoder 2·4 + 4·10
    assert vae_training.flops_per_image(sizes) == 3 * 2 * (10 * 4 + 4 * 4 + 2 * 4 + 4 * 10)


def test_the_iwae_counts_the_decoder_once_per_sample():
    vae, iwae = (
        vae_training.Sizes(data_dim=10, hidden=(4,), latent_dim=2),
        vae_training.Sizes(data_dim=10, hidden=(4,), latent_dim=2, num_samples=5),
    )
    decoder = 3 * 2 * (2 * 4 + 4 * 10)
    assert vae_training.flops_per_image(iwae) - vae_training.flops_per_image(vae) == 4 * decoder


def test_the_hmm_benchmarks_run_and_baum_welch_reaches_hmmlearn(tmp_path, capsys):
    path = tmp_path / "results.json"
    assert run.main(["--quick", "--only=hmm_em", "--only=hmm_forward", "--json", str(path)]) == 0
    table = capsys.readouterr().out
    rows = json.loads(path.read_text())["rows"]
    assert {row["benchmark"] for row in rows} == {"hmm_em", "hmm_forward_T100", "hmm_forward_T200"}
    for row in rows:
        assert row["benchmark"] in table and row["lvmjax_seconds"] > 0 and row["compile_seconds"] >= 0
        if row["peer_seconds"] is None:  # dynamax is not a test dependency: skipped, and says so
            assert row["note"].startswith("skipped") and row["ratio"] is None
    baum_welch = {row["peer"].split()[0]: row for row in rows if row["benchmark"] == "hmm_em"}
    # Same start, same 5 iterations, both maximum likelihood: lvmjax (float32) reaches hmmlearn's (float64)
    # log-likelihood per step. They differ by ~5e-7 here (float32 rounding over 500 steps of |log p| ~ 3);
    # 1e-4 leaves room for other roundings, while one iteration more or less moves it by 0.1 and a covariance
    # regularized by reg_covar = 1e-2 by 6e-4.
    hmmlearn = baum_welch["hmmlearn"]
    ours, theirs = (float(hmmlearn[key].split()[-1]) for key in ("lvmjax_quality", "peer_quality"))
    assert ours == pytest.approx(theirs, abs=1e-4)
    # The parallel forward pass computes the same log p(x) as the sequential one.
    for row in rows:
        if row["peer"] == "lvmjax parallel=True":
            assert float(row["peer_quality"].split()[2]) == pytest.approx(
                float(row["lvmjax_quality"].split()[-1]), rel=1e-5
            )


def test_the_ais_and_nuts_benchmarks_run_and_lvmjax_ais_finds_the_exact_log_marginal(tmp_path, capsys):
    path = tmp_path / "results.json"
    assert run.main(["--quick", "--only=ais_throughput", "--only=nuts_ess", "--json", str(path)]) == 0
    table = capsys.readouterr().out
    rows = {row["benchmark"]: row for row in json.loads(path.read_text())["rows"]}
    assert set(rows) == {"ais_throughput", "nuts_ess"}
    for row in rows.values():
        assert row["benchmark"] in table and row["lvmjax_seconds"] > 0 and row["compile_seconds"] >= 0
    assert rows["ais_throughput"]["peer_seconds"] is not None  # TFP's JAX substrate comes with distrax
    nuts = rows["nuts_ess"]
    if nuts["peer_seconds"] is None:  # numpyro is not a test dependency: skipped, and says so
        assert nuts["note"].startswith("skipped") and nuts["ratio"] is None
    # "..., mean |log p̂ - log p| E, mean se S": lvmjax's AIS (T = 50, K = 4, N = 2, fixed ε) against the
    # exact log p(x) ≈ -75. It is off by 0.2 with a reported stderr of 0.7; 2 nats is ~3 stderrs, and far
    # below a broken run's error: importance sampling from the prior (T = 1, same K) misses by ~24, and
    # TFP's kernel, whose cached log-density lags one temperature behind, by ~26 at these sizes.
    quality = rows["ais_throughput"]["lvmjax_quality"]
    error = float(quality.split("log p| ")[1].split(",")[0])
    stderr = float(quality.split("mean se ")[1])
    assert math.isfinite(error) and math.isfinite(stderr) and stderr > 0
    assert error < 2.0
