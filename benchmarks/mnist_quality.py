"""Test NLL on binarized MNIST: the published figures, and the NLL per training minute against PyTorch.

    python -m benchmarks.mnist_quality [--models burda-vae,burda-iwae,pythae-vae] [--schedule reduced|full]
                                       [--epochs N] [--num-test 1000] [--data-dir DIR] [--json FILE] [--quick]

Three models of the literature on the statically binarized MNIST of Larochelle &
Murray (2011), 50,000 training and 10,000 test images, each with z ~ N(0, I), a
mean-field Gaussian q(z | x) and a Bernoulli decoder:

- burda-vae: 784-200-200-50 with tanh (Burda et al. 2016) trained as a VAE, on
  the ELBO with one reparameterized sample and the analytic KL;
- burda-iwae: the same network trained on the IWAE bound with K = 50;
- pythae-vae: 784-400-40 with ReLU trained as a VAE (the Pythae benchmark).

The test NLLs to meet or beat (nats, K = 5000): burda-vae 88.71 and burda-iwae
87.10 (Burda et al. 2016, appendix), burda-iwae 86.82 and pythae-vae 89.78 (the
Pythae benchmark). They come from Burda et al.'s schedule, `--schedule full`:
3^i passes at the learning rate 10⁻³ · 10^(−i/7) for i = 0 … 7 (3280 epochs),
batches of 20, Adam with β = (0.9, 0.999) and ε = 10⁻⁴: a GPU's work. The
default `--schedule reduced` runs a few epochs (batches of 100, Adam at 10⁻³,
ε = 10⁻⁴) that a CPU finishes in minutes: it does not reach the published
figures; it compares the two implementations on equal terms.

Each model is trained twice, with the same schedule, batches and Adam settings:

- lvmjax: `training.make_epoch` over `training.make_train_step` of the model's
  objective (`amortized.elbo_objective` or `amortized.iwae_objective`), one
  `lax.scan` per epoch, compiled ahead of time so that its compile seconds are
  measured on their own; they are counted in lvmjax's training time, as the
  first epoch would include them. The learning rate is an optax schedule keyed
  on the step.
- PyTorch: the same networks as `nn.Sequential`s with PyTorch's default
  initialization, and the usual eager loop, on the GPU where there is one; the
  learning rate is set from the same optax schedule at the start of each epoch
  (every stage is whole epochs).

Only the epochs are timed, each side blocking until its epoch is done. The
parameters at the end of every epoch (of a geometric grid of 30 epochs in longer
runs) are kept and evaluated after training: PyTorch's weights are converted to
lvmjax parameters, so that both sides go through the same estimator with the
same keys, `amortized.log_marginal` with the encoder as the proposal,

    NLL = −(1/N) Σ_i log (1/K) Σ_k p(x_i, z_k) / q(z_k | x_i),   z_k ~ q(z | x_i)

as a curve (K = `--curve-samples` on the first `--curve-test` test images) and
finally (K = `--eval-samples` on the first `--num-test`), ± its standard error
over the images. "Time to PyTorch's NLL" is lvmjax's training seconds up to the
first kept epoch whose curve NLL is at most PyTorch's final one, beside
PyTorch's total seconds. `--figure` draws the curves against training minutes.

Where the data is not found, nothing runs and one line says how to pass
`--data-dir`. `--quick` trains 1 epoch on 512 images and evaluates with K = 10
on 20 test images: it checks that everything works, it measures nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from benchmarks.common import DEFAULT_DATA_DIR, Row, machine, not_installed
from lvmjax import amortized, training
from lvmjax import data as data_lib

Params = Any

DATA_DIM = 784
ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_FIGURE = ROOT / "benchmarks" / "figures" / "mnist_quality.png"
INIT_SEED, TRAIN_SEED, EVAL_SEED = 0, 1, 2
MAX_CHUNK = 500  # importance samples drawn at once per image: memory does not grow with K
EVAL_BATCH = 25  # test images evaluated together (vmapped)
MAX_CURVE_POINTS = 30  # epochs whose parameters are kept: all of them up to this many, else a geometric grid


@dataclasses.dataclass(frozen=True)
class Model:
    """A VAE of the literature, the objective it is trained on, and the test NLLs published for it."""

    hidden: tuple[int, ...]
    latent_dim: int
    activation: str  # "tanh" or "relu"
    num_samples: int  # K of the training objective: 1 is the ELBO with the analytic KL, above 1 the IWAE bound
    reduced_epochs: int  # epochs of the reduced schedule
    published: tuple[tuple[float, str], ...]  # (test NLL in nats with K = 5000, source)

    @property
    def architecture(self) -> str:
        return f"{DATA_DIM}-{'-'.join(map(str, self.hidden))}-{self.latent_dim} {self.activation}"

    @property
    def objective_name(self) -> str:
        return "ELBO (K = 1, analytic KL)" if self.num_samples == 1 else f"IWAE bound (K = {self.num_samples})"


MODELS: dict[str, Model] = {
    "burda-vae": Model((200, 200), 50, "tanh", 1, 10, ((88.71, "Burda et al. 2016, appendix"),)),
    "burda-iwae": Model(
        (200, 200), 50, "tanh", 50, 2, ((87.10, "Burda et al. 2016, appendix"), (86.82, "Pythae benchmark"))
    ),
    "pythae-vae": Model((400,), 40, "relu", 1, 10, ((89.78, "Pythae benchmark"),)),
}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Minibatch Adam whose learning rate is constant within each stage: `stages` of (epochs, learning rate)."""

    name: str
    batch_size: int
    stages: tuple[tuple[int, float], ...]
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-4

    @property
    def epochs(self) -> int:
        return sum(epochs for epochs, _ in self.stages)


