"""The ``capdist`` command.

Every :class:`capdist.errors.CapdistError` is printed as one line on stderr with
exit status 2; no traceback.
"""

from __future__ import annotations

import sys
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)

import importlib  # noqa: E402

import click  # noqa: E402

from .. import __version__  # noqa: E402
from ..errors import CapdistError, RunFinished  # noqa: E402

# name -> (module, command object, one-line help shown by ``capdist --help`` without importing torch)
COMMANDS = {
    "demo": ("demo", "demo_cmd", "Train a small teacher on Fashion-MNIST and compress it to 35% of its FLOPs."),
    "train": ("train", "train_cmd", "Train a retrieval model (CE + triplet) and report its test metrics."),
    "eval": ("train", "eval_cmd", "Retrieval metrics of a trained or compressed model."),
    "compress": ("compress", "compress_cmd", "Compress a trained retrieval model to a FLOPs target (CDD)."),
    "prune": ("prune", "prune_cmd", "Baseline structured pruning to a FLOPs target, fine-tuned."),
    "export": ("export", "export_cmd", "Export the embedding path to ONNX or TorchScript and check it."),
    "report": ("report", "report_cmd", "One table and plots over many runs; --retime times them side by side."),
    "inspect": ("inspect", "inspect_cmd", "Which channel groups get compactors, of which kind, and why not."),
    "profile": ("profile", "profile_cmd", "Params, FLOPs (fvcore vs thop) and latency of a model."),
    "losses": ("losses", "losses_cmd", "The distillation losses capdist offers."),
    "bench": ("bench", "bench_cmd", "CDD vs baseline pruners at equal FLOPs and training budget."),
}


class LazyGroup(click.Group):
    """Imports a command's module (and torch) only when that command runs or shows its help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"{__package__}.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, _, summary) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="capdist")
def cli() -> None:
    """capdist: compress image-retrieval models with Capacity Dynamic Distillation."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch_pruning")


def _log_to_stderr() -> None:
    import logging

    class _CurrentStderr(logging.StreamHandler):
        """Writes to whatever ``sys.stderr`` is when a record is emitted (tests swap it)."""

        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, value):
            pass

    logger = logging.getLogger("capdist")
    if not logger.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _one_line(exc: BaseException | str, limit: int | None = 300) -> str:
    """One line of an error message; an error re-raised from a loader worker keeps only its own line."""
    text = str(exc)
    if "Original Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last and last.split(": ", 1)[0].endswith("Error") else last
    text = " ".join(text.split())
    return (text[:limit] if limit else text) if text else type(exc).__name__


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
    except click.exceptions.Abort:  # click's form of Ctrl-C
        click.echo("interrupted", err=True)
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
        click.echo(f"error: {_one_line(str(exc), limit=None)}", err=True)
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
