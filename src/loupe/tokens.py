"""Token plans: where an image's positions go in the sequence, and which of them the model fills.

A connector declares, from pure geometry, the ordered *spans* one image occupies in the LLM sequence:

* :class:`Visual` — ``n`` positions the model fills with the connector's output, in order (optionally a
  row-major ``grid`` of ``(cols, rows)`` with each token's position, for 2-D / M-RoPE position ids);
* :class:`Text` — real tokens the processor writes: ``ids`` as given (LLaVA-UHD v2's separators are fixed ids,
  as officially), or ``tokens``, special-token strings resolved by the tokenizer to one id each (InternVL's
  ``<img>`` / ``</img>``, Qwen2-VL's ``<|vision_start|>`` / ``<|vision_end|>``).

``num_positions(plan)`` is everything the image takes in the sequence (what the processor and the server
count); ``num_visual(plan)`` is what the connector outputs. Expansion is one function,
:func:`fill_spans`, used by the processor and the training data alike: the text is tokenised with one
placeholder (``<image>``) per position, then each image's run of placeholders is overwritten with its plan —
the image token id at visual positions, the text ids at text positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

from .errors import LoupeError


@dataclass(frozen=True)
class Visual:
    """``n`` positions filled by the connector, in order. ``grid``: (cols, rows) when they are a row-major grid."""

    n: int
    grid: tuple[int, int] | None = None
    role: str = ""

    def __post_init__(self):
        if self.n < 0:
            raise LoupeError(f"a visual span cannot have {self.n} tokens")
        if self.grid is not None and self.grid[0] * self.grid[1] != self.n:
            raise LoupeError(f"visual span of {self.n} tokens with grid {self.grid}")

    def positions(self) -> list[tuple[int, int]]:
        """(col, row) of each token, row-major; one row of n when no grid is declared."""
        cols, rows = self.grid if self.grid is not None else (self.n, 1)
        return [(c, r) for r in range(rows) for c in range(cols)]


@dataclass(frozen=True)
class Text:
    """Real tokens written by the processor: fixed ``ids``, or special ``tokens`` (one id each)."""

    ids: tuple[int, ...] = ()
    tokens: tuple[str, ...] = ()

    def __post_init__(self):
        if bool(self.ids) == bool(self.tokens):
            raise LoupeError("a text span needs either ids or tokens (not both, not neither)")

    @property
    def n(self) -> int:
        return len(self.ids) or len(self.tokens)

    def resolve(self, tokenizer=None) -> tuple[int, ...]:
        if self.ids:
            return tuple(int(i) for i in self.ids)
        if tokenizer is None:
            raise LoupeError(f"text span {self.tokens} needs a tokenizer to resolve")
        out = []
        for t in self.tokens:
            i = tokenizer.convert_tokens_to_ids(t)
            if i is None or i == getattr(tokenizer, "unk_token_id", None):
                raise LoupeError(f"the tokenizer has no {t!r} token, which this model's image layout writes; "
                                 f"add it as a special token")
            out.append(int(i))
        return tuple(out)


Span = Union[Visual, Text]
TokenPlan = tuple  # tuple[Span, ...]


def visual(n: int) -> TokenPlan:
    """The plan of a connector whose image is ``n`` visual tokens and nothing else."""
    return (Visual(int(n)),)


def per_tile(grids: Sequence[Sequence[int]], roles: Sequence[str]) -> TokenPlan:
    """One :class:`Visual` span per tile, its (cols, rows) output ``grid``, in layout order (``mlp``,
    ``pixel_shuffle``, ``patch_merge``: connectors that keep each tile's tokens apart)."""
    return tuple(Visual(int(w) * int(h), grid=(int(w), int(h)), role=role) for (w, h), role in zip(grids, roles))


def wrap(plan: Sequence[Span], start: str | None = None, end: str | None = None) -> TokenPlan:
    """``plan`` between optional special tokens (InternVL ``<img>`` ... ``</img>``, Qwen2-VL ``<|vision_start|>``
    ... ``<|vision_end|>``)."""
    return ((Text(tokens=(start,)),) if start else ()) + tuple(plan) + ((Text(tokens=(end,)),) if end else ())


def num_positions(plan: Sequence[Span]) -> int:
    return sum(s.n for s in plan)


def num_visual(plan: Sequence[Span]) -> int:
    return sum(s.n for s in plan if isinstance(s, Visual))


def span_ids(plan: Sequence[Span], image_token_id: int, tokenizer=None) -> list[int]:
    """The ids one image writes: ``image_token_id`` at visual positions, text ids at text positions."""
    out: list[int] = []
    for s in plan:
        out.extend([image_token_id] * s.n if isinstance(s, Visual) else s.resolve(tokenizer))
    return out


def fill_spans(ids: list[int], plans: Sequence[Sequence[Span]], image_token_id: int, tokenizer=None) -> list[int]:
    """Overwrite each image's run of placeholders (``image_token_id`` x ``num_positions(plan)``) in ``ids`` with
    its plan, images in order. The runs must be exactly as long as the plans (the text was expanded from them)."""
    out = list(ids)
    i, k = 0, 0
    while k < len(plans):
        while i < len(out) and out[i] != image_token_id:
            i += 1
        n = num_positions(plans[k])
        if i + n > len(out) or any(v != image_token_id for v in out[i:i + n]):
            raise LoupeError(f"image {k}: expected a run of {n} image placeholders at position {i}; was the text "
                             f"truncated, or expanded with another configuration?")
        out[i:i + n] = span_ids(plans[k], image_token_id, tokenizer)
        i += n
        k += 1
    return out
