"""The neural models: the VAE, the IWAE, the deterministic autoencoder and non-amortized SVI.

All four share one pair of networks (`amortized.make_vae`) and one way of training:
`training.make_epoch` of an (init, step) pair, run epoch by epoch by
`training_loop.run_epochs` with checkpoints. They differ in the objective and in what
a fitted model can do:

    vae    ELBO(x; θ, φ) of the encoder's q(z | x)                        (Kingma & Welling 2014)
    iwae   IWAE_K(x; θ, φ), K importance samples from the encoder         (Burda et al. 2016)
    ae     log p(x | z = f(x)): reconstruction only, no p(z), no p(x)
    svi    Σ_i ELBO(x_i; θ, φ_i), one φ_i per training datapoint          (seed text §4.1)

vae and iwae also take a richer posterior (full-rank, or a flow conditioned on the encoder),
a learned prior (mixture, VampPrior) and their gradient estimator (STL, DReG); vae a β-ELBO
with KL warm-up and free bits. Their evaluation reports how the latent space is used
(`lvmjax.diagnostics`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lvmjax import amortized, applications, diagnostics, parallel, semi_amortized, svi, training, variational
from lvmjax import data as data_lib
from lvmjax.ais import bdmc, log_marginal_ais
from lvmjax.app.batches import chunk_size, in_batches
from lvmjax.app.compiled import impute_vae_all
from lvmjax.app.spec import DataKind, EvaluationSettings, FitResult, ModelSpec, Run
from lvmjax.app.training_loop import run_epochs
from lvmjax.errors import RunError
from lvmjax.estimators import elbo, log_marginal_is
from lvmjax.model import log_likelihood, sample

__all__ = ["AE", "IWAE", "SPECS", "SVI", "VAE", "networks"]

OPTIONS = frozenset({"epochs", "batch_size", "latent_dim", "lr", "hidden", "architecture", "max_skipped_steps"})
AMORTIZED_OPTIONS = frozenset({"posterior", "prior", "components", "flow_layers", "gradient"})
"""What vae and iwae read beyond OPTIONS: q(z | x), p(z) and the gradient estimator."""


def networks(config, data_dim: int, image_shape) -> amortized.AmortizedModel:
    """The encoder and decoder of a run (svi uses only the decoder); the same object for the same settings."""
    options = config.spec.options
    posterior = config.posterior if "posterior" in options else "diagonal"
    prior = config.prior if "prior" in options else "normal"
    return amortized.make_vae(
        data_dim,
        config.latent_dim,
        hidden=config.hidden,
        architecture=config.architecture,
        image_shape=image_shape,
        posterior=posterior,
        prior=prior,
        prior_components=config.components,
        flow_layers=config.flow_layers,
    )


def _elbo_objective(config, vae, steps_per_epoch: int):
    """The vae's objective: the ELBO, or a β-ELBO with free bits, β warmed up over `warmup_epochs`."""
    beta = config.beta
    if config.warmup_epochs:
        beta = optax.linear_schedule(0.0, config.beta, config.warmup_epochs * steps_per_epoch)
    return amortized.elbo_objective(vae, config.samples, None, beta, config.free_bits, config.gradient)


def _optimizer(config, steps: int) -> optax.GradientTransformation:
    # Cosine decay to 5% of the rate: the last epochs settle instead of rattling.
    return optax.adam(optax.cosine_decay_schedule(config.lr, steps, alpha=0.05))


def _check(config, num_data: int, data_dim: int) -> None:
    if config.batch_size > num_data:
        raise RunError(f"{{batch_size}} {config.batch_size} is larger than the {num_data} training datapoints.")


def _binarizing(step: Callable, indexed: bool) -> Callable:
    """`step` on a fresh binarization of every minibatch of grey levels (Burda et al. 2016)."""

    def binarized_step(state, key, batch):
        key_binarize, key_step = jax.random.split(key)
        if indexed:
            indices, images = batch
            return step(state, key_step, (indices, data_lib.binarize(key_binarize, images)))
        return step(state, key_step, data_lib.binarize(key_binarize, batch))

    return binarized_step


