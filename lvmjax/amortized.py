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

Richer posteriors and priors than the Gaussian pair (`make_vae(posterior=...,
prior=...)`): a full-rank Gaussian or a normalizing flow conditioned on the
encoder's context h(x) (IAF, Kingma et al. 2016; RealNVP; spline couplings), and
a learned mixture-of-Gaussians prior or the VampPrior (Tomczak & Welling 2018).
The objectives take a β (a number or an optax schedule of the step), free bits,
and the sticking-the-landing (Roeder et al. 2017) or doubly reparameterized
(Tucker et al. 2019) gradients.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import distrax
import jax
import jax.numpy as jnp

from lvmjax import _validation, networks, variational
from lvmjax.errors import ArgumentError
from lvmjax.estimators import (
    MarginalEstimate,
    _check_inputs,
    _pathwise_latents,
    elbo,
    iwae_bound,
    log_marginal_is,
)
from lvmjax.model import LatentVariableModel, log_likelihood
from lvmjax.training import ScheduledObjective
from lvmjax.types import Array, Objective, Params
from lvmjax.variational import POSTERIORS, VariationalFamily

PRIORS = ("normal", "mixture", "vamp")
"""p(z) of `make_vae`: N(0, I), a learned mixture of Gaussians, or the VampPrior."""

__all__ = [
    "PRIORS",
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


class _FullRankMixture(distrax.Distribution):
    """(1/K) Σ_k N(μ_k, L_k L_kᵀ): the VampPrior of a full-rank posterior, its K triangular inverses L_k⁻¹
    computed once, so that log p(z) is K small matrix-vector products (distrax's MixtureSameFamily of
    MultivariateNormalTri solves K triangular systems for every z, with L_k broadcast to every draw)."""

    def __init__(self, means: Array, scale_trils: Array):
        super().__init__()
        self._means = means
        self._scale_trils = scale_trils
        eye = jnp.eye(means.shape[-1], dtype=means.dtype)
        self._inverses = jax.vmap(lambda tril: jax.scipy.linalg.solve_triangular(tril, eye, lower=True))(scale_trils)
        self._log_dets = jnp.sum(jnp.log(jnp.diagonal(scale_trils, axis1=-2, axis2=-1)), axis=-1)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self._means.shape[-1],)

    def log_prob(self, value: Array) -> Array:
        whitened = jnp.einsum("kij,kj->ki", self._inverses, value - self._means)
        dim = self._means.shape[-1]
        log_components = -0.5 * jnp.sum(whitened**2, axis=-1) - self._log_dets - 0.5 * dim * math.log(2 * math.pi)
        return jax.scipy.special.logsumexp(log_components) - math.log(self._means.shape[0])

    def _sample_n(self, key: Array, n: int) -> Array:
        key_component, key_noise = jax.random.split(key)
        components = jax.random.randint(key_component, (n,), 0, self._means.shape[0])
        noise = jax.random.normal(key_noise, (n, self._means.shape[-1]), self._means.dtype)
        return self._means[components] + jnp.einsum("nij,nj->ni", self._scale_trils[components], noise)


