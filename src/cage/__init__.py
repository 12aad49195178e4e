"""cage: the CAGE facial-expression model (expression + valence/arousal) as a Hugging Face model.

Importing ``cage`` registers the model with the transformers Auto classes, so that
``AutoModel.from_pretrained(path)`` and ``AutoImageProcessor.from_pretrained(path)`` work without
``trust_remote_code``; models saved with ``save_pretrained`` also carry their code (``auto_map``) and load
with ``trust_remote_code=True`` where ``cage`` is not installed.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel
from transformers.models.auto import image_processing_auto

from .configuration_cage import AFFECTNET7_LABELS, AFFECTNET8_LABELS, EMOTIC_LABELS, CageConfig
from .image_processing_cage import CageImageProcessor
from .modeling_cage import CageForExpressionInference, CageOutput

__version__ = "0.1.0"

AutoConfig.register(CageConfig.model_type, CageConfig, exist_ok=True)
AutoModel.register(CageConfig, CageForExpressionInference, exist_ok=True)
# The processor is a PIL backend and registered as that only. AutoImageProcessor picks the torchvision
# backend by default unless the processor's name is in its list of processors that default to PIL (transformers
# 5.x, `DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS`); listing it there makes a plain `from_pretrained` choose PIL
# without a fallback warning, while `backend="torchvision"` still says truthfully that there is none.
AutoImageProcessor.register(CageConfig, image_processor_classes={"pil": CageImageProcessor}, exist_ok=True)
if CageImageProcessor.__name__ not in image_processing_auto.DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS:
    image_processing_auto.DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS.append(CageImageProcessor.__name__)
# save_pretrained() writes `auto_map` and copies the flat model files next to the weights.
CageConfig.register_for_auto_class()
CageForExpressionInference.register_for_auto_class("AutoModel")
CageImageProcessor.register_for_auto_class("AutoImageProcessor")


def __getattr__(name: str):
    # Lazy, so that `import cage` stays light: `cage.ExpressionAnalyzer` is the documented Python API.
    if name == "ExpressionAnalyzer":
        from .inference.api import ExpressionAnalyzer

        return ExpressionAnalyzer
    raise AttributeError(f"module 'cage' has no attribute {name!r}")


__all__ = [
    "AFFECTNET7_LABELS",
    "AFFECTNET8_LABELS",
    "EMOTIC_LABELS",
    "CageConfig",
    "CageForExpressionInference",
    "CageImageProcessor",
    "CageOutput",
    "ExpressionAnalyzer",
]
