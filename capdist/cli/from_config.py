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
import math
import types
import typing
from collections.abc import Iterable

import click

from ..settings import configure, flag_of, flat_fields

SECTION_TITLES = {"target": "Target", "compactors": "Compactors", "schedule": "Mask schedule",
                  "distill": "Teacher signals", "train": "Training", "report": "Report", "": "Method"}


BRIEF_SECTIONS = ("Model, data and run", "Method", "Target", "Training")


def _help_all(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        ctx.meta["help_all"] = True
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


class SectionedCommand(click.Command):
    """A command whose help lists its options in sections (``section`` on each option; options
    without one are under "Model, data and run"): ``--help`` shows the common sections and names the
    others, ``--help-all`` shows every option."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        if any(isinstance(p, click.Option) and "--help-all" in p.opts for p in params):
            return params
        extra = click.Option(["--help-all"], is_flag=True, expose_value=False, is_eager=True, callback=_help_all,
                             help="Show every option, in sections.")
        return [*params, extra]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "section", "Model, data and run"), []).append(record)
        everything = ctx.meta.get("help_all", False) or len(sections) <= 2
        hidden = [title for title in sections if not everything and title not in BRIEF_SECTIONS]
        for title, records in sections.items():
            if title not in hidden:
                with formatter.section(title):
                    formatter.write_dl(records)
        if hidden:
            count = sum(len(sections[t]) for t in hidden)
            formatter.write_paragraph()
            formatter.write_text(f"{count} more options in {', '.join(hidden)}: --help-all shows them.")


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
    if kind in (int, float) and meta.get("low") is None and meta.get("high") is None:
        return click.INT if kind is int else click.FLOAT
    if kind in (int, float):
        ranged = click.IntRange if kind is int else click.FloatRange
        extra = {"min_open": meta.get("open_low", False), "max_open": meta.get("open_high", False)} \
            if kind is float else {}
        return ranged(meta.get("low"), meta.get("high"), **extra)
    return None


def _finite(ctx: click.Context, param: click.Parameter, value):
    """A float option's value, refusing NaN and infinities (ranges do not catch NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


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
                             metavar=f.metadata.get("metavar") or "HxW", **common)
    callback = _finite if kind is float else None
    return SectionOption([flag, key], type=_click_type(f, kind), default=default, callback=callback,
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


def config_options(config_type: type, exclude: Iterable[str] = (), section: str | None = None):
    """A decorator adding one option per command-line setting of ``config_type`` (its defaults are
    the config's own), minus the flat keys in ``exclude``; ``section`` titles the top-level settings."""
    exclude = set(exclude)

    def decorate(func):
        for key, path, f, hint, default in reversed(list(_leaves(config_type, exclude))):
            top = section or SECTION_TITLES[""]
            section_of = top if len(path) == 1 else SECTION_TITLES.get(path[0], path[0].title())
            func.__click_params__ = [*getattr(func, "__click_params__", []),
                                     _option(key, f, hint, default, section_of)]
        return func

    return decorate


def config_from(config_type: type, kwargs: dict, exclude: Iterable[str] = ()):
    """The config the options describe; its keys are removed from ``kwargs``."""
    keys = [key for key, *_ in _leaves(config_type, set(exclude))]
    values = {key: kwargs.pop(key) for key in keys if key in kwargs}
    return configure(config_type(), **values)
