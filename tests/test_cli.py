"""The ``loupe`` command: info, chat on a saved tiny model, errors as messages not tracebacks."""

import subprocess
import sys

from PIL import Image

import loupe
from loupe.cli.main import main


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "llava15-7b" in out and "slicers:" in out and "pad" in out


def test_chat_on_saved_model(tmp_path, tiny):
    model, proc = tiny
    model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")
    Image.new("RGB", (70, 40), "blue").save(tmp_path / "b.png")
    r = subprocess.run([sys.executable, "-m", "loupe.cli.main", "chat", "--model", str(tmp_path / "m"), "--image",
                        str(tmp_path / "b.png"), "--max-new-tokens", "4", "What colour?"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_chat_errors_are_messages(tmp_path, capsys):
    assert main(["chat", "--model", str(tmp_path), "--image", str(tmp_path / "x.png"), "q"]) == 2
    assert "image file not found" in capsys.readouterr().err
