"""Training runs: fit a model on a dataset, save it to a run directory, evaluate it later.

This is what `lvmjax fit` and `lvmjax evaluate` call, usable from Python too:

    config = FitConfig(model="vae", data="digits")
    run = fit(config)                       # trains; returns parameters and metrics
    save_run("runs/vae", config, run)       # config.json, metrics.jsonl, checkpoint/
    report = evaluate_run("runs/vae")       # test ELBO, test NLL, amortization gap

Two kinds of model share this interface: the neural ones (vae, iwae, ae, svi),
trained by stochastic gradients over epochs on binary data, and the classical
ones fitted by EM (gmm, mob, fa, ppca), whose test NLL is exact.

A run directory is written whole or not at all: everything goes into a
temporary sibling that is renamed into place at the end, and an existing
directory is never written into.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lvmjax import amortized as amortized_lib
from lvmjax import data as data_lib
from lvmjax import svi as svi_lib
from lvmjax import training
from lvmjax.applications import adjusted_rand_index
from lvmjax.estimators import elbo, log_marginal_is
from lvmjax.model import log_likelihood
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian

NEURAL_MODELS = ("vae", "iwae", "ae", "svi")
CLASSICAL_MODELS = ("gmm", "mob", "fa", "ppca")  # fitted by EM (ppca in closed form)
CONTINUOUS_MODELS = ("gmm", "fa", "ppca")  # Gaussian likelihoods: real-valued data; all others binary
MODELS = NEURAL_MODELS + CLASSICAL_MODELS
CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR = "config.json", "metrics.jsonl", "checkpoint"


class RunError(ValueError):
    """A run that cannot be made or read; the message is one line that says how to fix it."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Everything that determines a run; saved as RUN_DIR/config.json.

    `num_samples=None` means the model's default: 1 for vae and svi (the ELBO's
    Monte Carlo samples), 5 for iwae (K of the bound); unused by ae.

    The neural models use epochs, batch_size, num_samples, lr, hidden,
    architecture and the svi settings; the classical ones use components
    (gmm, mob), covariance (gmm), max_iter and n_init. latent_dim is the
    dimension of z for the neural models and for fa and ppca. test_fraction
    splits a user's data file (the named datasets have fixed splits).
    """

    model: str
    data: str = "digits"
    data_dir: str | None = None
    epochs: int = 600
    batch_size: int = 128
    latent_dim: int = 16
    num_samples: int | None = None
    lr: float = 1e-3
    seed: int = 0
    hidden: tuple[int, ...] = (256, 256)
    architecture: str = "mlp"
    svi_inner_steps: int = 5
    svi_lr: float = 3e-2
    components: int = 10
    covariance: str = "full"
    max_iter: int = 500
    n_init: int = 1
    test_fraction: float = 0.2

    def __post_init__(self):
        if self.model not in MODELS:
            raise RunError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}.")
        if self.covariance not in gaussian_mixture.COVARIANCE_TYPES:
            raise RunError(f"covariance must be one of {', '.join(gaussian_mixture.COVARIANCE_TYPES)}, "
                           f"got {self.covariance!r}.")
        if not 0 < self.test_fraction < 1:
            raise RunError(f"test-fraction must be strictly between 0 and 1, got {self.test_fraction}.")
        for name in ("epochs", "batch_size", "latent_dim", "svi_inner_steps", "components", "max_iter", "n_init"):
            if getattr(self, name) < 1:
                raise RunError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.num_samples is not None and self.num_samples < 1:
            raise RunError(f"num-samples must be at least 1, got {self.num_samples}.")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise RunError(f"lr must be a positive number, got {self.lr}.")
        if self.architecture not in ("mlp", "conv"):
            raise RunError(f"architecture must be 'mlp' or 'conv', got {self.architecture!r}.")
        object.__setattr__(self, "hidden", tuple(self.hidden))

    @property
    def samples(self) -> int:
        if self.num_samples is not None:
            return self.num_samples
        return 5 if self.model == "iwae" else 1


class FitResult(NamedTuple):
    params: Any  # amortized: {"encoder", "decoder"}; svi: {"decoder"} (θ) and the training φ under "phi"
    history: list[dict]  # one entry per epoch
    seconds: float  # training time, compilation included
    data_dim: int
    image_shape: tuple[int, int] | None


def build_model(config: FitConfig, data_dim: int, image_shape) -> amortized_lib.AmortizedModel:
    """The networks of a run (svi uses only the decoder)."""
    return amortized_lib.make_vae(data_dim, config.latent_dim, hidden=config.hidden,
                                  architecture=config.architecture, image_shape=image_shape)


def _objective(config: FitConfig, vae):
    if config.model == "vae":
        return amortized_lib.elbo_objective(vae, config.samples, analytic_kl=True)
    if config.model == "iwae":
        return amortized_lib.iwae_objective(vae, config.samples)
    return amortized_lib.autoencoder_objective(vae)


def _optimizer(config: FitConfig, steps: int) -> optax.GradientTransformation:
    # Cosine decay to 5% of the rate: the last epochs settle instead of rattling.
    return optax.adam(optax.cosine_decay_schedule(config.lr, steps, alpha=0.05))


def load_data(config: FitConfig, data_dir: str | None = None) -> data_lib.Dataset:
    """The data of a run: binary for the Bernoulli models, real-valued for the Gaussian ones."""
    continuous = config.model in CONTINUOUS_MODELS
    dataset = data_lib.load_dataset(config.data, data_dir if data_dir is not None else config.data_dir,
                                    continuous=continuous, test_fraction=config.test_fraction, seed=config.seed)
    if not continuous:
        data_lib.check_binary(dataset.train, f"the training split of {dataset.name}")
    elif dataset.binary:
        raise RunError(f"{config.model} models real-valued data, but every value of {dataset.name} is 0 or 1 "
                       "(a Gaussian fitted to it collapses onto the corners); use mob for binary data.")
    return dataset


def fit(config: FitConfig, dataset: data_lib.Dataset | None = None,
        progress: Callable[[int, dict], None] | None = None) -> FitResult:
    """Trains the model of `config` on the training split; `progress(epoch, metrics)` after each epoch."""
    dataset = dataset if dataset is not None else load_data(config)
    if config.model in CLASSICAL_MODELS:
        return _fit_classical(config, dataset)
    train = jnp.asarray(dataset.train)
    num_data, data_dim = train.shape
    if config.batch_size > num_data:
        raise RunError(f"batch-size {config.batch_size} is larger than the {num_data} training datapoints.")
    vae = build_model(config, data_dim, dataset.image_shape)
    key_init, key_phi, key_epochs = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    params = vae.init(key_init)
    steps = config.epochs * (num_data // config.batch_size)
    optimizer = _optimizer(config, steps)

    if config.model == "svi":
        phi_optimizer = optax.adam(config.svi_lr)
        step = svi_lib.make_svi_step(vae.model, vae.family, optimizer, phi_optimizer, config.samples,
                                     analytic_kl=True, inner_steps=config.svi_inner_steps)
        state = svi_lib.init_svi(key_phi, vae.family, {"decoder": params["decoder"]}, num_data,
                                 optimizer, phi_optimizer)
        data = (jnp.arange(num_data), train)
    else:
        step = training.make_train_step(_objective(config, vae), optimizer)
        state = training.init_train_state(params, optimizer)
        data = train
    epoch_fn = jax.jit(training.make_epoch(step, config.batch_size))

    history = []
    start = time.perf_counter()
    for epoch, key in enumerate(jax.random.split(key_epochs, config.epochs), start=1):
        state, metrics = epoch_fn(state, key, data)
        value = float(jnp.mean(metrics.elbo if config.model == "svi" else metrics.objective))
        if not math.isfinite(value):
            raise RunError(f"the training objective became {value} in epoch {epoch}; lower --lr.")
        entry = {"epoch": epoch, "train_objective": value, "seconds": time.perf_counter() - start}
        history.append(entry)
        if progress is not None:
            progress(epoch, entry)
    if config.model == "svi":
        params = {"decoder": state.theta["decoder"], "phi": state.phi}
    else:
        params = state.params
    params = jax.block_until_ready(params)
    return FitResult(params, history, time.perf_counter() - start, data_dim, dataset.image_shape)


# --- Classical models, fitted by EM -----------------------------------------------------

_CLASSICAL_PARAMS = {"gmm": gaussian_mixture.Params, "mob": bernoulli_mixture.Params,
                     "fa": linear_gaussian.Params, "ppca": linear_gaussian.Params}
_LOG_MARGINALS = {"gmm": gaussian_mixture.log_marginal, "mob": bernoulli_mixture.log_marginal,
                  "fa": linear_gaussian.log_marginal, "ppca": linear_gaussian.log_marginal}


def _fit_classical(config: FitConfig, dataset: data_lib.Dataset) -> FitResult:
    train = jnp.asarray(dataset.train)
    key = jax.random.PRNGKey(config.seed)
    start = time.perf_counter()
    if config.model == "gmm":
        params, info = gaussian_mixture.fit_em(key, train, config.components, config.covariance,
                                               max_iter=config.max_iter, n_init=config.n_init)
    elif config.model == "mob":
        params, info = bernoulli_mixture.fit_em(key, train, config.components, max_iter=config.max_iter,
                                                n_init=config.n_init)
    elif config.model == "fa":
        params, info = linear_gaussian.fit_factor_analysis(key, train, config.latent_dim, max_iter=config.max_iter)
    else:
        params, info = linear_gaussian.fit_ppca(train, config.latent_dim), None
    params = jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    if info is None:  # closed form: one "iteration", at the maximum
        trace = [float(jnp.mean(jax.vmap(linear_gaussian.log_marginal, in_axes=(None, 0))(params, train)))]
    else:
        trace = [float(value) for value in info.objective[: int(info.num_iterations)]]
    if not all(math.isfinite(value) for value in trace):
        raise RunError(f"EM's objective became non-finite for {config.model} on {dataset.name}.")
    history = [{"iteration": iteration, "train_objective": value} for iteration, value in enumerate(trace)]
    return FitResult(params._asdict(), history, seconds, train.shape[1], dataset.image_shape)


def _classical_template(config: FitConfig, data_dim: int):
    """The shapes of a classical model's parameters, as a dict like the one saved."""
    num_components, latent_dim = config.components, config.latent_dim
    shapes = {
        "gmm": {"logits": (num_components,), "means": (num_components, data_dim),
                "scale_tril": (num_components, data_dim, data_dim)},
        "mob": {"logits": (num_components,), "probs_logits": (num_components, data_dim)},
        "fa": {"weight": (data_dim, latent_dim), "bias": (data_dim,), "noise_variance": (data_dim,)},
        "ppca": {"weight": (data_dim, latent_dim), "bias": (data_dim,), "noise_variance": ()},
    }[config.model]
    return {name: jax.ShapeDtypeStruct(shape, jnp.float32) for name, shape in shapes.items()}