class AmortizedModel(NamedTuple):
    """A latent variable model with an encoder.

    Attributes:
      model: p(z) p(x | z; θ); its functions read `params["decoder"]`.
      family: the variational family of q(z | x).
      encoder_output: `(params, x) -> φ(x)`, the family's parameters for one x;
        reads `params["encoder"]`.
      init: `init(key) -> params`, a dict with "encoder" and "decoder" (and "flow",
        the shared layers of a flow posterior; "prior", a learned prior's parameters).
      latent_dim: d.
      analytic_kl: KL(q(z | x) ‖ p(z)) has a closed form (Gaussian q, normal prior), so
        the ELBO may use it; False for flows and learned priors (Monte Carlo KL).
    """

    model: LatentVariableModel
    family: VariationalFamily
    encoder_output: Callable[[Params, Array], Params]
    init: Callable[[Array], Params]
    latent_dim: int
    analytic_kl: bool = True

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
    posterior: str = "diagonal",
    prior: str = "normal",
    prior_components: int = 10,
    flow_layers: int = 4,
    flow_hidden: Sequence[int] = (64, 64),
) -> AmortizedModel:
    """A VAE with Flax networks: by default a standard-normal prior and a mean-field Gaussian q(z | x).

    The same arguments return the same `AmortizedModel` object: a jitted function
    that takes it as a static argument (it hashes by identity, as its functions do)
    compiles once per network configuration, however many times it is built.

    Posteriors q(z | x):
      - "diagonal": N(μ(x), diag σ(x)²).
      - "full-rank": N(μ(x), L(x) L(x)ᵀ), the d(d − 1)/2 entries below L's diagonal a
        linear read-out of the encoder's last hidden layer.
      - "iaf", "realnvp", "spline": the diagonal Gaussian pushed through `flow_layers`
        layers of `variational.normalizing_flow`, every layer's network (hidden widths
        `flow_hidden`) also fed the encoder's context h(x) of size flow_hidden[0]; the
        layers' weights ("flow" in params) are shared by all x, h(x) is not (Kingma et
        al. 2016). An IAF gives log q(z | x) of its own samples only, all that the
        objectives and the importance-sampled NLL need; the STL and DReG gradients and
        AIS from the encoder need log q of any z, and a realnvp or spline flow.

    Priors p(z):
      - "normal": N(0, I).
      - "mixture": Σ_k π_k N(m_k, diag s_k²), K = `prior_components`, all learned
        (params["prior"]: "logits", "means", "log_scales").
      - "vamp": the VampPrior (Tomczak & Welling 2018), (1/K) Σ_k q₀(z | u_k) with K
        learned pseudo-inputs u_k (params["prior"]["pseudo_inputs"], shape (K, D)) and q₀
        the Gaussian part of the encoder's q: the aggregate posterior of the pseudo-inputs,
        exactly for the Gaussian posteriors, and of the flows' base Gaussians for flows.

    Every pair but a Gaussian posterior with the normal prior has no closed-form KL
    (`AmortizedModel.analytic_kl` False): the ELBO's KL is then Monte Carlo.

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
      posterior: one of `variational.POSTERIORS`, above.
      prior: one of `PRIORS`, above.
      prior_components: K of the mixture prior or the VampPrior.
      flow_layers: the number of layers of a flow posterior.
      flow_hidden: the hidden widths of a flow layer's network.

    Returns:
      An `AmortizedModel`.
    """
    hidden = tuple(hidden)
    flow_hidden = tuple(flow_hidden)
    for name, widths in (("hidden", hidden), ("flow_hidden", flow_hidden)):
        if any(isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1 for width in widths):
            raise ArgumentError(
                f"{name} must be the widths of the hidden layers, positive ints such as (256, 256), got {widths!r}."
            )
    if posterior not in POSTERIORS:
        raise ArgumentError(f"posterior must be one of {', '.join(POSTERIORS)}, got {posterior!r}.")
    if prior not in PRIORS:
        raise ArgumentError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}.")
    for name, count in (("prior_components", prior_components), ("flow_layers", flow_layers)):
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
            raise ArgumentError(f"{name} must be a positive int, got {count!r}.")
    if posterior in variational.FLOW_KINDS and not flow_hidden:
        raise ArgumentError("a flow posterior needs at least one hidden width in flow_hidden (its context's size).")
    return _make_vae(
        data_dim,
        latent_dim,
        likelihood,
        architecture,
        hidden,
        tuple(image_shape) if image_shape is not None else None,
        observation_scale,
        activation,
        posterior,
        prior,
        # What the posterior or the prior does not use is left out of the cache's key, so that the
        # same networks are the same object (and the same compiled programs) whatever it was.
        int(prior_components) if prior != "normal" else 0,
        int(flow_layers) if posterior in variational.FLOW_KINDS else 0,
        flow_hidden if posterior in variational.FLOW_KINDS else (),
    )


def _context_dim(posterior: str, latent_dim: int, flow_hidden: tuple[int, ...]) -> int:
    """The size of the encoder's extra output: L's off-diagonal entries, or a flow's context h(x)."""
    if posterior == "full-rank":
        return latent_dim * (latent_dim - 1) // 2
    return flow_hidden[0] if posterior in variational.FLOW_KINDS else 0


