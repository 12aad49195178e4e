"""The authors' network is cage's default: a torchvision ``maxvit_t`` with their head, and their checkpoints.

The networks are built exactly as the authors' ``models/AffectNet*_Maxvit_*/train.py`` build them (with
seeded random weights instead of ImageNet ones: nothing is downloaded), saved with
``torch.save(model.state_dict())``, converted, and compared on face crops from the shared real photos.
The default model is started from a stand-in for torchvision's ImageNet file ``maxvit_t-bc5ab103.pth`` (random
weights saved as torchvision ships them) and compared with the authors' network built from the same file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from safetensors.torch import load_file, save_file

from cage import CageConfig, CageForExpressionInference
from cage.hub import AuthorsCheckpointError, convert_authors_checkpoint
from cage.hub.authors_checkpoint import AUTHORS_BACKBONE
from conftest import BLOCK_CAGE_IMPORTS, face_crops

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


# The authors' network is built here, in the test, as their train.py builds it, and not with the library's
# `cage.runtimes.benchmark.build_authors_network` (the benchmark's speed reference): the conversion under test
# must match an independent reading of their code, including the valence-arousal head's Dropout (which shifts
# the output layer to classifier.6) and non-trivial norm statistics that the library's builder has no need for.
# This is the one test-side copy; other tests that need the authors' network should use these functions.
def _randomised_maxvit_t(seed: int) -> nn.Module:
    """torchvision maxvit_t with its ImageNet classifier; every parameter and BN statistic random."""
    torch.manual_seed(seed)
    network = torchvision.models.maxvit_t(weights=None)  # the authors: weights="DEFAULT" (ImageNet)
    with torch.no_grad():  # no identity LayerNorms or unit BN statistics that could hide a mix-up
        for module in network.modules():
            if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return network


def _authors_head(network: nn.Module, num_outputs: int, valence_arousal_head: bool) -> nn.Module:
    """Replace torchvision's classifier by the authors' head (their train.py), with random weights."""
    channels = network.classifier[3].in_features
    layers = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(channels), nn.Linear(channels, channels), nn.Tanh()]
    if valence_arousal_head:  # their valence-arousal scripts add dropout and keep two outputs
        layers.append(nn.Dropout(0.3))
    layers.append(nn.Linear(channels, num_outputs, bias=False))
    network.classifier = nn.Sequential(*layers)
    with torch.no_grad():
        network.classifier[2].weight.uniform_(0.5, 1.5)
        network.classifier[2].bias.uniform_(-0.2, 0.2)
        network.classifier[-1].weight.normal_(0.0, 1.0)  # outputs of order 1, where a 1e-5 difference is small
    return network.eval()


def _authors_network(num_outputs: int, valence_arousal_head: bool, seed: int) -> nn.Module:
    """torchvision maxvit_t with the authors' classifier; every parameter and BN statistic random."""
    return _authors_head(_randomised_maxvit_t(seed), num_outputs, valence_arousal_head)