FULL = Schedule("full", 20, tuple((3**i, 1e-3 * 10 ** (-i / 7)) for i in range(8)))  # Burda et al. 2016


def reduced(epochs: int) -> Schedule:
    """The CPU schedule: `epochs` passes of batches of 100 at the learning rate 10⁻³."""
    return Schedule("reduced", 100, ((epochs, 1e-3),))


def truncated(schedule: Schedule, epochs: int) -> Schedule:
    """The first `epochs` epochs of `schedule` (all of it if it is shorter)."""
    stages, left = [], epochs
    for stage_epochs, rate in schedule.stages:
        if left > 0:
            stages.append((min(stage_epochs, left), rate))
        left -= stage_epochs
    return dataclasses.replace(schedule, stages=tuple(stages))


def schedule_for(model: Model, name: str, epochs: int | None = None) -> Schedule:
    """The schedule `name` ("reduced" or "full") for `model`; `epochs` overrides its length."""
    if name == "full":
        return FULL if epochs is None else truncated(FULL, epochs)
    if name == "reduced":
        return reduced(model.reduced_epochs if epochs is None else epochs)
    raise ValueError(f"schedule must be 'reduced' or 'full', got {name!r}.")


def learning_rate(schedule: Schedule, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate as a function of the step: each stage's rate for its epochs' steps."""
    boundaries = itertools.accumulate(epochs * steps_per_epoch for epochs, _ in schedule.stages[:-1])
    return optax.join_schedules([optax.constant_schedule(rate) for _, rate in schedule.stages], list(boundaries))


def make_optimizer(schedule: Schedule, steps_per_epoch: int) -> optax.GradientTransformation:
    return optax.adam(learning_rate(schedule, steps_per_epoch), b1=schedule.b1, b2=schedule.b2, eps=schedule.eps)


def make_network(model: Model) -> amortized.AmortizedModel:
    return amortized.make_vae(DATA_DIM, model.latent_dim, hidden=model.hidden, activation=model.activation)


def objective(model: Model, vae: amortized.AmortizedModel) -> amortized.Objective:
    if model.num_samples == 1:
        return amortized.elbo_objective(vae)
    return amortized.iwae_objective(vae, model.num_samples)


def curve_epochs(num_epochs: int, max_points: int = MAX_CURVE_POINTS) -> list[int]:
    """The epochs (from 1) after which the parameters are kept: every one, or a geometric grid ending at the last."""
    if num_epochs <= max_points:
        return list(range(1, num_epochs + 1))
    return sorted({round(epoch) for epoch in np.geomspace(1, num_epochs, max_points)})


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Training(NamedTuple):
    """One side's training of one model."""

    epoch_seconds: list[float]  # training seconds of each epoch
    compile_seconds: float  # lvmjax's tracing and compilation, before the first epoch; 0 for PyTorch
    kept_epochs: list[int]  # the epochs (from 1) at whose end the parameters were kept
    params: list[Params]  # host copies of lvmjax parameters at those epochs


def train_lvmjax(model: Model, schedule: Schedule, images: np.ndarray, label: str) -> Training:
    """Trains `model` with lvmjax's scanned epoch; see the module's docstring."""
    steps_per_epoch = images.shape[0] // schedule.batch_size
    vae = make_network(model)
    optimizer = make_optimizer(schedule, steps_per_epoch)
    initial = jax.jit(vae.init)(jax.random.PRNGKey(INIT_SEED))  # one program, not one per initializer
    state = training.init_train_state(initial, optimizer)
    epoch = jax.jit(
        training.make_epoch(training.make_train_step(objective(model, vae), optimizer), schedule.batch_size)
    )
    data = jax.device_put(images)
    key = jax.random.PRNGKey(TRAIN_SEED)
    begin = time.perf_counter()
    compiled = epoch.lower(state, key, data).compile()
    compile_seconds = time.perf_counter() - begin
    kept = curve_epochs(schedule.epochs)
    seconds, params = [], []
    for index in range(1, schedule.epochs + 1):
        begin = time.perf_counter()
        state, info = compiled(state, jax.random.fold_in(key, index), data)
        jax.block_until_ready(state)
        seconds.append(time.perf_counter() - begin)
        if index in kept:
            params.append(jax.device_get(state.params))
        progress(
            f"{label} lvmjax epoch {index}/{schedule.epochs}: {seconds[-1]:.1f} s, "
            f"training objective {float(info.objective.mean()):.2f}"
        )
    return Training(seconds, compile_seconds, kept, params)


def torch_networks(model: Model, data_dim: int = DATA_DIM):
    """The encoder x -> (mean, log_scale) and decoder z -> logits as a PyTorch user writes them."""
    from torch import nn

    activation = {"tanh": nn.Tanh, "relu": nn.ReLU}[model.activation]

    def mlp(widths):
        layers = []
        for m, n in itertools.pairwise(widths):
            layers += [nn.Linear(m, n), activation()]
        return nn.Sequential(*layers[:-1])  # no activation after the last layer

    return (mlp([data_dim, *model.hidden, 2 * model.latent_dim]), mlp([model.latent_dim, *model.hidden, data_dim]))


def lvmjax_params(encoder, decoder) -> Params:
    """lvmjax's parameters of PyTorch's networks: Dense_i's kernel is the i-th Linear's weight transposed.

    Both encoders' last layer gives the mean in its first half and the log-scale
    in its second (`networks.MLPEncoder`, and `chunk(2)` in `torch_objective`).
    """

    def dense_layers(sequential):
        linears = [layer for layer in sequential if hasattr(layer, "weight")]
        return {
            "params": {
                f"Dense_{index}": {
                    "kernel": layer.weight.detach().cpu().numpy().T.copy(),
                    "bias": layer.bias.detach().cpu().numpy().copy(),
                }
                for index, layer in enumerate(linears)
            }
        }

    return {"encoder": dense_layers(encoder), "decoder": dense_layers(decoder)}


def torch_objective(encoder, decoder, num_samples: int) -> Callable:
    """batch (B, D) -> the batch mean of the ELBO with the analytic KL (num_samples = 1) or of the IWAE bound

    IWAE_K(x) = log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x),   z_k = μ(x) + σ(x) ε_k
    """
    import torch
    from torch.nn import functional

    def log_likelihood(z, x):
        logits = decoder(z)
        return -functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def elbo(x):
        mean, log_scale = encoder(x).chunk(2, dim=-1)
        z = mean + torch.exp(log_scale) * torch.randn_like(mean)
        kl = (0.5 * (mean**2 + torch.exp(2 * log_scale) - 1) - log_scale).sum(-1)
        return (log_likelihood(z, x) - kl).mean()

    def iwae(x):
        mean, log_scale = encoder(x).chunk(2, dim=-1)
        noise = torch.randn(num_samples, *mean.shape, device=mean.device)
        z = mean + torch.exp(log_scale) * noise  # (K, B, d)
        # log p(z) - log q(z | x); the normalizing constants of the two Gaussians cancel
        log_ratio = (-0.5 * z**2 + 0.5 * noise**2 + log_scale).sum(-1)
        log_weights = log_likelihood(z, x) + log_ratio
        return (torch.logsumexp(log_weights, dim=0) - math.log(num_samples)).mean()

    return elbo if num_samples == 1 else iwae


def train_pytorch(model: Model, schedule: Schedule, images: np.ndarray, label: str) -> Training | None:
    """Trains `model` with PyTorch's eager loop; None if PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where a PyTorch user would train
    encoder, decoder = (network.to(device) for network in torch_networks(model))
    steps_per_epoch = images.shape[0] // schedule.batch_size
    rate = learning_rate(schedule, steps_per_epoch)
    optimizer = torch.optim.Adam(
        [*encoder.parameters(), *decoder.parameters()],
        lr=float(rate(0)),
        betas=(schedule.b1, schedule.b2),
        eps=schedule.eps,
    )
    bound = torch_objective(encoder, decoder, model.num_samples)
    data = torch.from_numpy(images).to(device)
    kept = curve_epochs(schedule.epochs)
    seconds, params = [], []
    for index in range(1, schedule.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = float(rate((index - 1) * steps_per_epoch))
        begin = time.perf_counter()
        order = torch.randperm(images.shape[0], device=device)
        total = 0.0
        for step in range(steps_per_epoch):
            batch = data[order[step * schedule.batch_size : (step + 1) * schedule.batch_size]]
            optimizer.zero_grad(set_to_none=True)
            loss = -bound(batch)
            loss.backward()
            optimizer.step()
            total += loss.item()  # waits for the step, on a GPU too
        seconds.append(time.perf_counter() - begin)
        if index in kept:
            params.append(lvmjax_params(encoder, decoder))
        progress(
            f"{label} PyTorch epoch {index}/{schedule.epochs}: {seconds[-1]:.1f} s, "
            f"training objective {-total / steps_per_epoch:.2f}"
        )
    return Training(seconds, 0.0, kept, params)


def make_evaluator(vae: amortized.AmortizedModel, num_samples: int) -> Callable:
    """A jitted `(params, keys, images) -> log p̂(x_i)` per image, by `amortized.log_marginal` with K =
    `num_samples` drawn at most `MAX_CHUNK` at a time, `EVAL_BATCH` images at a time."""
    chunk_size = max(size for size in range(1, min(num_samples, MAX_CHUNK) + 1) if num_samples % size == 0)
    chunk_size = None if chunk_size == num_samples else chunk_size

    def log_marginals(params, keys, images):
        def one(inputs):
            key, x = inputs
            return amortized.log_marginal(key, vae, params, x, num_samples, chunk_size=chunk_size).log_marginal

        return jax.lax.map(one, (keys, images), batch_size=EVAL_BATCH)

    return jax.jit(log_marginals)


def estimate_nll(evaluator: Callable, params: Params, images: jax.Array) -> tuple[float, float]:
    """(−(1/N) Σ_i log p̂(x_i), its standard error over the N images); the same keys for every call."""
    keys = jax.random.split(jax.random.PRNGKey(EVAL_SEED), images.shape[0])
    log_marginals = np.asarray(evaluator(params, keys, images), np.float64)
    stderr = log_marginals.std(ddof=1) / math.sqrt(len(log_marginals)) if len(log_marginals) > 1 else math.nan
    return float(-log_marginals.mean()), float(stderr)


def seconds_to_reach(seconds: Sequence[float], nll: Sequence[float], target: float) -> float | None:
    """The training seconds at the first point of a curve whose NLL is at most `target`; None if none is."""
    return next((point for point, value in zip(seconds, nll, strict=True) if value <= target), None)


@dataclasses.dataclass
class Side:
    """One implementation's training and evaluation of one model."""

    name: str
    epochs: int
    seconds_per_epoch: float  # median over the epochs
    compile_seconds: float
    training_seconds: float  # compilation and every epoch
    curve_epochs: list[int]
    curve_seconds: list[float]  # training seconds up to the end of each curve epoch, compilation included
    curve_nll: list[float]  # test NLL with K = curve_samples on the first curve_test images
    nll: float  # test NLL with K = eval_samples on the first num_test images, after the last epoch
    nll_stderr: float


@dataclasses.dataclass
class Result:
    model: str
    spec: Model
    schedule: Schedule
    num_train: int
    lvmjax: Side
    pytorch: Side | None  # None where PyTorch is not installed
    seconds_to_pytorch_nll: float | None  # lvmjax's training seconds to PyTorch's final curve NLL


def evaluate(
    name: str, trained: Training, curve: Callable, final: Callable, curve_images: jax.Array, test_images: jax.Array
) -> Side:
    cumulative = list(itertools.accumulate(trained.epoch_seconds, initial=trained.compile_seconds))[1:]
    nll, stderr = estimate_nll(final, trained.params[-1], test_images)
    return Side(
        name,
        len(trained.epoch_seconds),
        statistics.median(trained.epoch_seconds),
        trained.compile_seconds,
        cumulative[-1],
        trained.kept_epochs,
        [cumulative[epoch - 1] for epoch in trained.kept_epochs],
        [estimate_nll(curve, params, curve_images)[0] for params in trained.params],
        nll,
        stderr,
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    schedule: str = "reduced"
    epochs: int | None = None  # overrides every model's number of epochs
    num_train: int = 50_000
    num_test: int = 1000
    eval_samples: int = 5000
    curve_samples: int = 500
    curve_test: int = 500


QUICK = Settings(epochs=1, num_train=512, num_test=20, eval_samples=10, curve_samples=10, curve_test=20)


def compare(names: Sequence[str], settings: Settings, data_dir) -> list[Result]:
    """Trains and evaluates each model on both sides; raises `DataError` where the data is not found."""
    dataset = data_lib.load_binarized_mnist(data_dir)
    images = np.ascontiguousarray(dataset.train[: settings.num_train])
    curve_images = jax.device_put(dataset.test[: settings.curve_test])
    test_images = jax.device_put(dataset.test[: settings.num_test])
    try:
        import torch

        peer = f"PyTorch {torch.__version__} eager"
    except ImportError:
        peer = "PyTorch eager"
    results = []
    for name in names:
        model = MODELS[name]
        schedule = schedule_for(model, settings.schedule, settings.epochs)
        ours = train_lvmjax(model, schedule, images, name)
        theirs = train_pytorch(model, schedule, images, name)
        vae = make_network(model)
        evaluators = {k: make_evaluator(vae, k) for k in {settings.curve_samples, settings.eval_samples}}
        curve, final = evaluators[settings.curve_samples], evaluators[settings.eval_samples]
        progress(f"{name}: evaluating test NLL")
        lvmjax_side = evaluate("lvmjax", ours, curve, final, curve_images, test_images)
        pytorch_side = None if theirs is None else evaluate(peer, theirs, curve, final, curve_images, test_images)
        reached = (
            None
            if pytorch_side is None
            else seconds_to_reach(lvmjax_side.curve_seconds, lvmjax_side.curve_nll, pytorch_side.curve_nll[-1])
        )
        results.append(Result(name, model, schedule, images.shape[0], lvmjax_side, pytorch_side, reached))
    return results


def published_text(model: Model) -> str:
    return "; ".join(f"{nll:.2f} ({source})" for nll, source in model.published)


def workload(result: Result, settings: Settings) -> str:
    schedule = result.schedule
    rates = (
        f"{schedule.stages[0][1]:g}"
        if len(schedule.stages) == 1
        else (f"{schedule.stages[0][1]:g} to {schedule.stages[-1][1]:.3g} in {len(schedule.stages)} stages")
    )
    epochs = f"{schedule.epochs} epoch{'s' * (schedule.epochs != 1)}"
    return (
        f"{result.spec.architecture}, Bernoulli, {result.spec.objective_name}; {schedule.name} schedule: "
        f"{epochs} of {result.num_train} images, batches of {schedule.batch_size}, Adam at {rates} "
        f"(ε = {schedule.eps:g}); test NLL with K = {settings.eval_samples} on {settings.num_test} test images"
    )


def nll_text(side: Side) -> str:
    return f"NLL {side.nll:.2f} ± {side.nll_stderr:.2f}"


def to_row(result: Result, settings: Settings) -> Row:
    ours = result.lvmjax
    reached = "not reached" if result.seconds_to_pytorch_nll is None else f"{result.seconds_to_pytorch_nll:.1f} s"
    quality = (
        f"{nll_text(ours)} after {ours.training_seconds:.1f} s; PyTorch's NLL in {reached}; "
        f"published {published_text(result.spec)}"
    )
    name = f"mnist_quality_{result.model}"
    if result.pytorch is None:
        return Row(
            name,
            workload(result, settings),
            ours.seconds_per_epoch,
            ours.compile_seconds,
            "PyTorch eager",
            None,
            quality,
            note=not_installed("PyTorch"),
        )
    theirs = result.pytorch
    return Row(
        name,
        workload(result, settings),
        ours.seconds_per_epoch,
        ours.compile_seconds,
        theirs.name,
        theirs.seconds_per_epoch,
        quality,
        f"{nll_text(theirs)} after {theirs.training_seconds:.1f} s",
    )


def run(
    quick: bool = False,
    models: Sequence[str] = tuple(MODELS),
    settings: Settings | None = None,
    data_dir=DEFAULT_DATA_DIR,
) -> list[Row]:
    """One Row per model: seconds per epoch of each side, and the final NLLs; no rows where the data is absent."""
    settings = settings or (QUICK if quick else Settings())
    try:
        results = compare(models, settings, data_dir)
    except data_lib.DataError as error:
        progress(f"mnist_quality skipped: {error}")
        return []
    return [to_row(result, settings) for result in results]


def format_results(results: list[Result]) -> str:
    header = ("model", "side", "epochs", "train s", "compile s", "s/epoch", "test NLL", "to PyTorch's NLL", "published")
    lines = [header]
    for result in results:
        sides = [result.lvmjax] + ([] if result.pytorch is None else [result.pytorch])
        for side in sides:
            reached = ""
            if side is result.lvmjax and result.pytorch is not None:
                reached = (
                    "not reached"
                    if result.seconds_to_pytorch_nll is None
                    else f"{result.seconds_to_pytorch_nll:.1f} s (PyTorch {result.pytorch.training_seconds:.1f} s)"
                )
            lines.append(
                (
                    result.model,
                    side.name,
                    str(side.epochs),
                    f"{side.training_seconds:.1f}",
                    f"{side.compile_seconds:.1f}" if side is result.lvmjax else "",
                    f"{side.seconds_per_epoch:.2f}",
                    f"{side.nll:.2f} ± {side.nll_stderr:.2f}",
                    reached,
                    published_text(result.spec) if side is result.lvmjax else "",
                )
            )
        if result.pytorch is None:
            lines.append((result.model, "PyTorch", "", "", "", "", "", "", "skipped: PyTorch is not installed"))
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def pytorch_threads() -> int | None:
    """PyTorch's intra-op threads (left at its default); None if it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def draw(results: list[Result], settings: Settings, path) -> pathlib.Path:
    """Test NLL against training minutes, one panel per model, the published figures dashed."""
    from matplotlib.figure import Figure

    from lvmjax import plots

    figure = Figure(figsize=(5 * len(results), 4), layout="constrained")
    for axis, result in zip(figure.subplots(1, len(results), squeeze=False)[0], results, strict=True):
        for side in (result.lvmjax, result.pytorch):
            if side is not None:
                axis.plot(np.asarray(side.curve_seconds) / 60, side.curve_nll, marker="o", label=side.name)
        for (nll, source), colour in zip(result.spec.published, ("black", "grey"), strict=False):
            axis.axhline(nll, linestyle="--", color=colour, label=f"{nll:.2f}: {source}")
        axis.set_title(f"{result.model}: {result.spec.architecture}")
        axis.set_xlim(left=0)
        axis.set_xlabel("training minutes")
        axis.set_ylabel(f"test NLL, nats (K = {settings.curve_samples}, {settings.curve_test} images)")
        axis.grid(alpha=0.3)
        axis.legend()
    return plots.save(figure, path)


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="512 training images, 1 epoch, K = 10 on 20 test images: checks that it runs",
    )
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument(
        "--schedule",
        choices=("reduced", "full"),
        default="reduced",
        help="reduced (CPU, the default) or full (Burda et al.'s 3280 epochs: a GPU)",
    )
    parser.add_argument("--epochs", type=int, help="epochs of every model (default: the schedule's)")
    parser.add_argument("--num-train", type=int, help=f"training images (default {Settings.num_train})")
    parser.add_argument("--num-test", type=int, help=f"test images of the final NLL (default {Settings.num_test})")
    parser.add_argument("--eval-samples", type=int, help=f"K of the final NLL (default {Settings.eval_samples})")
    parser.add_argument("--curve-samples", type=int, help=f"K of the curve's NLL (default {Settings.curve_samples})")
    parser.add_argument("--curve-test", type=int, help=f"test images of the curve (default {Settings.curve_test})")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="the folder of binarized_mnist.npz")
    parser.add_argument("--json", metavar="FILE", help="also write the results, curves and machine to FILE")
    parser.add_argument("--figure", metavar="FILE", help=f"where to draw the curves (default {DEFAULT_FIGURE})")
    parser.add_argument("--no-figure", action="store_true", help="draw no figure")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        parser.error(f"--models must name some of {', '.join(MODELS)}, got {args.models!r}")
    options = {
        field: getattr(args, field)
        for field in ("epochs", "num_train", "num_test", "eval_samples", "curve_samples", "curve_test")
    }
    settings = dataclasses.replace(
        QUICK if args.quick else Settings(),
        schedule=args.schedule,
        **{field: value for field, value in options.items() if value is not None},
    )
    try:
        results = compare(names, settings, args.data_dir)
    except data_lib.DataError as error:
        print(f"mnist_quality skipped: {error}")
        return []
    rows = [to_row(result, settings) for result in results]
    print(
        f"machine: {machine()}, jax {jax.__version__}"
        + (" (--quick: sizes too small to mean anything)" if args.quick else "")
    )
    print(format_results(results))
    for row in rows:
        print(f"{row.benchmark}: {row.workload}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "machine": machine(),
                    "load_average": os.getloadavg(),
                    "jax": jax.__version__,
                    "pytorch_threads": pytorch_threads(),
                    "quick": args.quick,
                    "settings": dataclasses.asdict(settings),
                    "data_dir": str(args.data_dir),
                    "results": [dataclasses.asdict(result) for result in results],
                    "rows": [dataclasses.asdict(row) | {"ratio": row.ratio} for row in rows],
                },
                file,
                indent=2,
            )
    figure = None if args.no_figure else args.figure or (None if args.quick else DEFAULT_FIGURE)
    if figure is not None:
        print(f"figure: {draw(results, settings, figure)}")
    return rows


if __name__ == "__main__":
    main()
