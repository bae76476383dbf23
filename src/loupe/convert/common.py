"""What every converter of released checkpoints shares: reading the tensors of a local folder or file, renaming
them with a report, and checking them against the model before loading."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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


@dataclass
class ConversionReport:
    """What a converter did with each name: official names ``ignored`` (dropped on purpose) or ``unmatched`` (no
    rule), Loupe names ``loaded``, ``missing`` (required, absent), ``unexpected`` (mapped, not in the model) and
    ``left`` (optional, absent: kept as they were, e.g. a vision tower loaded from CLIP separately)."""

    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    #: the plan of a folder conversion: (source name, target name) pairs, (source name, why) drops, shape mismatches
    pairs: list[tuple[str, str]] = field(default_factory=list)
    reasons: list[tuple[str, str]] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.unmatched or self.mismatched)

    def plan(self) -> str:
        """Every source key -> target key, every key dropped on purpose with its reason, then every problem."""
        lines = [f"{a} -> {b}" for a, b in self.pairs]
        lines += [f"{a} dropped: {why}" for a, why in self.reasons]
        lines += [f"MISSING {k}" for k in self.missing] + [f"UNEXPECTED {k}" for k in self.unexpected]
        lines += [f"NO RULE {k}" for k in self.unmatched] + [f"SHAPE {k}" for k in self.mismatched]
        return "\n".join(lines + [str(self)])

    def __str__(self) -> str:
        return (f"{len(self.loaded)} tensors loaded, {len(self.ignored)} dropped on purpose, {len(self.left)} left as "
                f"they were, {len(self.missing)} missing, {len(self.unexpected) + len(self.unmatched)} unexpected"
                + (f", {len(self.mismatched)} of the wrong shape" if self.mismatched else ""))


def first_rule(rules, name: str) -> str | None:
    """``name`` renamed by the first (regex, replacement) rule that matches it (once), or None."""
    return next((re.sub(p, r, name, count=1) for p, r in rules if re.search(p, name)), None)


def rename_state_dict(state_dict: dict, rename, ignored) -> tuple[dict, ConversionReport]:
    """Official state dict -> (Loupe state dict, report). ``rename(name)`` gives the Loupe name or None; names that
    match a regex in ``ignored`` are dropped on purpose. Two keys landing on one name is an error."""
    out, report = {}, ConversionReport()
    for name, tensor in state_dict.items():
        if any(re.search(p, name) for p in ignored):
            report.ignored.append(name)
            continue
        new = rename(name)
        if new is None:
            report.unmatched.append(name)
            continue
        if new in out:
            raise LoupeError(f"two checkpoint keys map to {new!r}")
        out[new] = tensor
        report.loaded.append(new)
    return out, report


def fit_and_load(model, new: dict, report: ConversionReport, is_required, whole_parts=()) -> ConversionReport:
    """Check renamed weights against ``model`` and load them: every name the model lacks, every ``is_required``
    name the checkpoint lacks, every unmatched official name and every shape mismatch is an error naming them; a
    prefix in ``whole_parts`` must be all there or all absent. On the meta device the tensors are assigned."""
    mine = model.state_dict()
    report.unexpected = sorted(k for k in new if k not in mine)
    absent = sorted(k for k in mine if k not in new)
    report.missing = [k for k in absent if is_required(k)]
    report.left = [k for k in absent if not is_required(k)]
    if report.unmatched or report.unexpected or report.missing:
        raise LoupeError(
            f"checkpoint does not fit the model: {len(report.missing)} missing {report.missing[:8]}, "
            f"{len(report.unexpected)} unexpected after renaming {report.unexpected[:8]}, {len(report.unmatched)} "
            f"with no rule in KEY_MAP {report.unmatched[:8]}")
    for prefix in whole_parts:
        absent_part = [k for k in report.left if k.startswith(prefix)]
        if absent_part and any(k.startswith(prefix) for k in new):
            raise LoupeError(f"checkpoint holds only part of {prefix[:-1]}: missing {absent_part[:8]}")
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(mine[k].shape)}" for k, v in new.items()
           if tuple(v.shape) != tuple(mine[k].shape)]
    if bad:
        raise LoupeError(f"checkpoint shapes do not match the model ({len(bad)}): {bad[:8]}")
    on_meta = any(t.is_meta for t in mine.values())
    if on_meta:  # assigned as they are, so cast first; otherwise load_state_dict's copy_ casts without a second copy
        new = {k: v.to(mine[k].dtype) for k, v in new.items()}
    model.load_state_dict(new, strict=False, assign=on_meta)  # completeness was checked above
    return report


# --- streaming: headers first, then one tensor at a time ----------------------------------------------------------

#: safetensors dtype names (the format's header strings)
ST_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}
_FROM_ST = {v: k for k, v in ST_DTYPES.items()}
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def parse_dtype(name) -> torch.dtype | None:
    """``--dtype`` (float32 / float16 / bfloat16, or None to keep each tensor's) -> a torch dtype."""
    if name is None or isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[str(name).lower()]
    except KeyError:
        raise LoupeError(f"--dtype must be one of {sorted(DTYPES)}, got {name!r}") from None


def checkpoint_files(path, what: str = "checkpoint") -> list[Path]:
    """The weight files of a folder (``*.safetensors``, else ``pytorch_model*.bin``, else ``mm_projector.bin``) or
    one file, sorted; an error naming the folder when it holds none."""
    p = Path(path)
    if not p.exists():
        raise LoupeError(f"{what} not found: {p}")
    files = ([p] if p.is_file() else sorted(p.glob("*.safetensors")) or sorted(p.glob("pytorch_model*.bin"))
             or sorted(p.glob("mm_projector.bin")))
    if not files:
        raise LoupeError(f"{p} is not a checkpoint: it holds no *.safetensors, pytorch_model*.bin or "
                         f"mm_projector.bin file")
    return files


@dataclass
class TensorRef:
    """One tensor of a checkpoint, not yet read: its file, name there, shape and dtype."""

    file: Path
    name: str
    shape: tuple
    dtype: torch.dtype


class ShardReader:
    """Lazy access to the tensors of one checkpoint file. Safetensors: the header only, each tensor read when asked.
    ``.bin``: ``torch.load(mmap=True, weights_only=True)`` (pages are read on access; an old non-zip file is
    loaded whole). Errors (truncated or foreign files) name the file."""

    def __init__(self, file: Path):
        self.file = Path(file)
        self._st = self._bin = None
        try:
            if self.file.suffix == ".safetensors":
                from safetensors import safe_open

                self._st = safe_open(str(self.file), framework="pt")
            else:
                try:
                    obj = torch.load(str(self.file), map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError:
                    obj = torch.load(str(self.file), map_location="cpu", weights_only=True)
                if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
                    obj = obj["state_dict"]
                if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
                    raise LoupeError("not a state dict of tensors")
                self._bin = obj
        except Exception as e:  # corrupt, truncated or foreign files
            raise LoupeError(f"cannot read checkpoint file {self.file}: {e}") from None

    def refs(self) -> list[TensorRef]:
        if self._bin is not None:
            return [TensorRef(self.file, k, tuple(v.shape), v.dtype) for k, v in self._bin.items()]
        out = []
        for k in self._st.keys():
            sl = self._st.get_slice(k)
            dt = _FROM_ST.get(sl.get_dtype())
            if dt is None:
                raise LoupeError(f"{self.file}: tensor {k!r} has dtype {sl.get_dtype()}, which Loupe does not read")
            out.append(TensorRef(self.file, k, tuple(sl.get_shape()), dt))
        return out

    def get(self, name: str) -> torch.Tensor:
        try:
            return self._bin[name] if self._bin is not None else self._st.get_tensor(name)
        except Exception as e:
            raise LoupeError(f"cannot read tensor {name!r} from {self.file}: {e}") from None


def read_headers(files) -> list[TensorRef]:
    """Every tensor of ``files`` (names, shapes, dtypes), without reading the data of a safetensors file."""
    return [ref for f in files for ref in ShardReader(f).refs()]


def write_safetensors(path, items, metadata: dict | None = None) -> int:
    """Write ``items`` — (name, shape, dtype, get) with ``get()`` returning the tensor — as one safetensors file,
    one tensor in memory at a time (the header is computed from shapes first). Returns the bytes of tensor data."""
    import json
    import math

    items = list(items)
    header, offset = {}, 0
    for name, shape, dtype, _ in items:
        n = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name, shape, dtype, get in items:
            t = get()
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise LoupeError(f"tensor {name!r}: got {tuple(t.shape)} {t.dtype}, expected {tuple(shape)} {dtype}")
            t = t.detach().to("cpu").contiguous()
            if t.numel():
                f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
            del t
    return offset


def write_sharded(out_dir, shards, name: str = "model") -> dict:
    """Write ``shards`` (a list of item lists, see :func:`write_safetensors`) as ``model.safetensors`` or
    ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``; returns ``{name: file}``."""
    import json

    out_dir, n = Path(out_dir), len(shards)
    weight_map, total = {}, 0
    for i, items in enumerate(shards, 1):
        fname = f"{name}.safetensors" if n == 1 else f"{name}-{i:05d}-of-{n:05d}.safetensors"
        total += write_safetensors(out_dir / fname, items)
        weight_map.update({it[0]: fname for it in items})
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / f"{name}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return weight_map


class atomic_folder:
    """``with atomic_folder(dst) as tmp:`` write into ``tmp`` (a hidden sibling of ``dst``); on success it is renamed
    to ``dst``, on any error removed, so ``dst`` is never left half-written. ``dst`` must not exist, or be empty."""

    def __init__(self, dst):
        self.dst = Path(dst)

    def __enter__(self) -> Path:
        import tempfile

        if self.dst.exists() and (not self.dst.is_dir() or any(self.dst.iterdir())):
            raise LoupeError(f"destination {self.dst} already exists and is not empty; choose a new folder")
        parent = self.dst.resolve().parent
        if not parent.is_dir():
            raise LoupeError(f"the parent folder of the destination does not exist: {parent}")
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.dst.name}.partial-", dir=parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        import shutil

        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if self.dst.exists():
            self.dst.rmdir()  # empty (checked on entry)
        self.tmp.rename(self.dst)
        return False


def plan_conversion(refs, rename, dropped, expected: dict, required=lambda k: True) -> ConversionReport:
    """The plan of a streamed conversion, from headers only. ``refs``: the source :class:`TensorRef` s; ``rename``:
    source name -> target name or None; ``dropped``: ``(regex, reason)`` pairs for names dropped on purpose;
    ``expected``: target name -> shape. Reports every pair, drop, missing (``required``), unexpected, unmatched and
    shape-mismatched name; nothing is read or written."""
    report, seen = ConversionReport(), {}
    for ref in refs:
        why = next((reason for pat, reason in dropped if re.search(pat, ref.name)), None)
        if why is not None:
            report.ignored.append(ref.name)
            report.reasons.append((ref.name, why))
            continue
        new = rename(ref.name)
        if new is None:
            report.unmatched.append(ref.name)
            continue
        if new in seen:
            raise LoupeError(f"two checkpoint keys map to {new!r}: {seen[new]!r} and {ref.name!r}")
        seen[new] = ref.name
        report.pairs.append((ref.name, new))
        if new not in expected:
            report.unexpected.append(new)
            continue
        report.loaded.append(new)
        if tuple(ref.shape) != tuple(expected[new]):
            report.mismatched.append(f"{ref.name} -> {new}: {tuple(ref.shape)} vs {tuple(expected[new])}")
    absent = [k for k in expected if k not in seen]
    report.missing = [k for k in absent if required(k)]
    report.left = [k for k in absent if not required(k)]
    return report


def refuse(report: ConversionReport, src) -> None:
    """A :class:`LoupeError` with the full report when the plan has any missing/unexpected/mismatched tensor."""
    if not report.ok:
        problems = "\n".join(line for line in report.plan().splitlines() if line.split(" ", 1)[0] in
                             ("MISSING", "UNEXPECTED", "NO", "SHAPE"))
        raise LoupeError(f"{src} does not fit the target model ({report}):\n{problems}")


def write_weights(out_dir, refs, report: ConversionReport, dtype: torch.dtype | None = None) -> dict:
    """Write the renamed tensors of ``report.pairs`` shard by shard, one output shard per source file, one tensor
    in memory at a time (cast to ``dtype`` when given; integer tensors keep theirs)."""
    targets = dict(report.pairs)
    readers: dict = {}
    by_file: dict = {}
    for ref in refs:
        if ref.name in targets:
            by_file.setdefault(ref.file, []).append(ref)

    def item(ref):
        out_dtype = dtype if dtype is not None and ref.dtype.is_floating_point else ref.dtype

        def get():
            if ref.file not in readers:
                readers.clear()  # one open source file at a time
                readers[ref.file] = ShardReader(ref.file)
            return readers[ref.file].get(ref.name).to(out_dtype)

        return targets[ref.name], ref.shape, out_dtype, get

    shards = [[item(r) for r in rs] for rs in by_file.values()]
    try:
        return write_sharded(out_dir, shards)
    finally:
        readers.clear()
