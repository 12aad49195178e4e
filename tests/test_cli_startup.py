"""`cage --help` starts fast: neither the CLI nor `import cage` loads torch or transformers (issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("torch", "transformers", "timm", "torchvision", "datasets", "accelerate", "numpy", "PIL", "cv2")
HELP_COMMANDS = [[], ["predict"], ["webcam"], ["bench"], ["train"], ["prepare"], ["evaluate"], ["push"],
                 ["init-model"], ["export", "onnx"], ["convert-authors-checkpoint"]]  # fmt: skip


def _modules_after(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "cage")
def test_help_imports_neither_torch_nor_transformers(command):
    code = (
        "import contextlib, io\nfrom cage.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    try:\n        main({command + ['--help']!r})\n    except SystemExit as e:\n        assert e.code == 0\n"
        "assert 'usage: cage' in out.getvalue()"
    )
    assert _modules_after(code) == []


def test_import_cage_is_light_and_registers_with_auto_classes_once_transformers_comes():
    assert _modules_after("import cage") == []
    # imported before transformers: the hook registers the Auto classes when transformers arrives
    code = (
        "import cage\nfrom transformers import AutoConfig, AutoImageProcessor, AutoModel\n"
        "config = AutoConfig.for_model('cage')\nassert type(config).__name__ == 'CageConfig'\n"
        "from transformers.models.auto.modeling_auto import MODEL_MAPPING\n"
        "assert MODEL_MAPPING[type(config)] is cage.CageForExpressionInference\n"
        "assert cage.CageImageProcessor.__name__ == 'CageImageProcessor'"
    )
    assert "torch" in _modules_after(code)
    # imported after transformers: registered at once
    assert "torch" in _modules_after(
        "import transformers\nimport cage\nfrom transformers import AutoConfig\nAutoConfig.for_model('cage')"
    )


def test_hub_cli_variant_names_match_the_converter():
    from cage.hub.authors_checkpoint import VARIANTS
    from cage.hub.cli import VARIANT_NAMES

    assert VARIANT_NAMES == list(VARIANTS)
