"""A tiny LLaVA-1.5 overfits a small generated image-text task on CPU and survives save/load."""

import time

import torch
from PIL import Image

import loupe

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 220), "yellow": (240, 220, 20)}


def _task():
    samples = []
    for i, (name, rgb) in enumerate(COLOURS.items()):
        for j, size in enumerate([(80, 50), (40, 90)]):
            img = Image.new("RGB", size, (250, 250, 250))
            img.paste(Image.new("RGB", (size[0] // 2, size[1] // 2), rgb), (size[0] // 4 * (j + 1) // 2, size[1] // 4))
            samples.append((img, name))
    return samples


def test_tiny_llava_overfits_and_roundtrips(tmp_path):
    torch.manual_seed(0)
    model, proc = loupe.build("llava15-tiny")
    tok = proc.tokenizer
    samples = _task()
    question = "What colour is the square?"
    prompts = [tok.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
                                       tokenize=False, add_generation_prompt=True) for _ in samples]
    full = [p + " " + a + tok.eos_token for p, (_, a) in zip(prompts, samples)]
    batch = proc(images=[s[0] for s in samples], text=full)
    labels = batch["input_ids"].clone()
    for i, p in enumerate(prompts):  # train on the answer only
        n_prompt = proc(images=[samples[i][0]], text=[p])["input_ids"].shape[1]
        labels[i, :n_prompt] = -100
    labels[batch["attention_mask"] == 0] = -100

    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    t0, losses = time.time(), []
    for step in range(200):
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.4f} in {time.time() - t0:.1f}s")
    assert losses[-1] < 0.05 * losses[0]

    model.eval()
    gen_in = proc(images=[s[0] for s in samples], text=prompts, padding_side="left")
    out = model.generate(**gen_in, max_new_tokens=3, do_sample=False)
    answers = [a.strip() for a in tok.batch_decode(out[:, gen_in["input_ids"].shape[1]:], skip_special_tokens=True)]
    assert answers == [a for _, a in samples]

    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    m2 = loupe.LoupeForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, m2(**batch).logits)
