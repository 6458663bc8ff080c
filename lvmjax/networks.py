"""Flax encoder and decoder networks for amortized inference (the only module that imports Flax).

Every module acts on ONE datapoint or ONE latent; batches are the caller's
`jax.vmap`, like everywhere else in lvmjax.

- Encoders map x to the parameters of q(z | x; φ): a mean and a log-scale, each
  of shape (latent_dim,).
- Decoders map z to the parameters of p(x | z; θ): one output per data
  dimension (Bernoulli logits, or the mean of a Gaussian), or two (a Gaussian's
  mean and log-scale, when its variance is learned).
- The conditioners of normalizing flows (`lvmjax.variational.normalizing_flow`) map
  a latent, and optionally a context vector from the encoder, to the parameters of
  an elementwise bijector: `CouplingConditioner` sees the masked half of z (RealNVP,
  spline couplings), `MADE` sees z through autoregressive masks (IAF). Their last
  layer starts at zero, so a flow starts as the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from lvmjax.types import Array

__all__ = ["ACTIVATIONS", "MADE", "ConvDecoder", "ConvEncoder", "CouplingConditioner", "MLPDecoder", "MLPEncoder"]


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "softplus": nn.softplus,
}
"""The hidden layers' nonlinearity of the MLPs, by name: GELU (tanh-approximated, the default),
tanh (the networks of Burda et al. 2016) or ReLU."""


class MLPEncoder(nn.Module):
    """x, shape (D,) -> (mean, log_scale) of q(z | x), each of shape (latent_dim,).

    With `context_dim` > 0 it also returns a context vector h(x) of that size, a
    linear read-out of the last hidden layer, that conditions the layers of a flow
    posterior (the "h" of the IAF of Kingma et al. 2016) or holds a full-rank
    posterior's off-diagonal entries.
    """

    latent_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "gelu"
    context_dim: int = 0

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, ...]:
        h = x
        for width in self.hidden:
            h = ACTIVATIONS[self.activation](nn.Dense(width)(h))
        out = nn.Dense(2 * self.latent_dim)(h)
        if self.context_dim:
            context = nn.Dense(self.context_dim)(h)
            return out[: self.latent_dim], out[self.latent_dim :], context
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
    context_dim: int = 0  # as `MLPEncoder`'s

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, ...]:
        h = x.reshape(1, *self.image_shape, 1)  # a batch of one image, one channel
        for channels in self.channels:
            h = nn.gelu(nn.Conv(channels, (3, 3), strides=(2, 2), padding="SAME")(h))
        h = nn.gelu(nn.Dense(self.hidden)(h.reshape(-1)))
        out = nn.Dense(2 * self.latent_dim)(h)
        if self.context_dim:
            return out[: self.latent_dim], out[self.latent_dim :], nn.Dense(self.context_dim)(h)
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


def _with_context(h: Array, context: Array | None) -> Array:
    return h if context is None else jnp.concatenate([h, context])


class CouplingConditioner(nn.Module):
    """The masked half of a latent z (D,), and a context, -> (D, num_params): the parameters of the
    elementwise bijector of every dimension of a coupling layer (Dinh et al. 2017; Durkan et al. 2019)."""

    latent_dim: int
    num_params: int
    hidden: Sequence[int] = (64, 64)
    activation: str = "gelu"

    @nn.compact
    def __call__(self, z_masked: Array, context: Array | None = None) -> Array:
        h = _with_context(z_masked, context)
        for width in self.hidden:
            h = ACTIVATIONS[self.activation](nn.Dense(width)(h))
        out = nn.Dense(self.latent_dim * self.num_params, kernel_init=nn.initializers.zeros)(h)
        return out.reshape(self.latent_dim, self.num_params)


class _MaskedDense(nn.Module):
    """A dense layer whose kernel is multiplied by a fixed 0/1 mask (MADE's autoregressive connections)."""

    features: int
    mask: Any  # (inputs, features) numpy array
    zero_init: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ (kernel * jnp.asarray(self.mask, kernel.dtype)) + bias


def _made_degrees(latent_dim: int, hidden: Sequence[int], reverse: bool) -> list[np.ndarray]:
    """MADE's degrees (Germain et al. 2015): inputs 1 … D (or D … 1), hidden units cycling through 0 … D − 1."""
    inputs = np.arange(1, latent_dim + 1)
    degrees = [inputs[::-1] if reverse else inputs]
    degrees += [np.arange(width) % latent_dim for width in hidden]
    return degrees


class MADE(nn.Module):
    """z (D,), and a context, -> (D, num_params), where output d depends only on z_{<d} in the order
    1 … D (or D … 1 with `reverse`): a masked autoencoder (Germain et al. 2015), the autoregressive
    network of an IAF (Kingma et al. 2016). The context feeds every hidden unit of the first layer."""

    latent_dim: int
    num_params: int = 2
    hidden: Sequence[int] = (64, 64)
    activation: str = "gelu"
    reverse: bool = False

    @nn.compact
    def __call__(self, z: Array, context: Array | None = None) -> Array:
        degrees = _made_degrees(self.latent_dim, self.hidden, self.reverse)
        h = z
        for layer, width in enumerate(self.hidden):
            mask = degrees[layer + 1][None, :] >= degrees[layer][:, None]
            h = _MaskedDense(width, mask)(h)
            if layer == 0 and context is not None:
                h = h + nn.Dense(width, use_bias=False)(context)
            h = ACTIVATIONS[self.activation](h)
        # Output d (degree d) sees the hidden units of degree < d: z_{<d} only.
        output_degrees = np.repeat(degrees[0], self.num_params)
        mask = output_degrees[None, :] > degrees[-1][:, None]
        if not self.hidden:
            mask = output_degrees[None, :] > degrees[0][:, None]
            if context is not None:
                h = jnp.concatenate([h, context])
                mask = np.concatenate([mask, np.ones((context.shape[-1], mask.shape[1]), bool)])
        out = _MaskedDense(self.latent_dim * self.num_params, mask, zero_init=True)(h)
        return out.reshape(self.latent_dim, self.num_params)
