"""The library's own error types: what the command line reports as a user error, and nothing else.

Every error that bad input or a run that cannot go on raises is an `LvmjaxError`; its
message is one line that names the problem and how to fix it. Anything else that a
function raises is a bug, and the command line shows its traceback.

A message names the arguments it speaks of in braces, `{lr}` or `{run_dir}`. In
Python they read as the argument's name (``lower lr``); the command line writes the
flag instead (``lower --lr``), through `LvmjaxError.render`:

    >>> str(RunError("training diverged; lower {lr}."))
    'training diverged; lower lr.'
    >>> RunError("training diverged; lower {lr}.").render(lambda argument: "--" + argument)
    'training diverged; lower --lr.'

The types subclass `ValueError` (or `TypeError`), as the built-in errors they refine, so
`except ValueError` keeps catching them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "CheckpointError",
    "DataError",
    "LvmjaxError",
    "PrecisionError",
    "RunError",
    "TrainingDiverged",
    "render",
]

_ARGUMENT = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def render(template: str, name_of: Callable[[str], str] = str) -> str:
    """`template` with each `{argument}` written as `name_of(argument)`: the messages of errors and of
    warnings (`FitResult.warnings`) alike."""
    return _ARGUMENT.sub(lambda match: name_of(match.group(1)), template)


class LvmjaxError(Exception):
    """A user error: bad input, or a run that cannot go on. The message is one line.

    `template` may name arguments in braces (`{lr}`); `str(error)` writes their names,
    `render(name_of)` writes `name_of(argument)` (a command-line flag, say).
    """

    def __init__(self, template: str):
        super().__init__(template)
        self.template = template

    def render(self, name_of: Callable[[str], str] = str) -> str:
        """The message with each `{argument}` written as `name_of(argument)` (by default, its own name)."""
        return render(self.template, name_of)

    def __str__(self) -> str:
        return self.render()


class ArgumentError(LvmjaxError, ValueError):
    """An argument of a public function has a bad value (a shape, a count, a range)."""


class ArgumentTypeError(LvmjaxError, TypeError):
    """An argument of a public function has the wrong type (a float for an int, a traced static argument)."""


class DataError(LvmjaxError, ValueError):
    """Bad or missing data: a file that cannot be read, values a model cannot take, an unknown dataset."""


class RunError(LvmjaxError, ValueError):
    """A run that cannot be made, read or continued: a configuration, a run directory, a device count."""


class CheckpointError(RunError):
    """A training checkpoint that cannot be read back: damaged, or written for another configuration."""


class TrainingDiverged(RunError):
    """`max_skipped_steps` training steps in a row were skipped as non-finite; the state of the epoch
    that reached the limit is not saved, so the last checkpoint is the last good state."""


class PrecisionError(RunError):
    """A number the program would report is float rounding noise at the precision it was computed in."""
