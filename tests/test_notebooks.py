"""The teaching notebooks in notebooks/: each jupytext percent-format .py (the source) is paired with an
.ipynb that holds the same cells and no outputs, and runs from its first cell to its last at the small
size (LVMJAX_NOTEBOOK_SMALL=1) in a Jupyter kernel of this interpreter."""

import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
kernelspec = pytest.importorskip("ipykernel.kernelspec")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (installed with nbclient)
from nbclient.exceptions import CellExecutionError  # noqa: E402

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.py"))
CELL_TIMEOUT = 600  # seconds; the small size takes a few
# The small size is a smoke test whose time is mostly XLA compilation; the kernel inherits the fast
# compilation flags of conftest.py through XLA_FLAGS.


def cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_paired_ipynb_has_the_same_cells_and_no_outputs(path):
    source = jupytext.read(path)
    assert "ipynb" in source.metadata.get("jupytext", {}).get("formats", ""), (
        f"{path.name} does not declare its pairing; its header needs `formats: ipynb,py:percent`"
    )
    paired = path.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing; run `jupytext --to ipynb notebooks/{path.name}`"
    notebook = nbformat.read(paired, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"cell {index} of {paired.name} has outputs; regenerate it with "
                f"`jupytext --to ipynb notebooks/{path.name}`"
            )
    assert cells(notebook) == cells(source), (
        f"{paired.name} and {path.name} differ; regenerate it with `jupytext --to ipynb notebooks/{path.name}`"
    )


@pytest.fixture
def kernel_of_this_interpreter(tmp_path, monkeypatch):
    """Makes "python3" the kernel spec of this interpreter: JUPYTER_PATH comes first in the search for
    kernel specs, so no kernel installed elsewhere (a user's, another environment's) is picked instead."""
    kernelspec.write_kernel_spec(tmp_path / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_at_the_small_size(path, kernel_of_this_interpreter, monkeypatch):
    monkeypatch.setenv("LVMJAX_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(path)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = nbclient.NotebookClient(
        notebook, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}
    )  # run where a reader would
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{error}", pytrace=False)
    printed = "".join(output.get("text", "") for output in notebook.cells[-1].outputs if output.get("name") == "stdout")
    assert printed.strip() == sys.executable, f"the kernel ran {printed.strip()!r}, not {sys.executable!r}"
