# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Beyond the text: the IWAE, semi-amortized inference, several devices
#
# The seed texts end with the VAE: an encoder q(z | x), a decoder p(x | z; θ), both trained on the
# ELBO. This notebook takes three steps past them, on the binarized 8×8 digits:
#
# 1. **The IWAE as a training objective.** Notebook 3 showed the importance-weighted bound IWAE_K
#    tightening with K for a fixed q. Here the same VAE is *trained* on it (K = 5) and on the ELBO
#    (K = 1), and both are judged by an importance-sampled log p(x): the IWAE-trained model is the
#    better density model, and the worse ELBO.
# 2. **Semi-amortized inference.** Notebook 4 split the VAE's gap into an approximation and an
#    amortization gap. Here the encoder's φ(x) is the *starting point* of a few SVI steps per test
#    image (`semi_amortized.refine`), and we watch the ELBO climb from the amortized to the refined value, for
#    both trained models, against their log p(x).
# 3. **Several devices.** The CPU is split into 4 simulated devices; the same training step runs on
#    one device and data-parallel on four, and gives the same parameters to float rounding; so does
#    EM for a Gaussian mixture. Then what changes on a cluster of GPUs.

# %%
# %matplotlib inline
import os

# Section 3 needs 4 devices. XLA fixes the number of CPU devices when JAX starts, so the flag must be
# set before jax is imported; it is appended to whatever XLA_FLAGS already holds.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()

import re
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import lvmjax
from lvmjax import amortized, data, distributed_em, parallel, semi_amortized, training

SMALL = os.environ.get("LVMJAX_NOTEBOOK_SMALL") == "1"
EPOCHS = 3 if SMALL else 100
IWAE_SAMPLES = 5  # K of the IWAE objective
NUM_WEIGHTS = 200 if SMALL else 2000  # importance weights per test image, for log p(x) and IWAE_K
BOUND_SAMPLES = tuple(k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if 2 * k <= NUM_WEIGHTS)
REFINE_STEPS = (20,) if SMALL else (10, 30, 100, 300)  # SVI steps per test image, from the encoder's φ(x)
ELBO_SAMPLES = 20 if SMALL else 100  # Monte Carlo samples of each refined ELBO
EM_ITERATIONS = 100  # enough for EM on the digits to converge; compiling it costs more than running it

assert jax.device_count() >= 4, (
    f"JAX sees {jax.devices()}: the XLA_FLAGS above act only if they are set before JAX starts "
    "(restart the kernel), and only on the CPU (on a machine with an accelerator, set JAX_PLATFORMS=cpu)."
)

# %% [markdown]
# ## 1. Training on the IWAE bound
#
# For K samples $z_1, \ldots, z_K \sim q(z \mid x)$ and importance weights $w_k = p(x, z_k; \theta) /
# q(z_k \mid x)$, Burda, Grosse & Salakhutdinov (2016) maximize
#
# $$\text{IWAE}_K(x) = \mathbb{E}\Big[\log \frac{1}{K} \sum_{k=1}^K w_k\Big], \qquad \text{ELBO} =
# \text{IWAE}_1 \le \text{IWAE}_K \le \log p(x).$$
#
# The gradient of the ELBO asks every sample z_k to explain x well; the gradient of IWAE_K weights the
# samples by their normalized $w_k$, so q may spread its mass over several explanations of x as long as
# one of every K draws is good. A tighter bound means θ is trained on something closer to log p(x).
#
# The VAE is `amortized.make_vae` with one hidden layer of 128 units and an 8-dimensional z. It is
# trained twice from the same initial weights, on the same minibatches, for the same number of epochs:
# on the ELBO (`amortized.elbo_objective`) and on IWAE_5 (`amortized.iwae_objective(vae, 5)`), whose
# steps cost about five times as much decoder work.

