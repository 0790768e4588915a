"""Typed settings: a dataclass field that carries its own help, flag and choices, so the command
line, the Python API and recipes are all generated from one declaration (the pattern of
Hugging Face's ``HfArgumentParser``).

Example:
    >>> from dataclasses import dataclass, fields
    >>> @dataclass
    ... class Target:
    ...     flops: float = setting(0.35, "Fraction of the teacher's FLOPs.", flag="--target-flops")
    >>> fields(Target)[0].metadata["flag"]
    '--target-flops'
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, field
from typing import Any

from .errors import CapdistError


def setting(default: Any = MISSING, help: str = "", *, flag: str | None = None,
            choices: Sequence[str] | Callable[[], Sequence[str]] | None = None, metavar: str | None = None,
            low: float | None = None, high: float | None = None, open_low: bool = False, open_high: bool = False,
            default_factory: Callable[[], Any] | None = None, cli: bool = True) -> Any:
    """A dataclass field with what a command-line option needs.

    Args:
        default: the one default of this setting.
        help: one sentence for ``--help``.
        flag: the option's name (default: ``--`` + the field name with dashes).
        choices: the allowed values (or a function returning them, read when the CLI is built).
        metavar: how ``--help`` names the value.
        low, high, open_low, open_high: the numeric range (``open_low`` / ``open_high``: the bound itself
            is excluded).
        default_factory: for mutable defaults.
        cli: False for a setting only the Python API and recipes set (e.g. a nested object).
    """
    metadata = {"help": help, "flag": flag, "choices": choices, "metavar": metavar, "low": low, "high": high,
                "open_low": open_low, "open_high": open_high, "cli": cli}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def flag_of(f) -> str:
    """The command-line flag of a dataclass field made by :func:`setting`."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def key_of(f) -> str:
    """The flat key of a field: its flag without dashes, as recipes and the Python API spell it."""
    return flag_of(f).lstrip("-").replace("-", "_")


def flat_fields(config_type: type) -> dict[str, tuple[tuple[str, ...], Any]]:
    """Every leaf setting of a (nested) settings dataclass: flat key -> (attribute path, field)."""
    found: dict[str, tuple[tuple[str, ...], Any]] = {}
    hints = typing.get_type_hints(config_type)
    for f in dataclasses.fields(config_type):
        kind = hints[f.name]
        leaves = {k: ((f.name, *p), leaf) for k, (p, leaf) in flat_fields(kind).items()} \
            if dataclasses.is_dataclass(kind) else {key_of(f): ((f.name,), f)}
        for key, value in leaves.items():
            if key in found:
                raise ValueError(f"{config_type.__name__}: two settings are both called '{key}'")
            found[key] = value
    return found


class UnknownSetting(CapdistError, ValueError):
    """A key that is not a setting of the configuration it was given to."""


def configure(config: Any, **values: Any) -> Any:
    """``config`` with settings changed by flat key (``target_flops=0.25``, ``schedule="norm"``) or
    nested objects by field name (``train=TrainConfig(...)``); ``config`` itself is not modified.

    Raises:
        UnknownSetting: a key that names no setting, with the closest ones.
    """
    config = copy.deepcopy(config)
    leaves = flat_fields(type(config))
    for key, value in values.items():
        if key in {f.name for f in dataclasses.fields(config)} and (dataclasses.is_dataclass(value)
                                                                     or key not in leaves):
            path = (key,)
        elif key in leaves:
            path = leaves[key][0]
        else:
            close = difflib.get_close_matches(key, list(leaves), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownSetting(f"'{key}' is not a setting of {type(config).__name__}{hint}")
        owner = config
        for name in path[:-1]:
            owner = getattr(owner, name)
        setattr(owner, path[-1], value)
    return config


class Settings:
    """A mixin for a settings dataclass: ``Config.of(**flat)`` builds its defaults with changes."""

    __slots__ = ()

    @classmethod
    def of(cls, **values: Any):
        """The defaults with settings changed by flat key (``target_flops=0.25``, ``schedule="norm"``)."""
        return configure(cls(), **values)


def flatten(config: Any) -> dict[str, Any]:
    """Every leaf setting of ``config`` by flat key (what a recipe holds)."""
    result = {}
    for key, (path, _) in flat_fields(type(config)).items():
        value = config
        for name in path:
            value = getattr(value, name)
        result[key] = list(value) if isinstance(value, tuple) else value
    return result
