"""What a model declares to the application layer: its `ModelSpec`.

The command line, the tour, the figures and the run directory never test a model's
name; they ask its spec. A spec says what data the model takes, how it is fitted,
evaluated, saved and restored, how its log p(x) is known, and what a fitted model can
do (generate, impute, encode, show its components). A capability that a model lacks is
`None`, and `reasons` says why, in words a user can act on.

Adding a model to the command line is one spec, in `lvmjax/app/specs/`, listed in
`lvmjax.app.registry`; see CONTRIBUTING.md.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from lvmjax.errors import RunError
from lvmjax.types import Array, Params

if TYPE_CHECKING:
    from lvmjax.amortized import AmortizedModel
    from lvmjax.app.config import FitConfig
    from lvmjax.data import Dataset
    from lvmjax.model import LatentVariableModel

__all__ = [
    "DataKind",
    "EvaluationSettings",
    "FitResult",
    "ModelSpec",
    "Run",
]


class DataKind(enum.Enum):
    """The values a model's likelihood takes."""

    BINARY = "binary"  # 0 or 1: Bernoulli likelihoods; grey levels are binarized for them
    REAL = "real"  # real values: Gaussian likelihoods; the digits are dequantized for them
    SEQUENCES = "sequence"  # time steps of one or more sequences (`lvmjax.time_series`)
    COUNTS = "count"  # documents as word counts over a vocabulary (`lvmjax.text`)

    @property
    def default_data(self) -> str:
        """The dataset a model of this kind fits when none is named."""
        return {DataKind.SEQUENCES: "nile", DataKind.COUNTS: "scipy-docs"}.get(self, "digits")


class FitResult(NamedTuple):
    """What fitting a model gives, before it is saved."""

    params: Params  # as saved: a dict of arrays (the networks' parameters, or a model's `Params` as a dict)
    history: list[dict]  # one entry per epoch or EM iteration, each with "train_objective"
    seconds: float  # fitting time, compilation included
    data_dim: int
    image_shape: tuple[int, int] | None
    num_train: int = 0  # training datapoints: the models with one φ_i per datapoint are read back by it
    diagnostics: dict | None = None  # what the fit found that a user should know (collapsed components), saved
    warnings: tuple[str, ...] = ()  # one line each, arguments in braces (`lvmjax.errors.render`), for standard error
    vocabulary: tuple[str, ...] | None = None  # the words of the columns (text), saved as RUN_DIR/vocabulary.txt


class Run(NamedTuple):
    """A fitted model read back from its run directory (`rundir.load_run`)."""

    config: FitConfig
    params: Params  # as saved (see `ModelSpec.model_params` for a model's own `Params`)
    data_dim: int
    image_shape: tuple[int, int] | None
    vae: AmortizedModel | None  # the networks, for the models that have them; None otherwise
    spec: ModelSpec


class EvaluationSettings(NamedTuple):
    """The options of an evaluation (`evaluation.evaluate`)."""

    num_samples: int  # K of an importance-sampled test NLL
    refine_steps: int  # SVI steps of a refinement of q (twice as many for the test φ_i of svi)
    seed: int  # of every draw
    per_datapoint: bool  # also report "test_log_marginals", log p(x_i) of every test datapoint
    progress: Callable[[int, int], None] | None  # progress(done, total) over test batches
    estimator: str = "is"  # of an estimated log p(x): "is" (importance sampling) or "ais" (`lvmjax.ais`)
    ais_steps: int = 1000  # temperatures of AIS
    ais_chains: int = 16  # AIS chains per test datapoint
    bdmc: int = 0  # datapoints simulated from the model for the BDMC check of AIS (0: none)


