"""transformers conformance of the CAGE model (issue 12): initialisation on every path, strict arguments,
hidden states, checkpointing flag, timm pooling for any backbone, processor settings from the backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONE, TINY_SIZE, face_photo
from PIL import Image

import cage  # noqa: F401  (registers the Auto classes)
from cage import CageForExpressionInference
from cage.image_processing_cage import to_rgb
from cage.presets import make_config, make_image_processor
from transformers import AutoImageProcessor, AutoModel
from transformers.image_utils import PILImageResampling


def _tiny(**overrides) -> CageForExpressionInference:
    torch.manual_seed(0)
    return CageForExpressionInference(make_config(backbone=TINY_BACKBONE, image_size=TINY_SIZE, **overrides))


def test_fresh_head_follows_initializer_range():
    model = _tiny(initializer_range=1e-3)
    assert model.head.output.weight.std().item() == pytest.approx(1e-3, rel=0.1)
    assert model.head.hidden.weight.std().item() == pytest.approx(1e-3, rel=0.1)
    assert torch.equal(model.head.hidden.bias, torch.zeros_like(model.head.hidden.bias))
    assert torch.equal(model.head.norm.weight, torch.ones_like(model.head.norm.weight))


def test_retarget_to_seven_labels_initialises_the_new_output_layer(tmp_path):
    model = _tiny(initializer_range=0.05)
    model.save_pretrained(tmp_path)
    for _ in range(2):  # the NaN of issue 12 came back every time
        retargeted = CageForExpressionInference.from_pretrained(tmp_path, num_labels=7, ignore_mismatched_sizes=True)
        weight = retargeted.head.output.weight
        assert weight.shape == (7 + 2, model.head.hidden.out_features)
        assert torch.isfinite(weight).all()
        assert weight.std().item() == pytest.approx(0.05, rel=0.15)
        # everything that matched is loaded, not re-initialised
        torch.testing.assert_close(retargeted.head.hidden.weight, model.head.hidden.weight, rtol=0, atol=0)
        trunk, loaded = model.trunk.state_dict(), retargeted.trunk.state_dict()
        assert all(torch.equal(trunk[k], loaded[k]) for k in trunk)
        out = retargeted(pixel_values=torch.randn(1, 3, TINY_SIZE, TINY_SIZE))
        assert out.logits.shape == (1, 7) and torch.isfinite(out.logits).all()


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_init_weights_after_to_empty_initialises_every_tensor(library):
    if library == "timm":
        config = make_config(backbone=TINY_BACKBONE, image_size=TINY_SIZE, initializer_range=0.03)
    else:
        config = make_config(backbone="maxvit_t", backbone_library="torchvision", initializer_range=0.03)
    with torch.device("meta"):
        model = CageForExpressionInference(config)
    model.to_empty(device="cpu")
    for tensor in (*model.parameters(), *model.buffers()):
        tensor.data.fill_(7)
    model.init_weights()
    still_seven = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if bool((t == 7).all())]
    assert still_seven == []
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batch_norms  # MaxViT's MBConv blocks have them
    for bn in batch_norms:
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
        assert int(bn.num_batches_tracked) == 0
    assert model.head.output.weight.std().item() == pytest.approx(0.03, rel=0.15)
    # relative-position indices (timm: non-persistent buffers; torchvision: persistent) are rebuilt exactly
    torch.manual_seed(0)
    fresh = dict(CageForExpressionInference(config).named_buffers())
    indices = [n for n, _ in model.named_buffers() if "index" in n]
    assert indices
    for name in indices:
        assert torch.equal(dict(model.named_buffers())[name], fresh[name]), name


def test_output_hidden_states_one_map_per_stage():
    model = _tiny().eval()
    x = torch.randn(2, 3, TINY_SIZE, TINY_SIZE)
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True)
        plain = model(pixel_values=x)
    assert plain.hidden_states is None
    # timm's feature_info: the stem and the 4 MaxViT stages, strides 2, 4, 8, 16, 32
    assert [tuple(h.shape) for h in out.hidden_states] == [
        (2, info["num_chs"], TINY_SIZE // info["reduction"], TINY_SIZE // info["reduction"])
        for info in model.trunk.feature_info
    ]
    assert len(out.hidden_states) == 5
    torch.testing.assert_close(out.logits, plain.logits)
    as_tuple = model(pixel_values=x, output_hidden_states=True, return_dict=False)
    assert len(as_tuple) == 4 and len(as_tuple[-1]) == 5  # logits, regression, pooled, hidden states


def test_output_hidden_states_of_the_torchvision_trunk():
    torch.manual_seed(0)
    config = make_config(backbone="maxvit_t", backbone_library="torchvision", image_size=224)
    model = CageForExpressionInference(config).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True)
        plain = model(pixel_values=x)
    assert [tuple(h.shape) for h in out.hidden_states] == [
        (1, 64, 112, 112), (1, 64, 56, 56), (1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7)
    ]  # fmt: skip
    torch.testing.assert_close(out.logits, plain.logits)


def test_unknown_arguments_raise_and_attentions_are_refused():
    model = _tiny()
    x = torch.randn(1, 3, TINY_SIZE, TINY_SIZE)
    with pytest.raises(TypeError, match="label"):
        model(pixel_values=x, label=torch.tensor([0]))
    with pytest.raises(TypeError, match="regresion_labels"):
        model(pixel_values=x, regresion_labels=torch.zeros(1, 2))
    with pytest.raises(ValueError, match="output_attentions"):
        model(pixel_values=x, output_attentions=True)


def test_checkpointing_flag_and_input_embeddings():
    model = _tiny()
    assert not model.is_activation_checkpointing
    def trunk_checkpoints() -> bool:  # timm keeps the flag on its stages
        return any(getattr(m, "grad_checkpointing", False) for m in model.trunk.modules())

    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing and trunk_checkpoints()
    model.activation_checkpointing_disable()
    assert not model.is_activation_checkpointing and not trunk_checkpoints()
    assert model.get_input_embeddings() is None


def test_gradient_checkpointing_same_gradients():
    model = _tiny(objective="combined").train()
    x = torch.randn(2, 3, TINY_SIZE, TINY_SIZE)
    labels, regression_labels = torch.tensor([0, 3]), torch.tensor([[0.1, -0.2], [0.5, 0.3]])

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(0)
        model(pixel_values=x, labels=labels, regression_labels=regression_labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.activation_checkpointing_enable()
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() and len(plain) == len(list(model.parameters()))
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_maxvit_head_is_applied_once():
    # timm's MaxViT head (norm + Linear + Tanh pre-logits) would duplicate the CAGE head: it is reset away,
    # and the pooled features are the plain average of the final feature map.
    model = _tiny().eval()
    assert not [n for n, _ in model.named_parameters() if n.startswith("trunk.head.")]
    x = torch.randn(2, 3, TINY_SIZE, TINY_SIZE)
    with torch.no_grad():
        out = model(pixel_values=x)
        features = model.trunk.forward_features(x)
        expected = model.head(features.mean(dim=(2, 3)))
    torch.testing.assert_close(out.pooled_features, features.mean(dim=(2, 3)))
    torch.testing.assert_close(torch.cat([out.logits, out.regression], dim=1), expected)


def test_processor_settings_come_from_the_backbone():
    pico = make_image_processor(make_config(backbone=TINY_BACKBONE, image_size=TINY_SIZE))
    assert list(pico.image_mean) == [0.5, 0.5, 0.5] and list(pico.image_std) == [0.5, 0.5, 0.5]
    assert pico.resample == PILImageResampling.BICUBIC
    tiny_tf = make_image_processor(make_config(backbone="maxvit_tiny_tf_224"))
    np.testing.assert_allclose(tiny_tf.image_mean, [0.485, 0.456, 0.406])
    np.testing.assert_allclose(tiny_tf.image_std, [0.229, 0.224, 0.225])
    tv = make_image_processor(make_config(backbone="maxvit_t", backbone_library="torchvision"))
    np.testing.assert_allclose(tv.image_mean, [0.485, 0.456, 0.406])
    assert tv.resample == PILImageResampling.BICUBIC


def test_saved_processor_records_its_settings_and_loads_without_backend_warning(tiny_model_dir, caplog):
    saved = json.loads((tiny_model_dir / "preprocessor_config.json").read_text())
    assert saved["image_mean"] == [0.5, 0.5, 0.5] and saved["resample"] == int(PILImageResampling.BICUBIC)
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            processor = AutoImageProcessor.from_pretrained(tiny_model_dir)
    finally:
        hf_logging.disable_propagation()
    assert type(processor).__name__ == "CageImageProcessor"
    assert not [r for r in caplog.records if "backend" in r.getMessage()]
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

    from cage import CageConfig

    # registered as what it is, a PIL-backend processor, and nothing else
    assert IMAGE_PROCESSOR_MAPPING[CageConfig] == {"pil": type(processor)}


# Small versions of each family, so that init-model -> predict stays a few seconds per backbone.
SMALL_SWIN = {"window_size": 2, "embed_dim": 24, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}
BACKBONES = [("swin_tiny_patch4_window7_224", 64, SMALL_SWIN), ("test_convnext", 64, {}), ("test_vit", 64, {})]


@pytest.mark.parametrize("backbone,size,kwargs", BACKBONES, ids=["swin", "convnext", "vit"])
def test_init_model_then_predict(backbone, size, kwargs, tmp_path, capsys):
    from cage.cli import main

    folder = tmp_path / "model"
    args = ["init-model", str(folder), "--backbone", backbone, "--image-size", str(size)]
    assert main([*args, "--backbone-kwargs", json.dumps(kwargs)] if kwargs else args) == 0
    photo = face_photo("obama.jpg")
    capsys.readouterr()
    assert main(["predict", str(photo), "--model", str(folder), "--precision", "fp32", "--no-progress"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    (face,) = record["faces"]  # dlib finds the one face
    assert face["expression"] == max(face["probabilities"], key=face["probabilities"].get)
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    # On a face crop (--detector none) the CLI's numbers are exactly the model's own on that crop.
    crop = to_rgb(Image.open(photo)).crop((330, 120, 650, 440))
    crop.save(tmp_path / "crop.png")
    argv = ["predict", str(tmp_path / "crop.png"), "--model", str(folder), "--precision", "fp32", "--detector", "none"]
    assert main([*argv, "--no-progress"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    (face,) = record["faces"]
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        out = model(**processor([crop], return_tensors="pt"))
    probabilities = out.logits.softmax(-1)[0].numpy()
    assert list(face["probabilities"]) == [model.config.id2label[i] for i in range(model.config.num_labels)]
    np.testing.assert_allclose(list(face["probabilities"].values()), probabilities, atol=1e-5)
    assert face["valence"] == pytest.approx(float(out.regression[0, 0].clamp(-1, 1)), abs=1e-5)
    assert model.config.pooling == "timm"
    assert out.pooled_features.shape == (1, model.trunk.num_features)
