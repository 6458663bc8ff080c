"""The registry of the command line's models: one `ModelSpec` per name.

The specs live beside each other in `lvmjax/app/specs/`, one module per model family;
this module lists them. Everything above the models (the run directory, fitting,
evaluation, the figures, the tour, the command line) finds a model here and asks its
spec, so that adding a model is one spec and one line below.
"""

from __future__ import annotations

from lvmjax.app.spec import ModelSpec
from lvmjax.app.specs import (
    bayesian_gaussian_mixture,
    bernoulli_mixture,
    gaussian_mixture,
    hmm,
    linear_gaussian,
    neural,
    topic_models,
)
from lvmjax.errors import RunError

__all__ = ["get", "names", "specs"]

# In the order of the seed texts: the amortized and non-amortized neural models, the classical ones, then
# the sequence models and the topic models.
_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        *neural.SPECS,
        gaussian_mixture.SPEC,
        bayesian_gaussian_mixture.SPEC,
        bernoulli_mixture.SPEC,
        *linear_gaussian.SPECS,
        hmm.SPEC,
        *topic_models.SPECS,
    )
}


def names() -> tuple[str, ...]:
    """Every model's command-line name, in the registry's order."""
    return tuple(_SPECS)


def specs() -> tuple[ModelSpec, ...]:
    """Every model's spec, in the registry's order."""
    return tuple(_SPECS.values())


def get(name: str) -> ModelSpec:
    """The spec of the model called `name`; a `RunError` that lists the names for any other."""
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise RunError(f"unknown model {name!r}; choose one of {', '.join(_SPECS)}.") from None
