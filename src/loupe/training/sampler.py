"""``ModalityLengthGroupedSampler``: LLaVA's ``group_by_modality_length``, made independent of the world size.

LLaVA (``llava_trainer.get_modality_length_grouped_indices``) keeps image and text-only samples in separate
batches and sorts by length inside "megabatches" so padding stays small. Its grouping depends on
``world_size x per_device_batch``, so 1 and 2 processes see different batches. Here everything is cut by the
**global batch** (per-device x processes x accumulation, the recipe's ``global_batch_size``): each optimizer
step draws the same set of samples whatever the number of processes; accelerate then deals the consecutive
per-device slices round-robin to the ranks. Within a global batch samples are sorted longest first, so each
rank's micro-batch holds similar lengths.

Order: a seeded permutation per modality (seed + epoch) -> megabatches of ``group`` global batches, each sorted
by length -> cut into global batches; the partial leftovers of both modalities are merged into mixed batches
at the end; full batches are shuffled. Deterministic from (seed, epoch): resuming re-creates the same order
and the trainer skips the batches already seen.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ModalityLengthGroupedSampler(Sampler[int]):
    def __init__(self, lengths: list[int], is_multimodal: list[bool], global_batch: int, seed: int = 0,
                 group: int = 8, by_length: bool = True):
        self.lengths = list(lengths)
        self.is_multimodal = list(is_multimodal)
        self.global_batch = int(global_batch)
        self.seed = int(seed)
        self.group = int(group)
        self.by_length = by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        return iter(self.indices())

    def indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n, gb = len(self.lengths), self.global_batch
        if not self.by_length:
            return torch.randperm(n, generator=g).tolist()
        full, leftovers = [], []
        for modality in (True, False):
            idx = [i for i in range(n) if self.is_multimodal[i] == modality]
            perm = [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
            mega = gb * self.group
            batches = []
            for s in range(0, len(perm), mega):
                chunk = sorted(perm[s : s + mega], key=lambda i: -self.lengths[i])
                batches += [chunk[k : k + gb] for k in range(0, len(chunk), gb)]
            full += [b for b in batches if len(b) == gb]
            leftovers += [i for b in batches if len(b) < gb for i in b]
        order = torch.randperm(len(full), generator=g).tolist()
        out = [i for j in order for i in full[j]]
        leftovers = sorted(leftovers, key=lambda i: -self.lengths[i])
        return out + leftovers
