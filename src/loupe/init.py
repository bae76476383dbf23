"""Weight initialisation for parts that are not transformers models.

transformers' ``PreTrainedModel._init_weights`` draws every Linear/Conv weight from N(0, 0.02), which suits
transformer blocks but starves a from-scratch conv stem (measured: the demo encoder's stage-1 accuracy stayed
near chance with it). A part that sets ``self_init = True`` is initialised here instead, with PyTorch's
defaults (and its own ``init_module`` hook for custom parameters). Every call goes through
``transformers.initialization``, which skips tensors already loaded from a checkpoint.
"""

from __future__ import annotations

import math

from torch import nn
from transformers import initialization as init


def torch_default_init(module: nn.Module) -> bool:
    """PyTorch's default init for common layers (guarded); True when ``module`` was handled."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        init.kaiming_uniform_(module.weight, a=math.sqrt(5))
        if module.bias is not None:
            fan_in = module.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(module.bias, -bound, bound)
        return True
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)):
        if module.weight is not None:
            init.ones_(module.weight)
        if module.bias is not None:
            init.zeros_(module.bias)
        return True
    if isinstance(module, nn.Embedding):
        init.normal_(module.weight, 0.0, 1.0)
        return True
    if isinstance(module, nn.MultiheadAttention):
        if module.in_proj_weight is not None:
            init.xavier_uniform_(module.in_proj_weight)
        if module.in_proj_bias is not None:
            init.zeros_(module.in_proj_bias)
        return True
    return False
