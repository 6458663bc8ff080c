"""Bad input, tried systematically: a catalogue of malformed input and the error each one gets.

In Python, a ValueError or TypeError whose message names the argument and the problem. On the
command line, one line on stderr, exit code 2, no traceback, and every file already on disk as it
was (hashes and modification times of the data files and of the run directory, before and after).

Cases tested elsewhere are not repeated: test_validation.py (the estimators' shapes, sample
counts, chunk sizes, non-finite values, distributions), test_data.py and test_data_idx.py (each
reader's messages in Python), test_cli.py and test_cli_classical.py (fit's options and data),
test_resume.py (resuming with other options), and each model's test module (its fit's arguments).
"""

import hashlib
import io
import json
import shutil
import subprocess
import sys

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import make_gaussian_mixture, make_linear_gaussian
from test_cli import one_line_error
from test_data import write_amat
from test_data_idx import IMAGES, write_idx_dir

import lvmjax
from lvmjax import amortized, app, applications, data, training
from lvmjax.app.specs import neural
from lvmjax.data import DataError
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian

KEY = jax.random.PRNGKey(0)
LG_PARAMS, LG_X = make_linear_gaussian()  # D = 4, d = 2
GM_PARAMS, GM_X = make_gaussian_mixture()  # K = 3, D = 2
BM_PARAMS = bernoulli_mixture.Params(jnp.zeros(3), jnp.linspace(-2.0, 2.0, 15).reshape(3, 5))  # K = 3, D = 5
Q = distrax.MultivariateNormalDiag(jnp.zeros(2), jnp.ones(2))
VAE = amortized.make_vae(8, 2, hidden=(4,))
VAE_PARAMS = VAE.init(KEY)
ROWS = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
LABELS = np.arange(12) % 3  # integer labels, where data should be


def elbo_of(x, key=KEY, num_samples=3):
    """The ELBO of the linear-Gaussian model at x, with q = N(0, I): the estimators' checks run first."""
    return lvmjax.elbo(key, linear_gaussian.model, LG_PARAMS, Q, x, num_samples)


def with_entry(array, value, index=0):
    """A floating-point copy of `array` with its `index`-th entry (flattened) set to `value`."""
    array = np.asarray(array)
    array = array.astype(np.result_type(array.dtype, np.float32))
    array.flat[index] = value
    return array


# ----------------------------------------------------------------------------- the Python API

NAN_LG_X, INF_LG_X, NAN_GM_X = with_entry(LG_X, np.nan), with_entry(LG_X, -np.inf), with_entry(GM_X, np.nan)
GREY_X = jnp.array([0.0, 0.75, 1.0, jnp.nan, 0.3])  # its first three entries observed
FIRST_THREE = jnp.array([True, True, True, False, False])

