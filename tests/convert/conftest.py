"""Session fixtures of tests/convert: tiny llava-hf folders saved by transformers."""

import pytest
from convert_helpers import hf_llava


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
