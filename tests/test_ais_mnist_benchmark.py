"""benchmarks/ais_mnist.py: the quick run trains burda-vae, keeps its parameters, and reports IS, AIS and BDMC.

No NLL or time is asserted beyond being finite: the figures are measured in benchmarks/RESULTS.md.
"""

import json
import math
import pathlib
import sys

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is a package of the repository, not of the installed lvmjax

from benchmarks import ais_mnist, mnist_quality  # noqa: E402

pytestmark = pytest.mark.standard_promotion  # optax's schedules and Flax mix integer steps and floats

DATA_DIR = ROOT.parent / "shared" / "data"


def test_the_quick_run_reports_is_ais_and_bdmc_and_reads_its_parameters_back(tmp_path, capsys):
    if not (DATA_DIR / "binarized_mnist.npz").is_file():
        pytest.skip(f"binarized MNIST is not in {DATA_DIR}")
    params_path, json_path = tmp_path / "params.npz", tmp_path / "ais_mnist.json"
    # Two schedules and a subset, so that the longest runs on fewer images than the others.
    argv = ["--quick", "--ais-steps", "10,20", "--ais-subset", "4", "--data-dir", str(DATA_DIR)]
    ais_mnist.main([*argv, "--params", str(params_path), "--json", str(json_path)])
    assert "IS − this (paired)" in capsys.readouterr().out
    results = json.loads(json_path.read_text())
    assert results["quick"] and results["machine"] and results["jax"] == jax.__version__
    assert results["training"]["epochs"] == 1 and results["training"]["loaded_from"] is None

    rows = {(row["estimator"], row.get("num_steps"), row["num_images"]): row for row in results["rows"]}
    assert set(rows) == {("IS", None, 8), ("IS", None, 4), ("AIS", 10, 8), ("AIS", 10, 4), ("AIS", 20, 4)}
    for (estimator, _, num), row in rows.items():
        assert math.isfinite(row["nll"]) and row["nll"] > 0  # −log p(x) of 784 binary pixels
        assert math.isfinite(row["nll_stderr"])
        assert (row["seconds"] is None) == (row["restricted_from"] == 8)
        if estimator == "AIS":
            difference = row["is_minus_ais"]
            assert difference["mean"] == pytest.approx(rows["IS", None, num]["nll"] - row["nll"], abs=1e-4)
            assert math.isfinite(difference["stderr"])
    assert len(results["per_image"]["is"]) == 8 and len(results["per_image"]["ais_20"]) == 4
    # The restricted rows are the first images of the full ones: the same keys per image.
    assert rows["AIS", 10, 4]["nll"] == pytest.approx(-np.mean(results["per_image"]["ais_10"][:4]))

    assert [row["num_steps"] for row in results["bdmc"]] == [10, 20]
    for row in results["bdmc"]:
        assert row["num_simulated"] == 4
        assert all(math.isfinite(row[field]) for field in ("lower", "upper", "gap", "gap_stderr", "is_log_marginal"))
        assert row["gap"] == pytest.approx(row["upper"] - row["lower"], abs=1e-4)
        # E[lower] <= log p(x) <= E[upper] on every image: the gap is not negative beyond its noise.
        assert row["lower"] <= row["upper"] + 4 * row["gap_stderr"]

    # A second run reads the parameters instead of training, and the same keys give the same IS estimates.
    again = ais_mnist.main(["--quick", "--bdmc", "0", "--params", str(params_path), "--data-dir", str(DATA_DIR)])
    assert again["training"]["loaded_from"] == str(params_path)
    np.testing.assert_allclose(again["per_image"]["is"], results["per_image"]["is"], rtol=1e-6)


def test_saved_parameters_round_trip_and_others_are_refused(tmp_path):
    vae = mnist_quality.make_network(mnist_quality.MODELS[ais_mnist.MODEL_NAME])
    params = jax.device_get(vae.init(jax.random.PRNGKey(0)))
    path = tmp_path / "params.npz"
    ais_mnist.save_params(path, params, {"epochs": 3})
    loaded, training = ais_mnist.load_params(path, params)
    assert training == {"epochs": 3}
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    for ours, theirs in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    other = mnist_quality.make_network(mnist_quality.MODELS["pythae-vae"])
    with pytest.raises(ValueError, match="does not hold"):
        ais_mnist.load_params(path, other.init(jax.random.PRNGKey(0)))


def test_a_missing_data_directory_gives_no_results(tmp_path, capsys):
    assert ais_mnist.main(["--quick", "--data-dir", str(tmp_path / "absent")]) is None
    assert "ais_mnist skipped" in capsys.readouterr().out