# case: (the call, the exception, a regular expression its message matches)
PYTHON_CASES = {
    # One datapoint x of the estimators and the exact models: an array of real numbers of the event's shape.
    "x is a list": (lambda: elbo_of(list(np.asarray(LG_X))), TypeError, "^x must be an array, got list"),
    "x holds strings": (lambda: elbo_of(np.array(["0.5"] * 4)), TypeError, "^x must hold real numbers, got dtype <U3"),
    "x is complex": (
        lambda: elbo_of(jnp.ones(4, jnp.complex64)),
        TypeError,
        "^x must hold real numbers, got dtype complex64",
    ),
    "x is empty": (
        lambda: elbo_of(jnp.zeros(0)),
        ValueError,
        r"^x has shape \(0,\), but model.likelihood\(params, z\) has event_shape \(4,\)",
    ),
    "x is a scalar": (lambda: elbo_of(jnp.float32(1.0)), ValueError, r"^x has shape \(\), but"),
    "labels as x": (lambda: elbo_of(jnp.asarray(LABELS)), ValueError, r"^x has shape \(12,\), but"),
    "key is a seed": (lambda: elbo_of(LG_X, key=0), TypeError, "invalid PRNG key"),
    "key is a batch of keys": (
        lambda: elbo_of(LG_X, key=jax.random.split(KEY, 3)),
        ValueError,
        "fold_in accepts a single key.*Use jax.vmap",
    ),
    "num_samples is a string": (
        lambda: elbo_of(LG_X, num_samples="3"),
        TypeError,
        "num_samples must be an int, got str '3'",
    ),
    "z is NaN": (
        lambda: lvmjax.log_joint(linear_gaussian.model, LG_PARAMS, LG_X, jnp.array([0.0, jnp.nan])),
        ValueError,
        "^z contains non-finite values",
    ),
    "linear-Gaussian x is NaN": (
        lambda: linear_gaussian.log_marginal(LG_PARAMS, NAN_LG_X),
        ValueError,
        r"^x contains non-finite values \(NaN or inf\)",
    ),
    "linear-Gaussian x is inf": (
        lambda: linear_gaussian.posterior(LG_PARAMS, INF_LG_X),
        ValueError,
        "^x contains non-finite values",
    ),
    "Gaussian-mixture x holds strings": (
        lambda: gaussian_mixture.log_marginal(GM_PARAMS, np.array(["1", "2"])),
        TypeError,
        "^x must hold real numbers, got dtype <U1",
    ),
    "Gaussian-mixture x is NaN": (
        lambda: gaussian_mixture.posterior(GM_PARAMS, NAN_GM_X),
        ValueError,
        "^x contains non-finite values",
    ),
    "Bernoulli-mixture x is grey": (
        lambda: bernoulli_mixture.log_marginal(BM_PARAMS, jnp.full(5, 0.5)),
        DataError,
        r"^x has 5 values that are not 0 or 1 \(for example 0.5\)",
    ),
    "Bernoulli-mixture x is a count": (
        lambda: bernoulli_mixture.posterior(BM_PARAMS, jnp.array([0, 1, 2, 0, 1.0])),
        DataError,
        r"^x has 1 values that are not 0 or 1 \(for example 2.0\)",
    ),
    # The data of a fit: a non-empty (N, D) array of finite real numbers.
    "labels as data": (
        lambda: gaussian_mixture.fit_em(KEY, LABELS, 2),
        ValueError,
        r"^data must be 2-D \(N datapoints, D dimensions\), got shape \(12,\)",
    ),
    "no datapoints": (
        lambda: gaussian_mixture.fit_em(KEY, ROWS[:0], 2),
        ValueError,
        r"^data is empty \(shape \(0, 3\)\)",
    ),
    "no columns": (
        lambda: gaussian_mixture.fit_em(KEY, ROWS[:, :0], 2),
        ValueError,
        r"^data is empty \(shape \(12, 0\)\)",
    ),
    "data of strings": (
        lambda: gaussian_mixture.fit_em(KEY, ROWS.astype(str), 2),
        TypeError,
        "^data must hold real numbers, got dtype <U",
    ),
    "complex data": (
        lambda: linear_gaussian.fit_factor_analysis(KEY, ROWS.astype(np.complex64), 1),
        TypeError,
        "^data must hold real numbers, got dtype complex64",
    ),
    "rows with a None": (
        lambda: linear_gaussian.fit_ppca([[1.0, 2.0], [3.0, None], [5.0, 6.0]], 1),
        TypeError,
        "^data must hold real numbers, got dtype object",
    ),
    "labels as a column of binary data": (
        lambda: bernoulli_mixture.fit_em(KEY, LABELS[:, None], 2),
        DataError,
        r"^data has 4 values that are not 0 or 1 \(for example 2",
    ),
    "binary data as strings": (
        lambda: bernoulli_mixture.fit_em(KEY, (ROWS > 0).astype(str), 2),
        TypeError,
        "^data must hold real numbers",
    ),
    "anomaly scores of one datapoint": (
        lambda: applications.anomaly_scores(gaussian_mixture.log_marginal, GM_PARAMS, GM_X),
        ValueError,
        r"^data must be 2-D \(N datapoints, D dimensions\), got shape \(2,\)",
    ),
    "latent means of strings": (
        lambda: applications.latent_means(linear_gaussian.posterior, LG_PARAMS, np.array([["1"] * 4])),
        TypeError,
        "^data must hold real numbers",
    ),
    # Imputation: one datapoint of the model's shape, and a boolean mask of its shape.
    "imputing a batch": (
        lambda: applications.impute_gaussian_mixture(GM_PARAMS, jnp.stack([GM_X, GM_X]), jnp.ones((2, 2), bool)),
        ValueError,
        r"^x has shape \(2, 2\), but imputation takes one datapoint of the model's shape \(2,\). It looks "
        "like a batch: use jax.vmap",
    ),
    "imputing x of the wrong size": (
        lambda: applications.impute_linear_gaussian(LG_PARAMS, LG_X[:3], jnp.ones(3, bool)),
        ValueError,
        r"^x has shape \(3,\), but imputation takes one datapoint of the model's shape \(4,\)",
    ),
    "a mask of probabilities": (
        lambda: applications.impute_gaussian_mixture(GM_PARAMS, GM_X, jnp.array([0.5, 0.2])),
        TypeError,
        r"^observed must be a boolean mask \(True where x_d is observed\), got dtype float32",
    ),
    "a mask of 0s and 1s": (
        lambda: applications.impute_linear_gaussian(LG_PARAMS, LG_X, np.array([1, 0, 1, 0])),
        TypeError,
        "^observed must be a boolean mask.*pass observed == 1",
    ),
    "imputing a Bernoulli mixture from grey levels": (
        lambda: applications.impute_bernoulli_mixture(BM_PARAMS, GREY_X, FIRST_THREE),
        DataError,
        r"^x \(its observed entries\) has 1 values that are not 0 or 1 \(for example 0.75\)",
    ),
    # The VAE: one datapoint of the encoder's shape; positive hidden widths.
    "VAE x of the wrong size": (
        lambda: amortized.log_marginal(KEY, VAE, VAE_PARAMS, jnp.ones(7), 10),
        ValueError,
        r"^x has shape \(7,\), but the encoder takes one datapoint of shape \(8,\)",
    ),
    "VAE x is a batch": (
        lambda: amortized.log_marginal(KEY, VAE, VAE_PARAMS, jnp.ones((3, 8)), 10),
        ValueError,
        r"^x has shape \(3, 8\), but the encoder .* It looks like a batch: use jax.vmap",
    ),
    "VAE x holds strings": (
        lambda: amortized.elbo_objective(VAE)(KEY, VAE_PARAMS, np.array(["1"] * 8)),
        TypeError,
        "^x must hold real numbers",
    ),
    "VAE of a zero width": (
        lambda: amortized.make_vae(8, 2, hidden=(16, 0)),
        ValueError,
        r"^hidden must be the widths of the hidden layers, positive ints such as \(256, 256\), "
        r"got \(16, 0\)",
    ),
    "VAE of a fractional width": (lambda: amortized.make_vae(8, 2, hidden=(16.5,)), ValueError, "^hidden must be"),
}


