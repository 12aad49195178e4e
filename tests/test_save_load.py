"""Round trips of saved models: remote code where ``cage`` cannot be imported, and ``import cage``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file

from cage import CageForExpressionInference, CageImageProcessor
from conftest import BLOCK_CAGE_IMPORTS, face_crops, face_photo


def _non_persistent_buffers(model: torch.nn.Module) -> dict[str, np.ndarray]:
    persistent = set(model.state_dict())
    return {name: b.detach().cpu().numpy() for name, b in model.named_buffers() if name not in persistent}


def _real_face_crops(processor: CageImageProcessor) -> list[Image.Image]:
    crops = face_crops(processor, ["obama.jpg", "two_people.jpg", "32bit.png"])
    assert len(crops) == 4
    return crops


REMOTE_SCRIPT = BLOCK_CAGE_IMPORTS + textwrap.dedent(
    """
    import sys

    import numpy as np, torch
    from PIL import Image
    from safetensors.numpy import save_file
    from transformers import AutoImageProcessor, AutoModel

    model_dir, crops_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
    model = AutoModel.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    crops = [Image.open(f"{crops_dir}/{i}.png") for i in range(int(sys.argv[4]))]
    pixel_values = processor(crops, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        output = model(pixel_values=pixel_values)
    persistent = set(model.state_dict())
    # logits/regression are column slices of one head output: copy them contiguous before writing.
    result = {"logits": output.logits.contiguous().numpy(), "regression": output.regression.contiguous().numpy(),
              "pixel_values": pixel_values.numpy()}
    for name, buffer in model.named_buffers():
        if name not in persistent:
            result["buffer." + name] = buffer.numpy()
    save_file(result, out)
    """
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_model_dir):
    from transformers import AutoImageProcessor, AutoModel

    import cage  # noqa: F401

    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(tiny_model_dir, backend="pil")
    crops = _real_face_crops(processor)
    crops_dir = tmp_path_factory.mktemp("crops")
    for i, crop in enumerate(crops):
        crop.save(crops_dir / f"{i}.png")  # lossless: both processes see the same pixels
    pixel_values = processor(crops, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        output = model(pixel_values=pixel_values)
    return model, processor, crops, crops_dir, pixel_values, output


def test_saved_folder_is_safe_and_self_describing(tiny_model_dir):
    files = {p.name for p in Path(tiny_model_dir).iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json"} <= files
    assert {"configuration_cage.py", "modeling_cage.py", "image_processing_cage.py"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    config = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_cage.CageConfig",
        "AutoModel": "modeling_cage.CageForExpressionInference",
    }
    assert config["id2label"]["7"] == "Contempt" and config["weights_status"] == "untrained"
    processor = json.loads((Path(tiny_model_dir) / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == {"AutoImageProcessor": "image_processing_cage.CageImageProcessor"}
    assert processor["size"] == {"height": 64, "width": 64} and processor["crop_target"] == "face"
    # The flat model files must not import the rest of the package (remote code cannot follow them).
    for name in ("configuration_cage.py", "modeling_cage.py", "image_processing_cage.py"):
        text = (Path(tiny_model_dir) / name).read_text()
        assert "from cage" not in text and "import cage" not in text and "from .." not in text


def test_remote_code_round_trip_without_cage(saved, tiny_model_dir, tmp_path):
    model, _, crops, crops_dir, pixel_values, output = saved
    out = tmp_path / "remote.safetensors"
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}
    completed = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(tiny_model_dir), str(crops_dir), str(out), str(len(crops))],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = load_file(str(out))
    np.testing.assert_allclose(remote["pixel_values"], pixel_values.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(remote["logits"], output.logits.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(remote["regression"], output.regression.numpy(), rtol=0, atol=1e-5)
    buffers = _non_persistent_buffers(model)
    assert len(buffers) > 0
    assert {k[len("buffer.") :] for k in remote if k.startswith("buffer.")} == set(buffers)
    for name, value in buffers.items():
        np.testing.assert_array_equal(remote["buffer." + name], value, err_msg=name)


def test_import_cage_round_trip_without_remote_code(saved, tiny_model_dir):
    from transformers import AutoModel

    model, _, _, _, pixel_values, output = saved
    fresh_built = CageForExpressionInference(model.config)  # what the buffers must equal
    reloaded = AutoModel.from_pretrained(tiny_model_dir, trust_remote_code=False).eval()
    assert type(reloaded) is CageForExpressionInference
    with torch.no_grad():
        again = reloaded(pixel_values=pixel_values)
    torch.testing.assert_close(again.logits, output.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(again.regression, output.regression, rtol=0, atol=1e-5)
    for name, value in _non_persistent_buffers(fresh_built).items():
        np.testing.assert_array_equal(_non_persistent_buffers(reloaded)[name], value, err_msg=name)


def test_crops_predict_differently_per_face(saved):
    # Guards against a degenerate round trip (e.g. every crop mapped to the same input).
    _, _, _, _, pixel_values, output = saved
    assert not torch.allclose(pixel_values[0], pixel_values[1])
    assert not torch.allclose(output.logits[0], output.logits[1])


def test_plain_save_pretrained_keeps_the_pipeline_loadable(tiny_model_dir, tmp_path):
    from transformers import AutoImageProcessor, AutoModel, pipeline

    model = AutoModel.from_pretrained(tiny_model_dir)
    processor = AutoImageProcessor.from_pretrained(tiny_model_dir, backend="pil")
    assert model.config.custom_pipelines
    resaved = tmp_path / "resaved"
    model.save_pretrained(resaved)  # plain transformers calls, no cage helper
    processor.save_pretrained(resaved)
    assert {"pipeline_cage.py", "face_detection_cage.py", "image_processing_cage.py"} <= {p.name for p in resaved.iterdir()}
    faces = pipeline(model=str(resaved), trust_remote_code=True, device="cpu")(str(face_photo("two_people.jpg")))
    assert len(faces) == 2 and faces[0]["box"][0] < faces[1]["box"][0]
