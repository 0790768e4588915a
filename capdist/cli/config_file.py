"""``--config FILE.yaml``: a recipe supplies a command's options, flags on the command line win,
and the resolved options are stored beside the run."""

from __future__ import annotations

import difflib
import functools
import json

import click

RUN_CONTROL = ("resume", "overwrite")


def _key(name: str) -> str:
    return name.strip().lstrip("-").replace("-", "_")


def _option_names(command: click.Command) -> dict[str, click.Parameter]:
    names = {}
    for param in command.params:
        if param.name in ("config",) or not isinstance(param, click.Option):
            continue
        names[param.name] = param
        for opt in param.opts:
            names[_key(opt)] = param
    return names


def _as_option_value(param: click.Parameter, value):
    """A YAML value in the form the option takes (``KEY=VALUE`` items from a mapping, YAML's
    ``off`` read as a word)."""
    if getattr(param, "multiple", False):
        if isinstance(value, dict):
            return [f"{k}={json.dumps(v)}" for k, v in value.items()]
        return value if isinstance(value, list) else [value]
    if isinstance(param.type, click.Choice) and isinstance(value, bool):
        word = {False: "off", True: "on"}[value]
        return word if word in param.type.choices else value
    return value


def _load(ctx: click.Context, param: click.Parameter, value):
    if not value:
        return value
    from ..errors import RecipeError
    from ..io.recipe import read_recipe

    try:
        recipe = read_recipe(value, ctx.command.name)
    except RecipeError as exc:
        raise click.BadParameter(str(exc)) from None
    names = _option_names(ctx.command)
    defaults = {}
    for key, item in recipe.items():
        target = names.get(_key(str(key)))
        if target is None or target.name in RUN_CONTROL:
            valid = sorted({p.name.replace("_", "-") for p in names.values() if p.name not in RUN_CONTROL})
            close = difflib.get_close_matches(str(key).replace("_", "-"), valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
            raise click.BadParameter(f"unknown key '{key}' in {value} for 'capdist {ctx.command.name}'{hint}")
        defaults[target.name] = _as_option_value(target, item)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _recorded(ctx: click.Context) -> dict:
    """The resolved options of this invocation, as a recipe stores them."""
    options = {}
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in ("config", *RUN_CONTROL):
            continue
        value = ctx.params.get(param.name)
        if param.name == "image_size" and value is not None:
            value = f"{value[0]}x{value[1]}"
        elif isinstance(value, tuple):
            value = list(value)
        long = [o for o in param.opts if o.startswith("--")]
        options[(long[0] if long else param.name).lstrip("-")] = value
    return options


def config_option(func):
    """Add ``--config FILE.yaml``; the command receives the resolved options as ``recipe``."""

    @click.option("--config", "config", metavar="FILE.yaml", default=None, is_eager=True, expose_value=False,
                  callback=_load, help="Recipe: YAML of this command's options (version: 1); flags given here win.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        return func(*args, recipe=_recorded(ctx), **kwargs)

    return wrapper