@pytest.mark.parametrize("case", list(PYTHON_CASES))
def test_the_python_api_names_the_problem(case):
    call, error, message = PYTHON_CASES[case]
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    "argument", [{"max_iter": 0}, {"max_iter": 2.5}, {"n_init": 2.5}], ids=["max_iter=0", "max_iter=2.5", "n_init=2.5"]
)
def test_gaussian_mixture_em_names_a_bad_iteration_or_restart_count(argument):
    (name,) = argument
    with pytest.raises((ValueError, TypeError), match=f"^{name} must be"):
        gaussian_mixture.fit_em(KEY, ROWS, 2, **argument)


# ----------------------------------------------------------------------------- users' data files


def test_a_byte_order_mark_is_not_taken_for_a_header(tmp_path):
    """Spreadsheets write UTF-8 with a byte-order mark: the first row is data, not a header to drop."""
    path = tmp_path / "rows.csv"
    path.write_bytes("1,2\n3,4\n5,6\n7,8\n9,10\n".encode("utf-8-sig"))
    loaded = data.load_file(path, test_fraction=0.2)
    np.testing.assert_array_equal(np.sort(np.concatenate([loaded.train, loaded.test])[:, 0]), [1, 3, 5, 7, 9])


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (ROWS.astype(np.complex64), r"has the complex dtype complex64; expected real numbers"),
        (
            with_entry(ROWS.astype(np.float64), 1e300, index=7),
            r"has 1 values beyond float32's largest magnitude 3.4e\+38 \(the first, 1e\+300, in row 2, column 1\)",
        ),
    ],
    ids=["complex", "beyond float32"],
)
def test_numbers_that_float32_cannot_hold_are_refused(tmp_path, array, message):
    """Not silently cast: the imaginary part would be dropped, and 1e300 would become inf."""
    np.save(tmp_path / "rows.npy", array)
    with pytest.raises(DataError, match=message):
        data.load_file(tmp_path / "rows.npy")


