"""``LoupeProcessor``: images + text -> the tensors the model needs, with exact visual-token counts.

``LoupeImageProcessor`` loads each image safely (:mod:`loupe.images`), slices it with the configured
slicer and normalises the tiles with the vision encoder's mean/std. ``LoupeProcessor`` expands every
``<image>`` in the text into exactly ``num_image_tokens(image)`` image-token ids — computed by the same
:class:`~loupe.geometry.ImageGeometry` the model uses, without running the model — then tokenises.

Outputs (a ``BatchFeature``):

* ``input_ids``, ``attention_mask`` — padded (right by default, ``padding_side="left"`` for generation);
* ``pixel_values`` — (total_tiles, 3, h, w) float32: the tiles of all images of the batch, images in the
  order their ``<image>`` appears, tiles in layout order (a flat list, not padded per sample);
* ``image_sizes`` — (num_images, 2) int64 rows of (height, width), like transformers'.

``images`` may be one image, a flat list (assigned to ``<image>`` slots in order) or a list of lists (one
list per text; checked per sample). Images may be paths, bytes, PIL images or arrays, in any mode.

Length limits are explicit, never a silent truncation (an image span must never be cut, and a prompt over the
LLM's context would run for minutes and answer garbage): :attr:`LoupeProcessor.max_prompt_tokens` is the LLM's
context (``context_length``, which :func:`loupe.serving.chat.load_model_folder` sets from the model config's
``max_position_embeddings``, and the tokenizer's ``model_max_length``); a sample whose text + visual tokens
exceed it is refused with both numbers. Before tokenising, text longer than
:attr:`LoupeProcessor.max_text_chars` is refused too, so a huge string cannot hang the tokenizer or the model.
Callers that want truncation do it on their own text (``ChatSession(truncate=True)``).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin
from transformers.image_processing_utils import BaseImageProcessor

from .errors import LoupeError
from .geometry import ImageGeometry
from .images import DEFAULT_MAX_PIXELS, check_size, load_image
from .registry import CONNECTORS, ENCODERS, SLICERS
from .slicers import build as _slicers_build, normalize
from .tokens import Text, fill_spans


class LoupeImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values", "image_sizes"]

    def __init__(
        self,
        slicer: dict | None = None,
        vision: dict | None = None,
        connector: dict | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_PIXELS,
        **kwargs,
    ):
        kwargs.pop("image_processor_type", None)
        super().__init__(**kwargs)
        self.slicer = SLICERS.normalise(slicer or {"name": "pad"})
        self.vision = ENCODERS.normalise(vision or {"name": "clip"})
        self.connector = CONNECTORS.normalise(connector or {"name": "mlp"})
        self.max_image_pixels = max_image_pixels

    @classmethod
    def from_config(cls, config, **kwargs) -> "LoupeImageProcessor":
        return cls(slicer=config.slicer, vision=config.vision, connector=config.connector, **kwargs)

    @cached_property
    def geometry(self) -> ImageGeometry:
        return ImageGeometry(self.slicer, self.vision, self.connector)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.pop("geometry", None)
        return d

    @property
    def image_mean(self):
        return self.vision.get("image_mean")

    @property
    def image_std(self):
        return self.vision.get("image_std")

    def __call__(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        features, _ = self.process(images)
        return features

    def process(self, images: Sequence, slicers: Sequence | None = None) -> tuple[BatchFeature, list]:
        """Slice and normalise a flat list of images; also return their layouts.

        ``slicers``: optional per-image slicer configs (None = the configured one), e.g. from
        :func:`loupe.budget.choose_slicer`; the model then needs the returned layouts (``image_layouts``).
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
        if slicers is not None and len(slicers) != len(images):
            raise LoupeError(f"got {len(slicers)} slicer configs for {len(images)} images; give one per image")
        tiles, layouts, sizes = [], [], []
        for i, img in enumerate(images):
            pil = load_image(img, max_pixels=self.max_image_pixels)
            spec = slicers[i] if slicers is not None else None
            slicer = self.geometry.slicer if spec is None else _slicers_build(spec)
            t, layout = slicer.slice(pil)
            tiles.extend(t)
            layouts.append(layout)
            sizes.append((pil.size[1], pil.size[0]))
        if not tiles:
            return BatchFeature({}), []
        shapes = {t.shape for t in tiles}
        if len(shapes) == 1:
            batch = np.stack(tiles)
        else:  # native-aspect tiles: zero-pad to the largest; the layout records each tile's true size
            hmax = max(s[0] for s in shapes)
            wmax = max(s[1] for s in shapes)
            batch = np.zeros((len(tiles), hmax, wmax, 3), dtype=np.uint8)
            for i, t in enumerate(tiles):
                batch[i, : t.shape[0], : t.shape[1]] = t
        pixel_values = normalize(batch, self.image_mean, self.image_std)
        data = {
            "pixel_values": torch.from_numpy(pixel_values),
            "image_sizes": torch.tensor(sizes, dtype=torch.long),
        }
        return BatchFeature(data), layouts


