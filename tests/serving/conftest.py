import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image


def png_bytes(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


@pytest.fixture(scope="session")
def img():
    """Helpers: ``img.png(w, h, seed)`` -> PNG bytes, ``img.uri(raw)`` -> data URI."""

    class _H:
        png = staticmethod(png_bytes)
        uri = staticmethod(data_uri)

    return _H


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory):
    """llava-next-tiny (random weights) saved with its processor; anyres has a budget knob (pinpoints)."""
    import loupe

    torch.manual_seed(0)
    model, processor = loupe.build("llava-next-tiny")
    d = tmp_path_factory.mktemp("llava-next-tiny")
    model.save_pretrained(d)
    processor.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    (root / "a.png").write_bytes(png_bytes(90, 60, seed=3))
    (root.parent / "outside.png").write_bytes(png_bytes(20, 20, seed=4))
    return root


@pytest.fixture(scope="session")
def server(saved_model, image_root):
    """A running server on 127.0.0.1 (free port), shut down at the end of the session."""
    from loupe.serving.chat import load
    from loupe.serving.server import BackgroundServer, Server, ServeOptions

    model, processor = load(str(saved_model))
    opts = ServeOptions(max_batch=8, max_queue=64, image_root=str(image_root), max_body_mb=20,
                        max_image_pixels=4_000_000)
    with BackgroundServer(Server(model, processor, opts, model_name="tiny")) as bg:
        yield bg
