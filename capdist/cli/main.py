"""The ``capdist`` command (CDD toolkit, arXiv 2303.09230).

Every :class:`capdist.errors.CapdistError` is printed as one line on stderr with
exit status 2; no traceback.
"""

from __future__ import annotations

import sys
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)

import click  # noqa: E402

from ..errors import CapdistError  # noqa: E402
from .inspect import inspect_cmd  # noqa: E402
from .profile import profile_cmd  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """capdist: compress image-retrieval models with Capacity Dynamic Distillation."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch_pruning")


cli.add_command(inspect_cmd)
cli.add_command(profile_cmd)


def _register_optional() -> None:
    from .bench import bench_cmd
    from .compress import compress_cmd
    from .demo import demo_cmd
    from .export import export_cmd
    from .losses import losses_cmd
    from .prune import prune_cmd
    from .report import report_cmd
    from .train import eval_cmd, train_cmd

    for cmd in (demo_cmd, train_cmd, eval_cmd, losses_cmd, compress_cmd, export_cmd, prune_cmd, report_cmd, bench_cmd):
        cli.add_command(cmd)


_register_optional()


def _log_to_stderr() -> None:
    import logging

    logger = logging.getLogger("capdist")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main() -> None:
    """Entry point: run the CLI, turning capdist errors into one line."""
    _log_to_stderr()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CapdistError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