@pytest.fixture(scope="module")
def face_pixel_values():
    from cage.presets import make_config, make_image_processor

    processor = make_image_processor(make_config("affectnet8", image_size=224))
    crops = face_crops(processor, ["obama.jpg", "two_people.jpg"])
    assert len(crops) == 3
    return processor(crops, return_tensors="pt")["pixel_values"]


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """Stand-in for torchvision's ``maxvit_t-bc5ab103.pth``: a random maxvit_t (ImageNet classifier included),
    saved as torchvision ships it (``torch.save`` of the whole state dict)."""
    path = tmp_path_factory.mktemp("imagenet") / "maxvit_t-bc5ab103.pth"
    torch.save(_randomised_maxvit_t(seed=11).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def default_model():
    """The default CAGE model as `cage init-model` and training build it (random weights), built once."""
    from cage.presets import make_config

    torch.manual_seed(0)
    return CageForExpressionInference(make_config("affectnet8")).eval()


def test_default_architecture_is_the_authors_network(default_model, imagenet_file):
    from cage.presets import make_config
    from cage.training.arguments import TrainingArguments

    for config in (CageConfig(), make_config("affectnet8"), make_config("emotic"), default_model.config):
        assert (config.backbone, config.backbone_library, config.image_size) == (AUTHORS_BACKBONE, "torchvision", 224)
    assert TrainingArguments(data="d", output_dir="o").backbone == AUTHORS_BACKBONE
    # Other timm backbones stay available by name.
    assert make_config("affectnet8", backbone="maxvit_tiny_tf_224").backbone_library == "timm"
    assert CageConfig(backbone="test_vit").backbone_library == "timm"
    # A config.json without backbone_library (older than that field) keeps its timm trunk.
    assert CageConfig.from_dict({"backbone": "maxvit_tiny_tf_224"}).backbone_library == "timm"
    # Same modules, parameter names and shapes as torchvision's maxvit_t (classifier aside).
    reference = {k: v.shape for k, v in torch.load(imagenet_file, map_location="cpu", weights_only=True).items()}
    trunk = {k: v.shape for k, v in default_model.trunk.state_dict().items()}
    assert trunk == {k: v for k, v in reference.items() if not k.startswith("classifier.")}


def test_remote_code_needs_torchvision_only_for_torchvision_trunks():
    # transformers refuses remote code whose unguarded imports are missing; timm-only folders must not need torchvision.
    from transformers.dynamic_module_utils import get_imports

    import cage.modeling_cage

    assert "torchvision" not in get_imports(cage.modeling_cage.__file__)


def test_default_model_from_imagenet_file_with_authors_head_equals_authors_network(
    default_model, imagenet_file, face_pixel_values
):
    # The authors' train.py: torchvision's maxvit_t with ImageNet weights, classifier replaced by their head.
    authors = torchvision.models.maxvit_t(weights=None)
    authors.load_state_dict(torch.load(imagenet_file, map_location="cpu", weights_only=True))
    authors = _authors_head(authors, num_outputs=10, valence_arousal_head=False)

    default_model.load_backbone_weights(imagenet_file)
    assert default_model.config.weights_status == "imagenet_backbone"
    head = authors.classifier.state_dict()
    default_model.head.load_state_dict(
        {
            "norm.weight": head["2.weight"], "norm.bias": head["2.bias"],
            "hidden.weight": head["3.weight"], "hidden.bias": head["3.bias"],
            "output.weight": head["5.weight"],
        }
    )  # fmt: skip
    with torch.no_grad():
        reference = authors(face_pixel_values)
        output = default_model(pixel_values=face_pixel_values)
    torch.testing.assert_close(output.logits, reference[:, :8], rtol=0, atol=1e-5)
    torch.testing.assert_close(output.regression, reference[:, 8:], rtol=0, atol=1e-5)
    assert reference.std(dim=0).min() > 1e-3  # the faces give different outputs: the comparison means something


def test_imagenet_weights_offline(default_model, imagenet_file, tmp_path, monkeypatch):
    from cage.training.arguments import TrainingArguments
    from cage.training.loop import build_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # Offline without a file: one clear message naming the file to pass.
    with pytest.raises(RuntimeError, match=r"offline \(HF_HUB_OFFLINE=1\).*maxvit_t-bc5ab103\.pth.*--backbone-weights"):
        default_model.load_backbone_weights()
    args = TrainingArguments(data="d", output_dir="o", backbone_weights="download")
    with pytest.raises(ValueError, match="^--backbone-weights download: could not load .*maxvit_t-bc5ab103.pth"):
        build_model(args, "affectnet8", {}, log=lambda message: None)
    # A file of another network is refused, naming what does not fit.
    torch.save({"stem.conv1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "timm.pth")
    with pytest.raises(RuntimeError, match=r"do not fit torchvision maxvit_t: missing \['stem.0.0.weight'"):
        default_model.load_backbone_weights(tmp_path / "timm.pth")
    # torchvision's file already in torch hub's cache (where an online run put it) is used offline.
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "maxvit_t-bc5ab103.pth").symlink_to(imagenet_file)
    default_model.load_backbone_weights()
    saved = torch.load(imagenet_file, map_location="cpu", weights_only=True)
    for name, value in default_model.trunk.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0, msg=name)
    # Training from the file: the default trunk, initialised from it.
    model, processor = build_model(
        TrainingArguments(data="d", output_dir="o", backbone_weights=str(imagenet_file)), "affectnet8", {}, print
    )
    assert (model.config.backbone, model.config.weights_status) == ("maxvit_t", "imagenet_backbone")
    torch.testing.assert_close(model.trunk.stem[0][0].weight, saved["stem.0.0.weight"], rtol=0, atol=0)
    assert [list(processor.image_mean), list(processor.image_std)] == [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]]


@pytest.mark.parametrize(
    ("variant", "num_outputs", "va_head", "labels"),
    [
        ("affectnet8-combined", 10, False, ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"]),
        ("affectnet7-va", 2, True, []),
    ],
)  # fmt: skip
def test_conversion_parity_on_real_faces(
    tmp_path, face_pixel_values, default_model, variant, num_outputs, va_head, labels
):
    from transformers import AutoImageProcessor, AutoModel

    network = _authors_network(num_outputs, va_head, seed=num_outputs)
    checkpoint = tmp_path / "model.pt"
    torch.save(network.state_dict(), checkpoint)  # as their train.py does
    with torch.no_grad():
        reference = network(face_pixel_values)

    out = convert_authors_checkpoint(checkpoint, variant, tmp_path / "converted", weights_status="untrained")
    config = json.loads((out / "config.json").read_text())
    default = CageConfig()  # the conversion writes the default architecture
    assert (config["backbone_library"], config["backbone"]) == (default.backbone_library, default.backbone)
    assert (default.backbone_library, default.backbone) == ("torchvision", "maxvit_t")
    assert config["image_size"] == default.image_size
    shapes = {k: v.shape for k, v in load_file(out / "model.safetensors").items()}
    expected = {k: v.shape for k, v in default_model.state_dict().items()}
    if num_outputs == 10:  # AffectNet-8 combined: exactly the tensors of the default model
        assert shapes == expected
    else:  # the valence-arousal head: the same trunk
        trunk = {k: v for k, v in expected.items() if k.startswith("trunk.")}
        assert {k: v for k, v in shapes.items() if k.startswith("trunk.")} == trunk
    assert [config["id2label"][str(i)] for i in range(len(labels))] == labels and len(config["id2label"]) == len(labels)
    assert config["objective"] == ("valence_arousal" if va_head else "combined")
    assert config["training_recipe"]["variant"] == variant
    processor = AutoImageProcessor.from_pretrained(out)
    assert processor.size == {"height": 224, "width": 224} and processor.crop_target == "face"

    model = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        converted = model(pixel_values=face_pixel_values)
    assert converted.logits.shape == (3, len(labels)) and converted.regression.shape == (3, 2)
    # The required tolerance for "the same predictions": max absolute difference <= 1e-5.
    torch.testing.assert_close(converted.logits, reference[:, : len(labels)], rtol=0, atol=1e-5)
    torch.testing.assert_close(converted.regression, reference[:, len(labels) :], rtol=0, atol=1e-5)
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
        torch.testing.assert_close(remote["logits"], reference[:, : len(labels)], rtol=0, atol=1e-5)
        torch.testing.assert_close(remote["regression"], reference[:, len(labels) :], rtol=0, atol=1e-5)


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
