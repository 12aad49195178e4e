"""transformers' own common tests, applied to CAGE as transformers applies them to its TimmWrapper model.

``ModelTesterMixin``, ``ConfigTester`` and ``ImageProcessingTestMixin`` come from the source release of the
installed transformers version (see ``transformers_common.py``: downloaded once into a cache, never copied
here). Skips: the ones transformers' ``tests/models/timm_wrapper/test_modeling_timm_wrapper.py`` uses (of its
initialisation skips only ``test_can_init_all_missing_weights`` exists in 5.24), plus the few below, each with
its reason; ``test_init_weights_can_init_buffers`` and the mismatched-shape loading tests run and pass.
Marked ``transformers_mixins``: CI runs them; deselect locally with ``-m "not transformers_mixins"``.
"""

from __future__ import annotations

import inspect
import unittest

import pytest
import torch

import cage  # noqa: F401  (registers the Auto classes)
from cage import CageConfig, CageForExpressionInference, CageImageProcessor
from transformers_common import load_common_tests

pytestmark = pytest.mark.transformers_mixins

COMMON = load_common_tests()
ModelTesterMixin = COMMON["test_modeling_common"].ModelTesterMixin
floats_tensor = COMMON["test_modeling_common"].floats_tensor
ConfigTester = COMMON["test_configuration_common"].ConfigTester
ImageProcessingTestMixin = COMMON["test_image_processing_common"].ImageProcessingTestMixin
ImageProcessingTester = COMMON["test_image_processing_common"].ImageProcessingTester

# timm's `test_maxvit` (0.96 M parameters): the CAGE default's family (MaxViT: BatchNorm, relative-position
# tables and non-persistent index buffers), at 32 px so that the ~300 common tests stay quick.
BACKBONE = "test_maxvit"
IMAGE_SIZE = 32
CONFIG_KWARGS = {"backbone": BACKBONE, "image_size": IMAGE_SIZE, "head_hidden_size": 16}


class CageModelTester:
    def __init__(self, parent, batch_size: int = 3, is_training: bool = True):
        self.parent = parent
        self.batch_size = batch_size
        self.is_training = is_training
        self.image_size = IMAGE_SIZE
        self.num_channels = 3

    def get_config(self) -> CageConfig:
        return CageConfig(**CONFIG_KWARGS)

    def prepare_config_and_inputs_for_common(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), {"pixel_values": pixel_values}


class CageModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (CageForExpressionInference,)
    pipeline_model_mapping = {}

    # As transformers' TimmWrapper test:
    test_resize_embeddings = False
    test_head_masking = False
    test_pruning = False
    has_attentions = False
    test_model_parallel = False

    def setUp(self):
        self.model_tester = CageModelTester(self)
        self.config_tester = ConfigTester(self, config_class=CageConfig, has_text_modality=False, common_properties=[])

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels:  # the combined objective: expression classes and valence/arousal
            batch = self.model_tester.batch_size
            inputs_dict["labels"] = torch.zeros(batch, dtype=torch.long, device=torch_device())
            inputs_dict["regression_labels"] = torch.zeros(batch, 2, device=torch_device())
        return inputs_dict

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_hidden_states_output(self):
        # As TimmWrapper's own version: one map per trunk stage (timm's forward_intermediates).
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        model = CageForExpressionInference(config).eval()
        with torch.no_grad():
            outputs = model(**inputs_dict, output_hidden_states=True)
        expected = [[IMAGE_SIZE // info["reduction"]] * 2 for info in model.trunk.feature_info]
        self.assertEqual([list(h.shape[2:]) for h in outputs.hidden_states], expected)
        self.assertEqual(len(outputs.hidden_states), 5)

    def test_forward_signature(self):
        # As TimmWrapper's own version.
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        signature = inspect.signature(CageForExpressionInference(config).forward)
        self.assertListEqual([*signature.parameters.keys()][:1], ["pixel_values"])

    # Skips of transformers' TimmWrapper test (its initialisation skips are NOT taken: CAGE passes those).
    @unittest.skip(reason="CAGE models have no inputs_embeds (as TimmWrapper)")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="CAGE models have no inputs_embeds (as TimmWrapper)")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(reason="output_attentions is not supported (as TimmWrapper)")
    def test_torchscript_output_attentions(self):
        pass

    @unittest.skip(reason="no attentions to retain (as TimmWrapper)")
    def test_retain_grad_hidden_states_attentions(self):
        pass

    @unittest.skip(
        reason="as TimmWrapper (initialisation managed on the timm side): it compares __init__ weights with "
        "_init_weights() ones bit for bit, and a fresh CAGE trunk keeps timm's own initialisation (transformers "
        "exempts timm weights in this test). Head and meta-device initialisation: test_model_conformance.py"
    )
    def test_can_init_all_missing_weights(self):
        pass

    @unittest.skip(reason="timm models have no tiny hub checkpoint (as TimmWrapper)")
    def test_model_is_small(self):
        pass

    # Further skips, each with its reason.
    _CHECKPOINTING = (
        "needs transformers' GradientCheckpointingLayer; the trunk checkpoints its stages through timm's "
        "set_grad_checkpointing (same gradients: test_model_conformance.py::test_gradient_checkpointing_same_gradients)"
    )

    @unittest.skip(reason=_CHECKPOINTING)
    def test_gradient_checkpointing_enable_disable(self):
        pass

    @unittest.skip(reason=_CHECKPOINTING)
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(reason=_CHECKPOINTING)
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(reason=_CHECKPOINTING)
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass


def torch_device() -> str:
    return COMMON["test_modeling_common"].torch_device


class CageImageProcessingTester(ImageProcessingTester):
    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"height": 20, "width": 20})
        kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])
        kwargs.setdefault("image_std", [0.5, 0.5, 0.5])
        super().__init__(parent, **kwargs)
        # transformers finds a model's processors by its test folder's name; CAGE names its one backend.
        self.image_processing_classes = {"pil": CageImageProcessor}


class CageImageProcessingTest(ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = CageImageProcessingTester

    @unittest.skip(reason="PIL only by design: the processor's crops and colour handling (to_rgb) are PIL operations")
    def test_new_models_require_torchvision_backend(self):
        pass