# ----------------------------------------------------------------------------- the command line


def snapshot(*directories):
    """Every file under `directories`: its content's hash and its modification time."""
    return {
        str(path): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for directory in directories
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def refused(capsys, argv, message, *watched):
    """`lvmjax argv` ends with one line holding `message` and leaves every file under `watched` as it was."""
    before = snapshot(*watched)
    one_line_error(capsys, *map(str, argv), message=message)
    assert snapshot(*watched) == before


TINY_VAE = app.FitConfig(model="vae", epochs=2, hidden=(8,), latent_dim=2, batch_size=500)
TINY_VAE_OPTIONS = ["--epochs", "2", "--hidden", "8", "--latent-dim", "2", "--batch-size", "500", "--quiet"]


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory):
    """Finished runs of mob, gmm and vae on the digits, and an unfinished vae with the checkpoint of epoch 1,
    written directly: their parameters are an initialisation, for tests that read runs and do not judge them."""
    root = tmp_path_factory.mktemp("saved")
    history = [{"iteration": 0, "train_objective": -40.0}]
    classical = {
        "mob": {"logits": jnp.zeros(3), "probs_logits": jnp.zeros((3, 64))},
        "gmm": {
            "logits": jnp.zeros(2),
            "means": jnp.zeros((2, 64)),
            "scale_tril": jnp.broadcast_to(jnp.eye(64), (2, 64, 64)),
        },
    }
    for model, params in classical.items():
        config = app.FitConfig(model=model, components=len(params["logits"]), covariance="diag")
        app.save_run(root / model, config, app.FitResult(params, history, 0.0, 64, (8, 8)))
    with jax.numpy_dtype_promotion("standard"):  # Flax and optax
        params = TINY_VAE.spec.networks(TINY_VAE, 64, (8, 8)).init(KEY)
        epoch = {"epoch": 1, "train_objective": -30.0, "seconds": 1.0}
        app.save_run(root / "vae", TINY_VAE, app.FitResult(params, [epoch], 0.0, 64, (8, 8)))
        dataset = app.load_data(TINY_VAE)
        steps = TINY_VAE.epochs * (dataset.train.shape[0] // TINY_VAE.batch_size)
        state = training.init_train_state(params, neural._optimizer(TINY_VAE, steps))
        checkpoints = app.Checkpoints(app.start_run(root / "unfinished", TINY_VAE, dataset), every=1)
        checkpoints.save(1, state, [epoch])
        checkpoints.wait()
    return root


# What is done to a copy of a saved run: functions of (its directory, the directory of every saved run).


def keep(run_dir, saved):
    pass


def write(name, content):
    def damage(run_dir, saved):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        path.write_bytes(content)

    return damage


def truncate(name, size):
    def damage(run_dir, saved):
        path = run_dir / name
        path.write_bytes(path.read_bytes()[:size])

    return damage


def edit_config(**changes):
    """config.json with `changes` (None deletes the key)."""

    def damage(run_dir, saved):
        config = json.loads((run_dir / "config.json").read_text())
        for name, value in changes.items():
            if value is None:
                del config[name]
            else:
                config[name] = value
        (run_dir / "config.json").write_text(json.dumps(config))

    return damage


def damage_checkpoint(how):
    """Every file of checkpoint/ zero-filled or cut to half its length."""

    def damage(run_dir, saved):
        for path in (run_dir / "checkpoint").rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                path.write_bytes(bytes(len(content)) if how == "zeroed" else content[: len(content) // 2])

    return damage


def checkpoint_of(model):
    """checkpoint/ of the finished run of `model` in place of the run's own."""

    def damage(run_dir, saved):
        shutil.rmtree(run_dir / "checkpoint")
        shutil.copytree(saved / model / "checkpoint", run_dir / "checkpoint")

    return damage


def remove(name):
    def damage(run_dir, saved):
        shutil.rmtree(run_dir / name)

    return damage


def empty_directory(name):
    def damage(run_dir, saved):
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        path.mkdir()

    return damage


DOES_NOT_MATCH = "does not match config.json"
# case: (the command, the saved run it reads, what is done to the run, what the one line says)
RUN_DIR_CASES = {
    "config.json truncated": ("evaluate", "mob", truncate("config.json", 40), "config.json is damaged (Expecting"),
    "config.json empty": ("sample", "gmm", write("config.json", b""), "config.json is damaged"),
    "config.json not text": ("impute", "mob", write("config.json", b"\xff\xfe\x00\x01"), "config.json is damaged"),
    "config.json without a model": (
        "plot",
        "gmm",
        edit_config(model=None),
        "missing 1 required positional argument: 'model'",
    ),
    "config.json of an unknown model": ("evaluate", "mob", edit_config(model="gan"), "unknown model 'gan'"),
    "config.json without data_dim": (
        "sample",
        "mob",
        edit_config(data_dim=None),
        "config.json is damaged ('data_dim')",
    ),
    "config.json with a zero width": ("sample", "vae", edit_config(hidden=[0]), "hidden must be the widths"),
    "config.json a directory": (
        "evaluate",
        "mob",
        empty_directory("config.json"),
        "is not a run directory: it has no config.json",
    ),
    "no checkpoint": (
        "evaluate",
        "gmm",
        remove("checkpoint"),
        "is unfinished (it stopped before its first checkpoint)",
    ),
    "an empty checkpoint": ("evaluate", "mob", empty_directory("checkpoint"), f"mob/checkpoint {DOES_NOT_MATCH}"),
    "a checkpoint that is a file": ("sample", "mob", write("checkpoint", b"x"), "cannot read the checkpoint in"),
    "a zeroed checkpoint": ("impute", "gmm", damage_checkpoint("zeroed"), f"gmm/checkpoint {DOES_NOT_MATCH}"),
    "a truncated checkpoint": ("sample", "vae", damage_checkpoint("truncated"), f"vae/checkpoint {DOES_NOT_MATCH}"),
    "the checkpoint of a gmm in a mob run": (
        "evaluate",
        "mob",
        checkpoint_of("gmm"),
        f"{DOES_NOT_MATCH} (a mob model for 64-dimensional data with 3 components)",
    ),
    "the checkpoint of a mob in a vae run": (
        "sample",
        "vae",
        checkpoint_of("mob"),
        f"{DOES_NOT_MATCH} (a vae model for 64-dimensional data with latent-dim 2)",
    ),
    "the checkpoint of a vae in a gmm run": ("plot", "gmm", checkpoint_of("vae"), f"{DOES_NOT_MATCH} (a gmm model"),
    "an unfinished run": (
        "impute",
        "unfinished",
        keep,
        "is unfinished (it stopped after epoch 1); continue it by repeating its 'lvmjax fit' command with --resume",
    ),
    "metrics.jsonl damaged": (
        "plot",
        "mob",
        write("metrics.jsonl", b'{"iteration": 0, "train_obj\n'),
        "metrics.jsonl (Unterminated string",
    ),
}


@pytest.mark.standard_promotion
@pytest.mark.parametrize("case", list(RUN_DIR_CASES))
def test_a_damaged_or_foreign_run_dir_gets_one_line_and_stays_as_it_is(saved_runs, tmp_path, capsys, case):
    command, source, damage, message = RUN_DIR_CASES[case]
    run_dir = tmp_path / source
    shutil.copytree(saved_runs / source, run_dir)
    damage(run_dir, saved_runs)
    refused(capsys, [command, run_dir], message, run_dir)


@pytest.mark.standard_promotion
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(
            write("config.json", b"[1, 2]"), "config.json is damaged (it holds a JSON list", id="config.json a list"
        ),
        pytest.param(
            edit_config(image_shape=[64]),
            "image_shape [64] is not (height, width) of 64 pixels",
            id="config.json an image shape of one number",
        ),
        pytest.param(
            write("metrics.jsonl", b'{"iteration": 0}\n'),
            "metrics.jsonl is damaged: line 1 has no train_objective",
            id="metrics.jsonl without the objective",
        ),
    ],
)
def test_a_run_dir_damaged_in_its_structure_gets_one_line(saved_runs, tmp_path, capsys, damage, message):
    run_dir = tmp_path / "mob"
    shutil.copytree(saved_runs / "mob", run_dir)
    damage(run_dir, saved_runs)
    refused(capsys, ["plot", run_dir], message, run_dir)


@pytest.mark.standard_promotion
@pytest.mark.parametrize(
    ("argv", "source", "damage", "message"),
    [
        (["fit", "svi", *TINY_VAE_OPTIONS], "unfinished", keep, "model differs (saved 'vae', given 'svi')"),
        (
            ["fit", "mob"],
            "unfinished",
            keep,
            "mob is fitted in one go, without checkpoints; there is nothing to resume",
        ),
        (["fit", "vae", *TINY_VAE_OPTIONS], "mob", keep, "is a finished run; there is nothing to resume"),
        (
            ["fit", "vae", *TINY_VAE_OPTIONS],
            "unfinished",
            write("checkpoints/1/state/_METADATA", b"{"),
            "cannot read the checkpoint of epoch 1",
        ),
        (
            ["fit", "vae", *TINY_VAE_OPTIONS],
            "unfinished",
            write("checkpoints/1/history/metadata", b"{"),
            "(JSONDecodeError): it is damaged or does not match config.json. ",
        ),
    ],
    ids=[
        "svi into an unfinished vae",
        "mob into an unfinished vae",
        "vae into a finished mob",
        "damaged state metadata",
        "damaged history",
    ],
)
def test_resume_into_another_models_or_a_damaged_run_gets_one_line(
    saved_runs, tmp_path, capsys, argv, source, damage, message
):
    run_dir = tmp_path / source
    shutil.copytree(saved_runs / source, run_dir)
    damage(run_dir, saved_runs)
    refused(capsys, [*argv, "--out", run_dir, "--resume"], message, run_dir)
    if "checkpoint of epoch" in message or "damaged" in message:  # resuming again would fail again
        refused(
            capsys,
            [*argv, "--out", run_dir, "--resume"],
            f"{run_dir} was left as it was; fit again into a new --out.",
            run_dir,
        )


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def flipped(content, offset):
    content = bytearray(content)
    content[offset] ^= 0xFF
    return bytes(content)


GOOD_ROWS = np.random.default_rng(1).normal(size=(20, 3))
GOOD_NPY = npy_bytes(GOOD_ROWS)
GOOD_NPZ = npz_bytes(rows=GOOD_ROWS)
GOOD_CSV = "".join(",".join(f"{value:.6f}" for value in row) + "\n" for row in GOOD_ROWS).encode()
# case: (the file's name, its content, what the one line says after the file's path)
USER_FILE_CASES = {
    "npy empty": ("rows.npy", b"", "rows.npy as a .npy array (EOFError"),
    "npy truncated": ("rows.npy", GOOD_NPY[:-30], "rows.npy as a .npy array (ValueError: Failed to read all data"),
    "npy corrupted": ("rows.npy", flipped(GOOD_NPY, 20), "rows.npy as a .npy array"),
    "npz empty": ("rows.npz", b"", "rows.npz as an npz archive (EOFError"),
    "npz truncated": ("rows.npz", GOOD_NPZ[: len(GOOD_NPZ) // 2], "rows.npz as an npz archive (BadZipFile"),
    "npz corrupted": (
        "rows.npz",
        flipped(GOOD_NPZ, GOOD_NPZ.index(b"rows.npy") + 150),
        "rows.npz (BadZipFile: Bad CRC-32",
    ),
    "csv empty": ("rows.csv", b"", "rows.csv has no rows of numbers"),
    "csv truncated": ("rows.csv", GOOD_CSV[:-12], "rows.csv line 20: expected 3 comma-separated values, got 2"),
    "csv corrupted": ("rows.csv", GOOD_CSV[:40] + b"\xff\xfe" + GOOD_CSV[42:], "rows.csv as text (UnicodeDecodeError"),
    "labels as data": ("labels.npy", npy_bytes(np.arange(20) % 4), "labels.npy has shape (20,); expected a 2-D array"),
    "no rows": ("rows.npy", npy_bytes(GOOD_ROWS[:0]), "rows.npy is empty (shape (0, 3))"),
    "complex numbers": ("rows.npy", npy_bytes(GOOD_ROWS.astype(np.complex64)), "rows.npy has the complex dtype"),
    "beyond float32": (
        "rows.npy",
        npy_bytes(with_entry(GOOD_ROWS, 1e300, index=4)),
        "rows.npy has 1 values beyond float32's largest magnitude",
    ),
    "one row": ("rows.csv", GOOD_CSV.splitlines(keepends=True)[0], "rows.csv has 1 rows, too few to hold out"),
}


@pytest.mark.parametrize("case", list(USER_FILE_CASES))
def test_a_damaged_data_file_gets_one_line_naming_it(tmp_path, capsys, case):
    name, content, message = USER_FILE_CASES[case]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / name).write_bytes(content)
    refused(
        capsys,
        ["fit", "gmm", "--data", tmp_path / "data" / name, "--out", tmp_path / "run"],
        message,
        tmp_path / "data",
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("fa", ["--latent-dim", "1"], "fitting needs at least 2 datapoints, but data has N=1"),
        ("gmm", [], "components must be between 1 and the number of training datapoints (1), got 10"),
        ("mob", ["--components", "1"], "not 0 or 1"),
    ],
    ids=["fa", "gmm", "mob of real values"],
)
def test_a_single_training_datapoint_gets_one_line(tmp_path, capsys, model, options, message):
    """Two rows, one of them held out for testing."""
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "two.npy", GOOD_ROWS[:2])
    refused(
        capsys,
        [
            "fit",
            model,
            "--data",
            tmp_path / "data" / "two.npy",
            "--test-fraction",
            "0.5",
            *options,
            "--out",
            tmp_path / "run",
        ],
        message,
        tmp_path / "data",
    )
    assert not (tmp_path / "run").exists()