@functools.cache
def _make_vae(
    data_dim,
    latent_dim,
    likelihood,
    architecture,
    hidden,
    image_shape,
    observation_scale,
    activation,
    posterior="diagonal",
    prior_kind="normal",
    prior_components=10,
    flow_layers=4,
    flow_hidden=(64, 64),
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
    context_dim = _context_dim(posterior, latent_dim, flow_hidden)
    family = variational.posterior_family(posterior, latent_dim, flow_layers, flow_hidden, context_dim)

    encoder: networks.MLPEncoder | networks.ConvEncoder
    decoder: networks.MLPDecoder | networks.ConvDecoder
    if architecture == "mlp":
        encoder = networks.MLPEncoder(latent_dim, tuple(hidden), activation, context_dim)
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
        encoder = networks.ConvEncoder(latent_dim, tuple(image_shape), hidden=hidden[-1], context_dim=context_dim)
        decoder = networks.ConvDecoder(tuple(image_shape), hidden=hidden[-1], num_outputs=num_outputs)
    below_diagonal = jnp.tril_indices(latent_dim, -1)

    def gaussian_part(params, x):
        """The encoder's outputs for one x as φ(x) of the family (and the Gaussian part of q)."""
        outputs = encoder.apply(params["encoder"], x)
        mean, log_scale = outputs[0], outputs[1]
        if posterior == "diagonal":
            return {"mean": mean, "log_scale": log_scale}
        if posterior == "full-rank":
            off_diag = jnp.zeros((latent_dim, latent_dim), mean.dtype)
            if context_dim:
                off_diag = off_diag.at[below_diagonal].set(outputs[2])
            return {"mean": mean, "log_diag": log_scale, "off_diag": off_diag}
        return {"mean": mean, "log_scale": log_scale, "layers": params["flow"], "context": outputs[2]}

    def prior(params):
        if prior_kind == "normal":
            return distrax.MultivariateNormalDiag(jnp.zeros(latent_dim), jnp.ones(latent_dim))
        if prior_kind == "mixture":
            p = params["prior"]
            components = distrax.MultivariateNormalDiag(p["means"], jnp.exp(p["log_scales"]))
            return distrax.MixtureSameFamily(distrax.Categorical(logits=p["logits"]), components)
        phi = jax.vmap(gaussian_part, in_axes=(None, 0))(params, params["prior"]["pseudo_inputs"])
        if posterior == "full-rank":
            scale_trils = jax.vmap(lambda phi_k: family.distribution(phi_k).scale_tri)(phi)
            return _FullRankMixture(phi["mean"], scale_trils)
        components = distrax.MultivariateNormalDiag(phi["mean"], jnp.exp(phi["log_scale"]))
        uniform = distrax.Categorical(logits=jnp.zeros(prior_components, components.dtype))
        return distrax.MixtureSameFamily(uniform, components)

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
        return gaussian_part(params, x)

    def init(key):
        key_encoder, key_decoder, key_flow, key_prior = jax.random.split(key, 4)
        params = {
            "encoder": encoder.init(key_encoder, jnp.zeros(data_dim)),
            "decoder": decoder.init(key_decoder, jnp.zeros(latent_dim)),
        }
        if posterior in variational.FLOW_KINDS:
            params["flow"] = family.init(key_flow)["layers"]
        if prior_kind == "mixture":
            params["prior"] = {
                "logits": jnp.zeros(prior_components),
                "means": jax.random.normal(key_prior, (prior_components, latent_dim)),
                "log_scales": jnp.zeros((prior_components, latent_dim)),
            }
        elif prior_kind == "vamp":  # pseudo-inputs start as noise about the middle of the data's range
            noise = 0.01 * jax.random.normal(key_prior, (prior_components, data_dim))
            params["prior"] = {"pseudo_inputs": (0.5 if likelihood == "bernoulli" else 0.0) + noise}
        return params

    analytic_kl = posterior in ("diagonal", "full-rank") and prior_kind == "normal"
    return AmortizedModel(
        LatentVariableModel(prior, likelihood_fn), family, encoder_output, init, latent_dim, analytic_kl
    )


def _check_gradient(gradient: str, allowed: tuple[str, ...]) -> None:
    if gradient not in allowed:
        raise ArgumentError(f"gradient must be one of {', '.join(allowed)}, got {gradient!r}.")


def elbo_objective(
    amortized: AmortizedModel,
    num_samples: int = 1,
    analytic_kl: bool | None = None,
    beta: float | Array | Callable[[Array], Array] = 1.0,
    free_bits: float = 0.0,
    gradient: Literal["reparam", "stl"] = "reparam",
) -> Objective | ScheduledObjective:
    """The VAE objective with the encoder's q = q(z | x; φ): the ELBO, or a β-ELBO with free bits,

        E_q[log p(x | z; θ)] − β · Σ_j max(λ, KL_j),

    β = 1 and λ = 0 the ELBO itself. KL_j is the closed-form KL of latent dimension j
    (diagonal q, normal prior); otherwise free bits clamp the whole KL, max(λ d, KL), with
    the KL a Monte Carlo estimate of E_q[log q(z) − log p(z)]. Free bits (Kingma et al.
    2016) are applied per datapoint, so no dimension is pushed below λ nats by any x.

    Args:
      amortized: the `AmortizedModel`.
      num_samples: K draws z_k ~ q per datapoint.
      analytic_kl: the closed-form KL; None (default) uses it where it exists
        (`amortized.analytic_kl`), and never with gradient="stl".
      beta: β, a number, or an optax schedule of the training step (a KL warm-up,
        `optax.linear_schedule(0.0, 1.0, warmup_steps)`, Bowman et al. 2016), which returns
        a `training.ScheduledObjective` for `make_train_step`.
      free_bits: λ in nats per latent dimension.
      gradient: "reparam", or "stl" (sticking the landing, Roeder et al. 2017; see `elbo`).
    """
    _check_gradient(gradient, ("reparam", "stl"))
    if callable(beta):
        schedule = beta
        _beta_elbo(amortized, num_samples, analytic_kl, 1.0, free_bits, gradient)  # checks the arguments now
        return ScheduledObjective(
            lambda step: _beta_elbo(amortized, num_samples, analytic_kl, schedule(step), free_bits, gradient)
        )
    return _beta_elbo(amortized, num_samples, analytic_kl, beta, free_bits, gradient)


def _beta_elbo(
    amortized: AmortizedModel,
    num_samples: int,
    analytic_kl: bool | None,
    beta: float | Array,
    free_bits: float,
    gradient: str,
) -> Objective:
    if analytic_kl and not amortized.analytic_kl:
        raise ArgumentError(
            "analytic_kl=True needs a closed-form KL(q(z | x) ‖ p(z)), which this VAE's posterior and prior "
            "do not have (a flow, or a learned prior): use analytic_kl=None or False for the Monte Carlo KL."
        )
    if analytic_kl and gradient == "stl":
        raise ArgumentError("gradient='stl' needs the Monte Carlo KL: use analytic_kl=None or False.")
    analytic = amortized.analytic_kl and gradient != "stl" if analytic_kl is None else analytic_kl
    if not isinstance(free_bits, numbers.Real) or free_bits < 0:
        raise ArgumentError(f"free_bits must be a number of nats >= 0, got {free_bits!r}.")
    plain = isinstance(beta, numbers.Real) and beta == 1.0 and free_bits == 0.0

    def objective(key, params, x):
        q = amortized.encode(params, x)
        if plain:
            return elbo(key, amortized.model, params, q, x, num_samples, analytic_kl=analytic, gradient=gradient)
        _check_inputs(amortized.model, params, x, q)
        z, log_q = _pathwise_latents(key, q, num_samples, gradient)
        reconstruction = jnp.mean(jax.vmap(lambda z_k: log_likelihood(amortized.model, params, x, z_k))(z))
        prior = amortized.model.prior(params)
        if not analytic:
            kl = jnp.mean(log_q - jax.vmap(prior.log_prob)(z))
        elif isinstance(q, distrax.MultivariateNormalDiag) and isinstance(prior, distrax.MultivariateNormalDiag):
            marginals = [distrax.Normal(d.loc, d.scale_diag) for d in (q, prior)]
            kl = marginals[0].kl_divergence(marginals[1])  # one closed-form KL per latent dimension
        else:
            kl = q.kl_divergence(prior)
        if jnp.ndim(kl):
            penalty = jnp.sum(jnp.maximum(free_bits, kl))
        else:
            penalty = jnp.maximum(free_bits * amortized.latent_dim, kl)
        return reconstruction - beta * penalty

    return objective


def iwae_objective(
    amortized: AmortizedModel, num_samples: int, gradient: Literal["reparam", "dreg"] = "reparam"
) -> Objective:
    """The IWAE objective (Burda et al. 2016): IWAE_K(x; θ, φ) with the encoder's q(z | x); `gradient`
    "dreg" for the doubly reparameterized gradient (Tucker et al. 2019; see `iwae_bound`)."""
    _check_gradient(gradient, ("reparam", "dreg"))

    def objective(key, params, x):
        return iwae_bound(key, amortized.model, params, amortized.encode(params, x), x, num_samples, gradient)

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
    """E_q[z | x]: the latent code of one datapoint (dimensionality reduction); for a flow posterior,
    the flow's image of its base mean (`variational.code`)."""
    return variational.code(amortized.encode(params, x))


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
