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
import functools
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
import numpy as np
import optax
from jax.sharding import Mesh

from lvmjax import amortized as amortized_lib
from lvmjax import data as data_lib
from lvmjax import parallel, training
from lvmjax import svi as svi_lib
from lvmjax.applications import adjusted_rand_index
from lvmjax.estimators import elbo, log_marginal_is
from lvmjax.model import log_likelihood
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian

NEURAL_MODELS = ("vae", "iwae", "ae", "svi")
CLASSICAL_MODELS = ("gmm", "mob", "fa", "ppca")  # fitted by EM (ppca in closed form)
CONTINUOUS_MODELS = ("gmm", "fa", "ppca")  # Gaussian likelihoods: real-valued data; all others binary
MODELS = NEURAL_MODELS + CLASSICAL_MODELS
CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR = "config.json", "metrics.jsonl", "checkpoint"
CHECKPOINTS_DIR = "checkpoints"  # training checkpoints of the neural models, every N epochs


class RunError(ValueError):
    """A run that cannot be made or read; the message is one line that says how to fix it."""


class CheckpointError(RunError):
    """A training checkpoint that cannot be read back: damaged, or written for another configuration."""


class TrainingDiverged(RunError):
    """`max_skipped_steps` training steps in a row were skipped as non-finite; the state of the epoch
    that reached the limit is not saved, so the last checkpoint is the last good state."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Everything that determines a run; saved as RUN_DIR/config.json.

    `num_samples=None` means the model's default: 1 for vae and svi (the ELBO's
    Monte Carlo samples), 5 for iwae (K of the bound); unused by ae.

    The neural models use epochs, batch_size, num_samples, lr, hidden,
    architecture, the svi settings and max_skipped_steps (a training step whose
    objective or gradient is not finite is skipped, and that many in a row stop the
    run); the classical ones use components
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
    max_skipped_steps: int = 100
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
        for name in ("epochs", "batch_size", "latent_dim", "svi_inner_steps", "max_skipped_steps", "components",
                     "max_iter", "n_init"):
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
    """The networks of a run (svi uses only the decoder).

    Runs with the same sizes get the same `AmortizedModel` object, so that compiled
    programs that take it as a static argument are shared between them.
    """
    return _networks(data_dim, config.latent_dim, tuple(config.hidden), config.architecture,
                     tuple(image_shape) if image_shape is not None else None)


@functools.lru_cache(maxsize=16)
def _networks(data_dim, latent_dim, hidden, architecture, image_shape) -> amortized_lib.AmortizedModel:
    return amortized_lib.make_vae(data_dim, latent_dim, hidden=hidden, architecture=architecture,
                                  image_shape=image_shape)


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
    """The data of a run: binary for the Bernoulli models, real-valued for the Gaussian ones.

    Grey-level images (mnist, fashion-mnist) become binary for the Bernoulli
    models by dynamic binarization: `fit` draws each training minibatch afresh
    (`data.binarize`); the test split is one fixed draw (`data.binarize_split`).
    """
    continuous = config.model in CONTINUOUS_MODELS
    dataset = data_lib.load_dataset(config.data, data_dir if data_dir is not None else config.data_dir,
                                    continuous=continuous, test_fraction=config.test_fraction, seed=config.seed)
    if not continuous and dataset.grey_levels:
        # Burda et al. (2016): the test split binarized once, from a fixed seed, so that test metrics are
        # reproducible; the training split afresh in every minibatch (`fit`), or once for EM.
        test = data_lib.binarize_split(dataset.test)
        if config.model in NEURAL_MODELS:
            return dataset._replace(test=test)
        return dataset._replace(train=data_lib.binarize_split(dataset.train), test=test, binary=True,
                                grey_levels=False)
    if not continuous:
        # Both splits: the test split's log p(x) of a Bernoulli model is no probability for grey levels.
        data_lib.check_binary(dataset.train, f"the training split of {dataset.name}")
        data_lib.check_binary(dataset.test, f"the test split of {dataset.name}")
    elif dataset.binary:
        raise RunError(f"{config.model} models real-valued data, but every value of {dataset.name} is 0 or 1 "
                       "(a Gaussian fitted to it collapses onto the corners); use mob for binary data.")
    return dataset


def fit(config: FitConfig, dataset: data_lib.Dataset | None = None,
        progress: Callable[[int, dict], None] | None = None,
        checkpoints: Checkpoints | None = None, mesh: Mesh | None = None) -> FitResult:
    """Trains the model of `config` on the training split; `progress(epoch, metrics)` after each epoch.

    With `checkpoints`, the training state is saved every `checkpoints.every`
    epochs and after the last, and training starts from the latest checkpoint
    there if it has one. Epoch t always uses the t-th of the keys
    `jax.random.split(key_epochs, epochs)`, so a resumed run ends with the same
    parameters as an uninterrupted one (bitwise on CPU).

    With `mesh` (`parallel.data_mesh`), training is data-parallel over its devices
    (the minibatches split over them; for svi the φ_i too; for gmm the EM's data),
    with the same minibatches and keys as on one device, so the result agrees with
    the one-device run to float rounding. Checkpoints hold the state as on one
    device, so a run can resume on another number of devices.
    """
    dataset = dataset if dataset is not None else load_data(config)
    check_config_against_data(config, dataset)
    mesh = check_mesh(config, mesh)
    if config.model in CLASSICAL_MODELS:
        return _fit_classical(config, dataset, mesh)
    train = jnp.asarray(dataset.train)
    num_data, data_dim = train.shape
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
    if dataset.grey_levels:
        step = _binarizing(step, svi=config.model == "svi")
    epoch_fn = jax.jit(training.make_epoch(step, config.batch_size, mesh))

    history, first_epoch, seconds_before = [], 1, 0.0
    if checkpoints is not None and (latest := checkpoints.restore_latest(state)) is not None:
        state, history = latest
        first_epoch = len(history) + 1
        seconds_before = history[-1]["seconds"] if history else 0.0
    one_device_state = state
    if mesh is not None:
        data = parallel.replicate(data, mesh)
        if config.model == "svi":
            state = svi_lib.shard_state(state, mesh)
        else:
            state = parallel.replicate(state, mesh)
    epoch_keys = jax.random.split(key_epochs, config.epochs)
    start = time.perf_counter()
    in_a_row = history[-1].get("skipped_in_a_row", 0) if history else 0
    for epoch in range(first_epoch, config.epochs + 1):
        state, metrics = epoch_fn(state, epoch_keys[epoch - 1], data)
        skipped = np.asarray(metrics.skipped)
        in_a_row = _longest_run_of_skips(skipped, in_a_row, config.max_skipped_steps, epoch)
        objective = np.asarray(metrics.elbo if config.model == "svi" else metrics.objective)[~skipped]
        entry = {"epoch": epoch, "train_objective": float(objective.mean()) if objective.size else math.nan,
                 "seconds": seconds_before + time.perf_counter() - start}
        if skipped.any() or in_a_row:
            entry |= {"skipped_steps": int(skipped.sum()), "skipped_in_a_row": in_a_row}
        history.append(entry)
        if checkpoints is not None and (epoch % checkpoints.every == 0 or epoch == config.epochs):
            checkpoints.save(epoch, _as_on_one_device(state, one_device_state) if mesh is not None else state,
                             history)
        if progress is not None:
            progress(epoch, entry)
    if mesh is not None:
        state = _as_on_one_device(state, one_device_state)
    if config.model == "svi":
        params = {"decoder": state.theta["decoder"], "phi": state.phi}
    else:
        params = state.params
    params = jax.block_until_ready(params)
    if checkpoints is not None:
        checkpoints.wait()
    return FitResult(params, history, seconds_before + time.perf_counter() - start, data_dim, dataset.image_shape)


def _as_on_one_device(state, template):
    """A data-parallel training state as one device holds it: numpy arrays on the host, φ without its
    padding rows (orbax writes host arrays from process 0 alone in a multi-process run)."""
    host = parallel.to_host(state)
    return jax.tree_util.tree_map(lambda leaf, like: np.asarray(leaf[: like.shape[0]] if like.ndim else leaf),
                                  host, template)


def _this_process_only(ocp) -> dict:
    """Orbax options that involve only this process (in a multi-process run, process 0 writes RUN_DIR and
    every process may read it), where orbax's default waits for all of them; none in a one-process run."""
    if jax.process_count() == 1:
        return {}
    process = jax.process_index()
    return {"multiprocessing_options": ocp.options.MultiprocessingOptions(primary_host=process,
                                                                          active_processes={process})}


def _this_process_checkpointer(ocp):
    """An orbax checkpointer that involves only this process (see `_this_process_only`)."""
    return ocp.StandardCheckpointer(**_this_process_only(ocp))


def _longest_run_of_skips(skipped: np.ndarray, in_a_row: int, limit: int, epoch: int) -> int:
    """The skipped steps in a row at the end of this epoch's flags (`in_a_row` carried in from the last);
    raises TrainingDiverged once a run of them reaches `limit`, before this epoch's state is saved."""
    longest = 0
    for flag in skipped:
        in_a_row = in_a_row + 1 if flag else 0
        longest = max(longest, in_a_row)
    if longest >= limit:
        raise TrainingDiverged(f"{longest} training steps in a row had a non-finite objective or gradient (NaN or inf) "
                               f"by the end of epoch {epoch}, so training stopped; lower --lr.")
    return in_a_row


def _binarizing(step, svi: bool):
    """`step` on a fresh binarization of every minibatch of grey levels (Burda et al. 2016)."""

    def binarized_step(state, key, batch):
        key_binarize, key_step = jax.random.split(key)
        if svi:
            indices, images = batch
            return step(state, key_step, (indices, data_lib.binarize(key_binarize, images)))
        return step(state, key_step, data_lib.binarize(key_binarize, batch))

    return binarized_step


def check_mesh(config: FitConfig, mesh: Mesh | None) -> Mesh | None:
    """The mesh `fit` trains on: None for one device; raises RunError where the model cannot use it."""
    if mesh is None or mesh.size == 1:
        return None
    if config.model in NEURAL_MODELS and config.batch_size % mesh.size:
        raise RunError(f"batch-size {config.batch_size} must be a multiple of the {mesh.size} devices, "
                       "so that each takes the same share of every minibatch.")
    if config.model in CLASSICAL_MODELS and config.model != "gmm":
        raise RunError(f"{config.model} trains on one device; several devices are for vae, iwae, ae, svi and gmm.")
    return mesh


def check_config_against_data(config: FitConfig, dataset: data_lib.Dataset) -> None:
    """The checks of `config` that need the data's size, made before anything is trained or written."""
    num_data, data_dim = dataset.train.shape
    if config.model in NEURAL_MODELS and config.batch_size > num_data:
        raise RunError(f"batch-size {config.batch_size} is larger than the {num_data} training datapoints.")
    if config.model in ("gmm", "mob") and config.components > num_data:
        raise RunError(f"components must be between 1 and the number of training datapoints ({num_data}), "
                       f"got {config.components}.")
    if config.model in ("fa", "ppca") and config.latent_dim >= data_dim:
        raise RunError(f"latent-dim {config.latent_dim} must be below the data dimension D={data_dim}.")


class Checkpoints:
    """The training checkpoints of a run, in RUN_DIR/checkpoints/EPOCH with orbax.

    Each holds the whole training state (parameters, optimizer state, step
    count; for svi every φ_i too) and the history of the epochs so far, from
    which the epoch and its PRNG key follow. orbax writes each atomically (a
    temporary directory, renamed when complete), so a process killed at any
    moment leaves the previous checkpoint readable; only the latest is kept.
    """

    def __init__(self, run_dir: str | os.PathLike, every: int):
        import orbax.checkpoint as ocp

        if every < 1:
            raise RunError(f"checkpoint-every must be at least 1, got {every}.")
        self.every = every
        self._ocp = ocp
        # Synchronous: with orbax's background writes overlapping the next epoch, a resumed run on the
        # CPU diverged from the uninterrupted one in about one kill-and-resume in four (none in 20 since).
        # In a multi-process run every process reads the checkpoints (to resume) and process 0 writes them.
        self._writes = jax.process_index() == 0
        directory = Path(run_dir).absolute() / CHECKPOINTS_DIR
        options = _this_process_only(ocp)
        if options:
            if self._writes:
                directory.mkdir(parents=True, exist_ok=True)
            options |= {"create": False, "read_only": not self._writes}
        self._manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=1, enable_async_checkpointing=False, **options))

    def save(self, epoch: int, state, history: list[dict]) -> None:
        if not self._writes:
            return
        ocp = self._ocp
        self._manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                          history=ocp.args.JsonSave(history)))

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def restore_latest(self, template):
        """(state, history) of the latest checkpoint, shaped like `template`; None if there is none."""
        epoch = self._manager.latest_step()
        if epoch is None:
            return None
        ocp = self._ocp
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        try:
            restored = self._manager.restore(epoch, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))
        except Exception as error:  # orbax raises many types for a damaged or mismatched checkpoint
            raise CheckpointError(f"cannot read the checkpoint of epoch {epoch} in {self._manager.directory} "
                                  f"({type(error).__name__}): it is damaged or does not match config.json.") from None
        return restored.state, list(restored.history)

    def wait(self) -> None:
        self._manager.wait_until_finished()


