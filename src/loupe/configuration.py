"""``LoupeConfig``: one configuration for every method, as parts.

* ``slicer``, ``vision``, ``connector``: dicts ``{"name": <registry id>, **options}``, validated strictly
  against the part's ``Config`` dataclass (:mod:`loupe.validation`: unknown keys, wrong types and out-of-range
  values fail, defaults are filled in) and stored back as
  plain dicts so ``config.json`` stays readable and diffable.
* ``text_config``: any transformers causal-LM config (rebuilt through ``AutoConfig``), the language model.
* ``image_token_id``: the id of ``<image>`` in the tokenizer; each occurrence in ``input_ids`` is one
  visual-token slot.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .registry import CONNECTORS, ENCODERS, SLICERS
from . import slicers as _s, encoders as _e, connectors as _c  # noqa: F401  (register the parts)


class LoupeConfig(PreTrainedConfig):
    model_type = "loupe"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    slicer: dict | None = None
    vision: dict | None = None
    connector: dict | None = None
    image_token_id: int | None = None
    image_token: str = "<image>"
    preset: str | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        self.slicer = SLICERS.normalise(self.slicer or {"name": "pad"}, "slicer")
        self.vision = ENCODERS.normalise(self.vision or {"name": "clip"}, "vision")
        self.connector = CONNECTORS.normalise(self.connector or {"name": "mlp"}, "connector")
        super().__post_init__(**kwargs)
        if self.text_config is not None and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size