def classical_params(run: Run):
    """The parameters of a classical run as its model's `Params` NamedTuple."""
    return _CLASSICAL_PARAMS[run.config.model](**run.params)


def num_free_parameters(config: FitConfig, data_dim: int) -> int:
    """Free parameters of a classical model, for the BIC."""
    if config.model == "gmm":
        return gaussian_mixture.num_free_parameters(config.components, data_dim, config.covariance)
    if config.model == "mob":
        return bernoulli_mixture.num_free_parameters(config.components, data_dim)
    return linear_gaussian.num_free_parameters(data_dim, config.latent_dim, isotropic=config.model == "ppca")


def _evaluate_classical(run: Run, dataset: data_lib.Dataset, report: dict) -> dict:
    """Exact test metrics: −log p(x) needs no sampling, and with q = p(z | x) the ELBO is log p(x)."""
    model = run.config.model
    params = classical_params(run)
    log_marginal = jax.jit(jax.vmap(_LOG_MARGINALS[model], in_axes=(None, 0)))
    train, test = jnp.asarray(dataset.train), jnp.asarray(dataset.test)
    test_log_marginals, train_log_marginals = log_marginal(params, test), log_marginal(params, train)
    num_train = train.shape[0]
    bic = -2 * float(jnp.sum(train_log_marginals)) + num_free_parameters(run.config, run.data_dim) * math.log(num_train)
    report = report | {
        "num_samples": None,
        "test_elbo": float(jnp.mean(test_log_marginals)),
        "test_nll": -float(jnp.mean(test_log_marginals)),
        "test_nll_stderr": 0.0,
        "train_nll": -float(jnp.mean(train_log_marginals)),
        "bic": bic,
    }
    if model in ("gmm", "mob"):
        posterior = gaussian_mixture.posterior if model == "gmm" else bernoulli_mixture.posterior
        labels = jax.jit(jax.vmap(lambda x: jnp.argmax(posterior(params, x).logits)))(test)
        report["cluster_sizes"] = [int(count) for count in jnp.bincount(labels, length=run.config.components)]
        if dataset.test_labels is not None:
            report["adjusted_rand_index"] = adjusted_rand_index(dataset.test_labels, labels)
    if model == "gmm":
        report["collapsed_components"] = int(jnp.sum(gaussian_mixture.collapsed_components(params)))
    return report


