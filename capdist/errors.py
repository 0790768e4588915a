"""Errors that capdist reports to users as one line.

Every exception here carries a message that says what is wrong and what to do;
the CLI prints it as a single line and exits with status 2. Library users catch
:class:`CapdistError` to handle all of them at once.

Example:
    >>> try:
    ...     raise UnreachableTarget("FLOPs target 0.01 is below the lowest reachable 0.12")
    ... except CapdistError as e:
    ...     print(e)
    FLOPs target 0.01 is below the lowest reachable 0.12
"""


class CapdistError(Exception):
    """Base class of every error capdist reports to the user in one line."""


class UnsupportedModel(CapdistError):
    """The model cannot be traced or contains nothing capdist can compact."""


class UnreachableTarget(CapdistError):
    """A FLOPs target below what the minimum widths allow."""


class CheckpointError(CapdistError):
    """A checkpoint that is missing, corrupt or made for another architecture."""


class DataError(CapdistError):
    """A dataset path, layout or image that cannot be used."""


class TrainingDiverged(CapdistError):
    """A NaN or infinite loss during training."""


class OutputExists(CapdistError):
    """An output directory that already holds results."""


class RecipeError(CapdistError):
    """A ``--config`` YAML file that cannot be used: unreadable, unknown key or unsupported version."""


class RunFinished(CapdistError):
    """``--resume`` on a run that already finished: nothing to do, nothing changed."""


class SurgeryError(CapdistError):
    """Surgery produced a model that does not compute what the masked model computes."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of ``exc``'s message (at most ``limit`` characters), or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
