import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from capdist.cli.main import cli


@pytest.mark.parametrize("internal, expected", [("dense", {"dense", "diagonal"}), ("diagonal", {"diagonal"})])
def test_inspect_reports_groups_kinds_and_pinned_output(internal, expected):
    out = CliRunner().invoke(cli, ["inspect", "mobilenet_v2", "--input-size", "3,32,32", "--scope", "internal",
                                   "--num-classes", "10", "--internal-compactor", internal, "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    status = {r["status"] for r in report["groups"]}
    assert {"compacted", "pinned", "out of scope"} <= status
    kinds = {c.split()[0] for r in report["groups"] if r["status"] == "compacted"
             for c in r["compactors"]}
    assert kinds == expected and report["internal_compactor"] == internal


def test_inspect_previews_exactly_the_compactors_compress_attaches():
    import torch

    from capdist.compactor import attach
    from capdist.methods import CompressConfig
    from capdist.models import build_model

    out = CliRunner().invoke(cli, ["inspect", "resnet18", "--input-size", "32x32", "--num-classes", "10", "--json"])
    assert out.exit_code == 0, out.output
    previewed = {r["group"]: [c.split()[0] for c in r["compactors"]] for r in json.loads(out.output)["groups"]
                 if r["status"] == "compacted"}
    cm = attach(build_model("resnet18", num_classes=10), torch.randn(2, 3, 32, 32),
                CompressConfig().compactors.placement())
    built = {g.name: [type(c).__name__.replace("Compactor", "").lower() or "dense" for c in g.compactors]
             for g in cm.groups}
    assert previewed == built and any("diagonal" in kinds for kinds in built.values())


def test_help_shows_the_common_sections_and_help_all_every_option():
    short = CliRunner().invoke(cli, ["compress", "--help"]).output
    full = CliRunner().invoke(cli, ["compress", "--help-all"]).output
    assert "Target:" in short and "Training:" in short and "more options in Compactors" in short
    assert "--rggr-k" not in short and "--rggr-k" in full and "Mask schedule:" in full
    assert full.count("\n  --") > short.count("\n  --")


def test_inspect_lists_unsupported_groups_with_reason():
    out = CliRunner().invoke(cli, ["inspect", "convnext_tiny", "--input-size", "3,32,32",
                                   "--scope", "all"])
    assert out.exit_code == 0
    assert "unsupported" in out.output and "LayerNorm" in out.output


def test_unknown_model_is_one_line_with_status_2():
    proc = subprocess.run([sys.executable, "-m", "capdist", "inspect", "resnet-18"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "unknown model 'resnet-18'" in lines[0]
    assert "Traceback" not in proc.stderr


def test_profile_json():
    out = CliRunner().invoke(cli, ["profile", "tiny_resnet", "--input-size", "3,8,8",
                                   "--batch-size", "4", "--repeats", "3", "--num-classes", "10",
                                   "--json"])
    assert out.exit_code == 0, out.output
    r = json.loads(out.output)
    assert r["fvcore_flops"] > 0 and len(r["latency"]) == 2


def test_top_level_help_and_version_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom capdist.cli.main import main\nsys.argv = ['capdist', '{}']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    for flag in ("--help", "--version"):
        proc = subprocess.run([sys.executable, "-c", code.format(flag)], capture_output=True, text=True)
        assert proc.stdout.strip().splitlines()[-1] == "False", proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-m", "capdist", "--version"], capture_output=True, text=True)
    from capdist import __version__

    assert proc.returncode == 0 and proc.stdout.strip() == f"capdist, version {__version__}"


def test_every_listed_command_resolves_to_itself():
    from capdist.cli.main import COMMANDS

    for name in COMMANDS:
        command = cli.get_command(None, name)
        assert command is not None and command.name == name


def test_device_auto_is_cuda_when_present_else_cpu(monkeypatch):
    import torch

    from capdist.cli.options import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_device(None, None, "auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device(None, None, "auto") == "cuda"