# --- Classical models, fitted by EM -----------------------------------------------------

_CLASSICAL_PARAMS = {"gmm": gaussian_mixture.Params, "mob": bernoulli_mixture.Params,
                     "fa": linear_gaussian.Params, "ppca": linear_gaussian.Params}
_LOG_MARGINALS = {"gmm": gaussian_mixture.log_marginal, "mob": bernoulli_mixture.log_marginal,
                  "fa": linear_gaussian.log_marginal, "ppca": linear_gaussian.log_marginal}


def _fit_classical(config: FitConfig, dataset: data_lib.Dataset, mesh: Mesh | None = None) -> FitResult:
    train = jnp.asarray(dataset.train)
    key = jax.random.PRNGKey(config.seed)
    start = time.perf_counter()
    if config.model == "gmm":
        params, info = gaussian_mixture.fit_em(key, train, config.components, config.covariance,
                                               max_iter=config.max_iter, n_init=config.n_init, mesh=mesh)
        if mesh is not None:  # back to one device, like every other run's parameters
            params, info = jax.tree_util.tree_map(jnp.asarray, parallel.to_host((params, info)))
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
        trace = [float(value) for value in jax.device_get(info.objective)[: int(info.num_iterations)]]
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


def _evaluate_classical(config: FitConfig, params, dataset: data_lib.Dataset, report: dict,
                        per_datapoint: bool) -> dict:
    """Exact test metrics: −log p(x) needs no sampling, and with q = p(z | x) the ELBO is log p(x)."""
    model = config.model
    params = _CLASSICAL_PARAMS[model](**params)
    log_marginal = jax.jit(jax.vmap(_LOG_MARGINALS[model], in_axes=(None, 0)))
    train, test = jnp.asarray(dataset.train), jnp.asarray(dataset.test)
    test_log_marginals, train_log_marginals = log_marginal(params, test), log_marginal(params, train)
    num_train = train.shape[0]
    bic = -2 * float(jnp.sum(train_log_marginals)) + num_free_parameters(config, train.shape[1]) * math.log(num_train)
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
        report["cluster_sizes"] = [int(count) for count in jnp.bincount(labels, length=config.components)]
        if dataset.test_labels is not None:
            report["adjusted_rand_index"] = adjusted_rand_index(dataset.test_labels, labels)
    if model == "gmm":
        report["collapsed_components"] = int(jnp.sum(gaussian_mixture.collapsed_components(params)))
    if per_datapoint:
        report["test_log_marginals"] = jax.device_get(test_log_marginals).tolist()
    return report


