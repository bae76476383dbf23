"""``LoupeForConditionalGeneration``: the one model class every method uses; methods are parts.

Data path (``forward``), top to bottom::

    image_sizes --slicer.plan--> layouts        (pure geometry, the same call the processor made)
    pixel_values --vision_tower--> (tiles, gh, gw, C) feature maps
    features + layouts --connector--> one (n_i, D) tensor of visual tokens per image
    scatter them into the ``<image>`` slots of the text embeddings --language_model--> logits, loss

The language model is any ``AutoModelForCausalLM`` (wrapped, not re-implemented: no mixin per LLM).
Images appear in ``input_ids`` as runs of ``image_token_id``, one id per visual token, expanded by the
processor from the same geometry; a mismatch raises a :class:`LoupeError` naming both counts.
Labels at image positions are forced to -100. ``generate`` comes from ``GenerationMixin``: pixel inputs
are used at prefill only and the KV cache does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from .configuration import LoupeConfig
from .errors import LoupeError
from .geometry import ImageGeometry
from .init import torch_default_init
from .registry import CONNECTORS, ENCODERS


@dataclass
class LoupeCausalLMOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: object | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    image_hidden_states: list | None = None


class LoupePreTrainedModel(PreTrainedModel):
    config: LoupeConfig
    config_class = LoupeConfig
    base_model_prefix = ""
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _skip_keys_device_placement = ["past_key_values"]

    def _init_weights(self, module):
        """Parts with ``self_init = True`` keep PyTorch-style init (see loupe.init); the rest get HF's."""
        owner = getattr(self, "_init_owner", {}).get(id(module))
        if owner is not None:
            hook = getattr(owner, "init_module", None)
            if hook is not None and hook(module):
                return
            if torch_default_init(module):
                return
            if not any(True for _ in module.parameters(recurse=False)):
                return
        super()._init_weights(module)