def binarized_mnist_dir(directory):
    rng = np.random.default_rng(2)
    return write_amat(
        directory, {split: (rng.random((4, 784)) < 0.5).astype(np.uint8) for split in ("train", "valid", "test")}
    )


def mnist_dir(directory):
    rng = np.random.default_rng(3)
    return write_idx_dir(
        directory,
        {
            split: (rng.integers(0, 256, (rows, 28, 28), dtype=np.uint8), rng.integers(0, 10, rows, dtype=np.uint8))
            for split, rows in (("train", 6), ("test", 3))
        },
    )


# case: (the dataset, how its directory is written, the file damaged, the damage, what the one line says)
DATASET_FILE_CASES = {
    "amat empty": (
        "binarized-mnist",
        binarized_mnist_dir,
        "binarized_mnist_valid.amat",
        lambda content: b"",
        "binarized_mnist_valid.amat is empty",
    ),
    "amat truncated": (
        "binarized-mnist",
        binarized_mnist_dir,
        "binarized_mnist_train.amat",
        lambda content: content[:-101],  # the last line loses its newline and 50 values
        "binarized_mnist_train.amat line 4: expected 784 columns, got 734",
    ),
    "amat corrupted": (
        "binarized-mnist",
        binarized_mnist_dir,
        "binarized_mnist_test.amat",
        lambda content: content[:100] + b"\x00\xff" + content[102:],
        "binarized_mnist_test.amat is not a text file of numbers",
    ),
    "idx empty": (
        "mnist",
        mnist_dir,
        IMAGES["train"],
        lambda content: b"",
        "train-images-idx3-ubyte is truncated: it holds 0 bytes",
    ),
    "idx truncated": (
        "mnist",
        mnist_dir,
        IMAGES["test"],
        lambda content: content[:-5],
        "t10k-images-idx3-ubyte is truncated: its header promises a 3x28x28 array",
    ),
    "idx corrupted": (
        "mnist",
        mnist_dir,
        IMAGES["test"],
        lambda content: flipped(content, 2),
        "t10k-images-idx3-ubyte has the IDX type code 0xf7",
    ),
}


