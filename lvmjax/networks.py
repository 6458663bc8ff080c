"""Flax encoder and decoder networks for amortized inference (the only module that imports Flax).

Every module acts on ONE datapoint or ONE latent; batches are the caller's
`jax.vmap`, like everywhere else in lvmjax.

- Encoders map x to the parameters of q(z | x; φ): a mean and a log-scale, each
  of shape (latent_dim,).
- Decoders map z to the parameters of p(x | z; θ): one output per data
  dimension (Bernoulli logits, or the mean of a Gaussian), or two (a Gaussian's
  mean and log-scale, when its variance is learned).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from lvmjax.types import Array

__all__ = ["ACTIVATIONS", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "softplus": nn.softplus,
}
"""The hidden layers' nonlinearity of the MLPs, by name: GELU (tanh-approximated, the default),
tanh (the networks of Burda et al. 2016) or ReLU."""


class MLPEncoder(nn.Module):
    """x, shape (D,) -> (mean, log_scale) of q(z | x), each of shape (latent_dim,)."""

    latent_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "gelu"

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        h = x
        for width in self.hidden:
            h = ACTIVATIONS[self.activation](nn.Dense(width)(h))
        out = nn.Dense(2 * self.latent_dim)(h)
        return out[: self.latent_dim], out[self.latent_dim :]


class MLPDecoder(nn.Module):
    """z, shape (latent_dim,) -> outputs of shape (num_outputs, D)."""

    data_dim: int
    hidden: Sequence[int] = (256, 256)
    num_outputs: int = 1
    activation: str = "gelu"

    @nn.compact
    def __call__(self, z: Array) -> Array:
        h = z
        for width in self.hidden:
            h = ACTIVATIONS[self.activation](nn.Dense(width)(h))
        return nn.Dense(self.num_outputs * self.data_dim)(h).reshape(self.num_outputs, self.data_dim)


class ConvEncoder(nn.Module):
    """An image x, flattened to shape (H·W,) -> (mean, log_scale); H and W divisible by 4."""

    latent_dim: int
    image_shape: tuple[int, int]
    channels: Sequence[int] = (32, 64)
    hidden: int = 256

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        h = x.reshape(1, *self.image_shape, 1)  # a batch of one image, one channel
        for channels in self.channels:
            h = nn.gelu(nn.Conv(channels, (3, 3), strides=(2, 2), padding="SAME")(h))
        h = nn.gelu(nn.Dense(self.hidden)(h.reshape(-1)))
        out = nn.Dense(2 * self.latent_dim)(h)
        return out[: self.latent_dim], out[self.latent_dim :]


class ConvDecoder(nn.Module):
    """z -> outputs of shape (num_outputs, H·W): the transpose of `ConvEncoder`."""

    image_shape: tuple[int, int]
    channels: Sequence[int] = (64, 32)
    hidden: int = 256
    num_outputs: int = 1

    @nn.compact
    def __call__(self, z: Array) -> Array:
        height, width = self.image_shape[0] // 4, self.image_shape[1] // 4
        h = nn.gelu(nn.Dense(self.hidden)(z))
        h = nn.gelu(nn.Dense(height * width * self.channels[0])(h))
        h = h.reshape(1, height, width, self.channels[0])
        for channels in self.channels[1:]:
            h = nn.gelu(nn.ConvTranspose(channels, (3, 3), strides=(2, 2), padding="SAME")(h))
        h = nn.ConvTranspose(self.num_outputs, (3, 3), strides=(2, 2), padding="SAME")(h)
        return jnp.moveaxis(h[0], -1, 0).reshape(self.num_outputs, -1)
