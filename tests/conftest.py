import os

import pytest
import torch

# at most 2 threads (the target machine's cores; more only oversubscribes a shared CI box), but a thread count the
# caller set (OMP_NUM_THREADS=1 in CI's thread check) is kept, so the suite really runs under it
if not os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny():
    """A tiny LLaVA-1.5 model + processor (random weights), shared read-only across tests."""
    import loupe

    torch.manual_seed(0)
    model, processor = loupe.build("llava15-tiny")
    model.eval()
    return model, processor
