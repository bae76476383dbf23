"""``loupe chat --max-image-tokens``: the same budget function as the server (``loupe.budget``)."""

import numpy as np
import torch
from PIL import Image

import loupe
from loupe.budget import choose_slicer, count
from loupe.cli.main import main
from loupe.serving.chat import ChatSession


def test_chat_budget_picks_the_largest_setting_that_fits(tmp_path, capsys):
    torch.manual_seed(0)
    model, proc = loupe.build("llava-next-tiny")
    model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 160, 3), dtype=np.uint8))
    img.save(tmp_path / "a.png")
    ip = proc.image_processor
    full = proc.num_image_tokens(img)
    budget = full - 1
    fitted = choose_slicer(ip.slicer, ip.vision, ip.connector, img.size, max_tokens=budget)
    n = count(fitted, ip.vision, ip.connector, img.size)
    assert n <= budget < full

    seen = []
    orig = model.generate

    def spy(**kw):
        seen.append(int((kw["input_ids"] == model.config.image_token_id).sum()))
        return orig(**kw)

    model.generate = spy
    session = ChatSession(model.eval(), proc, max_new_tokens=4, max_image_tokens=budget)
    answer = session.ask("What is this?", [img])
    assert seen == [n]  # llava-next: every position of the plan is a visual slot

    assert main(["chat", "--model", str(tmp_path / "m"), "--image", str(tmp_path / "a.png"), "--max-new-tokens", "4",
                 "--max-image-tokens", str(budget), "What is this?"]) == 0
    assert capsys.readouterr().out.strip() == answer
    assert main(["chat", "--model", str(tmp_path / "m"), "--image", str(tmp_path / "a.png"),
                 "--max-image-tokens", "3", "What is this?"]) == 2
    assert "below the minimum" in capsys.readouterr().err