FitFunction = Callable[..., FitResult]
"""`fit(config, dataset, *, progress, checkpoints, mesh) -> FitResult`."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the application layer needs to know of one command-line model.

    Attributes:
      name: the command-line name, as in `lvmjax fit NAME`.
      summary: one line for `lvmjax fit --help`.
      data_kind: binary or real-valued data.
      options: the `FitConfig` fields the model reads, beyond data, seed and the split
        (the command line's help names the models each option is for).
      fit: `fit(config, dataset, *, progress, checkpoints, mesh) -> FitResult`, on the
        training split; `progress(step, entry)` after each history entry.
      evaluate: `evaluate(config, params, dataset, settings) -> dict` of test metrics.
      template: `template(config, data_dim, image_shape, num_train)`: the saved parameters'
        pytree of `jax.ShapeDtypeStruct`, for reading a checkpoint back.
      size: `size(config)`, the setting that sizes its parameters, in words
        ("10 components"), for the message of a checkpoint that does not fit.
      check: `check(config, num_data, data_dim)` raises `RunError` where the configuration
        cannot fit data of this size; called before anything is written.
      nll_method: "exact", "importance sampling", "posterior predictive" (the predictive density of a
        Bayesian fit, in closed form), or None (no likelihood).
      history_unit: what one entry of the history is ("epoch", "EM iteration").
      checkpointed: trained over epochs with resumable checkpoints (`--resume`).
      devices: can fit data-parallel over several devices.
      default_num_samples: K of its training objective where `num_samples` is None.
      objective: `objective(config)`, what its training objective is, for the training curve.
      networks: `networks(config, data_dim, image_shape) -> AmortizedModel`, for the
        models with a decoder network; None for the others.
      params_type: the model's `Params` NamedTuple that the saved dict fills (or a function
        of the saved dict's entries that builds it); None where the saved dict is what the
        model takes (the networks).
      num_free_parameters: `num_free_parameters(config, data_dim)`, for the BIC; None
        where the model reports no BIC.
      generative: `generative(run) -> (LatentVariableModel, params)`, the model that
        ancestral sampling and imputation draw from; None if it defines no p(x).
      impute: `impute(key, run, data, observed, num_samples) -> (N, D) array`, E[x_m | x_o]
        of every row; None if the model cannot.
      latent_codes: `latent_codes(run, dataset) -> (codes, labels, what)`, E[z | x] of a
        split and what they are; None for a discrete z.
      encoder: has an encoder f(x) (reconstructions and interpolations).
      component_means: `component_means(run) -> (weights, means)` of a mixture; None otherwise.
      impute_by_mcmc: `impute_by_mcmc(key, run, data, observed, num_samples)`, the same as
        `impute` with z drawn from p(z | x_o) by NUTS (`num_samples` draws in all, over 4
        chains); None for the models that impute exactly or have no continuous z.
      prepare: `prepare(config, dataset) -> dataset`, the data as the model reads it (checked,
        or recoded), applied by `load_data` to both splits; None to take it as loaded.
      figures: `figures(run, dataset) -> {name: matplotlib Figure}`, the figures of the model's
        own that `lvmjax plot` draws beside the common ones; None for none.
      selection: the `FitConfig` field that sizes the model, over which `lvmjax select` compares
        candidates by BIC and held-out log-likelihood ("components", "latent_dim"); None where
        the model takes no part (`reasons["select"]` says why).
      reasons: capability name -> why the model lacks it ("generate", "impute",
        "latent_codes", "resume", "devices", "select").
      choices: option -> the values the model takes, its default first, where they differ
        from `config.CHOICES` (the vae's "prior" is p(z), a mixture's is on θ).
    """

    name: str
    summary: str
    data_kind: DataKind
    options: frozenset[str]
    fit: FitFunction
    evaluate: Callable[[FitConfig, Params, Dataset, EvaluationSettings], dict]
    template: Callable[[FitConfig, int, tuple[int, int] | None, int], Params]
    size: Callable[[FitConfig], str]
    check: Callable[[FitConfig, int, int], None]
    nll_method: str | None
    history_unit: str
    checkpointed: bool = False
    devices: bool = False
    default_num_samples: int = 1
    objective: Callable[[FitConfig], str] = lambda config: "training objective"
    networks: Callable[[FitConfig, int, tuple[int, int] | None], AmortizedModel] | None = None
    params_type: Callable[..., Params] | None = None
    num_free_parameters: Callable[[FitConfig, int], int] | None = None
    generative: Callable[[Run], tuple[LatentVariableModel, Params]] | None = None
    impute: Callable[[Array, Run, Any, Any, int], np.ndarray] | None = None
    latent_codes: Callable[[Run, Dataset], tuple[np.ndarray, np.ndarray | None, str]] | None = None
    encoder: bool = False
    component_means: Callable[[Run], tuple[np.ndarray, np.ndarray]] | None = None
    impute_by_mcmc: Callable[[Array, Run, Any, Any, int], np.ndarray] | None = None
    prepare: Callable[[FitConfig, Dataset], Dataset] | None = None
    figures: Callable[[Run, Dataset], dict[str, Any]] | None = None
    selection: str | None = None
    reasons: Mapping[str, str] = dataclasses.field(default_factory=dict)
    choices: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    @property
    def pixel_probabilities(self) -> bool:
        """E[x | z] is a probability in [0, 1] (binary data); otherwise a real value, clipped for display."""
        return self.data_kind is DataKind.BINARY

    def model_params(self, params: Params) -> Params:
        """The saved parameters as the model's own `Params` (unchanged where `params_type` is None)."""
        return self.params_type(**params) if self.params_type is not None else params

    def require(self, capability: str) -> Any:
        """The capability's function, or a `RunError` that says why this model has none."""
        value = getattr(self, capability)
        if value is None or value is False:
            reason = self.reasons.get(capability, f"{self.name} cannot do that ({capability})")
            raise RunError(reason)
        return value
