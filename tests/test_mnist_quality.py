"""benchmarks/mnist_quality.py: PyTorch's weights become the same lvmjax network, Burda et al.'s schedule is
the published one, and the quick run trains and evaluates every model on both sides.

No NLL or time is asserted beyond being finite and positive: the figures are measured in benchmarks/.
"""

import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is a package of the repository, not of the installed lvmjax

from benchmarks import mnist_quality  # noqa: E402

pytestmark = pytest.mark.standard_promotion

DATA_DIR = ROOT.parent / "shared" / "data"


@pytest.mark.parametrize("name", ["burda-vae", "pythae-vae"])
def test_pytorch_weights_convert_to_the_same_lvmjax_network(name):
    torch = pytest.importorskip("torch")
    model = mnist_quality.MODELS[name]
    torch.manual_seed(0)
    encoder, decoder = mnist_quality.torch_networks(model)
    params = mnist_quality.lvmjax_params(encoder, decoder)
    vae = mnist_quality.make_network(model)
    initial = jax.eval_shape(vae.init, jax.random.PRNGKey(0))
    assert jax.tree.structure(params) == jax.tree.structure(initial)
    assert [np.shape(leaf) for leaf in jax.tree.leaves(params)] == [leaf.shape for leaf in jax.tree.leaves(initial)]

    rng = np.random.default_rng(0)
    x = (rng.random((5, 784)) < 0.3).astype(np.float32)
    z = rng.normal(size=(5, model.latent_dim)).astype(np.float32)
    with torch.no_grad():
        mean, log_scale = (part.numpy() for part in encoder(torch.from_numpy(x)).chunk(2, dim=-1))
        logits = decoder(torch.from_numpy(z)).numpy()
    # log p(x | z) = Σ_d x_d ℓ_d − log(1 + e^ℓ_d), from PyTorch's logits
    log_likelihood = (x * logits - np.logaddexp(0.0, logits)).sum(-1)

    encoded = jax.vmap(lambda x: vae.encoder_output(params, x))(jnp.asarray(x))
    ours = jax.vmap(lambda x, z: vae.model.likelihood(params, z).log_prob(x))(jnp.asarray(x), jnp.asarray(z))
    np.testing.assert_allclose(encoded["mean"], mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(encoded["log_scale"], log_scale, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours, log_likelihood, rtol=1e-5)


def test_the_full_schedule_is_three_to_the_i_epochs_at_ten_to_the_minus_i_over_seven():
    steps_per_epoch = 2500  # 50,000 images in batches of 20
    schedule = mnist_quality.FULL
    rate = mnist_quality.learning_rate(schedule, steps_per_epoch)
    assert schedule.epochs == 3280 and schedule.batch_size == 20
    assert (schedule.b1, schedule.b2, schedule.eps) == (0.9, 0.999, 1e-4)
    first_epoch = 0
    for i in range(8):
        expected = 1e-3 * 10 ** (-i / 7)
        last_epoch = first_epoch + 3**i - 1  # epochs counted from 0
        for step in (first_epoch * steps_per_epoch, (last_epoch + 1) * steps_per_epoch - 1):
            assert float(rate(step)) == pytest.approx(expected, rel=1e-6), (i, step)
        first_epoch = last_epoch + 1
    assert first_epoch == 3280
    rates = [1e-3 * 10 ** (-i / 7) for i in range(3)]
    assert mnist_quality.truncated(schedule, 5).stages == ((1, rates[0]), (3, rates[1]), (1, rates[2]))


def test_the_curve_keeps_every_epoch_or_a_geometric_grid_ending_at_the_last():
    assert mnist_quality.curve_epochs(3) == [1, 2, 3]
    grid = mnist_quality.curve_epochs(3280)
    assert grid[0] == 1 and grid[-1] == 3280 and len(grid) <= mnist_quality.MAX_CURVE_POINTS
    assert mnist_quality.seconds_to_reach([1.0, 2.0, 3.0], [95.0, 90.0, 89.0], 90.0) == 2.0
    assert mnist_quality.seconds_to_reach([1.0, 2.0], [95.0, 91.0], 90.0) is None


def test_the_quick_run_trains_and_evaluates_each_model_on_both_sides():
    if not (DATA_DIR / "binarized_mnist.npz").is_file():
        pytest.skip(f"binarized MNIST is not in {DATA_DIR}")
    # One model: each costs seconds of compilation. The other models differ in their networks, checked above, and
    # in the IWAE bound, whose PyTorch twin is checked above; `python -m benchmarks.mnist_quality --quick` runs all.
    models = ("pythae-vae",)
    rows = mnist_quality.run(quick=True, models=models, data_dir=DATA_DIR)
    assert [row.benchmark for row in rows] == [f"mnist_quality_{name}" for name in models]
    for row in rows:
        assert row.lvmjax_seconds > 0 and row.compile_seconds > 0
        nll = float(row.lvmjax_quality.split()[1])
        assert math.isfinite(nll) and nll > 0  # −log p(x) of 784 binary pixels
        if row.peer_seconds is None:
            assert row.note.startswith("skipped")
        else:
            assert row.peer_seconds > 0 and math.isfinite(float(row.peer_quality.split()[1]))


def test_a_missing_data_directory_gives_no_rows(tmp_path):
    assert mnist_quality.run(quick=True, data_dir=tmp_path / "absent") == []


def test_the_pytorch_iwae_bound_has_the_expectation_of_lvmjax_s():
    torch = pytest.importorskip("torch")
    model = mnist_quality.MODELS["burda-iwae"]
    torch.manual_seed(0)
    encoder, decoder = mnist_quality.torch_networks(model)
    params = mnist_quality.lvmjax_params(encoder, decoder)
    vae = mnist_quality.make_network(model)
    x = (np.random.default_rng(0).random(784) < 0.3).astype(np.float32)
    repeats = 200  # draws of IWAE_50(x) on each side, for the same image
    with torch.no_grad():
        theirs = float(
            mnist_quality.torch_objective(encoder, decoder, model.num_samples)(
                torch.from_numpy(np.tile(x, (repeats, 1)))
            )
        )
    keys = jax.random.split(jax.random.PRNGKey(0), repeats)
    ours = np.asarray(jax.jit(jax.vmap(mnist_quality.objective(model, vae), (0, None, None)))(keys, params, x))
    stderr = ours.std(ddof=1) / math.sqrt(repeats)
    assert stderr < 0.1 * math.log(model.num_samples)  # a missing log K would show
    assert abs(theirs - ours.mean()) < 4 * math.sqrt(2) * stderr
