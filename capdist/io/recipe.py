"""Recipe files: a command's options as YAML (``version: 1``), read safely and written atomically
beside every run.

A recipe maps option names (``target-flops`` or ``target_flops``) to values, plus ``version`` and
optionally ``command``. Reading never constructs Python objects (``yaml.safe_load``).

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "config.yaml")
    >>> write_recipe(path, "train", {"epochs": 3, "image_size": "256x128"})
    >>> read_recipe(path)["epochs"]
    3
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RecipeError
from .atomic import atomic_write_bytes

RECIPE_VERSION = 1
RECIPE_FILE = "config.yaml"


def read_recipe(path: str | Path, command: str | None = None) -> dict:
    """The options of the recipe at ``path`` (``version`` and ``command`` removed).

    Raises:
        RecipeError: unreadable or invalid YAML, not a mapping, a missing or unsupported version,
            or a recipe written for another command.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise RecipeError(f"cannot read recipe {path}: {reason}") from None
    try:
        recipe = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"recipe {path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"recipe {path} must be a mapping of option names to values, not a "
                          f"{type(recipe).__name__}")
    version = recipe.pop("version", None)
    if version is None:
        raise RecipeError(f"recipe {path} has no 'version' field (add 'version: {RECIPE_VERSION}')")
    if version != RECIPE_VERSION:
        raise RecipeError(f"recipe {path} has version {version!r}; this capdist reads version {RECIPE_VERSION}")
    made_for = recipe.pop("command", None)
    if command and made_for and made_for != command:
        raise RecipeError(f"recipe {path} is for 'capdist {made_for}', not 'capdist {command}'")
    return recipe


def write_recipe(path: str | Path, command: str, options: dict) -> None:
    """Write ``options`` as a recipe for ``command`` that ``--config`` reads back."""
    import yaml

    body = {"version": RECIPE_VERSION, "command": command, **options}
    atomic_write_bytes(path, yaml.safe_dump(body, sort_keys=False, default_flow_style=False).encode())