class LoupeForConditionalGeneration(LoupePreTrainedModel, GenerationMixin):
    def __init__(self, config: LoupeConfig):
        super().__init__(config)
        self.geometry = ImageGeometry.from_config(config)
        enc_cls = ENCODERS.get(config.vision["name"])
        self.vision_tower = enc_cls(ENCODERS.config(config.vision))
        con_cls = CONNECTORS.get(config.connector["name"])
        self.connector = con_cls(
            CONNECTORS.config(config.connector), in_dim=self.vision_tower.out_dim, out_dim=config.text_config.hidden_size
        )
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self._no_split_modules = list(
            dict.fromkeys(
                list(self.vision_tower.no_split_modules)
                + list(self.connector.no_split_modules)
                + list(getattr(self.language_model, "_no_split_modules", None) or [])
            )
        )
        self._init_owner = {
            id(m): part for part in (self.vision_tower, self.connector) if getattr(part, "self_init", False)
            for m in part.modules()
        }
        self.post_init()

    # --- embeddings plumbing (delegated to the wrapped LM) -------------------------------------------
    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.language_model.set_output_embeddings(value)

    # --- images ----------------------------------------------------------------------------------------
    def layouts(self, image_sizes: torch.Tensor | Sequence) -> list:
        """Layouts from ``image_sizes`` rows (height, width), via the same pure geometry as the processor."""
        rows = image_sizes.tolist() if isinstance(image_sizes, torch.Tensor) else list(image_sizes)
        return [self.geometry.layout((int(w), int(h))) for h, w in rows]

    def get_image_features(self, pixel_values: torch.Tensor, image_sizes, image_layouts=None) -> list[torch.Tensor]:
        """One (num_tokens_i, D) tensor per image, in order. ``image_layouts`` (from the processor when it ran with
        a per-image slicer setting, e.g. a token budget) replaces the layouts recomputed from ``image_sizes``."""
        layouts = list(image_layouts) if image_layouts is not None else self.layouts(image_sizes)
        n_tiles = sum(lay.num_tiles for lay in layouts)
        if pixel_values.shape[0] != n_tiles:
            raise LoupeError(
                f"pixel_values has {pixel_values.shape[0]} tiles but the layouts of the {len(layouts)} image(s) "
                f"need {n_tiles}; pass the processor's pixel_values and image_sizes together"
            )
        features = self.vision_tower(pixel_values, layouts=layouts)
        embeds = self.connector(features, layouts, pixel_values=pixel_values)
        for i, (e, lay) in enumerate(zip(embeds, layouts)):
            expected = self.geometry.num_visual_tokens(lay)
            if e.shape[0] != expected:  # a connector bug, never a user error
                raise LoupeError(f"connector produced {e.shape[0]} tokens for image {i}, its token plan says {expected}")
        return embeds

    def _merge(self, input_ids, inputs_embeds, pixel_values, image_sizes, image_layouts=None):
        image_mask = input_ids == self.config.image_token_id
        n_slots = int(image_mask.sum())
        if pixel_values is None:
            if n_slots:
                raise LoupeError(f"input_ids hold {n_slots} image-token slots but no pixel_values were given")
            return inputs_embeds, None
        if image_sizes is None:
            raise LoupeError("pixel_values given without image_sizes")
        embeds = self.get_image_features(pixel_values, image_sizes, image_layouts)
        flat = torch.cat(embeds, 0).to(inputs_embeds.dtype) if embeds else inputs_embeds.new_zeros(0, inputs_embeds.shape[-1])
        if flat.shape[0] != n_slots:
            per_image = [int(e.shape[0]) for e in embeds]
            raise LoupeError(
                f"image features and image tokens do not match: input_ids hold {n_slots} <image> slots, the "
                f"{len(embeds)} image(s) give {flat.shape[0]} tokens ({per_image}); was the prompt truncated, or "
                f"processed with another configuration?"
            )
        inputs_embeds = inputs_embeds.masked_scatter(image_mask.unsqueeze(-1).to(inputs_embeds.device), flat)
        return inputs_embeds, embeds

    # --- forward ---------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        image_layouts: list | None = None,
        **kwargs,
    ) -> LoupeCausalLMOutput:
        image_embeds = None
        if inputs_embeds is None:
            if input_ids is None:
                raise LoupeError("give input_ids or inputs_embeds")
            # image slots are looked up as id 0 and overwritten below, so image_token_id need not be in the
            # LM's vocabulary (LLaVA's -200 sentinel, without a sentinel in input_ids)
            ids = input_ids.masked_fill(input_ids == self.config.image_token_id, 0)
            inputs_embeds = self.get_input_embeddings()(ids)
            inputs_embeds, image_embeds = self._merge(input_ids, inputs_embeds, pixel_values, image_sizes, image_layouts)
        elif pixel_values is not None:
            raise LoupeError("pass pixel_values with input_ids, not with inputs_embeds")
        if labels is not None and input_ids is not None:
            slots = input_ids == self.config.image_token_id
            if kwargs.get("num_items_in_batch") is not None:
                kwargs["num_items_in_batch"] = _uncount_image_slots(kwargs["num_items_in_batch"], labels, slots)
            labels = labels.masked_fill(slots, -100)  # an image slot is never a target
        out = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        return LoupeCausalLMOutput(
            loss=out.loss,
            logits=out.logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            image_hidden_states=image_embeds,
        )


_WARNED_SLOTS = []


def _uncount_image_slots(num_items, labels: torch.Tensor, slots: torch.Tensor):
    """``num_items_in_batch`` without the image slots a collator left labelled (HF ``Trainer`` counts
    ``labels[..., 1:] != -100`` before the forward pass; those slots are masked here, so they must not divide
    the loss). Exact for one micro-batch per step on one process; with gradient accumulation or several
    processes only this micro-batch's slots are known here, so mask them in the collator (``LlavaCollator``
    and ``LoupeTrainer`` do) for exact token-count normalisation."""
    counted = ((labels[..., 1:] != -100) & slots[..., 1:]).sum()
    if not bool(counted):
        return num_items
    if not _WARNED_SLOTS:
        _WARNED_SLOTS.append(True)
        import logging

        logging.getLogger("loupe").warning(
            "labels mark %d image-token position(s) as targets; they are masked (-100) and removed from "
            "num_items_in_batch. Mask image tokens in the collator for exact loss normalisation.", int(counted))
    return (num_items - counted.to(num_items.device) if torch.is_tensor(num_items) else num_items - int(counted))
