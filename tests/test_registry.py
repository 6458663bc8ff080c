"""Conformance of every model spec in the registry (as blackjax tests every algorithm against its
contract): each fits tiny data, saves what its template says, evaluates to the common metrics, and
declares why it lacks what it lacks. And a new spec reaches the command line with no other change."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from lvmjax import app, cli
from lvmjax.app import figures as app_figures
from lvmjax.app import registry
from lvmjax.app.spec import DataKind
from lvmjax.app.specs import gaussian_mixture as gaussian_mixture_spec
from lvmjax.app.specs import hmm as hmm_spec
from lvmjax.errors import RunError

SPECS = registry.specs()
TINY = {
    "epochs": 1,
    "batch_size": 16,
    "hidden": (8,),
    "latent_dim": 2,
    "components": 2,
    "max_iter": 5,
    "num_samples": None,
}
pytestmark = pytest.mark.standard_promotion  # optax mixes integer step counts and floats
CAPABILITIES = ("generative", "impute", "latent_codes")


def _tiny(dataset):
    """64 training and 16 test rows (time steps of a sequence dataset): enough for every model, compiled in
    seconds."""
    if dataset.train_lengths is not None:  # one training sequence (the nile), its test steps after it
        assert dataset.test_follows_train
        return dataset._replace(
            train=dataset.train[:64], test=dataset.test[:16], train_lengths=np.array([64]), test_lengths=np.array([16])
        )
    return dataset._replace(
        train=dataset.train[:64],
        test=dataset.test[:16],
        train_labels=dataset.train_labels[:64],
        test_labels=dataset.test_labels[:16],
    )


@pytest.fixture(scope="module")
def datasets():
    return {
        kind: _tiny(app.load_data(app.FitConfig(model=next(s.name for s in SPECS if s.data_kind is kind))))
        for kind in DataKind
    }


@pytest.fixture(scope="module")
def fitted(datasets, tmp_path_factory):
    """Every model fitted to the tiny data, saved and read back: name -> (config, result, run, run_dir)."""
    runs = {}
    for spec in SPECS:
        config = app.FitConfig(model=spec.name, **TINY)
        result = app.fit(config, datasets[spec.data_kind])
        run_dir = app.save_run(tmp_path_factory.mktemp(spec.name) / "run", config, result)
        runs[spec.name] = (config, result, app.load_run(run_dir), run_dir)
    return runs


def test_names_are_unique_and_listed_in_order():
    assert registry.names() == tuple(spec.name for spec in SPECS)
    assert len(set(registry.names())) == len(SPECS)
    with pytest.raises(RunError, match="unknown model 'nope'; choose one of vae"):
        registry.get("nope")


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_declarations_are_consistent(spec):
    fields = {field.name for field in dataclasses.fields(app.FitConfig)}
    assert spec.options <= fields, spec.options - fields
    assert spec.nll_method in ("exact", "importance sampling", "posterior predictive", None)
    assert spec.history_unit in ("epoch", "EM iteration")
    if spec.checkpointed:  # resumable between epochs (prodlda trains over epochs in one go)
        assert spec.history_unit == "epoch"
    for capability in CAPABILITIES:
        if getattr(spec, capability) is None:
            assert spec.reasons.get(capability), f"{spec.name} lacks {capability} and says not why"
            with pytest.raises(RunError, match=spec.reasons[capability][:20]):
                spec.require(capability)
    if spec.encoder:
        assert spec.networks is not None
    if spec.nll_method == "exact":
        assert spec.num_free_parameters is not None and spec.params_type is not None


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_saved_parameters_match_the_template(spec, fitted):
    config, result, run, run_dir = fitted[spec.name]
    template = spec.template(config, result.data_dim, result.image_shape, 64)
    shapes = jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), template)
    assert jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), jax.tree.map(np.asarray, result.params)) == shapes
    assert jax.tree.structure(run.params) == jax.tree.structure(template)
    assert run.spec is spec and result.num_train == 64
    history = app.read_history(run_dir)
    assert history == json.loads(json.dumps(result.history))
    assert all(np.isfinite(entry["train_objective"]) for entry in history)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_evaluation_reports_the_common_metrics(spec, fitted, datasets):
    config, _, run, _ = fitted[spec.name]
    report = app.evaluate(
        config, run.params, datasets[spec.data_kind], num_samples=4, refine_steps=2, per_datapoint=True
    )
    assert report["model"] == spec.name and report["num_test"] == 16
    if spec.nll_method is None:
        assert report["test_nll"] is None
        return
    assert np.isfinite(report["test_nll"]) and len(report["test_log_marginals"]) == 16
    assert report["test_nll"] == pytest.approx(-np.mean(report["test_log_marginals"]), rel=1e-5)
    if spec.nll_method == "exact":  # q is the exact posterior, so the ELBO is log p(x)
        assert report["test_elbo"] == pytest.approx(-report["test_nll"])
        assert report["num_samples"] is None and report["test_nll_stderr"] == 0


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_capabilities_give_arrays_of_the_data_shape(spec, fitted, datasets):
    config, result, run, _ = fitted[spec.name]
    dataset = datasets[spec.data_kind]
    key = jax.random.key(0)
    if spec.generative is not None:
        images = app_figures.generate(key, run, 3)
        # One datapoint per draw; for a sequence model one sequence (T, D), or (T,) of category indices.
        if spec.data_kind is DataKind.SEQUENCES:
            assert images.shape[0] == 3 and images.shape[-1] in (result.data_dim, hmm_spec.GENERATED_STEPS)
        else:
            assert images.shape == (3, result.data_dim)
        assert np.all(np.isfinite(images))
    if spec.impute is not None:
        observed = np.arange(result.data_dim) < result.data_dim // 2
        imputed = app_figures.impute(key, run, dataset.test[:4], observed, 8)
        np.testing.assert_array_equal(imputed[:, observed], dataset.test[:4, observed])  # observed entries kept
    if spec.latent_codes is not None:
        codes, labels, what = spec.latent_codes(run, dataset)
        assert codes.ndim == 2 and len(codes) == len(labels) and what
    if spec.component_means is not None:
        weights, means = spec.component_means(run)
        assert weights.sum() == pytest.approx(1, abs=1e-5) and means.shape == (config.components, result.data_dim)


def test_a_new_spec_reaches_the_command_line_unchanged(monkeypatch, tmp_path, capsys):
    """Adding a model is one spec in the registry: fit, evaluate and the help know it with no other edit."""
    toy = dataclasses.replace(gaussian_mixture_spec.SPEC, name="toy-mixture", summary="a spec added in a test")
    monkeypatch.setitem(registry._SPECS, "toy-mixture", toy)
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # argparse may wrap at a hyphen
    assert "toy-mixture: a spec added in a test" in help_text
    run_dir = tmp_path / "toy"
    assert (
        cli.main(
            [
                "fit",
                "toy-mixture",
                "--data",
                "digits",
                "--out",
                str(run_dir),
                "--components",
                "2",
                "--max-iter",
                "3",
                "--quiet",
            ]
        )
        == 0
    )
    assert cli.main(["evaluate", str(run_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "toy-mixture" and np.isfinite(report["test_nll"])