# --- Run directories --------------------------------------------------------------------


def save_run(run_dir: str | os.PathLike, config: FitConfig, result: FitResult) -> Path:
    """Writes config.json, metrics.jsonl and the checkpoint; never touches an existing directory."""
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir).absolute()
    check_new_run_dir(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.partial-", dir=run_dir.parent))
    try:
        description = dataclasses.asdict(config) | {
            "data_dim": result.data_dim,
            "image_shape": list(result.image_shape) if result.image_shape else None,
            "train_seconds": result.seconds,
        }
        if config.model == "svi":
            description["num_train"] = int(jax.tree_util.tree_leaves(result.params["phi"])[0].shape[0])
        (staging / CONFIG_FILE).write_text(json.dumps(description, indent=2) + "\n")
        with open(staging / METRICS_FILE, "w") as metrics:
            for entry in result.history:
                metrics.write(json.dumps(entry) + "\n")
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(staging / CHECKPOINT_DIR, result.params)
        checkpointer.wait_until_finished()
        os.rename(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return run_dir


def check_new_run_dir(run_dir: str | os.PathLike) -> None:
    run_dir = Path(run_dir)
    if run_dir.exists():
        raise RunError(f"{run_dir} already exists; choose a new --out (nothing in it was changed).")


class Run(NamedTuple):
    config: FitConfig
    params: Any  # as saved: a dict of arrays (see `classical_params` for the classical models)
    data_dim: int
    image_shape: tuple[int, int] | None
    vae: amortized_lib.AmortizedModel | None  # the networks; None for the classical models


def load_run(run_dir: str | os.PathLike) -> Run:
    """Reads a run directory written by `save_run`."""
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir).absolute()
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} does not exist; make it with 'lvmjax fit'." if not run_dir.exists()
                       else f"{run_dir} is a file, not a run directory; make one with 'lvmjax fit'.")
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}; "
                       "make one with 'lvmjax fit'.")
    try:
        description = json.loads((run_dir / CONFIG_FILE).read_text())
        fields = {field.name for field in dataclasses.fields(FitConfig)}
        config = FitConfig(**{name: value for name, value in description.items() if name in fields})
        data_dim = int(description["data_dim"])
        image_shape = tuple(description["image_shape"]) if description.get("image_shape") else None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise RunError(f"{run_dir / CONFIG_FILE} is damaged ({error}).") from None
    if config.model in CLASSICAL_MODELS:
        vae, template = None, _classical_template(config, data_dim)
    else:
        vae = build_model(config, data_dim, image_shape)
        template = vae.init(jax.random.PRNGKey(0))
    if config.model == "svi":
        num_train = int(description.get("num_train", 0))
        template = {"decoder": template["decoder"],
                    "phi": jax.eval_shape(jax.vmap(vae.family.init), jax.random.split(jax.random.PRNGKey(0),
                                                                                      num_train))}
    checkpoint = run_dir / CHECKPOINT_DIR
    checkpointer = ocp.StandardCheckpointer()
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    try:
        stored = checkpointer.metadata(checkpoint).item_metadata
        stored_shapes = {jax.tree_util.keystr(path): tuple(leaf.shape)
                         for path, leaf in jax.tree_util.tree_leaves_with_path(stored)}
    except Exception as error:  # orbax raises many types for a missing or damaged checkpoint
        raise RunError(f"cannot read the checkpoint in {checkpoint} ({type(error).__name__}).") from None
    expected_shapes = {jax.tree_util.keystr(path): tuple(leaf.shape)
                       for path, leaf in jax.tree_util.tree_leaves_with_path(target)}
    if stored_shapes != expected_shapes:
        size = (f"{config.components} components" if config.model in ("gmm", "mob")
                else f"latent-dim {config.latent_dim}")
        raise RunError(f"the checkpoint in {checkpoint} does not match {CONFIG_FILE} (a {config.model} model for "
                       f"{data_dim}-dimensional data with {size}); the run directory was changed after "
                       "'lvmjax fit' wrote it.")
    try:
        params = checkpointer.restore(checkpoint, target)
    except Exception as error:
        raise RunError(f"cannot read the checkpoint in {checkpoint} ({type(error).__name__}).") from None
    return Run(config, params, data_dim, image_shape, vae)


