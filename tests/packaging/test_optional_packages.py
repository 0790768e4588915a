"""The core imports and runs without any optional package; each extra names its install command."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

OPTIONAL = ("onnx", "onnxruntime", "sklearn", "scipy", "timm", "torchreid", "tensorboard", "openvino")

# a module mapped to None in sys.modules is one Python cannot import (ModuleNotFoundError), as if absent
BLOCKER = f"""
import sys
sys.modules.update(dict.fromkeys({OPTIONAL!r}))
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=300)


def test_core_commands_work_without_optional_packages(tmp_path):
    done = _run(f"""
import capdist, capdist.api, capdist.cli.main
from capdist.cli.main import main
sys.argv = ['capdist', 'train', '--model', 'tiny_resnet', '--data', 'folder:{tmp_path}/none', '--out', '{tmp_path}/o']
main()
""")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2 and not (tmp_path / "o").exists()  # the bad folder, reported as one line


def test_missing_extras_are_one_line_with_the_install_command():
    done = _run("""
from capdist.data import open_dataset
from capdist.errors import CapdistError
for call in (lambda: open_dataset('digits'), lambda: __import__('capdist.io.export', fromlist=['x']).OnnxModule('m'),
             lambda: __import__('capdist.benchmarks.seed_table', fromlist=['x']).p_values({0: 1}, {0: 2})):
    try:
        call()
    except CapdistError as exc:
        print(exc)
""")
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    hints = [line.split("pip install ")[1] for line in lines]
    assert hints == ["'capdist[digits]'", "'capdist[export]' (or onnxruntime-gpu)", "'capdist[study]'"]


def test_torch_is_loose_in_the_package_and_pinned_for_make():
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    torch_req = next(d for d in project["dependencies"] if d.startswith("torch>") or d.startswith("torch="))
    assert "==" not in torch_req and not any(d.startswith(("onnx", "scikit-learn")) for d in project["dependencies"])
    assert "torch==2.14.1" in (root / "constraints.txt").read_text().split()
    assert "-c constraints.txt" in (root / "Makefile").read_text()


@pytest.mark.slow
def test_installing_into_an_environment_with_torch_installs_capdist_alone(tmp_path):
    root = Path(__file__).resolve().parents[2]
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-build-isolation",
                           "--report", str(report), "-e", str(root)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert names == {"capdist"}  # the user's torch and torchvision stay as they are
