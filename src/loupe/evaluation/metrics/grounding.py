"""Referring-expression comprehension (RefCOCO/+/g) accuracy: box parsing, coordinate frames, IoU.

Three reference pipelines, selected by ``parser``:

* ``convllava`` -- ConvLLaVA ``llava/eval/evaluate_grounding.py`` (its paper's Table 6): pattern
  ``\\[*\\[(.*?),(.*?),(.*?),(.*?)\\]\\]*``, values summing to >= 4 are divided by 1000, predictions are taken as
  normalised to the **expand2square-padded** square (times ``max(w, h)``, minus the pad offset
  ``(max - min) // 2`` on y for a wide image, on x for a tall one), IoU against the absolute-pixel box in
  float32 (``torch.float32`` upstream), correct if ``iou >= 0.5``.
* ``lmms_eval`` -- lmms-eval ``tasks/refcoco/utils_rec.py``: the first ``[f, f, f, f]`` match (no space
  before a comma), else ``[0, 0, 0, 0]``; the ground truth normalised by the **original** width/height;
  IoU in float64, ``iou >= threshold``.
* ``uhd`` -- LLaVA-UHD v2 ``llava/eval/eval_rec.py``: text before the first blank line, brackets deleted,
  split on ","; not exactly four fields -> the sample is **skipped** (``continue``: it leaves the
  denominator, which inflates accuracy); the pad correction is disabled (``if 0:``), so boxes are compared
  normalised to the original image; ``torchvision.box_iou(pred * 1000, gt * 1000)`` in float32,
  correct if ``iou > 0.5`` (strictly).

The coordinate frame is an explicit argument of every pipeline (LLaVA #606/#623/#822/#1833: the frame of
LLaVA-1.5's box data is disputed), and an unparsable answer counts as **wrong** unless you ask for
``on_unparsable="skip"`` (UHD v2) or ``"zeros"`` (score the literal ``[0, 0, 0, 0]`` fallback, as lmms-eval
and ConvLLaVA do -- it has IoU 0 with any real box).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ...errors import LoupeError
from ._names import canonical

__all__ = ["REC_PARSERS", "REC_FRAMES", "parse_box", "box_iou", "rec_iou", "rec_accuracy"]

REC_PARSERS = ("convllava", "lmms_eval", "uhd")
REC_FRAMES = ("padded_square", "original")
_LE_BOX_RE = re.compile(
    r"\[\s*(-?\d+(?:\.\d+)?),\s*(-?\d+(?:\.\d+)?),\s*(-?\d+(?:\.\d+)?),\s*(-?\d+(?:\.\d+)?)\s*\]")
_CONV_BOX_RE = re.compile(r"\[*\[(.*?),(.*?),(.*?),(.*?)\]\]*")
_F32 = np.float32


def parse_box(text: str, parser: str = "convllava") -> tuple[float, float, float, float] | None:
    """The four numbers a reference parser reads from a model answer, or ``None`` if it cannot.

    ``None`` is where the references fall back to ``(0, 0, 0, 0)`` (lmms-eval, ConvLLaVA) or skip the sample
    (UHD v2; UHD v2 would crash on four fields that are not numbers -- here also ``None``). Values are
    returned as parsed: ConvLLaVA's /1000 rule is applied later, in :func:`rec_iou`. ConvLLaVA and UHD
    read numbers with Python ``float`` (surrounding spaces, "1_0", "nan" accepted).
    """
    parser = canonical(parser)
    if parser == "lmms_eval":
        m = _LE_BOX_RE.search(text)
        return tuple(float(m.group(i)) for i in range(1, 5)) if m else None  # type: ignore[return-value]
    if parser == "convllava":
        found = _CONV_BOX_RE.findall(text)
        try:
            return (float(found[0][0]), float(found[0][1]), float(found[0][2]), float(found[0][3]))
        except (IndexError, ValueError):
            return None
    if parser == "uhd":
        coords = text.split("\n\n")[0].replace("[", "").replace("]", "").strip(" ").split(",")
        if len(coords) != 4:
            return None
        try:
            return tuple(float(c) for c in coords)  # type: ignore[return-value]
        except ValueError:
            return None
    raise LoupeError(f"unknown REC parser {parser!r}; valid: {', '.join(REC_PARSERS)}")


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes in float64, written as lmms-eval's ``compute_iou``: the
    intersection is clamped at 0 but the areas are not (an inverted box has a "positive" area, as upstream);
    a zero union gives 0.0 (upstream raises ZeroDivisionError)."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return 0.0 if union == 0 else float(inter / union)


def _box_iou_f32(a: np.ndarray, b: np.ndarray) -> float:
    # torchvision.ops.box_iou, float32: areas, lt/rb, wh.clamp(min=0), inter / (area1 + area2 - inter)
    area1 = (a[2] - a[0]) * (a[3] - a[1])
    area2 = (b[2] - b[0]) * (b[3] - b[1])
    wh = np.maximum(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), _F32(0))
    inter = wh[0] * wh[1]
    union = area1 + area2 - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(inter / union)  # 0 / 0 -> nan, which never passes a threshold


def _gt_xyxy(box: Sequence[float], box_format: str) -> tuple[float, float, float, float]:
    if len(box) != 4:
        raise LoupeError(f"a box has 4 numbers, got {len(box)}: {box!r}")
    x, y, c, d = (float(v) for v in box)
    if box_format == "xyxy":
        return x, y, c, d
    if box_format == "xywh":
        return x, y, x + c, y + d
    raise LoupeError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")


def rec_iou(prediction: str, box: Sequence[float], image_size: Sequence[int], frame: str = "padded_square",
            parser: str = "convllava", box_format: str = "xyxy") -> float | None:
    """IoU between the box read from ``prediction`` and the ground truth, or ``None`` if unparsable.

    ``box`` is the ground truth in **pixels** of the original image (``xyxy``, or COCO ``xywh``);
    ``image_size`` is ``(width, height)`` of the original image. ``frame`` says what the model's
    normalised coordinates are relative to: ``"padded_square"`` (LLaVA's expand2square canvas of side
    ``max(w, h)``, the image centred with offset ``(max - min) // 2``) or ``"original"``.

    Arithmetic follows the chosen ``parser``'s reference (see the module docstring): ``convllava`` and
    ``uhd`` in float32, ``lmms_eval`` in float64. Frame combinations a reference does not ship use its own
    dormant code: ConvLLaVA's commented-out ``x *= w; y *= h`` for ``original``, UHD v2's disabled
    ``if 0:`` pad branch for ``padded_square``; lmms-eval with ``padded_square`` moves the ground truth into
    the square (``(x + off_x) / side``).
    """
    w, h = int(image_size[0]), int(image_size[1])
    frame, parser = canonical(frame), canonical(parser)
    if frame not in REC_FRAMES:
        raise LoupeError(f"unknown REC frame {frame!r}; valid: {', '.join(REC_FRAMES)}")
    gx1, gy1, gx2, gy2 = _gt_xyxy(box, box_format)
    pred = parse_box(prediction, parser)
    if pred is None:
        return None
    side = max(w, h)
    off_x, off_y = (side - w) // 2, (side - h) // 2
    if parser == "lmms_eval":
        if frame == "original":
            gt = (gx1 / w, gy1 / h, gx2 / w, gy2 / h)
        else:
            gt = ((gx1 + off_x) / side, (gy1 + off_y) / side, (gx2 + off_x) / side, (gy2 + off_y) / side)
        return box_iou(gt, pred)
    if parser == "convllava":
        p = np.array(pred, dtype=_F32)
        if _F32(_F32(_F32(p[0] + p[1]) + p[2]) + p[3]) >= 4:
            p = p / _F32(1000)
        if frame == "padded_square":
            p = p * _F32(side)
            if w != h:  # reserve_square_bbox: .tolist(), subtract in float64, back to float32
                q = [float(v) for v in p]
                if w > h:
                    q[1] -= (w - h) // 2
                    q[3] -= (w - h) // 2
                else:
                    q[0] -= (h - w) // 2
                    q[2] -= (h - w) // 2
                p = np.array(q, dtype=_F32)
        else:
            p = p * np.array([w, h, w, h], dtype=_F32)
        return _box_iou_f32(p, np.array([gx1, gy1, gx2, gy2], dtype=_F32))
    # uhd: target = label normalised to the original image, times the image size (float32), then
    # (pad branch) shifted, divided by the canvas size and rounded to float32 again.
    t = np.array([gx1 / w, gy1 / h, gx2 / w, gy2 / h], dtype=_F32)
    t = t * np.array([w, h, w, h], dtype=_F32)
    if frame == "padded_square":
        if w > h:
            t = t + np.array([0, (w - h) // 2, 0, (w - h) // 2], dtype=_F32)
        else:
            t = t + np.array([(h - w) // 2, 0, (h - w) // 2, 0], dtype=_F32)
        cw = ch = side
    else:
        cw, ch = w, h
    t = t / np.array([cw, ch, cw, ch], dtype=_F32)
    p = np.array(pred, dtype=_F32)
    return _box_iou_f32(p * _F32(1000), t * _F32(1000))


def rec_accuracy(prediction: str, box: Sequence[float], image_size: Sequence[int],
                 frame: str = "padded_square", iou: float = 0.5, parser: str = "convllava",
                 on_unparsable: str = "wrong", strict: bool | None = None,
                 box_format: str = "xyxy") -> float | None:
    """Acc@IoU of one referring expression: 1.0, 0.0, or ``None`` for a skipped sample.

    Defaults reproduce ConvLLaVA's ``evaluate_grounding.py`` (the seed paper with a REC table:
    ``frame="padded_square"``, ``parser="convllava"``, ``iou >= 0.5``). ``strict=None`` uses the parser's
    comparison: ``>=`` for ``convllava`` and ``lmms_eval``, ``>`` for ``uhd``; ``True``/``False`` forces
    ``>`` / ``>=``. ``on_unparsable``: ``"wrong"`` (default: 0.0), ``"skip"`` (UHD v2's ``continue``:
    returns ``None``, so the caller leaves the sample out of the denominator -- this inflates accuracy), or
    ``"zeros"`` (score the references' ``(0, 0, 0, 0)`` fallback box). See :func:`rec_iou` for the
    arguments.
    """
    if on_unparsable not in ("wrong", "skip", "zeros"):
        raise LoupeError(f"on_unparsable must be 'wrong', 'skip' or 'zeros', got {on_unparsable!r}")
    value = rec_iou(prediction, box, image_size, frame, parser, box_format)
    if value is None:
        if on_unparsable == "wrong":
            return 0.0
        if on_unparsable == "skip":
            return None
        value = rec_iou("[0, 0, 0, 0]", box, image_size, frame, parser, box_format)
        assert value is not None
    if strict is None:
        strict = canonical(parser) == "uhd"
    hit = value > iou if strict else value >= iou
    return 1.0 if hit else 0.0
