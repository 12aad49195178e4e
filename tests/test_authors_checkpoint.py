"""Converting the CAGE authors' checkpoints: a torchvision ``maxvit_t`` with their head, saved their way.

The networks are built exactly as the authors' ``models/AffectNet*_Maxvit_*/train.py`` build them (with
seeded random weights instead of ImageNet ones: nothing is downloaded), saved with
``torch.save(model.state_dict())``, converted, and compared on face crops from the shared real photos.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image
from torch import nn

from safetensors.torch import load_file, save_file

from cage.face_detection_cage import create_face_detector
from cage.hub import AuthorsCheckpointError, convert_authors_checkpoint
from conftest import BLOCK_CAGE_IMPORTS, face_photo

torchvision = pytest.importorskip("torchvision")

# Loads a converted folder as remote code where `cage` cannot be imported (torchvision trunk included).
REMOTE_SCRIPT = BLOCK_CAGE_IMPORTS + textwrap.dedent(
    """
    import sys

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    with torch.no_grad():
        output = model(pixel_values=load_file(sys.argv[2])["pixel_values"])
    save_file({"logits": output.logits.contiguous(), "regression": output.regression.contiguous()}, sys.argv[3])
    """
)


def _authors_network(num_outputs: int, valence_arousal_head: bool, seed: int) -> nn.Module:
    """torchvision maxvit_t with the authors' classifier; every parameter and BN statistic random."""
    torch.manual_seed(seed)
    network = torchvision.models.maxvit_t(weights=None)  # the authors: weights="DEFAULT" (ImageNet)
    channels = network.classifier[3].in_features
    layers = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(channels), nn.Linear(channels, channels), nn.Tanh()]
    if valence_arousal_head:  # their valence-arousal scripts add dropout and keep two outputs
        layers.append(nn.Dropout(0.3))
    layers.append(nn.Linear(channels, num_outputs, bias=False))
    network.classifier = nn.Sequential(*layers)
    with torch.no_grad():  # no identity LayerNorms or unit BN statistics that could hide a mix-up
        for module in network.modules():
            if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        network.classifier[-1].weight.normal_(0.0, 1.0)  # outputs of order 1, where a 1e-4 difference is small
    return network.eval()


@pytest.fixture(scope="module")
def face_pixel_values():
    from cage.presets import make_config, make_image_processor

    processor = make_image_processor(make_config("affectnet8", image_size=224))
    detector = create_face_detector("dlib")
    crops = []
    for name in ("obama.jpg", "two_people.jpg"):
        with Image.open(face_photo(name)) as image:
            image = image.convert("RGB")
            crops += [processor.crop(image, d.box) for d in detector.detect(image)]
    assert len(crops) == 3
    return processor(crops, return_tensors="pt")["pixel_values"]


@pytest.mark.parametrize(
    ("variant", "num_outputs", "va_head", "labels"),
    [
        ("affectnet8-combined", 10, False, ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"]),
        ("affectnet7-va", 2, True, []),
    ],
)  # fmt: skip
def test_conversion_parity_on_real_faces(tmp_path, face_pixel_values, variant, num_outputs, va_head, labels):
    from transformers import AutoImageProcessor, AutoModel

    network = _authors_network(num_outputs, va_head, seed=num_outputs)
    checkpoint = tmp_path / "model.pt"
    torch.save(network.state_dict(), checkpoint)  # as their train.py does
    with torch.no_grad():
        reference = network(face_pixel_values)

    out = convert_authors_checkpoint(checkpoint, variant, tmp_path / "converted", weights_status="untrained")
    config = json.loads((out / "config.json").read_text())
    assert config["backbone_library"] == "torchvision" and config["backbone"] == "maxvit_t"
    assert [config["id2label"][str(i)] for i in range(len(labels))] == labels and len(config["id2label"]) == len(labels)
    assert config["objective"] == ("valence_arousal" if va_head else "combined")
    assert config["training_recipe"]["variant"] == variant
    processor = AutoImageProcessor.from_pretrained(out)
    assert processor.size == {"height": 224, "width": 224} and processor.crop_target == "face"

    model = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        converted = model(pixel_values=face_pixel_values)
    assert converted.logits.shape == (3, len(labels)) and converted.regression.shape == (3, 2)
    # The required tolerance for "the same predictions": max absolute difference <= 1e-4.
    torch.testing.assert_close(converted.logits, reference[:, : len(labels)], rtol=0, atol=1e-4)
    torch.testing.assert_close(converted.regression, reference[:, len(labels) :], rtol=0, atol=1e-4)
    assert reference.std(dim=0).min() > 1e-3  # the faces give different outputs: the comparison means something

    if labels:  # once: the same folder as remote code, in a process that cannot import cage
        save_file({"pixel_values": face_pixel_values.contiguous()}, tmp_path / "inputs.safetensors")
        env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}
        completed = subprocess.run(
            [sys.executable, "-c", REMOTE_SCRIPT, str(out), str(tmp_path / "inputs.safetensors"), str(tmp_path / "remote.safetensors")],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-3000:]
        remote = load_file(tmp_path / "remote.safetensors")
        torch.testing.assert_close(remote["logits"], reference[:, : len(labels)], rtol=0, atol=1e-4)
        torch.testing.assert_close(remote["regression"], reference[:, len(labels) :], rtol=0, atol=1e-4)


def test_wrong_variant_and_foreign_files_are_refused(tmp_path):
    # A head with 10 outputs is an AffectNet-8 combined model, not AffectNet-7.
    state = {
        "stem.0.0.weight": torch.zeros(64, 3, 3, 3),
        "classifier.2.weight": torch.ones(512),
        "classifier.2.bias": torch.zeros(512),
        "classifier.3.weight": torch.zeros(512, 512),
        "classifier.3.bias": torch.zeros(512),
        "classifier.5.weight": torch.zeros(10, 512),
    }
    torch.save(state, tmp_path / "head.pt")
    with pytest.raises(AuthorsCheckpointError, match="10 outputs.*affectnet7-combined"):
        convert_authors_checkpoint(tmp_path / "head.pt", "affectnet7-combined", tmp_path / "out")
    torch.save({**state, "classifier.5.bias": torch.zeros(10)}, tmp_path / "bias.pt")
    with pytest.raises(AuthorsCheckpointError, match="classifier.5.bias"):
        convert_authors_checkpoint(tmp_path / "bias.pt", "affectnet8-combined", tmp_path / "out")
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module, not a state dict
    with pytest.raises(AuthorsCheckpointError, match="weights_only"):
        convert_authors_checkpoint(tmp_path / "module.pt", "affectnet8-combined", tmp_path / "out")
    with pytest.raises(ValueError, match="unknown variant"):
        convert_authors_checkpoint(tmp_path / "head.pt", "emotic-combined", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_reports_unreadable_checkpoint_in_one_line(tmp_path, capsys):
    from cage.cli import main

    missing = tmp_path / "model.pt"
    assert main(["convert-authors-checkpoint", str(missing), "--variant", "affectnet8-va", "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"cage convert-authors-checkpoint: authors' checkpoint {missing} does not exist"
    ]
    assert not (tmp_path / "o").exists()
