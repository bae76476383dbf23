"""Bad images get a LoupeError naming the problem; every PIL mode becomes 8-bit RGB."""

import io

import numpy as np
import pytest
from PIL import Image

from loupe import LoupeError
from loupe.images import load_image


def _png(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_missing_file(tmp_path):
    with pytest.raises(LoupeError, match="not found"):
        load_image(tmp_path / "nope.png")


def test_not_an_image(tmp_path):
    p = tmp_path / "x.png"
    p.write_text("hello")
    with pytest.raises(LoupeError, match="not a recognised image"):
        load_image(p)


def test_truncated_file(tmp_path):
    data = _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    p = tmp_path / "t.png"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoupeError, match="truncated or corrupt|cannot read"):
        load_image(p)


def test_zero_size():
    with pytest.raises(LoupeError, match="zero-size"):
        load_image(np.zeros((0, 5, 3), dtype=np.uint8))


def test_decompression_bomb_checked_before_decoding(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(p)
    with pytest.raises(LoupeError, match="over the cap"):
        load_image(p, max_pixels=1_000_000)
    assert load_image(p, max_pixels=None).size == (3000, 3000)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "1", "P", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_modes_become_rgb(mode, tmp_path):
    img = Image.new("RGB", (9, 7), (200, 100, 50)).convert(mode)
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (9, 7)


def test_transparent_pixels_become_white():
    a = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    a[0, 0] = (255, 0, 0, 255)
    out = np.asarray(load_image(Image.fromarray(a, "RGBA")))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[3, 3]) == (255, 255, 255)


def test_16bit_is_rescaled():
    a = np.full((3, 3), 65535, dtype=np.uint16)
    img = Image.fromarray(a)
    assert img.mode == "I;16"
    out = np.asarray(load_image(img))
    assert out.max() == 255


def test_bytes_input():
    out = load_image(_png(Image.new("RGB", (5, 6), "red")))
    assert out.size == (5, 6)


# --- EXIF orientation, data URIs, tensors, URLs, the bomb check before decoding -----------------------------
import base64  # noqa: E402
import http.server  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from PIL import ImageFile  # noqa: E402


def _exif_jpeg(orientation=6):
    """A 40x20 JPEG, red left half / blue right half, tagged with ``orientation``."""
    a = np.zeros((20, 40, 3), dtype=np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", exif=exif, quality=95)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["path", "bytes", "pil", "data_uri"])
def test_exif_orientation_6_is_applied(kind, tmp_path):
    data = _exif_jpeg(6)  # 6 = rotate 90 degrees clockwise to display: the red left half goes on top
    src = {"bytes": data, "data_uri": "data:image/jpeg;base64," + base64.b64encode(data).decode()}.get(kind)
    if kind == "path":
        src = tmp_path / "rot.jpg"
        src.write_bytes(data)
    elif kind == "pil":
        src = Image.open(io.BytesIO(data))
    out = np.asarray(load_image(src)).astype(int)
    assert out.shape == (40, 20, 3)
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60  # top: red
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60  # bottom: blue


def test_no_orientation_tag_keeps_the_image():
    assert load_image(_exif_jpeg(1)).size == (40, 20)


def test_data_uris():
    png = _png(Image.new("RGB", (5, 6), (10, 20, 30)))
    out = load_image("data:image/png;base64," + base64.b64encode(png).decode())
    assert out.size == (5, 6) and out.getpixel((0, 0)) == (10, 20, 30)
    with pytest.raises(LoupeError, match="malformed data URI .*no ','"):
        load_image("data:image/png;base64")
    with pytest.raises(LoupeError, match="malformed data URI .*invalid base64"):
        load_image("data:image/png;base64,@@@not-base64@@@")
    with pytest.raises(LoupeError, match="media type 'text/plain', not an image"):
        load_image("data:text/plain;base64," + base64.b64encode(png).decode())
    with pytest.raises(LoupeError, match="holds no data"):
        load_image("data:image/png;base64,")
    with pytest.raises(LoupeError, match="not a recognised image format"):
        load_image("data:image/png;base64," + base64.b64encode(b"hello").decode())


def test_torch_tensors_chw_and_hwc():
    a = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    ref = np.asarray(load_image(a))
    assert np.array_equal(np.asarray(load_image(torch.from_numpy(a))), ref)  # HWC uint8
    assert np.array_equal(np.asarray(load_image(torch.from_numpy(a).permute(2, 0, 1))), ref)  # CHW uint8
    f = torch.from_numpy(a).permute(2, 0, 1).float() / 255  # CHW float in [0, 1]
    assert np.array_equal(np.asarray(load_image(f)), ref)
    assert np.array_equal(np.asarray(load_image(f.permute(1, 2, 0).half())), ref)  # HWC half
    assert load_image(torch.zeros(1, 5, 7)).size == (7, 5)
    with pytest.raises(LoupeError, match=r"values in \[0, 1\], got -1..2"):
        load_image(torch.linspace(-1, 2, 3 * 4 * 5).reshape(3, 4, 5))
    with pytest.raises(LoupeError, match="one image at a time"):
        load_image(torch.zeros(2, 3, 4, 4))
    with pytest.raises(LoupeError, match="uint8 or float"):
        load_image(torch.zeros(3, 4, 4, dtype=torch.int32))


def test_urls_need_an_opt_in():
    with pytest.raises(LoupeError) as e:
        load_image("https://example.com/cat.png")
    msg = str(e.value)
    assert "https://example.com/cat.png is a URL" in msg and "allow_urls=True" in msg and "not found" not in msg


@pytest.fixture
def http_server():
    png = _png(Image.new("RGB", (3, 4), "red"))

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/x.png", len(png)
    srv.shutdown()
    srv.server_close()


def test_urls_with_the_opt_in(http_server):
    url, n = http_server
    assert load_image(url, allow_urls=True).size == (3, 4)
    with pytest.raises(LoupeError, match=f"larger than the limit of {n - 1:,} bytes"):
        load_image(url, allow_urls=True, max_url_bytes=n - 1)
    with pytest.raises(LoupeError, match="cannot fetch image"):
        load_image("http://127.0.0.1:1/none.png", allow_urls=True, url_timeout=2)


def _png_header_only(width, height):
    """A valid PNG signature + IHDR claiming width x height, one tiny IDAT, IEND: a few dozen bytes."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_bomb_is_refused_without_decoding(monkeypatch, tmp_path):
    """The cap is checked from the header: decoding (``ImageFile.load``) is never reached for an over-cap image."""
    calls = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    p = tmp_path / "big.png"
    Image.new("L", (1100, 1000)).save(p)
    with pytest.raises(LoupeError, match="1100x1000 = 1,100,000 pixels, over the cap of 1,000,000"):
        load_image(p, max_pixels=1_000_000)
    assert calls == []
    bomb = _png_header_only(100_000, 100_000)
    t0 = time.perf_counter()
    with pytest.raises(LoupeError, match="100000x100000 = 10,000,000,000 pixels, over the cap"):
        load_image(bomb)
    assert calls == [] and time.perf_counter() - t0 < 1.0
    load_image(p, max_pixels=None)
    assert calls  # the probe does see decoding when it happens
