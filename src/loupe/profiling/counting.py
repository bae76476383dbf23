"""Counting FLOPs and saved activations of real-size models on the ``meta`` device (no weights, no memory).

* :class:`Counter` wraps ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs = 2 x MACs of mm/addmm/bmm/conv/
  SDPA). [IMPORTANT] on real CPU tensors FlopCounterMode counts 0 for SDPA (the CPU flash kernel
  ``aten._scaled_dot_product_flash_attention_for_cpu`` has no entry in ``torch.utils.flop_counter``'s
  registry): the formulas for that kernel and its backward are registered here (:data:`CPU_SDPA`), so counts on
  CPU and on meta agree. On meta, SDPA decomposes into ``bmm`` + softmax + ``bmm``: attention is counted in full
  (non-causal T^2).
* :meth:`Counter.parts` splits the count of one call between named modules (the model's ``vision_tower`` and
  ``connector`` inside one ``get_image_features`` call) and :meth:`Counter.exclude` sets apart the FLOPs inside
  chosen modules (e.g. ``nn.MultiheadAttention``); both use forward hooks (the difference of the running total
  around the module's forward), independently of module names.
* :class:`ActivationMeter` measures what autograd keeps for backward (``saved_tensors_hooks``), one count per
  storage, parameters excluded, optionally per named module (:attr:`ActivationMeter.by_part`); the
  attention-probability matrices (outputs of softmax, which the math kernel stores and fused/flash kernels do
  not) are reported apart.
"""

from __future__ import annotations

import weakref
from contextlib import ExitStack

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


#: formulas FlopCounterMode lacks: the CPU fused attention kernel (forward and backward)
CPU_SDPA = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}
#: ops that compute attention scores / weighted values (matmuls of activations by activations)
ATTENTION_OPS = ("bmm", "baddbmm", "scaled_dot_product", "flash_attention", "efficient_attention")


class Counter:
    """``with Counter() as c: ...`` then ``c.total``, ``c.by_op``, ``c.excluded`` (FLOPs in excluded modules) and
    ``c.by_part`` (FLOPs per named module, see :meth:`parts`)."""

    def __init__(self):
        self.mode = FlopCounterMode(display=False, custom_mapping=CPU_SDPA)
        self.excluded = 0
        self.by_part: dict[str, int] = {}
        self._hooks: list = []

    def exclude(self, modules) -> "Counter":
        """Attribute the FLOPs computed inside ``modules`` to :attr:`excluded` (they stay in :attr:`total`)."""
        for m in modules:
            state = {}
            self._hooks.append(m.register_forward_pre_hook(lambda mod, args, s=state: s.update(t0=self.total)))
            self._hooks.append(m.register_forward_hook(lambda mod, a, out, s=state: self._add(s)))
        return self

    def _add(self, state) -> None:
        self.excluded += self.total - state.pop("t0", self.total)

    def parts(self, modules: dict[str, nn.Module]) -> "Counter":
        """Split the count between named modules: after the block, :attr:`by_part` ``{name: FLOPs computed inside
        that module's forward}`` (every call summed; a module reached twice inside itself is counted once)."""
        for name, m in modules.items():
            self.by_part[name] = 0
            state = {"depth": 0}
            self._hooks.append(m.register_forward_pre_hook(lambda mod, args, n=name, s=state: self._enter(n, s)))
            self._hooks.append(m.register_forward_hook(lambda mod, a, out, n=name, s=state: self._leave(n, s)))
        return self

    def _enter(self, name: str, state: dict) -> None:
        if state["depth"] == 0:
            state["t0"] = self.total
        state["depth"] += 1

    def _leave(self, name: str, state: dict) -> None:
        state["depth"] -= 1
        if state["depth"] == 0:
            self.by_part[name] += self.total - state.pop("t0")

    def __enter__(self) -> "Counter":
        self.mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.mode.__exit__(*exc)
        for h in self._hooks:
            h.remove()

    @property
    def total(self) -> int:
        return self.mode.get_total_flops()

    @property
    def by_op(self) -> dict[str, int]:
        return {str(k): v for k, v in self.mode.get_flop_counts().get("Global", {}).items()}

    @property
    def attention(self) -> int:
        """FLOPs of activation-by-activation matmuls (attention scores and weighted values)."""
        return sum(v for k, v in self.by_op.items() if any(a in k for a in ATTENTION_OPS))


class _SoftmaxSpy(TorchDispatchMode):
    """Records softmax outputs (the attention probabilities): their storages and element counts, in total and
    per part (``part_of()``: the name of the module running, or None)."""

    OPS = {aten._safe_softmax.default, aten._softmax.default}

    def __init__(self, part_of=lambda: None):
        super().__init__()
        self.storages: set[int] = set()
        self.elements = 0
        self.elements_by_part: dict = {}
        self.part_of = part_of
        self.keep: list = []  # holds the outputs so their storage ids are not reused (meta: costs nothing)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in self.OPS and isinstance(out, torch.Tensor):
            self.storages.add(out.untyped_storage()._cdata)
            self.elements += out.numel()
            part = self.part_of()
            self.elements_by_part[part] = self.elements_by_part.get(part, 0) + out.numel()
            self.keep.append(out)
        return out


