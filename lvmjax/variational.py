"""Variational families: q(z; φ) for one latent, as a pair of pure functions of φ.

A family turns a pytree φ into a distrax distribution. Non-amortized SVI holds
one φ_i per datapoint (stacked along a leading axis N); an encoder outputs φ(x)
for each x. The Gaussian families are reparameterizable, z = μ + L ε; the
categorical one is discrete (use score-function or exact-enumeration ELBOs).
`normalizing_flow` pushes a diagonal Gaussian through invertible layers, distrax
bijectors conditioned by small networks (RealNVP, IAF, spline couplings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import networks
from lvmjax.errors import ArgumentError
from lvmjax.types import Array, Params

__all__ = [
    "FLOW_KINDS",
    "POSTERIORS",
    "VariationalFamily",
    "categorical",
    "code",
    "full_rank_gaussian",
    "has_density",
    "is_flow",
    "mean_field_gaussian",
    "normalizing_flow",
    "posterior_family",
]

FLOW_KINDS = ("realnvp", "iaf", "spline")
POSTERIORS = ("diagonal", "full-rank", *FLOW_KINDS)
"""The names of the families `posterior_family` (and `amortized.make_vae(posterior=...)`) builds."""


class VariationalFamily(NamedTuple):
    """q(z; φ) for one latent.

    Attributes:
      init: `init(key) -> φ` for one datapoint.
      distribution: `distribution(φ) -> q(z; φ)`, a distrax distribution with batch_shape ().
    """

    init: Callable[[Array], Params]
    distribution: Callable[[Params], distrax.Distribution]


def mean_field_gaussian(latent_dim: int, init_scale: float = 1.0, init_mean_scale: float = 0.0) -> VariationalFamily:
    """q(z; φ) = N(μ, diag(σ²)), φ = {"mean": μ, "log_scale": log σ}, each of shape (d,).

    Initialised at σ = init_scale and μ ~ N(0, init_mean_scale² I).
    """

    def init(key):
        return {
            "mean": init_mean_scale * jax.random.normal(key, (latent_dim,)),
            "log_scale": jnp.log(jnp.full((latent_dim,), init_scale, float)),
        }

    def distribution(phi):
        return distrax.MultivariateNormalDiag(phi["mean"], jnp.exp(phi["log_scale"]))

    return VariationalFamily(init, distribution)


def full_rank_gaussian(latent_dim: int, init_scale: float = 1.0, init_mean_scale: float = 0.0) -> VariationalFamily:
    """q(z; φ) = N(μ, L Lᵀ), φ = {"mean": μ (d,), "log_diag": (d,), "off_diag": (d, d)}.

    L = tril(off_diag, -1) + diag(exp(log_diag)): lower-triangular with a
    positive diagonal, so every φ gives a valid covariance.
    """

    def init(key):
        return {
            "mean": init_mean_scale * jax.random.normal(key, (latent_dim,)),
            "log_diag": jnp.log(jnp.full((latent_dim,), init_scale, float)),
            "off_diag": jnp.zeros((latent_dim, latent_dim)),
        }

    def distribution(phi):
        # diag(·) written as a product, so that a batch of φ (a VampPrior's K components) works too
        diagonal = jnp.exp(phi["log_diag"])[..., None] * jnp.eye(latent_dim, dtype=phi["log_diag"].dtype)
        scale_tril = jnp.tril(phi["off_diag"], -1) + diagonal
        return distrax.MultivariateNormalTri(phi["mean"], scale_tril)

    return VariationalFamily(init, distribution)


def categorical(num_states: int, init_scale: float = 0.0) -> VariationalFamily:
    """q(z; φ) = Categorical(softmax(φ["logits"])) over z ∈ {0, …, K - 1}, φ["logits"] of shape (K,).

    Every q with full support is reached, the posterior of a mixture included.
    Initialised at logits ~ N(0, init_scale² I): the uniform q for init_scale = 0.
    Not reparameterizable: fit it with `estimators.elbo(..., gradient="score")`
    or `estimators.elbo_exact`.
    """

    def init(key):
        return {"logits": init_scale * jax.random.normal(key, (num_states,))}

    def distribution(phi):
        return distrax.Categorical(logits=phi["logits"])

    return VariationalFamily(init, distribution)


# --- Normalizing flows -------------------------------------------------------------------


def _soft_clamp(log_scale: Array, bound: float = 3.0) -> Array:
    """bound · tanh(s / bound): the log-scale of an affine layer, near s for small s and never past ±bound,
    so that no layer can scale by more than e³ and a long flow stays finite."""
    return bound * jnp.tanh(log_scale / bound)


def _affine(params: Array) -> distrax.Bijector:
    """z ↦ shift + exp(log_scale) z per dimension, from (D, 2) conditioner outputs."""
    return distrax.ScalarAffine(shift=params[..., 0], log_scale=_soft_clamp(params[..., 1]))


class _FlowLayer(distrax.Bijector):
    """One layer of a flow over a latent (D,): a coupling (RealNVP, spline) or an inverse-autoregressive layer.

    Its network's parameters and the context are attributes, so they are leaves of the distribution's
    pytree: `jax.tree.map(jax.lax.stop_gradient, q)` stops them (the STL and DReG gradients need that).

      coupling:  z' = mask ⊙ z + (1 − mask) ⊙ g(z; c(mask ⊙ z, h))        (Dinh et al. 2017)
      iaf:       z'_d = μ_d(z_{<d}, h) + exp(s_d(z_{<d}, h)) z_d             (Kingma et al. 2016)

    with g elementwise: affine, or a rational-quadratic spline on [−B, B] and the identity outside it
    (Durkan et al. 2019). The coupling layers invert in one pass; an IAF's inverse is sequential.
    """

    def __init__(self, kind: str, module: Any, params: Params, mask: np.ndarray | None, context, bound: float):
        super().__init__(event_ndims_in=1)
        self.kind = kind
        self.module = module
        self.params = params
        self.mask = mask
        self.context = context
        self.bound = bound

    def _elementwise(self, outputs: Array) -> distrax.Bijector:
        if self.kind == "spline":
            return distrax.RationalQuadraticSpline(
                outputs, range_min=-self.bound, range_max=self.bound, boundary_slopes="identity"
            )
        return _affine(outputs)

    def _coupling(self) -> distrax.MaskedCoupling:
        return distrax.MaskedCoupling(
            self.mask, lambda masked: self.module.apply(self.params, masked, self.context), self._elementwise
        )

    def forward_and_log_det(self, z: Array) -> tuple[Array, Array]:
        if self.kind == "iaf":
            return distrax.Block(_affine(self.module.apply(self.params, z, self.context)), 1).forward_and_log_det(z)
        return self._coupling().forward_and_log_det(z)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        if self.kind == "iaf":
            raise ArgumentError(
                "an IAF posterior gives the log-density of its own samples (sample_and_log_prob) but not of an "
                "arbitrary z: its inverse is sequential. Use a 'realnvp' or 'spline' flow where log q(z) of any "
                "z is needed (a VampPrior's aggregate posterior, the STL and DReG gradients, I(x; z))."
            )
        return self._coupling().inverse_and_log_det(y)


def _flow_modules(kind: str, latent_dim: int, num_layers: int, hidden: tuple[int, ...], num_bins: int, activation):
    if kind == "iaf":
        return [
            networks.MADE(latent_dim, 2, hidden, activation, reverse=bool(layer % 2)) for layer in range(num_layers)
        ]
    num_params = 3 * num_bins + 1 if kind == "spline" else 2
    return [networks.CouplingConditioner(latent_dim, num_params, hidden, activation) for _ in range(num_layers)]


def normalizing_flow(
    latent_dim: int,
    kind: str = "realnvp",
    num_layers: int = 4,
    hidden: Sequence[int] = (64, 64),
    context_dim: int = 0,
    num_bins: int = 8,
    bound: float = 5.0,
    init_scale: float = 1.0,
    init_mean_scale: float = 0.0,
    activation: str = "gelu",
) -> VariationalFamily:
    """q(z; φ): a diagonal Gaussian base pushed through `num_layers` invertible layers T_1 … T_L,

        ε ~ N(μ, diag(σ²)),   z = T_L ∘ … ∘ T_1(ε),
        log q(z) = log N(ε; μ, σ²) − Σ_l log |det ∂T_l / ∂(input of T_l)|

    `sample_and_log_prob` computes log q from the draw's own pass through the layers (one pass
    for every kind); `log_prob` of an arbitrary z inverts them (coupling kinds only).

    Kinds (every layer a `distrax` bijector, chained by `distrax.Chain`):
      - "realnvp": affine couplings (Dinh et al. 2017), alternating which half of z conditions
        the other;
      - "iaf": inverse-autoregressive layers (Kingma et al. 2016), MADE networks with alternating
        orders; `log_prob` of an arbitrary z raises a clear error;
      - "spline": rational-quadratic spline couplings with `num_bins` bins on [−bound, bound]
        (Durkan et al. 2019).

    φ = {"mean": (d,), "log_scale": (d,), "layers": the L networks' parameters} and, with
    `context_dim` > 0, "context": h (context_dim,), an input of every layer's network (an
    encoder's h(x), for amortized flows). Every layer starts as the identity, so at init q is
    the base Gaussian N(μ, σ²) with σ = init_scale and μ ~ N(0, init_mean_scale² I).
    """
    if kind not in FLOW_KINDS:
        raise ArgumentError(f"kind must be one of {', '.join(FLOW_KINDS)}, got {kind!r}.")
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ArgumentError(f"num_layers must be a positive int, got {num_layers!r}.")
    if kind == "spline" and (num_bins < 1 or bound <= 0):
        raise ArgumentError(f"a spline flow needs num_bins >= 1 and bound > 0, got {num_bins} and {bound}.")
    hidden = tuple(hidden)
    modules = _flow_modules(kind, latent_dim, num_layers, hidden, num_bins, activation)
    masks: list[np.ndarray | None] = (
        [None] * num_layers
        if kind == "iaf"
        else [(np.arange(latent_dim) + layer) % 2 == 0 for layer in range(num_layers)]
    )

    def init(key):
        key_mean, *keys = jax.random.split(key, num_layers + 1)
        context = jnp.zeros(context_dim) if context_dim else None
        phi = {
            "mean": init_mean_scale * jax.random.normal(key_mean, (latent_dim,)),
            "log_scale": jnp.log(jnp.full((latent_dim,), init_scale, float)),
            "layers": tuple(
                module.init(layer_key, jnp.zeros(latent_dim), context)
                for module, layer_key in zip(modules, keys, strict=True)
            ),
        }
        if context_dim:
            phi["context"] = context
        return phi

    def distribution(phi):
        context = phi.get("context")
        layers = [
            _FlowLayer(kind, module, params, mask, context, bound)
            for module, params, mask in zip(modules, phi["layers"], masks, strict=True)
        ]
        base = distrax.MultivariateNormalDiag(phi["mean"], jnp.exp(phi["log_scale"]))
        return distrax.Transformed(base, distrax.Chain(layers[::-1]))  # Chain applies its last bijector first

    return VariationalFamily(init, distribution)


def is_flow(q: distrax.Distribution) -> bool:
    """q is a normalizing flow: a transformed distribution whose Jacobian is not constant (distrax's
    Gaussians are transformed distributions too, by an affine bijector)."""
    return isinstance(q, distrax.Transformed) and not q.bijector.is_constant_jacobian


def has_density(q: distrax.Distribution) -> bool:
    """q.log_prob(z) is available at any z: False only for a flow with an inverse-autoregressive layer,
    whose inverse is sequential (its `sample_and_log_prob` is exact all the same)."""
    if not is_flow(q):
        return True
    bijector = q.bijector
    layers = bijector.bijectors if isinstance(bijector, distrax.Chain) else [bijector]
    return not any(isinstance(layer, _FlowLayer) and layer.kind == "iaf" for layer in layers)


def code(q: distrax.Distribution) -> Array:
    """A latent code of q: its mean E_q[z] where it has one in closed form, else (a flow) the image of the
    base distribution's mean under the flow, T(μ): a point of high density, not E_q[z]."""
    if is_flow(q):
        return q.bijector.forward(q.distribution.mean())
    return q.mean()


def posterior_family(
    posterior: str,
    latent_dim: int,
    flow_layers: int = 4,
    flow_hidden: Sequence[int] = (64, 64),
    context_dim: int = 0,
    init_scale: float = 1.0,
) -> VariationalFamily:
    """The family of one of `POSTERIORS` by name: "diagonal" (`mean_field_gaussian`), "full-rank"
    (`full_rank_gaussian`), or a `normalizing_flow` of that kind with `flow_layers` layers whose
    networks have hidden widths `flow_hidden` (and a context input of size `context_dim`)."""
    if posterior == "diagonal":
        return mean_field_gaussian(latent_dim, init_scale)
    if posterior == "full-rank":
        return full_rank_gaussian(latent_dim, init_scale)
    if posterior in FLOW_KINDS:
        return normalizing_flow(
            latent_dim, posterior, flow_layers, tuple(flow_hidden), context_dim, init_scale=init_scale
        )
    raise ArgumentError(f"posterior must be one of {', '.join(POSTERIORS)}, got {posterior!r}.")
