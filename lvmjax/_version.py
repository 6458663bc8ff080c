"""The version of lvmjax, in one place: pyproject.toml reads it, and `lvmjax.__version__` is it."""

__all__ = ["__version__"]


__version__ = "0.1.0"