class _FlashLikeSDPA(torch.autograd.Function):
    """SDPA whose forward runs the reference computation (counted, decomposed on meta) but keeps for backward
    only what a fused kernel keeps: q, k, v, the output and a float32 log-sum-exp per query."""

    @staticmethod
    def forward(ctx, fn, q, k, v, args, kwargs):
        out = fn(q, k, v, *args, **kwargs)
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - measurement only, never differentiated
        raise NotImplementedError("the activation meter measures, it does not train")


class _FusedAttention(TorchFunctionMode):
    """Runs ``F.scaled_dot_product_attention`` as a fused kernel would hold memory (on meta SDPA otherwise falls
    back to the math path, which materialises the probabilities, and float32 copies of q, k, v for bf16):
    with grad through :class:`_FlashLikeSDPA`; for a :class:`PeakMeter`, only the output is allocated."""

    def __init__(self, peak: "PeakMeter | None" = None):
        super().__init__()
        self.peak = peak

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        if self.peak is not None:
            self.peak.paused += 1
        try:
            if torch.is_grad_enabled():
                q, k, v, *rest = args
                out = _FlashLikeSDPA.apply(func, q, k, v, tuple(rest), kwargs)
            else:
                out = func(*args, **kwargs)
        finally:
            if self.peak is not None:
                self.peak.paused -= 1
        if self.peak is not None:
            self.peak.track(out)
        return out


class ActivationMeter:
    """Bytes autograd keeps for backward inside the block, one count per storage, parameters excluded.

    Attention runs as a fused kernel would (:class:`_FusedAttention`). After the block: :attr:`efficient`
    (what is kept with fused attention), :attr:`attention` (the attention-probability matrices an eager kernel
    would keep as well, at ``attention_bytes`` per element: bf16) and :attr:`attention_elements`. ``parts``
    (``{name: module}``): :attr:`by_part` gives the same two figures for what is saved while each module's
    forward runs (a storage saved by two parts counts once in each, as if each part were measured alone).
    """

    def __init__(self, parameters=(), attention_bytes: int = 2, parts: dict[str, nn.Module] | None = None):
        self.params = {p.untyped_storage()._cdata for p in parameters}
        self.attention_bytes = attention_bytes
        self.saved: dict[int, int] = {}
        self._parts = dict(parts or {})
        self._saved_by_part: dict[str, dict[int, int]] = {name: {} for name in self._parts}
        self._running: list[str] = []  # names of the parts whose forward is running, innermost last
        self._keep: list = []
        self._spy = _SoftmaxSpy(lambda: self._running[-1] if self._running else None)
        self._stack = ExitStack()

    def _pack(self, t: torch.Tensor):
        key = t.untyped_storage()._cdata
        if key in self.params:
            return t
        nbytes = t.untyped_storage().nbytes()
        if key not in self.saved:
            self.saved[key] = nbytes
            self._keep.append(t)  # keeps the storage alive so its id is not reused
        if self._running:
            self._saved_by_part[self._running[-1]].setdefault(key, nbytes)
        return t

    def __enter__(self) -> "ActivationMeter":
        for name, m in self._parts.items():
            pre = m.register_forward_pre_hook(lambda mod, args, n=name: self._running.append(n))
            post = m.register_forward_hook(lambda mod, args, out: self._leave())
            self._stack.callback(pre.remove)
            self._stack.callback(post.remove)
        self._stack.enter_context(torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t))
        self._stack.enter_context(_FusedAttention())
        self._stack.enter_context(self._spy)
        return self

    def _leave(self) -> None:  # a forward hook: returns None, so the module's output stays as it is
        self._running.pop()

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._keep.clear()
        self._spy.keep.clear()

    @property
    def efficient(self) -> int:
        """Saved bytes, less explicitly stored softmax outputs (an eager attention outside SDPA)."""
        return sum(v for k, v in self.saved.items() if k not in self._spy.storages)

    @property
    def attention_elements(self) -> int:
        return self._spy.elements

    @property
    def attention(self) -> int:
        return self.attention_elements * self.attention_bytes

    @property
    def by_part(self) -> dict[str, dict[str, int]]:
        """``{name: {"efficient": bytes, "attention": bytes}}`` for each module given as ``parts``."""
        return {name: {"efficient": sum(v for k, v in saved.items() if k not in self._spy.storages),
                       "attention": self._spy.elements_by_part.get(name, 0) * self.attention_bytes}
                for name, saved in self._saved_by_part.items()}


class PeakMeter(TorchDispatchMode):
    """Peak bytes of the tensors an op sequence allocates and still holds (inference working set, KV cache
    included), with attention held as a fused kernel holds it (:class:`_FusedAttention`). Each new storage
    counts once, from the op that creates it until its tensor is collected; views and in-place results (storages
    of an input) are not new; tensors alive before the block are not counted."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = self.paused = 0
        self._sizes: dict[int, int] = {}
        self._fused = _FusedAttention(self)

    def __enter__(self):
        self._fused.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._fused.__exit__(*exc)

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def track(self, t: torch.Tensor, given: set = frozenset()) -> None:
        key = t.untyped_storage()._cdata
        if key in given or key in self._sizes:
            return
        self._sizes[key] = t.untyped_storage().nbytes()
        self.live += self._sizes[key]
        self.peak = max(self.peak, self.live)
        weakref.finalize(t, self._free, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.paused:
            given = {t.untyped_storage()._cdata for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.track(t, given)
        return out
