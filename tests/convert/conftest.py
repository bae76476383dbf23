"""Session fixtures of tests/convert: tiny llava-hf folders saved by transformers."""

import pytest
import torch
from convert_helpers import hf_llava


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny (width 64): a second intra-op thread only adds synchronisation, which on a busy
    machine costs more than the matmuls (25 ms per Linear seen with 2 threads on 2 shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def llava_hf_folders(tmp_path_factory):
    """{"llava": folder, "llava_next": folder}: each model + processor saved with ``save_pretrained``."""
    out = {}
    for kind in ("llava", "llava_next"):
        folder = tmp_path_factory.mktemp(kind) / "src"
        model, proc = hf_llava(kind)
        model.save_pretrained(folder)
        proc.save_pretrained(folder)
        out[kind] = folder
    return out