def _train(config, dataset, trainer: training.Trainer, state, data, place, progress, checkpoints, mesh):
    """Trains `trainer` from `state` over the epochs of `config`: (final state, history, seconds)."""
    step = _binarizing(trainer.step, indexed=isinstance(data, tuple)) if dataset.grey_levels else trainer.step
    epoch = jax.jit(training.make_epoch(step, config.batch_size, mesh))
    key_epochs = jax.random.split(jax.random.key(config.seed), 3)[2]
    return run_epochs(
        epoch, state, data, key_epochs, config.epochs, config.max_skipped_steps, progress, checkpoints, mesh, place
    )


def _fit_amortized(objective: Callable) -> Callable:
    """The fit of a model with an encoder, trained on `objective(config, vae, steps_per_epoch)` by gradient
    ascent."""

    def fit(config, dataset, *, progress=None, checkpoints=None, mesh=None) -> FitResult:
        train = jnp.asarray(dataset.train)
        num_data, data_dim = train.shape
        vae = networks(config, data_dim, dataset.image_shape)
        key_init = jax.random.split(jax.random.key(config.seed), 3)[0]
        optimizer = _optimizer(config, config.epochs * (num_data // config.batch_size))
        trainer = training.gradient_ascent(objective(config, vae, num_data // config.batch_size), optimizer)
        state = trainer.init(key_init, vae.init(key_init))
        state, history, seconds = _train(
            config, dataset, trainer, state, train, parallel.replicate, progress, checkpoints, mesh
        )
        return FitResult(state.params, history, seconds, data_dim, dataset.image_shape, num_data)

    return fit


def _fit_svi(config, dataset, *, progress=None, checkpoints=None, mesh=None) -> FitResult:
    train = jnp.asarray(dataset.train)
    num_data, data_dim = train.shape
    vae = networks(config, data_dim, dataset.image_shape)
    key_init, key_phi, _ = jax.random.split(jax.random.key(config.seed), 3)
    optimizer = _optimizer(config, config.epochs * (num_data // config.batch_size))
    trainer = svi.svi(
        vae.model,
        vae.family,
        optimizer,
        optax.adam(config.svi_lr),
        num_data,
        config.samples,
        analytic_kl=True,
        inner_steps=config.svi_inner_steps,
    )
    state = trainer.init(key_phi, {"decoder": vae.init(key_init)["decoder"]})
    state, history, seconds = _train(
        config, dataset, trainer, state, (jnp.arange(num_data), train), svi.shard_state, progress, checkpoints, mesh
    )
    return FitResult(
        {"decoder": state.theta["decoder"], "phi": state.phi}, history, seconds, data_dim, dataset.image_shape, num_data
    )


def _template(config, data_dim: int, image_shape, num_train: int):
    vae = networks(config, data_dim, image_shape)
    return jax.eval_shape(vae.init, jax.random.key(0))


def _svi_template(config, data_dim: int, image_shape, num_train: int):
    vae = networks(config, data_dim, image_shape)
    return {
        "decoder": _template(config, data_dim, image_shape, num_train)["decoder"],
        "phi": jax.eval_shape(jax.vmap(vae.family.init), jax.random.split(jax.random.key(0), num_train)),
    }


# --- Evaluation: compiled once per network and setting (the parameters are arguments, not
# constants, so runs of the same sizes, a vae and an iwae say, share the program).


@functools.partial(jax.jit, static_argnames=("vae",))
def _reconstruction_log_likelihoods(vae, params, test):
    return jax.vmap(lambda x: log_likelihood(vae.model, params, x, amortized.encode_mean(vae, params, x)))(test)


@functools.partial(jax.jit, static_argnames=("vae", "svi_lr", "refine_steps", "num_samples", "chunk_size"))
def _svi_test_metrics(key, vae, params, test, svi_lr, refine_steps, num_samples, chunk_size):
    phi0 = jax.vmap(vae.family.init)(jax.random.split(key, test.shape[0]))
    phi = svi.fit_local(
        key, vae.model, vae.family, params, test, phi0, optax.adam(svi_lr), refine_steps * 2, analytic_kl=True
    )

    def per_datapoint(args):
        index, phi_i, x = args
        q = vae.family.distribution(phi_i)
        k = jax.random.fold_in(key, index)
        return (
            elbo(k, vae.model, params, q, x, 100, analytic_kl=True),
            log_marginal_is(k, vae.model, params, q, x, num_samples, chunk_size=chunk_size),
        )

    return jax.lax.map(per_datapoint, (jnp.arange(test.shape[0]), phi, test), batch_size=64)


@functools.partial(jax.jit, static_argnames=("vae", "refine_steps", "num_samples", "chunk_size"))
def _gap_report(key, vae, params, test, refine_steps, num_samples, chunk_size):
    return semi_amortized.amortization_gap(
        key, vae, params, test, refine_steps=refine_steps, marginal_samples=num_samples, chunk_size=chunk_size
    )


@functools.partial(jax.jit, static_argnames=("vae", "num_steps", "num_chains", "from_encoder"))
def _ais_log_marginals(key, vae, params, test, num_steps, num_chains, from_encoder):
    """AIS estimates of log p(x) of every row of `test`, from the encoder's q or (without) the prior."""

    def per_datapoint(args):
        index, x = args
        proposal = vae.encode(params, x) if from_encoder else None
        key_x = jax.random.fold_in(key, index)
        return log_marginal_ais(key_x, vae.model, params, x, num_steps, num_chains, proposal=proposal)

    return jax.lax.map(per_datapoint, (jnp.arange(test.shape[0]), test), batch_size=64)


def _with_ais(report: dict, vae, params, test, settings: EvaluationSettings, from_encoder: bool, base_elbo) -> tuple:
    """The report with its NLL by AIS (the importance-sampled one kept as test_nll_is), and the estimates."""
    estimate = in_batches(
        lambda key, batch: _ais_log_marginals(
            key, vae, params, batch, settings.ais_steps, settings.ais_chains, from_encoder
        ),
        jax.random.fold_in(jax.random.key(settings.seed), 1),
        test,
        settings.progress,
    )
    proposal = "the encoder's q" if from_encoder else "the prior"
    report = report | {
        "test_nll_is": report["test_nll"],
        "test_nll_is_stderr": report["test_nll_stderr"],
        "test_nll": -float(jnp.mean(estimate.log_marginal)),
        "test_nll_stderr": float(jnp.sqrt(jnp.sum(estimate.stderr**2)) / test.shape[0]),
        "nll_estimator": f"AIS, {settings.ais_steps} steps × {settings.ais_chains} chains from {proposal}",
    }
    if base_elbo is not None:  # the approximation gap against the better log p(x)
        report["approximation_gap"] = float(jnp.mean(estimate.log_marginal - base_elbo))
    return report, estimate


@functools.partial(jax.jit, static_argnames=("vae", "num", "num_steps", "num_chains"))
def _bdmc_on_simulated(key, vae, params, num, num_steps, num_chains):
    """BDMC on `num` pairs (x, z) ~ p(x, z; θ): z is an exact posterior sample of its x (Grosse et al. 2015)."""
    key_data, key_bdmc = jax.random.split(key)
    z, x = jax.vmap(lambda k: sample(k, vae.model, params))(jax.random.split(key_data, num))

    def per_datapoint(args):
        index, x_i, z_i = args
        return bdmc(jax.random.fold_in(key_bdmc, index), vae.model, params, x_i, z_i, num_steps, num_chains)

    return jax.lax.map(per_datapoint, (jnp.arange(num), x, z), batch_size=64)


def _bdmc_report(vae, params, settings: EvaluationSettings) -> dict:
    """The BDMC bounds on log p(x) of datapoints simulated from the model, in nats per datapoint."""
    result = jax.device_get(
        _bdmc_on_simulated(
            jax.random.fold_in(jax.random.key(settings.seed), 2),
            vae,
            params,
            settings.bdmc,
            settings.ais_steps,
            settings.ais_chains,
        )
    )
    lower, upper = result.lower, result.upper
    return {
        "num_simulated": settings.bdmc,
        "ais_steps": settings.ais_steps,
        "ais_chains": settings.ais_chains,
        "lower": float(np.mean(lower.log_marginal)),
        "lower_stderr": float(np.sqrt(np.sum(lower.stderr**2)) / settings.bdmc),
        "upper": float(np.mean(upper.log_marginal)),
        "upper_stderr": float(np.sqrt(np.sum(upper.stderr**2)) / settings.bdmc),
        "gap": float(np.mean(upper.log_marginal - lower.log_marginal)),
    }


def _evaluate_amortized(config, params, dataset, settings: EvaluationSettings) -> dict:
    """Test ELBO of the encoder's q; test NLL importance-sampled from the refined q (or by AIS from the
    encoder's q); the two gaps."""
    test = np.asarray(dataset.test)
    vae = networks(config, test.shape[1], dataset.image_shape)
    num_samples = settings.num_samples
    gaps = in_batches(
        lambda key, batch: _gap_report(
            key, vae, params, batch, settings.refine_steps, num_samples, chunk_size(num_samples)
        ),
        jax.random.key(settings.seed),
        test,
        settings.progress,
    )
    report = {
        "test_elbo": float(jnp.mean(gaps.amortized_elbo)),
        "test_nll": -float(jnp.mean(gaps.log_marginal)),
        "test_nll_stderr": float(jnp.sqrt(jnp.sum(gaps.log_marginal_stderr**2)) / test.shape[0]),
        "refined_elbo": float(jnp.mean(gaps.refined_elbo)),
        "approximation_gap": float(jnp.mean(gaps.approximation_gap)),
        "amortization_gap": float(jnp.mean(gaps.amortization_gap)),
        "nll_estimator": f"importance sampling, K = {num_samples} from the refined q",
    }
    report["diagnostics"] = _diagnostics(vae, params, test, settings.seed)
    log_marginals = gaps.log_marginal
    if settings.estimator == "ais":
        # AIS anneals from its proposal's log-density at every z, which an IAF does not have
        from_encoder = variational.has_density(vae.encode(params, test[0]))
        report, estimate = _with_ais(report, vae, params, test, settings, from_encoder, gaps.refined_elbo)
        log_marginals = estimate.log_marginal
    if settings.bdmc:
        report["bdmc"] = _bdmc_report(vae, params, settings)
    if settings.per_datapoint:
        report["test_log_marginals"] = jax.device_get(log_marginals).tolist()
    return report


_DIAGNOSTIC_DATA = 1000  # test datapoints of the diagnostics: I(x; z) costs O(N²)


@functools.partial(jax.jit, static_argnames=("vae", "closed_form_kl", "density"))
def _diagnostic_values(key, vae, params, data, closed_form_kl: bool, density: bool):
    key_units, key_rate, key_information = jax.random.split(key, 3)
    units = diagnostics.active_units(key_units, vae, params, data)
    rate = diagnostics.rate_distortion(key_rate, vae, params, data, num_samples=8)
    kl = diagnostics.kl_per_dimension(vae, params, data) if closed_form_kl else None
    information = diagnostics.mutual_information(key_information, vae, params, data) if density else None
    return units, rate, kl, information


def _diagnostics(vae, params, test, seed: int) -> dict:
    """How the run uses its latent space, on the first 1000 test datapoints (`lvmjax.diagnostics`): the KL per
    dimension where it has a closed form (diagonal q, diagonal p(z)), I(x; z) where q has a density at any z."""
    data = jnp.asarray(test[:_DIAGNOSTIC_DATA])
    q, prior = vae.encode(params, data[0]), vae.model.prior(params)
    closed_form_kl = all(isinstance(d, distrax.MultivariateNormalDiag) for d in (q, prior))
    density = variational.has_density(q)
    units, rate, kl, information = jax.device_get(
        _diagnostic_values(jax.random.fold_in(jax.random.key(seed), 3), vae, params, data, closed_form_kl, density)
    )
    return {
        "num_datapoints": int(data.shape[0]),
        "active_units": int(units.num_active),
        "active_unit_variances": units.variances.tolist(),
        "kl_per_dimension": kl.tolist() if kl is not None else None,
        "rate": float(rate.rate),
        "distortion": float(rate.distortion),
        "mutual_information": float(information.estimate) if information is not None else None,
        "mutual_information_upper_bound": float(information.upper_bound) if information is not None else None,
    }


def _evaluate_svi(config, params, dataset, settings: EvaluationSettings) -> dict:
    """φ_i fitted to each test datapoint with θ fixed, then the same ELBO and NLL."""
    test = np.asarray(dataset.test)
    vae = networks(config, test.shape[1], dataset.image_shape)
    num_samples = settings.num_samples
    elbos, estimate = in_batches(
        lambda key, batch: _svi_test_metrics(
            key,
            vae,
            {"decoder": params["decoder"]},
            batch,
            config.svi_lr,
            settings.refine_steps,
            num_samples,
            chunk_size(num_samples),
        ),
        jax.random.key(settings.seed),
        test,
        settings.progress,
    )
    report = {
        "test_elbo": float(jnp.mean(elbos)),
        "test_nll": -float(jnp.mean(estimate.log_marginal)),
        "test_nll_stderr": float(jnp.sqrt(jnp.sum(estimate.stderr**2)) / test.shape[0]),
        "nll_estimator": f"importance sampling, K = {num_samples} from the fitted q of each test datapoint",
    }
    if settings.estimator == "ais":
        decoder = {"decoder": params["decoder"]}
        report, estimate = _with_ais(report, vae, decoder, test, settings, False, None)
    if settings.bdmc:
        report["bdmc"] = _bdmc_report(vae, {"decoder": params["decoder"]}, settings)
    if settings.per_datapoint:
        report["test_log_marginals"] = jax.device_get(estimate.log_marginal).tolist()
    return report


def _evaluate_autoencoder(config, params, dataset, settings: EvaluationSettings) -> dict:
    """No likelihood, so no test ELBO or NLL: the reconstruction term −log p(x | f(x)) instead."""
    test = np.asarray(dataset.test)
    vae = networks(config, test.shape[1], dataset.image_shape)
    reconstruction = in_batches(
        lambda key, batch: _reconstruction_log_likelihoods(vae, params, batch),
        jax.random.key(settings.seed),
        test,
        settings.progress,
    )
    return {"test_elbo": None, "test_nll": None, "test_reconstruction_nll": -float(jnp.mean(reconstruction))}


# --- What a fitted model can do ----------------------------------------------------------


def _networks_of(run: Run) -> amortized.AmortizedModel:
    if run.vae is None:
        raise RunError(f"the {run.spec.name} run has no networks; read it with load_run.")
    return run.vae


def _generative_params(run: Run):
    """The parameters of p(x, z): all but svi's per-datapoint φ_i (a learned prior reads more than the decoder)."""
    return {name: value for name, value in run.params.items() if name != "phi"}


def _decoder(run: Run):
    return _networks_of(run).model, _generative_params(run)


def _impute_with_encoder(key, run: Run, data, observed, num_samples: int) -> np.ndarray:
    """Self-normalized importance sampling with K = `num_samples` draws from the encoder's q(z | x_o)."""
    return np.asarray(impute_vae_all(key, _networks_of(run), run.params, data, observed, num_samples))


def _impute_with_prior(key, run: Run, data, observed, num_samples: int) -> np.ndarray:
    """svi has no encoder, so the proposal is the prior p(z): the weights are the likelihoods p(x_o | z_k)."""
    vae = _networks_of(run)
    standard_normal = {"mean": jnp.zeros(vae.latent_dim), "log_scale": jnp.zeros(vae.latent_dim)}
    prior_proposal = vae._replace(encoder_output=lambda params, x: standard_normal)
    return np.asarray(
        impute_vae_all(key, prior_proposal, {"decoder": run.params["decoder"]}, data, observed, num_samples)
    )


@functools.partial(jax.jit, static_argnames=("vae", "num_samples"))
def _impute_all_by_mcmc(key, vae, params, data, observed, num_samples: int):
    def one(args):
        index, x = args
        draws_per_chain = max(num_samples // 4, 1)
        key_x = jax.random.fold_in(key, index)
        return applications.impute_vae_mcmc(key_x, vae, params, x, observed, draws_per_chain, 200, 4)[0]

    return jax.lax.map(one, (jnp.arange(data.shape[0]), data), batch_size=8)


def _impute_by_mcmc(key, run: Run, data, observed, num_samples: int) -> np.ndarray:
    """E[x_m | x_o] with z ~ p(z | x_o) by NUTS: 4 chains of num_samples / 4 draws after 200 warmup steps."""
    vae = _networks_of(run)
    params = _generative_params(run)
    return np.asarray(_impute_all_by_mcmc(key, vae, params, jnp.asarray(data), jnp.asarray(observed), num_samples))


def _encoder_codes(run: Run, dataset):
    codes = applications.latent_means(jax.jit(_networks_of(run).encode), run.params, jnp.asarray(dataset.test))
    return np.asarray(codes), dataset.test_labels, "the encoder's means E_q[z | x] of the test data"


def _phi_codes(run: Run, dataset):
    return (
        np.asarray(run.params["phi"]["mean"]),
        dataset.train_labels,
        "the means of the per-datapoint q(z; φ_i) of the training data",
    )


def _common(name: str, summary: str, **fields) -> ModelSpec:
    return ModelSpec(
        name=name,
        summary=summary,
        data_kind=DataKind.BINARY,
        size=lambda c: f"latent-dim {c.latent_dim}",
        check=_check,
        history_unit="epoch",
        checkpointed=True,
        devices=True,
        networks=networks,
        **fields,
    )


VAE = _common(
    "vae",
    "amortized ELBO: a VAE's encoder and decoder trained together",
    options=OPTIONS | AMORTIZED_OPTIONS | {"num_samples", "beta", "warmup_epochs", "free_bits"},
    fit=_fit_amortized(_elbo_objective),
    evaluate=_evaluate_amortized,
    template=_template,
    nll_method="importance sampling",
    objective=lambda config: "ELBO",
    generative=_decoder,
    impute=_impute_with_encoder,
    impute_by_mcmc=_impute_by_mcmc,
    latent_codes=_encoder_codes,
    encoder=True,
    choices={"prior": amortized.PRIORS, "posterior": variational.POSTERIORS, "gradient": ("reparam", "stl")},
)

IWAE = _common(
    "iwae",
    "importance-weighted bound with K samples (Burda et al. 2016)",
    options=OPTIONS | AMORTIZED_OPTIONS | {"num_samples"},
    default_num_samples=5,
    fit=_fit_amortized(lambda config, vae, steps: amortized.iwae_objective(vae, config.samples, config.gradient)),
    evaluate=_evaluate_amortized,
    template=_template,
    nll_method="importance sampling",
    objective=lambda config: f"IWAE bound, K = {config.samples}",
    generative=_decoder,
    impute=_impute_with_encoder,
    impute_by_mcmc=_impute_by_mcmc,
    latent_codes=_encoder_codes,
    encoder=True,
    choices={"prior": amortized.PRIORS, "posterior": variational.POSTERIORS, "gradient": ("reparam", "dreg")},
)

_NO_LIKELIHOOD = (
    "ae is a deterministic autoencoder: it has no prior p(z), so it generates nothing and defines "
    "no p(x); use a vae run."
)
AE = _common(
    "ae",
    "deterministic autoencoder (same networks, reconstruction only)",
    options=OPTIONS,
    fit=_fit_amortized(lambda config, vae, steps: amortized.autoencoder_objective(vae)),
    evaluate=_evaluate_autoencoder,
    template=_template,
    nll_method=None,
    objective=lambda config: "log p(x | f(x))",
    latent_codes=_encoder_codes,
    encoder=True,
    reasons={"generative": _NO_LIKELIHOOD, "impute": _NO_LIKELIHOOD},
)

SVI = _common(
    "svi",
    "non-amortized SVI with one φ_i per datapoint",
    options=OPTIONS | {"num_samples", "svi_inner_steps", "svi_lr"},
    fit=_fit_svi,
    evaluate=_evaluate_svi,
    template=_svi_template,
    nll_method="importance sampling",
    objective=lambda config: "ELBO",
    generative=_decoder,
    impute=_impute_with_prior,
    impute_by_mcmc=_impute_by_mcmc,
    latent_codes=_phi_codes,
)

SPECS = (VAE, IWAE, AE, SVI)
