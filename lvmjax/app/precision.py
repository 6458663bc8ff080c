"""The float precision a run computes in (`FitConfig.precision`)."""

from __future__ import annotations

import contextlib

import jax

__all__ = ["precision_scope"]


def precision_scope(config) -> contextlib.AbstractContextManager:
    """The context a run computes in: float64 (`jax.enable_x64`) where `config.precision` says so."""
    return jax.enable_x64(True) if config.precision == "float64" else contextlib.nullcontext()
