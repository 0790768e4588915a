"""The ``capdist`` command (CDD toolkit, arXiv 2303.09230).

Every :class:`capdist.errors.CapdistError` is printed as one line on stderr with
exit status 2; no traceback.
"""

from __future__ import annotations

import sys
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)

import click  # noqa: E402

from ..errors import CapdistError, RunFinished  # noqa: E402
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


def _one_line(exc: BaseException | str) -> str:
    """One line of an error message; an error re-raised from a loader worker keeps only its own line."""
    text = str(exc)
    if "Original Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last and last.split(": ", 1)[0].endswith("Error") else last
    text = " ".join(text.split())
    return text[:300] if text else type(exc).__name__


def main() -> None:
    """Entry point: run the CLI; every expected failure is one line on stderr with exit status 2.

    Expected failures: capdist's own errors, bad options, files that cannot be read or written
    (OSError), corrupt JSON or text. Anything else is a bug and shows its traceback with
    ``--debug`` or ``CAPDIST_DEBUG=1`` (one line otherwise).
    """
    import json
    import os

    debug = os.environ.get("CAPDIST_DEBUG") == "1" or "--debug" in sys.argv[1:]
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
    _log_to_stderr()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {_one_line(exc.format_message())}", err=True)
        sys.exit(2)
    except RunFinished as exc:
        click.echo(f"capdist: {exc}", err=True)
        sys.exit(0)
    except CapdistError as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        if debug:
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _one_line(exc)
        click.echo(f"error: {reason}{where}", err=True)
        sys.exit(2)
    except Exception as exc:  # a bug: one line, the traceback with --debug
        if debug:
            raise
        click.echo(f"error: internal error {type(exc).__name__}: {_one_line(exc)} (rerun with --debug or "
                   "CAPDIST_DEBUG=1 for the traceback, and report it)", err=True)
        sys.exit(1)
