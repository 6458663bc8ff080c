"""The configuration of a run: `FitConfig`, saved as RUN_DIR/config.json, and its checks."""

from __future__ import annotations

import dataclasses
import math

from jax.sharding import Mesh

from lvmjax import text
from lvmjax.app import registry
from lvmjax.app.spec import ModelSpec
from lvmjax.data import Dataset
from lvmjax.errors import RunError
from lvmjax.models import hmm, lda
from lvmjax.models.bayesian_mixture import WEIGHT_PRIORS
from lvmjax.models.gaussian_mixture import COVARIANCE_TYPES

__all__ = [
    "ARCHITECTURES",
    "CHOICES",
    "PRECISIONS",
    "PRIORS",
    "FitConfig",
    "check_config_against_data",
    "check_mesh",
]

ARCHITECTURES = ("mlp", "conv")
PRECISIONS = ("float32", "float64")
PRIORS = ("none", "conjugate")  # on θ: none (maximum likelihood), or the model's conjugate prior (MAP-EM)
CHOICES = {"prior": PRIORS, "posterior": ("diagonal",), "gradient": ("reparam",)}
"""The values of the options whose meaning depends on the model, default first, for the models whose
spec does not name its own (`ModelSpec.choices`: the vae's prior is p(z), a flow its posterior)."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Everything that determines a run; saved as RUN_DIR/config.json.

    `model` is a name of the registry (`registry.names()`); each model reads the
    fields its spec lists in `ModelSpec.options`, and ignores the others.
    `num_samples=None` means the model's default (`ModelSpec.default_num_samples`:
    1 for vae and svi, the ELBO's Monte Carlo samples; 5 for iwae, K of the bound).

    The models trained over epochs use epochs, batch_size, num_samples, lr, hidden,
    architecture, the svi settings and max_skipped_steps (a training step whose
    objective or gradient is not finite is skipped, and that many in a row stop the
    run); vae and iwae also posterior (q(z | x): diagonal, full-rank or a flow of
    flow_layers layers), prior (p(z): normal, mixture or vamp, with components
    components or pseudo-inputs) and gradient (reparam, stl for vae, dreg for iwae),
    and vae beta, warmup_epochs (β rises linearly from 0 over them) and free_bits (nats
    per latent dimension); the ones fitted by EM use components (gmm, mob), covariance (gmm), max_iter
    and n_init, and gmm reg_covar (added to every covariance's diagonal) and prior ("none",
    maximum likelihood, or "conjugate", MAP-EM under Fraley & Raftery's prior); the
    variational Bayesian mixture (bgmm) components (its truncation), covariance,
    weight_prior ("dirichlet-process" or "dirichlet"), max_iter, n_init and reg_covar; the
    hidden Markov model states, emission, covariance, max_iter and n_init; the topic models
    topics (K), min_df and max_df (the vocabulary of a text file, `lvmjax.text`) and
    doc_topic_prior (α), lda also method ("cavi" or "svi"), max_iter (iterations, or passes
    for svi), tol (on the ELBO per word), topic_word_prior (η), batch_size, learning_offset
    (τ_0) and learning_decay (κ) of svi, and prodlda the training loop's settings.
    latent_dim is the dimension of z for the neural models and for fa and
    ppca. precision is the float type of the fit and of its evaluation ("float64" for
    data whose scales float32 cannot resolve). test_fraction splits a user's data file
    (the named datasets have fixed splits).
    """

    model: str
    data: str | None = None  # None: the default of the model's data kind (`DataKind.default_data`)
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
    reg_covar: float = 1e-6
    prior: str | None = None  # None: the model's default (`CHOICES`, `ModelSpec.choices`)
    posterior: str | None = None
    gradient: str | None = None
    flow_layers: int = 4
    beta: float = 1.0
    warmup_epochs: int = 0
    free_bits: float = 0.0
    weight_prior: str = "dirichlet-process"
    states: int = 3
    emission: str = "gaussian"
    topics: int = 10
    method: str = "cavi"
    tol: float = 1e-4
    learning_offset: float = 10.0
    learning_decay: float = 0.7
    doc_topic_prior: float | None = None  # None: the model's default (1/K for lda, 1 for prodlda)
    topic_word_prior: float | None = None  # None: 1/K
    min_df: int = text.MIN_DF
    max_df: float = text.MAX_DF
    test_fraction: float = 0.2
    precision: str = "float32"

    def __post_init__(self):
        if self.model not in registry.names():
            raise RunError(f"unknown model {self.model!r}; choose one of {', '.join(registry.names())}.")
        if self.data is None:
            object.__setattr__(self, "data", self.spec.data_kind.default_data)
        if self.emission not in hmm.EMISSIONS:
            raise RunError(f"{{emission}} must be one of {', '.join(hmm.EMISSIONS)}, got {self.emission!r}.")
        if self.covariance not in COVARIANCE_TYPES:
            raise RunError(f"{{covariance}} must be one of {', '.join(COVARIANCE_TYPES)}, got {self.covariance!r}.")
        if not 0 < self.test_fraction < 1:
            raise RunError(f"{{test_fraction}} must be strictly between 0 and 1, got {self.test_fraction}.")
        for name in (
            "epochs",
            "batch_size",
            "latent_dim",
            "svi_inner_steps",
            "max_skipped_steps",
            "components",
            "states",
            "topics",
            "min_df",
            "max_iter",
            "n_init",
            "flow_layers",
        ):
            if getattr(self, name) < 1:
                raise RunError(f"{{{name}}} must be at least 1, got {getattr(self, name)}.")
        if self.num_samples is not None and self.num_samples < 1:
            raise RunError(f"{{num_samples}} must be at least 1, got {self.num_samples}.")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise RunError(f"{{lr}} must be a positive number, got {self.lr}.")
        if self.architecture not in ARCHITECTURES:
            raise RunError(f"{{architecture}} must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}.")
        if not self.reg_covar >= 0 or not math.isfinite(self.reg_covar):
            raise RunError(f"{{reg_covar}} must be a non-negative number, got {self.reg_covar}.")
        if self.weight_prior not in WEIGHT_PRIORS:
            raise RunError(f"{{weight_prior}} must be one of {', '.join(WEIGHT_PRIORS)}, got {self.weight_prior!r}.")
        for name, fallback in CHOICES.items():
            allowed = self.spec.choices.get(name, fallback)
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, allowed[0])
            elif value not in allowed:
                raise RunError(f"{{{name}}} of {self.model} must be one of {', '.join(allowed)}, got {value!r}.")
        if not self.beta > 0 or not math.isfinite(self.beta):
            raise RunError(f"{{beta}} must be a positive number, got {self.beta}.")
        if self.warmup_epochs < 0 or not self.free_bits >= 0 or not math.isfinite(self.free_bits):
            raise RunError(
                f"{{warmup_epochs}} and {{free_bits}} must be non-negative, "
                f"got {self.warmup_epochs} and {self.free_bits}."
            )
        if self.method not in lda.METHODS:
            raise RunError(f"{{method}} must be one of {', '.join(lda.METHODS)}, got {self.method!r}.")
        for name in ("tol", "learning_offset", "learning_decay"):
            value = getattr(self, name)
            if not value >= 0 or not math.isfinite(value):
                raise RunError(f"{{{name}}} must be a non-negative number, got {value}.")
        for name in ("doc_topic_prior", "topic_word_prior"):
            value = getattr(self, name)
            if value is not None and (not value > 0 or not math.isfinite(value)):
                raise RunError(f"{{{name}}} must be a positive number, got {value}.")
        if not 0 < self.max_df <= 1:
            raise RunError(f"{{max_df}} must be a share of the documents in (0, 1], got {self.max_df}.")
        if self.precision not in PRECISIONS:
            raise RunError(f"{{precision}} must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if self.precision != "float32" and "precision" not in self.spec.options:
            others = ", ".join(spec.name for spec in registry.specs() if "precision" in spec.options)
            raise RunError(f"{self.model} trains in float32 only; {{precision}} {self.precision} is for {others}.")
        object.__setattr__(self, "hidden", tuple(self.hidden))

    @property
    def spec(self) -> ModelSpec:
        """The model's spec in the registry."""
        return registry.get(self.model)

    @property
    def samples(self) -> int:
        """K of the training objective: `num_samples`, or the model's default."""
        return self.num_samples if self.num_samples is not None else self.spec.default_num_samples


def check_mesh(config: FitConfig, mesh: Mesh | None) -> Mesh | None:
    """The mesh `fit` trains on: None for one device; raises RunError where the model cannot use it.

    A model that trains on minibatches (its spec reads `batch_size`) needs a batch size
    that the devices share equally.
    """
    if mesh is None or mesh.size == 1:
        return None
    spec = config.spec
    if not spec.devices:
        several = ", ".join(other.name for other in registry.specs() if other.devices)
        raise RunError(f"{config.model} trains on one device; several devices are for {several}.")
    if "batch_size" in spec.options and config.batch_size % mesh.size:
        raise RunError(
            f"{{batch_size}} {config.batch_size} must be a multiple of the {mesh.size} devices, "
            "so that each takes the same share of every minibatch."
        )
    return mesh


def check_config_against_data(config: FitConfig, dataset: Dataset) -> None:
    """The checks of `config` that need the data's size (`ModelSpec.check`), made before anything is
    trained or written."""
    num_data, data_dim = dataset.train.shape
    config.spec.check(config, num_data, data_dim)
