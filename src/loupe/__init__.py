"""Loupe: high-resolution multimodal LLMs from swappable parts (slicer, vision encoder, connector, LLM).

Public API::

    import loupe
    model = loupe.build_model("llava15-tiny")            # or under torch.device("meta") for real sizes
    processor = loupe.build_processor("llava15-tiny")
    loupe.list_presets()
    LoupeForConditionalGeneration.from_pretrained(DIR); LoupeProcessor.from_pretrained(DIR)
    loupe.slicers.get("pad"), loupe.encoders.get("clip"), loupe.connectors.get("mlp")
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor

from . import connectors, encoders, slicers
from .builder import build, build_config, build_model, build_processor
from .configuration import LoupeConfig
from .errors import LoupeError
from .modeling import LoupeForConditionalGeneration
from .presets import list_presets
from .processing import LoupeImageProcessor, LoupeProcessor

AutoConfig.register("loupe", LoupeConfig, exist_ok=True)
AutoModelForImageTextToText.register(LoupeConfig, LoupeForConditionalGeneration, exist_ok=True)
AutoImageProcessor.register(LoupeConfig, image_processor_classes={"pil": LoupeImageProcessor}, exist_ok=True)
AutoProcessor.register(LoupeConfig, LoupeProcessor, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "build", "build_config", "build_model", "build_processor", "list_presets",
    "LoupeConfig", "LoupeForConditionalGeneration", "LoupeProcessor", "LoupeImageProcessor", "LoupeError",
    "slicers", "encoders", "connectors",
]