def _image_size(image) -> tuple[int, int]:
    """(width, height) without decoding pixels where possible."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, np.ndarray):
        return int(image.shape[1]), int(image.shape[0])
    if isinstance(image, (tuple, list)) and len(image) == 2 and all(isinstance(v, (int, np.integer)) for v in image):
        return int(image[0]), int(image[1])
    if isinstance(image, (str, os.PathLike)):
        if not Path(image).exists():
            raise LoupeError(f"image file not found: {image}")
        try:
            with Image.open(image) as im:
                return im.size
        except Exception as e:
            raise LoupeError(f"cannot read image {image}: {e}") from None
    raise LoupeError(f"cannot tell the size of {type(image).__name__}; give an image, a path or (width, height)")


#: characters of raw text allowed per token of context before tokenising (English averages ~4 per token)
CHARS_PER_TOKEN_CAP = 32
#: the raw text cap when the context length is unknown
DEFAULT_MAX_TEXT_CHARS = 1_000_000
#: a tokenizer ``model_max_length`` at or above this is transformers' "no limit" placeholder
_NO_LIMIT = 10**9


class LoupeProcessor(ProcessorMixin):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        if chat_template is None and tokenizer is not None:
            chat_template = getattr(tokenizer, "chat_template", None)
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)
        self.image_token = "<image>"
        self.context_length: int | None = None  # the LLM's max_position_embeddings, set by load_model_folder
        if tokenizer is not None:
            tid = tokenizer.convert_tokens_to_ids(self.image_token)
            if tid is None or tid == tokenizer.unk_token_id:
                raise LoupeError(f"the tokenizer has no {self.image_token!r} token; add it as a special token")
            self.image_token_id = tid

    # --- counting ---------------------------------------------------------------------------------------
    def num_image_tokens(self, image) -> int:
        """Exact number of visual tokens ``image`` (image, path, array or (width, height)) becomes."""
        w, h = _image_size(image)
        check_size(w, h, self.image_processor.max_image_pixels, name=f"image of {w}x{h}")
        return self.image_processor.geometry.num_tokens((w, h))

    def _get_num_multimodal_tokens(self, image_sizes=None, **kwargs):
        """transformers/vLLM hook: token counts per image from (height, width) sizes."""
        from transformers.processing_utils import MultiModalData

        counts = [self.image_processor.geometry.num_tokens((int(w), int(h))) for h, w in (image_sizes or [])]
        return MultiModalData(num_image_tokens=counts, num_image_patches=[
            self.image_processor.geometry.layout((int(w), int(h))).num_tiles for h, w in (image_sizes or [])
        ])

    # --- length limits ----------------------------------------------------------------------------------
    @property
    def max_prompt_tokens(self) -> int | None:
        """The longest prompt (text + visual tokens) the LLM takes: the smaller of ``context_length`` (the
        model config's ``max_position_embeddings``) and the tokenizer's ``model_max_length``; ``None`` when
        neither says."""
        limits = [int(n) for n in (self.context_length, getattr(self.tokenizer, "model_max_length", None))
                  if isinstance(n, int) and 0 < n < _NO_LIMIT]
        return min(limits) if limits else None

    @property
    def max_text_chars(self) -> int:
        """Raw characters of text (``<image>`` placeholders not counted) allowed per sample before tokenising:
        ``CHARS_PER_TOKEN_CAP`` per token of :attr:`max_prompt_tokens` (``DEFAULT_MAX_TEXT_CHARS`` if unknown)."""
        limit = self.max_prompt_tokens
        return DEFAULT_MAX_TEXT_CHARS if limit is None else CHARS_PER_TOKEN_CAP * limit

    def _check_text_chars(self, texts: list[str]) -> None:
        cap = self.max_text_chars
        for i, t in enumerate(texts):
            n = len(t) - t.count(self.image_token) * len(self.image_token)
            if n > cap:
                limit = self.max_prompt_tokens
                why = (f"{CHARS_PER_TOKEN_CAP} per token of the model's {limit}-token context" if limit else
                       "the default cap")
                raise LoupeError(f"sample {i}: the text is {n:,} characters, over the limit of {cap:,} ({why}); "
                                 f"shorten it (loupe chat --truncate cuts it to fit)")

    def count_tokens(self, images, text: str) -> tuple[int, int]:
        """(text tokens, visual tokens) of one prompt, without slicing the images or running the model."""
        self._check_text_chars([text])
        imgs = [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]
        n_text = len(self.tokenizer(text.replace(self.image_token, ""), add_special_tokens=False)["input_ids"])
        return n_text, sum(self.num_image_tokens(im) for im in imgs)

    def _check_prompt_tokens(self, enc, visual: list[int]) -> None:
        limit = self.max_prompt_tokens
        if limit is None:
            return
        mask = enc.get("attention_mask")
        for i, ids in enumerate(enc["input_ids"]):
            row = mask[i] if mask is not None else None
            n = len(ids) if row is None else int(row.sum()) if hasattr(row, "sum") else int(sum(row))
            if n > limit:
                raise LoupeError(f"sample {i}: the prompt is {n} tokens ({n - visual[i]} text + {visual[i]} visual), "
                                 f"over the model's context of {limit} tokens; shorten the text, use fewer or "
                                 f"smaller images, or let the caller truncate (loupe chat --truncate)")

    # --- main call --------------------------------------------------------------------------------------
    def __call__(
        self,
        images=None,
        text: str | list[str] | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        padding_side: str | None = None,
        add_special_tokens: bool = True,
        image_slicers: Sequence | None = None,
        max_image_tokens: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        """``image_slicers`` (one slicer config or None per image, in order) or ``max_image_tokens`` (a per-image
        cap, :func:`loupe.budget.fit_slicer`) process images with other settings of the slicer's budget knob;
        the output then also holds ``image_layouts`` (a list of layouts), which the model needs with them."""
        if text is None:
            raise LoupeError("LoupeProcessor needs text (use '<image>' where each image goes)")
        texts = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
        if texts is None or not all(isinstance(t, str) for t in texts):
            raise LoupeError(f"text must be a string or a list of strings, got {type(text).__name__}"
                             + ("" if texts is None else " containing " + ", ".join(
                                 sorted({type(t).__name__ for t in texts if not isinstance(t, str)}))))
        if not texts:
            raise LoupeError("text is an empty list; give at least one string (use '<image>' where each image goes)")
        self._check_text_chars(texts)
        flat = _flatten_images(images, texts, self.image_token)
        if max_image_tokens is not None and flat:
            if image_slicers is not None:
                raise LoupeError("give image_slicers or max_image_tokens, not both")
            image_slicers = self.budget_slicers(flat, max_image_tokens)
        if image_slicers is not None and flat:
            features, layouts = self.image_processor.process(flat, slicers=list(image_slicers))
        else:
            features, layouts = self.image_processor.process(flat) if flat else (BatchFeature({}), [])
        counts = [self.image_processor.geometry.num_tokens(lay) for lay in layouts]
        expanded, visual, k = [], [], 0
        for t in texts:
            parts = t.split(self.image_token)
            out, v = [parts[0]], 0
            for p in parts[1:]:
                out.append(self.image_token * counts[k])
                out.append(p)
                v += counts[k]
                k += 1
            expanded.append("".join(out))
            visual.append(v)
        enc = self.tokenizer(
            expanded,
            padding=padding,
            padding_side=padding_side,
            add_special_tokens=add_special_tokens,
            return_tensors=return_tensors,
            **kwargs,
        )
        self._check_prompt_tokens(enc, visual)
        self._write_text_spans(enc, texts, [self.image_processor.geometry.token_plan(lay) for lay in layouts])
        data = dict(enc)
        data.update(features)
        if image_slicers is not None and flat:
            data["image_layouts"] = layouts
        return BatchFeature(data, tensor_type=None)

    def _write_text_spans(self, enc, texts: list[str], plans: list) -> None:
        """Overwrite each image's placeholder run with its token plan (:func:`loupe.tokens.fill_spans`): the image
        token at visual positions, real ids at the plan's text positions (UHD v2 separators, ``<img>``...)."""
        if not any(isinstance(span, Text) for plan in plans for span in plan):
            return
        ids = enc["input_ids"]
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else [list(r) for r in ids]
        k = 0
        for i, t in enumerate(texts):
            n = t.count(self.image_token)
            rows[i] = fill_spans(rows[i], plans[k:k + n], self.image_token_id, self.tokenizer)
            k += n
        enc["input_ids"] = torch.tensor(rows, dtype=ids.dtype) if isinstance(ids, torch.Tensor) else rows

    def budget_slicers(self, images: Sequence, max_image_tokens: int, detail: str | None = None) -> list[dict]:
        """Per image, the slicer config of :func:`loupe.budget.choose_slicer` under ``max_image_tokens``."""
        from .budget import choose_slicer

        ip = self.image_processor
        out = []
        for img in images:
            w, h = _image_size(img) if not isinstance(img, bytes) else load_image(img, ip.max_image_pixels).size
            check_size(w, h, ip.max_image_pixels, name=f"image of {w}x{h}")
            out.append(choose_slicer(ip.slicer, ip.vision, ip.connector, (w, h), max_image_tokens, detail))
        return out

    @property
    def model_input_names(self):
        return ["input_ids", "attention_mask", "pixel_values", "image_sizes"]


def _flatten_images(images, texts: list[str], token: str) -> list:
    wanted = [t.count(token) for t in texts]
    if images is None:
        images = []
    elif not isinstance(images, (list, tuple)):
        images = [images]
    nested = len(images) > 0 and all(isinstance(x, (list, tuple)) and not _is_size(x) for x in images)
    if nested:
        if len(images) != len(texts):
            raise LoupeError(f"got {len(images)} image lists for {len(texts)} texts; give one list per text")
        for i, (w, imgs) in enumerate(zip(wanted, images)):
            if w != len(imgs):
                raise LoupeError(
                    f"sample {i} has {w} {token} placeholder(s) but {len(imgs)} image(s) were given for it"
                )
        return [x for imgs in images for x in imgs]
    if sum(wanted) != len(images):
        per = ", ".join(f"sample {i}: {w}" for i, w in enumerate(wanted))
        raise LoupeError(
            f"the text has {sum(wanted)} {token} placeholder(s) ({per}) but {len(images)} image(s) were given"
        )
    return list(images)


def _is_size(x) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and all(isinstance(v, int) for v in x)