# --- Run directories --------------------------------------------------------------------


def _describe(config: FitConfig, data_dim: int, image_shape, num_train: int) -> dict:
    """config.json: the configuration, and the shapes that `load_run` needs to read the checkpoint."""
    description = dataclasses.asdict(config) | {
        "data_dim": int(data_dim),
        "image_shape": list(image_shape) if image_shape else None,
    }
    if config.model == "svi":
        description["num_train"] = int(num_train)  # one φ_i per training datapoint
    return description


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(text)
    os.replace(temporary, path)


def _create_run_dir(run_dir: Path, description: dict, fill: Callable[[Path], None] | None = None) -> Path:
    """RUN_DIR with config.json (and whatever `fill` writes), appearing whole: built in a staging
    sibling that is renamed into place, and removed if anything fails. An existing RUN_DIR is refused."""
    run_dir = Path(run_dir).absolute()
    check_new_run_dir(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.partial-", dir=run_dir.parent))
    try:
        (staging / CONFIG_FILE).write_text(json.dumps(description, indent=2) + "\n")
        if fill is not None:
            fill(staging)
        os.rename(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return run_dir


def start_run(run_dir: str | os.PathLike, config: FitConfig, dataset: data_lib.Dataset) -> Path:
    """Creates RUN_DIR holding config.json, to be filled by checkpoints and `finish_run`.

    The directory appears whole, and an existing one is never written into.
    """
    description = _describe(config, dataset.train.shape[1], dataset.image_shape, dataset.train.shape[0])
    return _create_run_dir(Path(run_dir), description)


def finish_run(run_dir: str | os.PathLike, result: FitResult) -> Path:
    """Writes the trained parameters (checkpoint/), metrics.jsonl and the training time into RUN_DIR.

    checkpoint/ is written last and atomically: a run directory holds it
    exactly when the run is complete.
    """
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir).absolute()
    _write_atomically(run_dir / METRICS_FILE, "".join(json.dumps(entry) + "\n" for entry in result.history))
    description = json.loads((run_dir / CONFIG_FILE).read_text()) | {"train_seconds": result.seconds}
    _write_atomically(run_dir / CONFIG_FILE, json.dumps(description, indent=2) + "\n")
    checkpointer = _this_process_checkpointer(ocp)
    checkpointer.save(run_dir / CHECKPOINT_DIR, result.params)
    checkpointer.wait_until_finished()
    return run_dir


def save_run(run_dir: str | os.PathLike, config: FitConfig, result: FitResult) -> Path:
    """Writes config.json, metrics.jsonl and the checkpoint; never touches an existing directory.

    Everything goes into a staging sibling that is renamed into place at the end.
    """
    num_train = len(jax.tree_util.tree_leaves(result.params["phi"])[0]) if config.model == "svi" else 0
    description = _describe(config, result.data_dim, result.image_shape, num_train)
    return _create_run_dir(Path(run_dir), description, lambda staging: finish_run(staging, result))


def resume_run(run_dir: str | os.PathLike, config: FitConfig) -> Path:
    """Checks that RUN_DIR is an unfinished run of exactly `config`, to continue with `fit(..., checkpoints)`."""
    run_dir = Path(run_dir).absolute()
    saved = _read_config(run_dir)
    if (run_dir / CHECKPOINT_DIR).exists():
        raise RunError(f"{run_dir} is a finished run; there is nothing to resume.")
    if config.model in CLASSICAL_MODELS:
        raise RunError(f"{config.model} is fitted in one go, without checkpoints; there is nothing to resume, "
                       f"so fit it again into a new --out.")
    for field in dataclasses.fields(FitConfig):
        given, stored = getattr(config, field.name), getattr(saved, field.name)
        if given != stored:
            raise RunError(f"--resume continues {run_dir} as config.json describes it, but "
                           f"{field.name.replace('_', '-')} differs (saved {stored!r}, given {given!r}); "
                           "repeat the original command with --resume.")
    return run_dir


def _read_config(run_dir: Path) -> FitConfig:
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} does not exist; make it with 'lvmjax fit'." if not run_dir.exists()
                       else f"{run_dir} is a file, not a run directory; make one with 'lvmjax fit'.")
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}; "
                       "make one with 'lvmjax fit'.")
    try:
        description = json.loads((run_dir / CONFIG_FILE).read_text())
        if not isinstance(description, dict):
            raise ValueError(f"it holds a JSON {type(description).__name__}, not an object of settings")
        fields = {field.name for field in dataclasses.fields(FitConfig)}
        return FitConfig(**{name: value for name, value in description.items() if name in fields})
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise RunError(f"{run_dir / CONFIG_FILE} is damaged ({error}).") from None


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
    config = _read_config(run_dir)
    if not (run_dir / CHECKPOINT_DIR).exists():
        checkpoints = run_dir / CHECKPOINTS_DIR
        epochs = sorted(int(path.name) for path in checkpoints.iterdir() if path.name.isdigit()) \
            if checkpoints.is_dir() else []
        where = f"after epoch {epochs[-1]}" if epochs else "before its first checkpoint"
        raise RunError(f"the run in {run_dir} is unfinished (it stopped {where}); continue it by repeating "
                       "its 'lvmjax fit' command with --resume.")
    try:
        description = json.loads((run_dir / CONFIG_FILE).read_text())
        data_dim = int(description["data_dim"])
        image_shape = tuple(description["image_shape"]) if description.get("image_shape") else None
        if image_shape is not None and (len(image_shape) != 2 or not all(
                isinstance(side, int) and side >= 1 for side in image_shape)
                or image_shape[0] * image_shape[1] != data_dim):
            raise ValueError(f"image_shape {list(image_shape)} is not (height, width) of {data_dim} pixels")
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
    checkpointer = _this_process_checkpointer(ocp)
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
                 refine_steps: int = 200, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict:
    """Test-split metrics of a saved run, in nats per datapoint; see `evaluate`."""
    if num_samples < 1:
        raise RunError(f"num-samples must be at least 1, got {num_samples}.")
    run = load_run(run_dir)
    dataset = load_run_data(run, run_dir, data_dir)
    return evaluate(run.config, run.params, dataset, num_samples, refine_steps, seed, progress=progress)