# --- Evaluation -------------------------------------------------------------------------


def evaluate_run(run_dir: str | os.PathLike, num_samples: int = 5000, data_dir: str | None = None,
                 refine_steps: int = 200, seed: int = 0) -> dict:
    """Test-split metrics of a saved run, in nats per datapoint.

    - vae, iwae: test ELBO of the encoder's q; test NLL = −log p(x) importance-sampled with
      `num_samples` draws from the refined q; the approximation and amortization gaps.
    - svi: φ_i fitted to each test datapoint with θ fixed, then the same ELBO and NLL.
    - ae: no likelihood, so test_elbo and test_nll are None; the reconstruction term instead.
    - gmm, mob, fa, ppca: exact test NLL (num_samples is unused), test_elbo = −test_nll (the
      exact posterior is the q), the training NLL and BIC, and for the mixtures the cluster
      sizes and, where the data has labels, the adjusted Rand index of the test clusters.
    """
    if num_samples < 1:
        raise RunError(f"num-samples must be at least 1, got {num_samples}.")
    run = load_run(run_dir)
    config, params, vae = run.config, run.params, run.vae
    dataset = load_data(config, data_dir)
    test = jnp.asarray(dataset.test)
    if test.shape[1] != run.data_dim:
        raise RunError(f"the test data has {test.shape[1]} columns but the model in {run_dir} was trained "
                       f"on {run.data_dim}; evaluate it on the data it was fitted to.")
    key = jax.random.PRNGKey(seed)
    chunk_size = _chunk_size(num_samples)
    report = {"model": config.model, "dataset": dataset.name, "num_test": int(test.shape[0]),
              "num_samples": num_samples}
    if config.model in CLASSICAL_MODELS:
        return _evaluate_classical(run, dataset, report)

    if config.model == "ae":
        reconstruction = jax.jit(jax.vmap(lambda x: log_likelihood(
            vae.model, params, x, amortized_lib.encode_mean(vae, params, x))))(test)
        return report | {"test_elbo": None, "test_nll": None,
                         "test_reconstruction_nll": -float(jnp.mean(reconstruction))}

    if config.model == "svi":
        phi0 = jax.vmap(vae.family.init)(jax.random.split(key, test.shape[0]))
        phi = jax.jit(lambda key: svi_lib.fit_local(
            key, vae.model, vae.family, params, test, phi0, optax.adam(config.svi_lr),
            refine_steps * 2, analytic_kl=True))(key)

        def per_datapoint(index, phi_i, x):
            q = vae.family.distribution(phi_i)
            k = jax.random.fold_in(key, index)
            return (elbo(k, vae.model, params, q, x, 100, analytic_kl=True),
                    log_marginal_is(k, vae.model, params, q, x, num_samples, chunk_size=chunk_size).log_marginal)

        elbos, log_marginals = jax.jit(lambda: jax.lax.map(
            lambda args: per_datapoint(*args), (jnp.arange(test.shape[0]), phi, test), batch_size=64))()
        return report | {"test_elbo": float(jnp.mean(elbos)), "test_nll": -float(jnp.mean(log_marginals))}

    gaps = jax.jit(lambda key: svi_lib.amortization_gap(
        key, vae, params, test, refine_steps=refine_steps, marginal_samples=num_samples,
        chunk_size=chunk_size))(key)
    return report | {
        "test_elbo": float(jnp.mean(gaps.amortized_elbo)),
        "test_nll": -float(jnp.mean(gaps.log_marginal)),
        "test_nll_stderr": float(jnp.sqrt(jnp.sum(gaps.log_marginal_stderr**2)) / test.shape[0]),
        "refined_elbo": float(jnp.mean(gaps.refined_elbo)),
        "approximation_gap": float(jnp.mean(gaps.approximation_gap)),
        "amortization_gap": float(jnp.mean(gaps.amortization_gap)),
    }


def _chunk_size(num_samples: int) -> int:
    """The largest divisor of num_samples that is at most 500."""
    return max(d for d in range(1, min(num_samples, 500) + 1) if num_samples % d == 0)
