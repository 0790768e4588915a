"""Command-line options generated from the typed settings (:mod:`capdist.settings`): one option per
setting, its default, help, range and choices read from the field, shown in ``--help`` under the
section its config belongs to.

Example:
    >>> # @click.command(cls=SectionedCommand)
    >>> # @config_options(CompressConfig)
    >>> # def compress_cmd(**kwargs): config = config_from(CompressConfig, kwargs)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable

import click

from ..settings import configure, flag_of, flat_fields

SECTION_TITLES = {"target": "Target", "compactors": "Compactors", "schedule": "Mask schedule",
                  "distill": "Teacher signals", "train": "Training", "report": "Report", "": "Method"}


class SectionedCommand(click.Command):
    """A command whose ``--help`` lists its options in sections (``section`` on each option;
    options without one are listed under "Model, data and run")."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "section", "Model, data and run"), []).append(record)
        for title, records in sections.items():
            with formatter.section(title):
                formatter.write_dl(records)


class SectionOption(click.Option):
    """A click option that knows its help section."""

    def __init__(self, *args, section: str = "Options", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


def _plain_type(hint) -> type:
    """``X`` of ``X | None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0]
    return hint


def _click_type(f: dataclasses.Field, kind: type):
    meta = f.metadata
    choices = meta.get("choices")
    if choices is not None:
        return click.Choice(list(choices() if callable(choices) else choices))
    if kind in (int, float):
        ranged = click.IntRange if kind is int else click.FloatRange
        extra = {"min_open": meta.get("open_low", False), "max_open": meta.get("open_high", False)} \
            if kind is float else {}
        return ranged(meta.get("low"), meta.get("high"), **extra)
    return None


def _option(key: str, f: dataclasses.Field, hint, default, section: str) -> click.Option:
    kind = _plain_type(hint)
    flag = flag_of(f)
    common = {"help": f.metadata["help"], "section": section}
    if kind is bool:
        names = [flag if not default else f"{flag}/--no-{flag[2:]}", key]
        return SectionOption(names, is_flag=True, default=default, show_default=bool(default), **common)
    if typing.get_origin(kind) is tuple:
        from .options import input_size_option

        return SectionOption([flag, key], default=default, callback=input_size_option,
                             metavar=f.metadata.get("metavar") or "C,H,W", **common)
    return SectionOption([flag, key], type=_click_type(f, kind), default=default,
                         show_default=default not in (None, ""), metavar=f.metadata.get("metavar"), **common)


def _leaves(config_type: type, exclude: Iterable[str]):
    defaults = config_type()
    for key, (path, f) in flat_fields(config_type).items():
        if key in exclude or not f.metadata.get("cli", False) or not f.metadata.get("help"):
            continue
        owner = defaults
        for name in path[:-1]:
            owner = getattr(owner, name)
        hints = typing.get_type_hints(type(owner))
        yield key, path, f, hints[f.name], getattr(owner, path[-1])


def config_options(config_type: type, exclude: Iterable[str] = ()):
    """A decorator adding one option per command-line setting of ``config_type`` (its defaults are
    the config's own), minus the flat keys in ``exclude``."""
    exclude = set(exclude)

    def decorate(func):
        for key, path, f, hint, default in reversed(list(_leaves(config_type, exclude))):
            section = SECTION_TITLES.get(path[0] if len(path) > 1 else "", path[0].title())
            func.__click_params__ = [*getattr(func, "__click_params__", []), _option(key, f, hint, default, section)]
        return func

    return decorate


def config_from(config_type: type, kwargs: dict, exclude: Iterable[str] = ()):
    """The config the options describe; its keys are removed from ``kwargs``."""
    keys = [key for key, *_ in _leaves(config_type, set(exclude))]
    values = {key: kwargs.pop(key) for key in keys if key in kwargs}
    return configure(config_type(), **values)