# %%
digits = data.load_digits()
train, test = jnp.asarray(digits.train), jnp.asarray(digits.test)
num_test = test.shape[0]
vae = amortized.make_vae(data_dim=64, latent_dim=8, hidden=(128,))
initial = jax.jit(vae.init)(jax.random.key(0))  # one compiled call instead of many small ones
optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, EPOCHS * (len(train) // 100), alpha=0.05))
objectives = {"ELBO": amortized.elbo_objective(vae), "IWAE": amortized.iwae_objective(vae, IWAE_SAMPLES)}
steps = {name: training.make_train_step(objective, optimizer) for name, objective in objectives.items()}
epochs = {name: jax.jit(training.make_epoch(step, batch_size=100)) for name, step in steps.items()}

trained, histories = {}, {}
for name, epoch in epochs.items():
    state = training.init_train_state(initial, optimizer)
    histories[name] = []
    start = time.perf_counter()
    for key in jax.random.split(jax.random.key(1), EPOCHS):
        state, info = epoch(state, key, train)
        histories[name].append(float(info.objective.mean()))
    trained[name] = state.params
    print(
        f"trained on {name:4s}: training objective after {EPOCHS} epochs {histories[name][-1]:7.2f} nats "
        f"per image ({time.perf_counter() - start:.1f} s, compilation included)"
    )

# %% [markdown]
# The two training objectives are different bounds, so their values say little about which model is
# better. Both models are judged the same way instead, on the 297 test images: `NUM_WEIGHTS` = 2000
# importance weights per image with the model's own encoder as the proposal give
#
# - log p(x) ≈ log of the mean of all 2000 weights (`amortized.log_marginal`, with its standard error);
# - IWAE_K for every K from the *same* weights (`lvmjax.log_weights`; lvmjax draws the k-th sample from
#   a key of its own, so these are the samples `log_marginal` used): cut the 2000 into disjoint groups of
#   K and average log (1/K) Σ w_k over the groups. IWAE_1, the mean of the log-weights, is the ELBO.


# %%
@jax.jit
def importance_weights(params):
    """Per test image: NUM_WEIGHTS log-weights log p(x, z_k) − log q(z_k | x), z_k ~ q(z | x), and log p̂(x)."""

    def one(args):
        index, x = args
        key = jax.random.fold_in(jax.random.key(2), index)
        return (
            lvmjax.log_weights(key, vae.model, params, vae.encode(params, x), x, NUM_WEIGHTS),
            amortized.log_marginal(key, vae, params, x, NUM_WEIGHTS),
        )

    return jax.lax.map(one, (jnp.arange(num_test), test), batch_size=33)  # 33 images at a time bounds memory


def iwae_from_weights(log_weights, num_samples):
    """Mean over images of IWAE_K, each image's draws being its disjoint groups of K weights; standard error."""
    groups = log_weights.reshape(num_test, -1, num_samples)
    bounds = np.logaddexp.reduce(groups, axis=-1) - np.log(num_samples)  # (images, groups)
    return bounds.mean(), np.sqrt(np.sum(bounds.var(axis=1, ddof=1) / bounds.shape[1])) / num_test


results = {}
for name, params in trained.items():
    log_weights, estimate = jax.tree_util.tree_map(np.asarray, importance_weights(params))
    log_weights = log_weights.astype(np.float64)
    # log p̂(x) is the log of the mean of the very weights the IWAE bounds below are computed from.
    assert np.allclose(np.logaddexp.reduce(log_weights, axis=1) - np.log(NUM_WEIGHTS), estimate.log_marginal, atol=1e-4)
    bounds = np.array([iwae_from_weights(log_weights, k) for k in BOUND_SAMPLES])
    results[name] = {
        "log_px": estimate.log_marginal.astype(np.float64),
        "bounds": bounds[:, 0],
        "bounds_se": bounds[:, 1],
        "log_px_se": np.sqrt(np.sum(estimate.stderr.astype(np.float64) ** 2)) / num_test,
    }

print(
    f"means over the {num_test} test images (nats)   ELBO = IWAE_1   IWAE_{IWAE_SAMPLES:<4d} "
    f"IWAE_{BOUND_SAMPLES[-1]:<5d}  log p(x), K = {NUM_WEIGHTS}"
)
for name, result in results.items():
    bound = dict(zip(BOUND_SAMPLES, result["bounds"], strict=True))
    print(
        f"  VAE trained on {name:4s}                    {bound[1]:9.3f}  {bound[IWAE_SAMPLES]:9.3f}  "
        f"{bound[BOUND_SAMPLES[-1]]:9.3f}   {result['log_px'].mean():9.3f} ± {result['log_px_se']:.3f}"
    )
    tolerance = 4 * np.sqrt(result["bounds_se"][1:] ** 2 + result["bounds_se"][:-1] ** 2)
    assert np.all(np.diff(result["bounds"]) > -tolerance)  # IWAE_K rises with K ...
    assert np.all(result["bounds"] <= result["log_px"].mean() + 4 * result["log_px_se"])  # ... below log p(x)
    gap = result["log_px"].mean() - result["bounds"]
    assert gap[-1] < 0.5 * gap[0]  # and K = 1000 closes most of the ELBO's gap

vae_result, iwae_result = results["ELBO"], results["IWAE"]
gain = iwae_result["log_px"] - vae_result["log_px"]  # per test image
gain_se = np.sqrt(vae_result["log_px_se"] ** 2 + iwae_result["log_px_se"] ** 2)  # Monte Carlo error of the mean
print(
    f"log p(x) of the IWAE-trained model − that of the ELBO-trained one: {gain.mean():.3f} nats per image "
    f"(Monte Carlo se {gain_se:.3f}; over the choice of test images, se {gain.std(ddof=1) / np.sqrt(num_test):.3f})"
)
elbo_loss = vae_result["bounds"][0] - iwae_result["bounds"][0]
print(f"ELBO of the ELBO-trained model − that of the IWAE-trained one: {elbo_loss:.3f} nats per image")
if not SMALL:  # a few epochs are too few to separate them
    assert gain.mean() > 4 * gain_se and gain.mean() > 3 * gain.std(ddof=1) / np.sqrt(num_test)
    assert elbo_loss > 4 * np.hypot(vae_result["bounds_se"][0], iwae_result["bounds_se"][0])

# %% [markdown]
# Left, the training objective per epoch; right, each trained model's bound IWAE_K on the test images
# as K grows (± 2 standard errors, too small to see), and its log p(x) (dashed). The ordering of
# notebook 3 holds for both: the bound rises with K toward log p(x). With disjoint groups it even holds
# draw by draw whenever K divides K': the log of a mean of means is at least the mean of their logs
# (Jensen's inequality, the argument of Burda et al.).
#
# The curves cross. The ELBO-trained model has the higher ELBO, the quantity it was trained to raise;
# the IWAE-trained model has the higher log p(x), and its curve starts lower and climbs further. Its
# encoder was trained to be a good proposal for five samples at a time, not the best single q, so its
# ELBO suffers; its decoder, trained on a bound closer to log p(x), is the better model of the digits.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
for index, (name, result) in enumerate(results.items()):
    color = f"C{index}"
    axes[0].plot(
        np.arange(1, EPOCHS + 1),
        histories[name],
        color=color,
        label=f"trained on {name}" + (f", K = {IWAE_SAMPLES}" if name == "IWAE" else ""),
    )
    axes[1].errorbar(
        BOUND_SAMPLES,
        result["bounds"],
        yerr=2 * result["bounds_se"],
        color=color,
        marker="o",
        capsize=3,
        label=f"IWAE_K, trained on {name}",
    )
    axes[1].axhline(result["log_px"].mean(), color=color, linestyle="--", label=f"log p(x), trained on {name}")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("training objective per image (nats)")
axes[0].set_ylim(min(min(history) for history in histories.values()) if SMALL else histories["ELBO"][-1] - 5, None)
axes[0].legend()
axes[1].set_xscale("log")
axes[1].set_xlabel("K")
axes[1].set_ylabel("test images, nats per image")
axes[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 2. Semi-amortized inference: refining the encoder's φ(x)
#
# The encoder answers in one pass, but its φ(x) need not be the best q for that x (notebook 4's
# amortization gap). Semi-amortized inference (Kim et al. 2018) uses φ(x) as the *starting point* of
# SVI on that datapoint's ELBO: `semi_amortized.refine(key, vae, params, test, num_steps)` runs `num_steps` Adam
# steps on every test image's φ_i at once, θ fixed. Below, the ELBO of the refined q after 10 to 300
# steps, for both trained models; each ELBO is estimated with the same 100 draws of ε for every
# number of steps (analytic KL), so the differences between them are not Monte Carlo noise.

# %%
refine = jax.jit(semi_amortized.refine, static_argnames=("amortized", "num_steps"))


@jax.jit
def test_elbos(params, phi):
    """ELBO(x_i; θ, φ_i) of every test image, ELBO_SAMPLES draws each, the same draws for any φ."""

    def one(index, phi_i, x):
        return lvmjax.elbo(
            jax.random.fold_in(jax.random.key(4), index),
            vae.model,
            params,
            vae.family.distribution(phi_i),
            x,
            ELBO_SAMPLES,
            analytic_kl=True,
        )

    return jax.vmap(one)(jnp.arange(num_test), phi, test)


encode = jax.jit(jax.vmap(vae.encoder_output, in_axes=(None, 0)))  # φ(x) of every test image
refined = {}
for name, params in trained.items():
    elbos = [np.asarray(test_elbos(params, encode(params, test)))]
    for num_steps in REFINE_STEPS:
        elbos.append(np.asarray(test_elbos(params, refine(jax.random.key(5), vae, params, test, num_steps=num_steps))))
    refined[name] = np.array(elbos, np.float64)  # (1 + len(REFINE_STEPS), images)
    log_px = results[name]["log_px"].mean()
    means = refined[name].mean(axis=1)
    closed = (means[-1] - means[0]) / (log_px - means[0])
    print(
        f"trained on {name}: ELBO {means[0]:.3f} (encoder) → "
        + " → ".join(f"{value:.3f} ({steps})" for value, steps in zip(means[1:], REFINE_STEPS, strict=True))
        + f" → log p(x) {log_px:.3f}; {REFINE_STEPS[-1]} steps close {100 * closed:.0f}% of log p(x) − ELBO"
    )
    assert np.all(np.diff(means) > 0)  # every further round of steps raises the mean ELBO
    assert np.mean(refined[name][-1] >= refined[name][0]) > 0.9  # and it is raised for almost every image
    remaining = results[name]["log_px"] - refined[name][-1]  # per image: log p(x) − refined ELBO
    assert remaining.mean() > 4 * remaining.std(ddof=1) / np.sqrt(num_test)  # a gap remains: q is still Gaussian
recovered = {name: elbos[-1] - elbos[0] for name, elbos in refined.items()}  # per image
extra_gain = recovered["IWAE"] - recovered["ELBO"]
print(
    f"refinement raises the ELBO by {recovered['ELBO'].mean():.3f} (trained on ELBO) and "
    f"{recovered['IWAE'].mean():.3f} nats per image (trained on IWAE)"
)
if not SMALL:  # the IWAE-trained encoder is further from the best q for the ELBO, so refinement recovers more
    assert extra_gain.mean() > 4 * extra_gain.std(ddof=1) / np.sqrt(num_test)

seconds = {}
for name, run in (
    ("encoder", lambda: encode(trained["ELBO"], test)),
    ("refinement", lambda: refine(jax.random.key(5), vae, trained["ELBO"], test, num_steps=REFINE_STEPS[-1])),
):
    start = time.perf_counter()
    jax.block_until_ready(run())  # compiled above
    seconds[name] = time.perf_counter() - start
print(
    f"for all {num_test} test images: the encoder's φ(x) takes {1000 * seconds['encoder']:.2f} ms, "
    f"{REFINE_STEPS[-1]} steps of refinement {1000 * seconds['refinement']:.0f} ms"
)

# %%
fig, axis = plt.subplots(figsize=(7, 3.5), layout="constrained")
for index, (name, elbos) in enumerate(refined.items()):
    axis.plot(
        (0, *REFINE_STEPS),
        elbos.mean(axis=1),
        color=f"C{index}",
        marker="o",
        label=f"ELBO of the refined q, trained on {name}",
    )
    axis.axhline(
        results[name]["log_px"].mean(), color=f"C{index}", linestyle="--", label=f"log p(x), trained on {name}"
    )
axis.set_xscale("symlog", linthresh=10)
axis.set_xlim(0, None)
axis.set_xlabel("SVI steps per test image (0: the encoder's φ(x))")
axis.set_ylabel("test images, nats per image")
axis.legend(fontsize=8)
plt.show()

# %% [markdown]
# The climb is done within about a hundred steps, after which the ELBO levels off below log p(x): what
# remains is the approximation gap of the diagonal Gaussian family, which no amount of refinement
# closes. The IWAE-trained model gains far more than the ELBO-trained one (the printout above), because
# its encoder was never asked to be the best single q; after refinement the two ELBOs are close. The price
# is time: the refinement costs hundreds of encoder passes, so it is done where a better q is worth it,
# in evaluation, or, in Kim et al.'s semi-amortized VAE, during training too (which differentiates
# through the refinement steps; `semi_amortized.refine` refines a trained model's q and leaves θ alone).
#
# ## 3. The same code on several devices
#
# lvmjax's steps are pure functions of a minibatch, so running them on several devices changes where
# the arrays live, not the code (`lvmjax.parallel`). The flag set in the first cell split this CPU into
# four devices; `parallel.data_mesh(4)` names them as one mesh axis, "data". An array can be **split**
# along its leading axis, each device holding a quarter of the rows (`parallel.shard`), or
# **replicated**, each device holding all of it (`parallel.replicate`):

# %%
print(jax.devices())
mesh = parallel.data_mesh(4)
for placed in (parallel.shard(train, mesh), parallel.replicate(train, mesh)):
    print(
        f"{placed.sharding.spec}: "
        + ", ".join(
            f"device {shard.device.id} holds rows {shard.index[0].start or 0}–{shard.index[0].stop or len(train)}"
            for shard in placed.addressable_shards
        )
    )
    assert {shard.device for shard in placed.addressable_shards} == set(mesh.devices.flat)

# %% [markdown]
# Data-parallel training replicates the parameters, the optimizer state and the training set, and
# `training.make_epoch(step, batch_size, mesh=mesh)` splits every minibatch of 100 into 25 rows per
# device. Each device computes the gradient of its rows; XLA's SPMD partitioner turns the batch mean into
# an **all-reduce** across devices, so every device applies the same update to its copy of θ and φ. The
# minibatches and each datapoint's key do not depend on the number of devices, so one epoch on four
# devices must give the one-device parameters, up to the order of floating-point sums. Here it is the
# IWAE step of section 1, unchanged; the one-device epoch is section 1's compiled one.

# %%
epoch_on_mesh = jax.jit(training.make_epoch(steps["IWAE"], batch_size=100, mesh=mesh))
state_on_mesh, train_on_mesh = parallel.replicate((training.init_train_state(initial, optimizer), train), mesh)
key = jax.random.key(6)
one_device, one_info = epochs["IWAE"](training.init_train_state(initial, optimizer), key, train)
start = time.perf_counter()
four_devices, four_info = jax.block_until_ready(epoch_on_mesh(state_on_mesh, key, train_on_mesh))
mesh_seconds = time.perf_counter() - start

leaf = four_devices.params["decoder"]["params"]["Dense_1"]["kernel"]  # 128 → 64 pixels
print(
    f"a weight matrix after the epoch: {leaf.shape}, {leaf.sharding.spec} on {len(leaf.sharding.device_set)} "
    f"devices, fully replicated: {leaf.is_fully_replicated}"
)
differences = jax.tree_util.tree_map(
    lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
    one_device.params,
    parallel.to_host(four_devices.params),
)
largest = max(jax.tree_util.tree_leaves(differences))
scale = max(float(np.max(np.abs(weights))) for weights in jax.tree_util.tree_leaves(one_device.params))
print(
    f"after one epoch ({len(one_info.objective)} steps): largest |weight on 1 device − on 4 devices| = "
    f"{largest:.1e}, largest |weight| = {scale:.2f}"
)
assert largest <= 1e-5 * scale
np.testing.assert_allclose(np.asarray(one_info.objective), np.asarray(four_info.objective), rtol=1e-5)

program = epoch_on_mesh.lower(state_on_mesh, key, train_on_mesh).compile().as_text()
all_reduces = [
    re.sub(r"\{[^}]*\}|/\*[^*]*\*/", "", shapes)  # without layouts and comments
    for shapes in re.findall(r"= (.*?) all-reduce(?:-start)?\(", program)
]
print(f"the compiled 4-device epoch has {len(all_reduces)} all-reduce in its step, of {'; '.join(all_reduces)}")
assert all_reduces
print(f"the 4-device epoch took {mesh_seconds:.2f} s with compilation")

# %% [markdown]
# The four "devices" share this machine's cores, so they are not faster than one: the point here is that
# the program is the same and the answer is the same. On four GPUs each would compute a quarter of every
# minibatch.
#
# EM for a Gaussian mixture is data-parallel in the same way: `distributed_em.fit_em(..., mesh=mesh)`
# splits the datapoints over the devices; each computes the E-step and the sufficient statistics of its
# own rows, and only the (K, D)-sized statistics cross devices before the M-step. Ten components with
# diagonal covariances on the dequantized digits (`data.load_digits(continuous=True)`), for a fixed 100
# iterations (`tol=0`), so that both runs stop at the same one, after EM has converged:

# %%
pixels = data.load_digits(continuous=True).train
fits = {}
for devices, fit_mesh in ((1, None), (4, mesh)):
    params, info = distributed_em.fit_em(
        jax.random.key(7), pixels, 10, "diag", max_iter=EM_ITERATIONS, tol=0.0, mesh=fit_mesh
    )
    fits[devices] = parallel.to_host((params, info))
    objective = np.asarray(fits[devices][1].objective)[int(fits[devices][1].num_iterations) - 1]
    print(
        f"EM on {devices} device(s): mean log-likelihood per image after {int(fits[devices][1].num_iterations)} "
        f"iterations {objective:.4f} nats"
    )
for name, one, four in zip(fits[1][0]._fields, fits[1][0], fits[4][0], strict=True):
    difference = float(np.max(np.abs(np.asarray(one) - np.asarray(four))))
    print(f"  {name:11s} largest |1 device − 4 devices| = {difference:.1e} (largest value {np.max(np.abs(one)):.2f})")
    assert difference <= 1e-5 * max(1.0, float(np.max(np.abs(one))))

# %% [markdown]
# ### On a cluster of GPUs
#
# Nothing above is specific to simulated devices. On a machine with four GPUs, `jax.devices()` lists
# them, no flag is needed, and the command line does what this section did:
#
# ```bash
# lvmjax fit iwae --devices 4 --batch-size 128 --out runs/iwae4
# ```
#
# (the batch size must be a multiple of the number of devices). Across machines, the same command is
# started once per host (or once per GPU) with the standard `jax.distributed` settings:
# `JAX_COORDINATOR_ADDRESS=host0:1234` (process 0's address, reachable by all), `JAX_NUM_PROCESSES=P` and
# `JAX_PROCESS_ID=0 … P−1`, different for each process:
#
# ```bash
# JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=P JAX_PROCESS_ID=$RANK \
#   lvmjax fit iwae --batch-size 1024 --out /shared/runs/iwae
# ```
#
# `parallel.initialize_distributed` reads them before any other JAX call; afterwards `jax.devices()`
# lists the devices of every process and the mesh spans them all. Every process loads the same data and
# places its own devices' part of it, and process 0 writes the run directory (on a file system the hosts
# share). The code is the same, compiled for the larger mesh: the all-reduce now crosses the
# interconnect between GPUs and hosts instead of memory, and the answer is still the one-device answer
# up to the order of floating-point sums (lvmjax's tests check this with two processes of two CPU
# devices each).
#
# ## What to take away
#
# A bound is a training objective as well as a measurement. Training on IWAE_5 instead of the ELBO gave
# a decoder with a higher log p(x) on test digits and an encoder with a lower ELBO: a tighter bound
# lets q be a good proposal rather than a good posterior approximation, and θ pays for q's
# shortcomings less. Refining the encoder's output per datapoint buys back the amortization gap with
# about a hundred SVI steps, most of all for the IWAE-trained encoder, and leaves only the gap of the
# Gaussian family. And because every step is a pure function of a minibatch, moving it to four devices
# is a question of where arrays live: a mesh, replicated parameters, split minibatches and one
# all-reduce, with the one-device answer to float rounding.
