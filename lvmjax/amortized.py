"""Amortized inference: the VAE, the IWAE and the deterministic autoencoder baseline.

A variational autoencoder (Kingma & Welling 2014) is a latent variable model

    z ~ N(0, I),    x | z ~ p(x | z; θ) = Bernoulli(σ(f_θ(z)))  or  N(μ_θ(z), σ_θ(z)²)

whose per-datapoint variational parameters are the output of one network, an
encoder φ(x) = g_φ(x): instead of optimizing φ_1 … φ_N separately (seed text,
§4.1), all of them are amortized into the weights of g (seed text, §4.3).

`make_vae` assembles Flax networks into an `AmortizedModel`: a core
`LatentVariableModel` plus `encode(params, x) -> q(z | x)`, so every estimator
of the core applies unchanged. Objectives are functions of ONE datapoint,
`objective(key, params, x) -> scalar to maximize`, for `make_train_step`.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import distrax
import jax
import jax.numpy as jnp

from lvmjax import _validation, networks
from lvmjax.errors import ArgumentError
from lvmjax.estimators import MarginalEstimate, elbo, iwae_bound, log_marginal_is
from lvmjax.model import LatentVariableModel, log_likelihood
from lvmjax.types import Array, Objective, Params
from lvmjax.variational import VariationalFamily, mean_field_gaussian

__all__ = [
    "AmortizedModel",
    "BernoulliLogits",
    "autoencoder_objective",
    "decode_mean",
    "elbo_objective",
    "encode_mean",
    "generate",
    "interpolate",
    "iwae_objective",
    "log_marginal",
    "make_vae",
    "reconstruct",
]


class BernoulliLogits(distrax.Bernoulli):
    """`distrax.Bernoulli(logits=l)` whose log-probability costs one exp and one log1p per entry, not two of each:

        log p(x | l) = x l − softplus(l) = x l − max(l, 0) − log(1 + exp(−|l|))

    equal to distrax's x log σ(l) + (1 − x) log σ(−l) for every x, and accurate to
    rounding for binary x at any l (x l − max(l, 0) is then exactly 0 or −|l|). The
    decoder's likelihood is evaluated K × D times per datapoint, so this halves the
    transcendental work of training and of the importance-sampled NLL.
    """

    def log_prob(self, value: Array) -> Array:
        logits = self.logits
        value = jnp.asarray(value, logits.dtype)
        return value * logits - jnp.maximum(logits, 0) - jnp.log1p(jnp.exp(-jnp.abs(logits)))


class AmortizedModel(NamedTuple):
    """A latent variable model with an encoder.

    Attributes:
      model: p(z) p(x | z; θ); its functions read `params["decoder"]`.
      family: the variational family of q(z | x).
      encoder_output: `(params, x) -> φ(x)`, the family's parameters for one x;
        reads `params["encoder"]`.
      init: `init(key) -> params`, a dict with "encoder" and "decoder".
      latent_dim: d.
    """

    model: LatentVariableModel
    family: VariationalFamily
    encoder_output: Callable[[Params, Array], Params]
    init: Callable[[Array], Params]
    latent_dim: int

    def encode(self, params: Params, x: Array) -> distrax.Distribution:
        """q(z | x; φ) for one datapoint x."""
        return self.family.distribution(self.encoder_output(params, x))


def make_vae(
    data_dim: int,
    latent_dim: int,
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
    architecture: Literal["mlp", "conv"] = "mlp",
    hidden: Sequence[int] = (256, 256),
    image_shape: tuple[int, int] | None = None,
    observation_scale: float | None = None,
    activation: Literal["gelu", "tanh", "relu"] = "gelu",
) -> AmortizedModel:
    """A VAE with a standard-normal prior, a mean-field Gaussian q(z | x) and Flax networks.

    The same arguments return the same `AmortizedModel` object: a jitted function
    that takes it as a static argument (it hashes by identity, as its functions do)
    compiles once per network configuration, however many times it is built.

    Args:
      data_dim: D, the size of one (flattened) datapoint.
      latent_dim: d.
      likelihood: "bernoulli" (binary data; the decoder gives logits) or
        "gaussian" (real-valued data).
      architecture: "mlp", or "conv" for images (needs `image_shape`, with H and
        W divisible by 4).
      hidden: widths of the MLP's hidden layers (the convolutional networks use
        their last width for their dense layer).
      image_shape: (H, W) with H·W = D, for "conv".
      observation_scale: for "gaussian": a fixed σ of p(x | z) = N(μ_θ(z), σ² I);
        None learns a σ_θ(z) per dimension.
      activation: the MLP's hidden nonlinearity: "gelu", "tanh" (the networks
        of Burda et al. 2016) or "relu". The convolutional networks use GELU.

    Returns:
      An `AmortizedModel`.
    """
    hidden = tuple(hidden)
    if any(isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1 for width in hidden):
        raise ArgumentError(
            f"hidden must be the widths of the hidden layers, positive ints such as (256, 256), got {hidden!r}."
        )
    return _make_vae(
        data_dim,
        latent_dim,
        likelihood,
        architecture,
        hidden,
        tuple(image_shape) if image_shape is not None else None,
        observation_scale,
        activation,
    )


@functools.cache
def _make_vae(
    data_dim, latent_dim, likelihood, architecture, hidden, image_shape, observation_scale, activation
) -> AmortizedModel:
    if likelihood not in ("bernoulli", "gaussian"):
        raise ArgumentError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}.")
    if architecture not in ("mlp", "conv"):
        raise ArgumentError(f"architecture must be 'mlp' or 'conv', got {architecture!r}.")
    if activation not in networks.ACTIVATIONS:
        raise ArgumentError(f"activation must be one of {sorted(networks.ACTIVATIONS)}, got {activation!r}.")
    if latent_dim < 1 or data_dim < 1:
        raise ArgumentError(f"data_dim and latent_dim must be at least 1, got {data_dim} and {latent_dim}.")
    num_outputs = 2 if likelihood == "gaussian" and observation_scale is None else 1

    encoder: networks.MLPEncoder | networks.ConvEncoder
    decoder: networks.MLPDecoder | networks.ConvDecoder
    if architecture == "mlp":
        encoder = networks.MLPEncoder(latent_dim, tuple(hidden), activation)
        decoder = networks.MLPDecoder(data_dim, tuple(hidden), num_outputs, activation)
    else:
        if image_shape is None or image_shape[0] * image_shape[1] != data_dim:
            raise ArgumentError(
                f"architecture='conv' needs image_shape (H, W) with H·W = {data_dim}, got {image_shape}."
            )
        if not hidden:
            raise ArgumentError("architecture='conv' needs at least one hidden width, the size of its dense layer.")
        if image_shape[0] % 4 or image_shape[1] % 4:
            raise ArgumentError(f"architecture='conv' needs H and W divisible by 4, got {image_shape}.")
        encoder = networks.ConvEncoder(latent_dim, tuple(image_shape), hidden=hidden[-1])
        decoder = networks.ConvDecoder(tuple(image_shape), hidden=hidden[-1], num_outputs=num_outputs)

    def prior(params):
        return distrax.MultivariateNormalDiag(jnp.zeros(latent_dim), jnp.ones(latent_dim))

    def likelihood_fn(params, z):
        outputs = decoder.apply(params["decoder"], z)
        if likelihood == "bernoulli":
            return distrax.Independent(BernoulliLogits(logits=outputs[0], dtype=outputs.dtype), 1)
        if observation_scale is None:
            return distrax.MultivariateNormalDiag(outputs[0], jnp.exp(outputs[1]))
        return distrax.MultivariateNormalDiag(outputs[0], jnp.full(data_dim, observation_scale, outputs.dtype))

    def encoder_output(params, x):
        _validation.check_real_array(x, "x")
        if jnp.shape(x) != (data_dim,):  # before Flax, whose error would name a kernel's shape instead
            hint = " It looks like a batch: use jax.vmap over the datapoints." if jnp.ndim(x) == 2 else ""
            raise ArgumentError(
                f"x has shape {jnp.shape(x)}, but the encoder takes one datapoint of shape ({data_dim},).{hint}"
            )
        mean, log_scale = encoder.apply(params["encoder"], x)
        return {"mean": mean, "log_scale": log_scale}

    def init(key):
        key_encoder, key_decoder = jax.random.split(key)
        return {
            "encoder": encoder.init(key_encoder, jnp.zeros(data_dim)),
            "decoder": decoder.init(key_decoder, jnp.zeros(latent_dim)),
        }

    return AmortizedModel(
        LatentVariableModel(prior, likelihood_fn), mean_field_gaussian(latent_dim), encoder_output, init, latent_dim
    )


def elbo_objective(amortized: AmortizedModel, num_samples: int = 1, analytic_kl: bool = True) -> Objective:
    """The VAE objective: ELBO(x; θ, φ) with q = q(z | x; φ) from the encoder."""

    def objective(key, params, x):
        return elbo(key, amortized.model, params, amortized.encode(params, x), x, num_samples, analytic_kl=analytic_kl)

    return objective


def iwae_objective(amortized: AmortizedModel, num_samples: int) -> Objective:
    """The IWAE objective (Burda et al. 2016): IWAE_K(x; θ, φ) with the encoder's q(z | x)."""

    def objective(key, params, x):
        return iwae_bound(key, amortized.model, params, amortized.encode(params, x), x, num_samples)

    return objective


