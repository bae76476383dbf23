"""What every converter of released checkpoints shares: reading the tensors of a local folder or file."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import LoupeError


def read_checkpoint(path, what: str = "checkpoint") -> dict:
    """Tensors of a folder (``*.safetensors``, else ``pytorch_model*.bin``, else ``mm_projector.bin``) or of one file
    (a Lightning ``.ckpt`` is unwrapped from its ``state_dict``). ``what`` names the checkpoint in errors."""
    p = Path(path)
    if not p.exists():
        raise LoupeError(f"{what} not found: {p}")
    files = ([p] if p.is_file() else sorted(p.glob("*.safetensors")) or sorted(p.glob("pytorch_model*.bin"))
             or sorted(p.glob("mm_projector.bin")))
    if not files:
        raise LoupeError(f"{p} holds no *.safetensors, pytorch_model*.bin or mm_projector.bin file")
    sd: dict = {}
    for f in files:
        try:
            if f.suffix == ".safetensors":
                from safetensors.torch import load_file

                part = load_file(str(f))
            else:
                part = torch.load(str(f), map_location="cpu", weights_only=True)
        except Exception as e:  # corrupt or foreign files
            raise LoupeError(f"cannot read checkpoint file {f}: {e}") from None
        sd.update(part["state_dict"] if isinstance(part.get("state_dict"), dict) else part)
    return sd