def load_run_data(run: Run, run_dir: str | os.PathLike, data_dir: str | None = None) -> data_lib.Dataset:
    """The data `run` was fitted to (`load_data`), refused if its columns do not match the model's."""
    dataset = load_data(run.config, data_dir)
    if dataset.test.shape[1] != run.data_dim:
        raise RunError(f"the test data has {dataset.test.shape[1]} columns but the model in {run_dir} was trained "
                       f"on {run.data_dim}; use it on the data it was fitted to.")
    return dataset


EVALUATION_BATCH = 1000  # test datapoints per compiled call of the neural models' evaluation


def evaluate(config: FitConfig, params, dataset: data_lib.Dataset, num_samples: int = 5000,
             refine_steps: int = 200, seed: int = 0, per_datapoint: bool = False,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Test-split metrics of a fitted model, in nats per datapoint.

    - vae, iwae: test ELBO of the encoder's q; test NLL = −log p(x) importance-sampled with
      `num_samples` draws from the refined q; the approximation and amortization gaps.
    - svi: φ_i fitted to each test datapoint with θ fixed, then the same ELBO and NLL.
    - ae: no likelihood, so test_elbo and test_nll are None; the reconstruction term instead.
    - gmm, mob, fa, ppca: exact test NLL (num_samples is unused), test_elbo = −test_nll (the
      exact posterior is the q), the training NLL and BIC, and for the mixtures the cluster
      sizes and, where the data has labels, the adjusted Rand index of the test clusters.

    Args:
      config: the run's configuration.
      params: its parameters, as `fit` returns them in `FitResult.params` (or `load_run` reads them).
      dataset: the data it was fitted to; the test split is evaluated.
      num_samples: K of the importance-sampled test NLL.
      refine_steps: SVI steps of the refinement (vae, iwae) or, twice as many, of the test φ_i (svi).
      seed: of every draw.
      per_datapoint: also return "test_log_marginals", log p(x_i) (or its estimate) for every
        test datapoint, for the models that have a likelihood.
      progress: `progress(done, total)` before the first and after each batch of at most
        `EVALUATION_BATCH` test datapoints of a neural model (batch b draws with the key
        fold_in(PRNGKey(seed), b); the batches have equal sizes, so one program serves all).
    """
    if num_samples < 1:
        raise RunError(f"num-samples must be at least 1, got {num_samples}.")
    test = np.asarray(dataset.test)  # on the host: `_in_batches` moves one batch at a time to the device
    key = jax.random.PRNGKey(seed)
    chunk_size = _chunk_size(num_samples)
    report = {"model": config.model, "dataset": dataset.name, "num_test": int(test.shape[0]),
              "num_samples": num_samples}
    if config.model in CLASSICAL_MODELS:
        return _evaluate_classical(config, params, dataset, report, per_datapoint)
    vae = build_model(config, test.shape[1], dataset.image_shape)

    if config.model == "ae":
        reconstruction = _in_batches(lambda batch_key, batch: _reconstruction_log_likelihoods(vae, params, batch),
                                     key, test, progress)
        return report | {"test_elbo": None, "test_nll": None,
                         "test_reconstruction_nll": -float(jnp.mean(reconstruction))}

    if config.model == "svi":
        elbos, estimate = _in_batches(
            lambda batch_key, batch: _svi_test_metrics(batch_key, vae, {"decoder": params["decoder"]}, batch,
                                                       config.svi_lr, refine_steps, num_samples, chunk_size),
            key, test, progress)
        report |= {"test_elbo": float(jnp.mean(elbos)), "test_nll": -float(jnp.mean(estimate.log_marginal)),
                   "test_nll_stderr": float(jnp.sqrt(jnp.sum(estimate.stderr**2)) / test.shape[0])}
        if per_datapoint:
            report["test_log_marginals"] = jax.device_get(estimate.log_marginal).tolist()
        return report

    gaps = _in_batches(lambda batch_key, batch: _gap_report(batch_key, vae, params, batch, refine_steps,
                                                            num_samples, chunk_size), key, test, progress)
    report |= {
        "test_elbo": float(jnp.mean(gaps.amortized_elbo)),
        "test_nll": -float(jnp.mean(gaps.log_marginal)),
        "test_nll_stderr": float(jnp.sqrt(jnp.sum(gaps.log_marginal_stderr**2)) / test.shape[0]),
        "refined_elbo": float(jnp.mean(gaps.refined_elbo)),
        "approximation_gap": float(jnp.mean(gaps.approximation_gap)),
        "amortization_gap": float(jnp.mean(gaps.amortization_gap)),
    }
    if per_datapoint:
        report["test_log_marginals"] = jax.device_get(gaps.log_marginal).tolist()
    return report


# Compiled once per network and setting: the parameters are arguments, not constants, so runs
# of the same sizes (a vae and an iwae, say) share the program.


@functools.partial(jax.jit, static_argnames=("vae",))
def _reconstruction_log_likelihoods(vae, params, test):
    return jax.vmap(lambda x: log_likelihood(vae.model, params, x, amortized_lib.encode_mean(vae, params, x)))(test)


@functools.partial(jax.jit, static_argnames=("vae", "svi_lr", "refine_steps", "num_samples", "chunk_size"))
def _svi_test_metrics(key, vae, params, test, svi_lr, refine_steps, num_samples, chunk_size):
    phi0 = jax.vmap(vae.family.init)(jax.random.split(key, test.shape[0]))
    phi = svi_lib.fit_local(key, vae.model, vae.family, params, test, phi0, optax.adam(svi_lr),
                            refine_steps * 2, analytic_kl=True)

    def per_datapoint(args):
        index, phi_i, x = args
        q = vae.family.distribution(phi_i)
        k = jax.random.fold_in(key, index)
        return (elbo(k, vae.model, params, q, x, 100, analytic_kl=True),
                log_marginal_is(k, vae.model, params, q, x, num_samples, chunk_size=chunk_size))

    return jax.lax.map(per_datapoint, (jnp.arange(test.shape[0]), phi, test), batch_size=64)


@functools.partial(jax.jit, static_argnames=("vae", "refine_steps", "num_samples", "chunk_size"))
def _gap_report(key, vae, params, test, refine_steps, num_samples, chunk_size):
    return svi_lib.amortization_gap(key, vae, params, test, refine_steps=refine_steps,
                                    marginal_samples=num_samples, chunk_size=chunk_size)


def _in_batches(evaluate_batch: Callable, key, test: np.ndarray, progress: Callable[[int, int], None] | None):
    """`evaluate_batch(key_b, batch)` over equal batches of at most EVALUATION_BATCH rows (the last
    padded with copies of its first row, whose results are dropped), concatenated along the rows.

    The test data stays on the host and one batch at a time goes to the device, so the device
    memory is that of one batch (and, through the chunked estimators, independent of K)."""
    num_test = test.shape[0]
    num_batches = -(-num_test // EVALUATION_BATCH)
    size = -(-num_test // num_batches)
    results = []
    if progress is not None:
        progress(0, num_batches)
    for index in range(num_batches):
        batch = test[index * size: (index + 1) * size]
        padding = size - batch.shape[0]
        if padding:
            batch = np.concatenate([batch, np.broadcast_to(batch[:1], (padding, batch.shape[1]))])
        result = evaluate_batch(jax.random.fold_in(key, index), jnp.asarray(batch))
        results.append(jax.device_get(jax.tree_util.tree_map(lambda leaf, keep=size - padding: leaf[:keep], result)))
        if progress is not None:
            jax.block_until_ready(results[-1])
            progress(index + 1, num_batches)
    return jax.tree_util.tree_map(lambda *leaves: np.concatenate(leaves), *results)


def _chunk_size(num_samples: int) -> int:
    """The largest divisor of num_samples that is at most 500."""
    return max(d for d in range(1, min(num_samples, 500) + 1) if num_samples % d == 0)