def log_marginal(
    key: Array, amortized: AmortizedModel, params: Params, x: Array, num_samples: int, chunk_size: int | None = None
) -> MarginalEstimate:
    """log p(x; θ) of one datapoint, importance-sampled with the encoder's q(z | x) as the proposal:

        log p(x) ≈ log (1/K) Σ_k p(x, z_k; θ) / q(z_k | x),   z_k ~ q(z | x; φ)

    the test NLL of the VAE literature (Burda et al. 2016 use K = 5000). `chunk_size`
    draws the K samples that many at a time, so memory does not grow with K; see
    `log_marginal_is`, which this calls.
    """
    return log_marginal_is(
        key, amortized.model, params, amortized.encode(params, x), x, num_samples, chunk_size=chunk_size
    )


def autoencoder_objective(amortized: AmortizedModel) -> Objective:
    """The deterministic autoencoder: z = f(x), the encoder's mean; maximizes log p(x | f(x); θ).

    The same networks as the VAE, trained on reconstruction alone: no KL term
    and no sampling, so nothing makes p(z) = N(0, I) describe the codes.
    """

    def objective(key, params, x):
        del key  # deterministic
        return log_likelihood(amortized.model, params, x, encode_mean(amortized, params, x))

    return objective


def encode_mean(amortized: AmortizedModel, params: Params, x: Array) -> Array:
    """E_q[z | x]: the latent code of one datapoint (dimensionality reduction)."""
    return amortized.encoder_output(params, x)["mean"]


def decode_mean(amortized: AmortizedModel, params: Params, z: Array) -> Array:
    """E[x | z; θ]: pixel probabilities (Bernoulli) or means (Gaussian) for one latent."""
    return amortized.model.likelihood(params, z).mean()


def reconstruct(amortized: AmortizedModel, params: Params, x: Array) -> Array:
    """E[x | z = E_q[z | x]]: the reconstruction of one datapoint."""
    return decode_mean(amortized, params, encode_mean(amortized, params, x))


def generate(key: Array, amortized: AmortizedModel, params: Params) -> Array:
    """One generated datapoint: z ~ p(z), decoded to E[x | z; θ] (vmap over keys for many)."""
    return decode_mean(amortized, params, amortized.model.prior(params).sample(seed=key))


def interpolate(amortized: AmortizedModel, params: Params, x_start: Array, x_end: Array, num_steps: int) -> Array:
    """Decoded means along the straight line between the codes of two datapoints; (num_steps, D)."""
    start, end = encode_mean(amortized, params, x_start), encode_mean(amortized, params, x_end)
    weights = jnp.linspace(0.0, 1.0, num_steps)[:, None]
    return jax.vmap(lambda z: decode_mean(amortized, params, z))((1 - weights) * start + weights * end)
