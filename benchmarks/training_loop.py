"""What lvmjax's abstractions cost: its training epoch against a hand-written `lax.scan` loop.

    python -m benchmarks.training_loop [--num-data N] [--repeats R]

`make_epoch(make_train_step(elbo_objective(vae), adam))`, against the same
networks, the same Adam and the same batches in a loop written by hand:
reparameterized z = μ + σ ε, the Bernoulli log-likelihood from
`jax.nn.log_sigmoid`, the closed-form Gaussian KL, `lax.scan` over minibatches.
Same data (binarized-MNIST sized random images), float32. (The SVI step against
NumPyro and against loops over datapoints is `benchmarks.svi_step`.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import machine
from lvmjax import amortized, networks, training


def median_seconds(fn, repeats):
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hand_written_epoch(encoder, decoder, optimizer, batch_size):
    def loss(params, key, batch):
        mean, log_scale = jax.vmap(lambda x: encoder.apply(params["encoder"], x))(batch)
        z = mean + jnp.exp(log_scale) * jax.random.normal(key, mean.shape)
        logits = jax.vmap(lambda z: decoder.apply(params["decoder"], z)[0])(z)
        log_likelihood = jnp.sum(batch * jax.nn.log_sigmoid(logits) + (1 - batch) * jax.nn.log_sigmoid(-logits), -1)
        kl = 0.5 * jnp.sum(jnp.exp(2 * log_scale) + mean**2 - 1 - 2 * log_scale, -1)
        return -jnp.mean(log_likelihood - kl)

    def epoch(state, key, data):
        key_order, key_steps = jax.random.split(key)
        indices = training.minibatch_indices(key_order, data.shape[0], batch_size)

        def body(state, inputs):
            params, opt_state = state
            batch_indices, step_key = inputs
            value, grads = jax.value_and_grad(loss)(params, step_key, data[batch_indices])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        return jax.lax.scan(body, state, (indices, jax.random.split(key_steps, indices.shape[0])))

    return epoch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=10_000)
    parser.add_argument("--data-dim", type=int, default=784)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    hidden = (256, 256)

    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.random((args.num_data, args.data_dim)) < 0.2, jnp.float32)
    vae = amortized.make_vae(args.data_dim, args.latent_dim, hidden=hidden)
    params = vae.init(jax.random.PRNGKey(0))
    optimizer = optax.adam(1e-3)
    print(f"machine: {machine()}, jax {jax.__version__}")

    lvmjax_epoch = jax.jit(
        training.make_epoch(training.make_train_step(amortized.elbo_objective(vae), optimizer), args.batch_size)
    )
    state = training.init_train_state(params, optimizer)
    # The modules make_vae builds, so the hand-written loop reads the same parameters.
    encoder = networks.MLPEncoder(args.latent_dim, hidden)
    decoder = networks.MLPDecoder(args.data_dim, hidden, 1)
    manual_epoch = jax.jit(hand_written_epoch(encoder, decoder, optimizer, args.batch_size))
    manual_state = (params, optimizer.init(params))
    key = jax.random.PRNGKey(1)
    lvmjax_seconds = median_seconds(lambda: lvmjax_epoch(state, key, data), args.repeats)
    manual_seconds = median_seconds(lambda: manual_epoch(manual_state, key, data), args.repeats)
    print(
        f"VAE epoch, N={args.num_data}, D={args.data_dim}, MLP {hidden}, d={args.latent_dim}, batch {args.batch_size}:"
    )
    print(f"  lvmjax make_epoch   {lvmjax_seconds:8.3f} s  ({args.num_data / lvmjax_seconds:,.0f} images/s)")
    print(f"  hand-written scan   {manual_seconds:8.3f} s  ({args.num_data / manual_seconds:,.0f} images/s)")
    print(f"  lvmjax / hand-written time: {lvmjax_seconds / manual_seconds:.3f}")


if __name__ == "__main__":
    main()
