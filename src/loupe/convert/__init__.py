"""Checkpoint layouts <-> Loupe, the one home of them: one module per source layout, each a key map kept as data
(a list of ``(regex, replacement)`` rules), the shared :class:`~loupe.convert.common.ConversionReport`, and strict
loading that names every missing, unexpected or mis-shaped key.

* :mod:`.llava_hf` — transformers ``LlavaForConditionalGeneration`` / ``LlavaNextForConditionalGeneration``
  folders (three key layouts), import and export (``--to llava-hf``), streamed shard by shard;
* :mod:`.llava` — the original LLaVA-1.5 / LLaVA-NeXT repo layout (``model.mm_projector.*``, ``mm_*`` fields),
  the vision tower from the checkpoint or a CLIP folder;
* :mod:`.conv_llava` — ConvLLaVA (the LLaVA repo layout + a five-stage ``ConvNextModel`` tower folder);
* :mod:`.inf_llava`, :mod:`.llava_uhd_v2` — the INF-LLaVA and LLaVA-UHD v2 releases (key maps, loading into a
  built model); :mod:`.released` converts their folders with the parts of a ``--preset``.

:func:`convert` is what ``loupe convert`` runs.
"""

from __future__ import annotations

from ..errors import LoupeError
from .common import ConversionReport

FROM_FORMATS = ("llava-hf", "llava", "conv-llava", "inf-llava", "llava-uhd-v2")
TO_FORMATS = ("llava-hf",)


def convert(src, dst, from_format: str | None = None, to_format: str | None = None, dtype=None,
            dry_run: bool = False, **options) -> ConversionReport:
    """Convert the checkpoint folder ``src`` into ``dst``: ``from_format`` (a released layout -> a complete Loupe
    folder) or ``to_format`` (a Loupe folder -> that layout). ``dry_run``: return the plan, write nothing. ``dst``
    is written to a temporary sibling and renamed at the end, never left half-written."""
    if (from_format is None) == (to_format is None):
        raise LoupeError("give exactly one of --from FORMAT (import into Loupe) or --to FORMAT (export from Loupe)")
    if from_format is not None and from_format not in FROM_FORMATS:
        raise LoupeError(f"--from {from_format!r} is not a known layout; choose from {', '.join(FROM_FORMATS)}")
    if to_format is not None and to_format not in TO_FORMATS:
        raise LoupeError(f"--to {to_format!r} is not a known layout; choose from {', '.join(TO_FORMATS)}")
    released = ("preset", "vision_tower", "language_model")
    takes = {"llava": ("vision_tower", "language_model"), "conv-llava": ("vision_tower", "language_model"),
             "inf-llava": released, "llava-uhd-v2": released}.get(from_format, ())
    unused = sorted(k for k, v in options.items() if v is not None and k not in takes)
    if unused:
        raise LoupeError(f"option(s) {', '.join(unused)} do not apply to --{'from' if from_format else 'to'} "
                         f"{from_format or to_format}")
    from . import conv_llava, llava, llava_hf, released

    if from_format in ("inf-llava", "llava-uhd-v2"):
        return released.import_folder(from_format, src, dst, dtype=dtype, dry_run=dry_run,
                                      **{k: options.get(k) for k in takes})

    if from_format in ("llava", "conv-llava"):
        module = llava if from_format == "llava" else conv_llava
        return module.import_folder(src, dst, dtype=dtype, dry_run=dry_run, **{k: options.get(k) for k in takes})

    if to_format is not None:
        return llava_hf.export_folder(src, dst, dtype=dtype, dry_run=dry_run)
    return llava_hf.import_folder(src, dst, dtype=dtype, dry_run=dry_run)
