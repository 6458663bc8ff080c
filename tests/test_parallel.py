"""Data-parallel training over simulated devices and processes agrees with one device.

The 4-device checks run in a subprocess (tests/parallel_worker.py), because the number of CPU devices
is fixed when XLA starts; the multi-process check starts two `lvmjax fit` processes of 2 devices each
that find each other through jax.distributed on the loopback interface.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from lvmjax import app, cli, distributed_em, parallel
from lvmjax.app import batches
from lvmjax.models import gaussian_mixture

WORKER = Path(__file__).with_name("parallel_worker.py")
# Float32 sums in another order: a few units in the last place of each parameter after training.
RTOL = 1e-5


@pytest.fixture(scope="module")
def four_devices():
    completed = subprocess.run([sys.executable, str(WORKER)], capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


def test_the_worker_ran_on_four_devices(four_devices):
    assert four_devices["devices"] == 4


@pytest.mark.parametrize("model", ["vae", "svi"])
def test_training_on_four_devices_gives_the_one_device_parameters(four_devices, model):
    result = four_devices[f"fit_{model}"]
    assert result["shapes_equal"]  # svi's φ comes back without its padding rows
    assert result["difference"] <= RTOL * result["scale"]
    np.testing.assert_allclose(*result["objectives"], rtol=1e-6)


def test_svi_splits_phi_and_moves_only_minibatch_rows(four_devices):
    placement = four_devices["svi_placement"]
    assert placement["phi_spec"] == "P('data',)"
    assert placement["phi_rows_per_device"] == [-(-placement["num_data"] // 4)]  # 1001 rows padded to 4 x 251
    assert placement["theta_replicated"]
    moved = " ".join(shape for shapes in placement["collectives"].values() for shape in shapes)
    assert f"f32[{placement['batch_size']}," in moved  # the minibatch's φ_i and their gradients
    assert f"[{placement['num_data']}" not in moved and "[1004" not in moved  # never all of φ
    assert placement["collectives"]["all-reduce"]  # the θ gradient


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_em_on_four_devices_gives_the_one_device_mixture(four_devices, covariance):
    result = four_devices[f"gmm_{covariance}"]
    assert result["iterations"] == [8, 8]
    assert result["difference"] <= 1e-5 * result["scale"]
    np.testing.assert_allclose(*result["objective"], rtol=1e-6)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_two_processes(options, port):
    processes = []
    for process_id in range(2):
        environ = os.environ | {
            "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
            parallel.COORDINATOR_ADDRESS: f"127.0.0.1:{port}",
            parallel.NUM_PROCESSES: "2",
            parallel.PROCESS_ID: str(process_id),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "lvmjax", *options],
                env=environ,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return processes


@pytest.mark.standard_promotion
def test_two_processes_killed_and_resumed_train_what_one_process_trains(tmp_path):
    """Two `lvmjax fit svi` processes of 2 devices each are killed (SIGKILL) once their first checkpoint
    is complete, and two new processes resume the run: the result is the one-process run's."""
    epochs = 3  # an epoch of two processes takes seconds; the kill comes within 50 ms of the first checkpoint
    out = tmp_path / "run"
    options = [
        "fit",
        "svi",
        "--epochs",
        str(epochs),
        "--hidden",
        "16",
        "--latent-dim",
        "3",
        "--batch-size",
        "64",
        "--checkpoint-every",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    processes = _start_two_processes(options, _free_port())
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "1").is_dir():  # orbax renames a checkpoint into place when complete
        for process in processes:
            assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    for process in processes:
        process.kill()
        process.communicate()
    assert not (out / "checkpoint").exists()  # unfinished

    processes = _start_two_processes([*options, "--resume"], _free_port())
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    config = app.FitConfig(model="svi", epochs=epochs, hidden=(16,), latent_dim=3, batch_size=64)
    expected = app.fit(config, app.load_data(config))
    distributed = app.load_run(out)
    for got, want in zip(
        jax.tree_util.tree_leaves(distributed.params), jax.tree_util.tree_leaves(expected.params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
    epochs_written = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs_written == list(range(1, epochs + 1))


# --- Single-process checks, on this process's one device -------------------------------------


def test_streaming_em_equals_em_and_holds_one_chunk_at_a_time():
    rng = np.random.default_rng(0)
    centres = 6 * rng.normal(size=(3, 2))

    def draw(num_data):
        return (centres[rng.integers(0, 3, num_data)] + rng.normal(size=(num_data, 2))).astype(np.float32)

    data = draw(2000)
    for covariance in ("full", "diag"):
        start = gaussian_mixture.initial_params(jax.random.PRNGKey(0), data, 3, covariance)
        whole, _ = gaussian_mixture.fit_em(
            jax.random.PRNGKey(0), data, 3, covariance, max_iter=6, tol=0.0, init_params=start
        )
        streamed, info = distributed_em.fit_em_streaming(
            jax.random.PRNGKey(0), data, 3, covariance, max_iter=6, tol=0.0, chunk_size=700, init_params=start
        )
        assert int(info.num_iterations) == 6
        for got, want in zip(streamed, whole, strict=True):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=2e-5)

    def peak_device_bytes(data):
        baseline = sum(array.nbytes for array in jax.live_arrays())
        peaks = []
        distributed_em.fit_em_streaming(
            jax.random.PRNGKey(1),
            data,
            3,
            "full",
            max_iter=3,
            chunk_size=500,
            progress=lambda *_: peaks.append(sum(array.nbytes for array in jax.live_arrays())),
        )
        return max(peaks) - baseline

    small, large = peak_device_bytes(draw(1000)), peak_device_bytes(draw(10000))
    assert large <= small + 1024  # 10 times the data, the same device memory
    assert large < draw(10000).nbytes / 4


def test_streaming_em_rejects_bad_input():
    with pytest.raises(ValueError, match="matrix"):
        distributed_em.fit_em_streaming(jax.random.PRNGKey(0), np.zeros(10), 2)
    with pytest.raises(ValueError, match="chunk_size"):
        distributed_em.fit_em_streaming(jax.random.PRNGKey(0), np.zeros((10, 2)), 2, chunk_size=0)
    bad = np.zeros((10, 2), np.float32)
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite values in rows 5 to 9"):
        distributed_em.fit_em_streaming(jax.random.PRNGKey(0), bad, 2, chunk_size=5)


@pytest.mark.standard_promotion
def test_evaluation_device_memory_does_not_grow_with_the_data_or_k(monkeypatch):
    config = app.FitConfig(model="vae", epochs=1, hidden=(8,), latent_dim=2, batch_size=64)
    dataset = app.load_data(config)
    params = app.fit(config, dataset).params
    monkeypatch.setattr(batches, "EVALUATION_BATCH", 40)

    def peak(num_test, num_samples):
        subset = dataset._replace(test=np.asarray(dataset.train)[:num_test])
        baseline = sum(array.nbytes for array in jax.live_arrays())
        peaks = []
        app.evaluate(
            config,
            params,
            subset,
            num_samples=num_samples,
            refine_steps=1,
            progress=lambda *_: peaks.append(sum(array.nbytes for array in jax.live_arrays())),
        )
        return max(peaks) - baseline

    assert peak(120, 500) <= peak(40, 500) + 1024
    assert peak(40, 2000) <= peak(40, 500) + 1024


def test_data_mesh_rejects_impossible_device_counts():
    with pytest.raises(ValueError, match="between 1 and the 1 CPU"):
        parallel.data_mesh(2)
    with pytest.raises(TypeError, match="integer"):
        parallel.data_mesh(1.5)
    with pytest.raises(ValueError, match="multiple of 1"):  # a scalar has no leading axis to split
        parallel.shard(np.zeros(()), parallel.data_mesh(1))
    with pytest.raises(ValueError, match=r"^devices is empty"):
        parallel.data_mesh(devices=[])


def test_data_mesh_takes_the_devices_to_use():
    cpu = jax.devices("cpu")
    mesh = parallel.data_mesh(devices=cpu)
    assert list(mesh.devices.flat) == cpu and mesh.axis_names == (parallel.DATA_AXIS,)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({parallel.NUM_PROCESSES: "2"}, "JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID are not set"),
        (
            {parallel.COORDINATOR_ADDRESS: "h:1", parallel.NUM_PROCESSES: "two", parallel.PROCESS_ID: "0"},
            "JAX_NUM_PROCESSES must be an integer, got 'two'",
        ),
        (
            {parallel.COORDINATOR_ADDRESS: "h:1", parallel.NUM_PROCESSES: "2", parallel.PROCESS_ID: "2"},
            "between 0 and JAX_NUM_PROCESSES - 1 = 1, got 2",
        ),
    ],
)
def test_initialize_distributed_names_what_is_wrong(environ, message):
    with pytest.raises(ValueError, match=message):
        parallel.initialize_distributed(environ)
    assert not parallel.initialize_distributed({})


def test_fit_devices_errors_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert cli.main(["fit", "vae", "--devices", "2", "--epochs", "1", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--devices 2 asks for more than the 1 CPU device" in error
    monkeypatch.setenv(parallel.NUM_PROCESSES, "2")
    assert cli.main(["fit", "vae", "--epochs", "1", "--out", str(out)]) == 2
    assert "JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID are not set" in capsys.readouterr().err
    assert not out.exists()
