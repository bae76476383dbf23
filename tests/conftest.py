import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny():
    """A tiny LLaVA-1.5 model + processor (random weights), shared read-only across tests."""
    import loupe

    torch.manual_seed(0)
    model, processor = loupe.build("llava15-tiny")
    model.eval()
    return model, processor
