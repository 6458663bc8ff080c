"""The house rules of docs/architecture.md, checked on the source: layers only look down, nothing above
the models tests a model's name, and every module has a public boundary."""

import ast
import importlib
import pkgutil
import re
import tomllib
from pathlib import Path

import pytest

import lvmjax

PACKAGE = Path(lvmjax.__file__).parent

# Each module's layer; a module may import only from its own layer or those below it.
CORE, MODELS, LEARNING, APPLICATION, COMMAND_LINE = range(5)
BESIDE = LEARNING  # data.py, time_series.py and plots.py: below the application, above the models
LAYERS = {
    "lvmjax": COMMAND_LINE,
    "lvmjax.__main__": COMMAND_LINE,
    "lvmjax.cli": COMMAND_LINE,
    "lvmjax.app": APPLICATION,
    "lvmjax.tour": APPLICATION,
    "lvmjax.models": MODELS,
    "lvmjax.training": LEARNING,
    "lvmjax.svi": LEARNING,
    "lvmjax.semi_amortized": LEARNING,
    "lvmjax.amortized": LEARNING,
    "lvmjax.prodlda": LEARNING,
    "lvmjax.mixture_vi": LEARNING,
    "lvmjax.applications": LEARNING,
    "lvmjax.diagnostics": LEARNING,
    "lvmjax.parallel": LEARNING,
    "lvmjax.distributed_em": LEARNING,
    "lvmjax.data": BESIDE,
    "lvmjax.time_series": BESIDE,
    "lvmjax.text": BESIDE,
    "lvmjax.plots": BESIDE,
    "lvmjax.model": CORE,
    "lvmjax.estimators": CORE,
    "lvmjax.ais": CORE,
    "lvmjax.mcmc": CORE,
    "lvmjax.variational": CORE,
    "lvmjax._discrete": CORE,
    "lvmjax.networks": CORE,
    "lvmjax._validation": CORE,
    "lvmjax.types": CORE,
    "lvmjax.errors": CORE,
    "lvmjax._version": CORE,
}


def _layer(module: str) -> int:
    while module not in LAYERS:
        module = module.rpartition(".")[0]
    return LAYERS[module]


def _modules() -> list[str]:
    names = ["lvmjax"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="lvmjax."):
        names.append(info.name)
    return sorted(names)


def _source(module: str) -> Path:
    path = PACKAGE.parent / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(module: str) -> set[str]:
    """Every lvmjax module `module` imports, at any depth of its code (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(_source(module).read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    # `from lvmjax import x` names the package itself; only the submodule x is a dependency.
    return {name for name in found if name.startswith("lvmjax.") and _is_module(name)}


def _is_module(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


@pytest.mark.parametrize("module", [name for name in _modules() if name != "lvmjax"])
def test_layers_only_look_down(module):
    above = {name for name in _imports(module) if _layer(name) > _layer(module)}
    assert not above, f"{module} (layer {_layer(module)}) imports from a layer above it: {sorted(above)}"


@pytest.mark.parametrize("module", [name for name in _modules() if name.startswith("lvmjax.models")])
def test_models_import_no_io_and_no_mesh_code(module):
    source = _source(module).read_text()
    assert not {"lvmjax.data", "lvmjax.parallel"} & _imports(module)
    assert "shard_map" not in source and "jax.sharding" not in source


def test_the_checker_catches_an_upward_import():
    # The rule is real: the command line sits above everything, the core below everything.
    assert _layer("lvmjax.cli") > _layer("lvmjax.app.registry") > _layer("lvmjax.svi") > _layer("lvmjax.models._em")
    assert _layer("lvmjax.models.gaussian_mixture") > _layer("lvmjax.estimators")
    assert {"lvmjax.app", "lvmjax.app.registry"} <= _imports("lvmjax.cli")


NAMES = "vae|iwae|ae|svi|gmm|mob|fa|ppca|lda|prodlda|hmm|bgmm"
NAME_TEST = re.compile(rf"(==|!=) *['\"]({NAMES})['\"]|in \(?\[?['\"]({NAMES})['\"]|model (==|!=|in|not in) ")


def test_at_most_five_name_tests_outside_the_registry():
    places = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if not re.search(r"(spec|registry)", str(path.relative_to(PACKAGE)))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if NAME_TEST.search(line)
    ]
    assert len(places) <= 5, places


@pytest.mark.parametrize("module", _modules())
def test_every_module_declares_its_public_names(module):
    imported = importlib.import_module(module)
    assert hasattr(imported, "__all__"), f"{module} has no __all__"
    missing = [name for name in imported.__all__ if not hasattr(imported, name)]
    assert not missing, f"{module}.__all__ names what it does not define: {missing}"


def test_one_import_path_per_model_module():
    for name in ("gaussian_mixture", "bernoulli_mixture", "linear_gaussian"):
        assert not hasattr(lvmjax, name), f"lvmjax.{name} is a second path to lvmjax.models.{name}"


def test_no_legacy_keys_or_tree_util_map():
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        assert "random.PRNGKey" not in source, f"{path}: use jax.random.key"
        assert "tree_util.tree_map" not in source, f"{path}: use jax.tree.map"


def test_one_source_of_the_version():
    from lvmjax import _version

    assert lvmjax.__version__ == _version.__version__
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lvmjax._version.__version__"}


def test_importing_lvmjax_does_not_start_the_backend():
    """A multi-process run calls jax.distributed.initialize after importing lvmjax and before any computation,
    so no import may start JAX's backend (blackjax's does: it is imported on first use)."""
    import subprocess
    import sys

    code = (
        "import lvmjax, lvmjax.cli, lvmjax.app, lvmjax.tour\n"
        "from jax._src import xla_bridge\n"
        "print(xla_bridge.backends_are_initialized())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stderr
