"""Offline mode and the repo-id rule are stated once: huggingface_hub's setting, `cage.hub_ids.looks_like_repo_id`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cage.hub_ids import looks_like_repo_id

SRC = Path(__file__).resolve().parents[1] / "src" / "cage"


@pytest.mark.parametrize(
    "name, expected",
    [("cage/maxvit-va", True), ("owner/name", True), ("./owner/name", False), ("/abs/x", False),
     ("~/models/x", False), ("folder", False), ("a/b/c", False), (Path("owner/name"), True)],
)  # fmt: skip
def test_repo_id_shape(name, expected):
    assert looks_like_repo_id(name) is expected


def test_no_module_reads_the_offline_variable_itself():
    # Everything asks huggingface_hub (is_offline_mode), which also honours TRANSFORMERS_OFFLINE.
    readers = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
               if re.search(r"environ(\.get)?\W+[\"']HF_HUB_OFFLINE", p.read_text())]  # fmt: skip
    assert readers == []


def test_offline_errors_follow_huggingface_hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from cage.face_detection_cage import resolve_yunet_model
    from cage.model_folder import ModelLoadError, load_model_and_processor

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1 forbids downloading"):
        load_model_and_processor("owner/name")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1"):
        resolve_yunet_model()