@pytest.mark.parametrize("case", list(DATASET_FILE_CASES))
def test_a_damaged_dataset_file_gets_one_line_naming_it(tmp_path, capsys, case):
    name, write_directory, file_name, damage, message = DATASET_FILE_CASES[case]
    directory = write_directory(tmp_path / "data")
    path = directory / file_name
    path.write_bytes(damage(path.read_bytes()))
    refused(
        capsys, ["fit", "mob", "--data", name, "--data-dir", directory, "--out", tmp_path / "run"], message, directory
    )
    assert not (tmp_path / "run").exists()


def test_a_test_split_that_is_not_binary_is_refused_for_a_bernoulli_model(tmp_path):
    binary = (GOOD_ROWS > 0).astype(np.float32)
    np.savez(tmp_path / "splits.npz", train=binary, test=np.abs(GOOD_ROWS[:5]).astype(np.float32))
    with pytest.raises(DataError, match=r"the test split of splits.npz has \d+ values that are not 0 or 1"):
        app.load_data(app.FitConfig(model="mob", data=str(tmp_path / "splits.npz")))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "{mob}", "--bogus"], "lvmjax: unrecognized arguments: --bogus (see lvmjax --help)"),
        (["sample", "{mob}", "--mask", "top-half"], "unrecognized arguments: --mask top-half"),
        (["plot", "{mob}", "--num-samples", "5"], "unrecognized arguments: --num-samples 5"),
        ([], "the following arguments are required: command"),
        (["train", "vae"], "argument command: invalid choice: 'train'"),
        (["fit"], "the following arguments are required: model, --out"),
        (["fit", "vae", "--out", "{out}", "--epochs"], "argument --epochs: expected one argument"),
        (["impute", "{mob}", "-n", "-3"], "argument -n/--num-images: must be at least 1, got -3"),
        (["evaluate", "{mob}", "--num-samples", "1e3"], "argument --num-samples: expected a whole number, got '1e3'"),
        (["fit", "vae", "--out", "{out}", "--hidden", "256,,256"], "expected widths like 256,256, got '256,,256'"),
    ],
    ids=[
        "unknown option",
        "another command's option",
        "evaluate's option to plot",
        "no command",
        "unknown command",
        "no model",
        "option without its value",
        "negative count",
        "count in exponent notation",
        "empty width",
    ],
)
def test_unknown_options_get_one_line(saved_runs, tmp_path, capsys, argv, message):
    argv = [arg.format(mob=saved_runs / "mob", out=tmp_path / "run") for arg in argv]
    refused(capsys, argv, message, saved_runs)
    assert not (tmp_path / "run").exists()


def test_the_installed_command_refuses_what_numpy_would_cast_with_a_warning(tmp_path):
    """In a process of its own, where numpy's ComplexWarning would add lines to stderr (in-process, pytest
    turns warnings into errors): complex numbers are refused before they are cast."""
    np.save(tmp_path / "rows.npy", GOOD_ROWS.astype(np.complex64))
    before = snapshot(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lvmjax",
            "fit",
            "gmm",
            "--data",
            str(tmp_path / "rows.npy"),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"lvmjax: error: {tmp_path / 'rows.npy'} has the complex dtype complex64; "
        "expected real numbers, so keep the real part (or the modulus) and save "
        "that"
    ]
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()
