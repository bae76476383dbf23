"""Training data and resume reliability: bad records by position, system turns never trained, image slots out of
the loss normalisation, damaged checkpoints, odd encodings, refused images, resume keeps steps and counts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from loupe.errors import LoupeError

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "recipes" / "tiny-llava15.yaml"


@pytest.fixture(scope="module")
def proc():
    import loupe

    return loupe.build_processor("llava15-tiny")


def _recipe(root, *over):
    from loupe.training import load_recipe

    return load_recipe(TINY_RECIPE, [f"data_root={root}", "stages.2.init_from=model", *over])


# --- 1. bad records are counted by position, not by id ---------------------------------------------------------
def test_broken_lines_sharing_an_id_count_one_each(tmp_path, proc):
    from loupe.data import LlavaDataset, write_tiny_dataset

    path = write_tiny_dataset(tmp_path, n=8)
    good = path.read_text()
    broken = "".join(json.dumps({"id": "dup", "conversations": [{"from": "human", "value": f"q{i}"}]}) + "\n"
                     for i in range(8))  # no assistant turn, all with the id "dup"
    path.write_text(good + broken + '{"id": "dup", not json\n')
    ds = LlavaDataset(path, proc, template="tiny")
    bad = ds.upfront
    assert len(bad) == 9 and bad.seen == 17 and len(ds) == 8
    assert bad.ids == ["dup", "train.jsonl:17"]  # the malformed line has no readable id: its position
    report = bad.to_json()
    assert report["bad"] == 9 and set(report["records"]) == {f"train.jsonl:{i}" for i in range(9, 18)}
    assert "skipped 9 bad record(s) of 17" in bad.summary() and "dup (train.jsonl:9)" in bad.summary()
    assert bad.fraction() == 9 / 17


# --- 2. a system turn is never a training target -------------------------------------------------------------
@pytest.mark.parametrize("name", ["vicuna_v1", "llama3", "chatml", "plain", "tiny"])
def test_a_mid_conversation_system_turn_is_never_trained(name, proc):
    from loupe.templates import get_template

    tok = proc.tokenizer
    msgs = [{"role": "system", "content": "zebra zebra"}, {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "yes"}, {"role": "system", "content": "walrus walrus walrus"},
            {"role": "user", "content": "again"}, {"role": "assistant", "content": "no"}]
    enc = tok.apply_chat_template(msgs, chat_template=get_template(name), tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    trained = tok.decode([t for t, m in zip(ids, mask) if m])
    assert "walrus" not in trained and "zebra" not in trained, (name, trained)
    assert "yes" in trained and "no" in trained


# --- 3. image slots never count in num_items_in_batch, whatever the collator -------------------------------
def _user_collator(pad_id, image_id):
    """A typical hand-written collator: pads, and labels every non-pad token of the answer *and* the image slots
    (it derives labels from input_ids where the dataset's labels are set, and forgets to mask <image>)."""

    def collate(features):
        t = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), t), pad_id)
        labels = torch.full((len(features), t), -100)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = f["input_ids"]
            keep = (f["labels"] != -100) | (f["input_ids"] == image_id)
            labels[i, :n] = torch.where(keep, f["input_ids"], -100)
        return {"input_ids": ids, "attention_mask": (ids != pad_id).long(), "labels": labels,
                "pixel_values": torch.cat([f["pixel_values"] for f in features]),
                "image_sizes": torch.cat([f["image_sizes"] for f in features])}

    return collate


@pytest.mark.parametrize("trainer_kind", ["hf", "loupe"])
def test_image_slots_never_normalise_the_loss(trainer_kind, tmp_path):
    import loupe
    from transformers import Trainer, TrainingArguments

    from loupe.data import LlavaDataset, write_tiny_dataset
    from loupe.training.freezing import plan_trainable
    from loupe.training.recipe import PartSpec
    from loupe.training.trainer import LoupeTrainer

    torch.manual_seed(0)
    model, proc = loupe.build("llava15-tiny")
    path = write_tiny_dataset(tmp_path, n=8, text_every=0, multi_every=0)
    ds = LlavaDataset(path, proc, template="tiny")
    collate = _user_collator(proc.tokenizer.pad_token_id, proc.image_token_id)
    batch = collate([ds[0], ds[1]])
    assert ((batch["labels"] == proc.image_token_id).sum()) > 0  # the collator did leave image slots labelled
    args = TrainingArguments(output_dir=str(tmp_path / "o"), per_device_train_batch_size=2, report_to="none",
                             use_cpu=True, remove_unused_columns=False)
    if trainer_kind == "hf":
        trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collate)
    else:
        plan = plan_trainable(model, {"connector": PartSpec(lr=1e-3)})
        trainer = LoupeTrainer(model=model, args=args, train_dataset=ds, data_collator=collate, plan=plan)
    model.train()
    with torch.no_grad():
        step = dict(batch)  # as in Trainer: the dicts counted are the ones then passed to the forward
        n = trainer._get_num_items_in_batch([step], torch.device("cpu"))
        got = trainer.compute_loss(model, step, num_items_in_batch=n)
        masked = batch["labels"].masked_fill(batch["input_ids"] == proc.image_token_id, -100)
        want = model(**{**batch, "labels": masked}).loss
    assert torch.allclose(got, want, rtol=1e-5), (float(got), float(want))


# --- 5. odd encodings ----------------------------------------------------------------------------------------
def test_utf8_bom_json_list_and_non_utf8_files(tmp_path):
    from loupe.data import read_records

    recs = [{"id": "a", "conversations": [{"from": "human", "value": "é?"}, {"from": "gpt", "value": "ü"}]},
            {"id": "b", "conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]}]
    p = tmp_path / "bom.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(recs, indent=1, ensure_ascii=False).encode())
    good, bad = read_records(p)
    assert [rid for _, rid, _ in good] == ["a", "b"] and not bad
    assert good[0][2]["conversations"][0]["value"] == "é?" and good[1][0] == "bom.json#1"
    q = tmp_path / "bom.jsonl"
    q.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(r).encode() + b"\n" for r in recs))
    assert [rid for _, rid, _ in read_records(q)[0]] == ["a", "b"]
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(json.dumps(recs[1]).encode() + b"\n" + json.dumps(recs[0], ensure_ascii=False).encode("latin-1"))
    with pytest.raises(LoupeError, match=r"latin1.jsonl: not UTF-8 text \(byte 0xe9 at line 2"):
        read_records(latin)


# --- 6. an image the slicer refuses is a bad record, never the end of the run -------------------------------
def test_a_refused_image_is_a_bad_record_in_loupe_train(tmp_path, monkeypatch):
    from PIL import Image

    from loupe.data import write_tiny_dataset
    from loupe.processing import LoupeImageProcessor
    from loupe.training import run_recipe, stage_dir

    path = write_tiny_dataset(tmp_path / "data", n=16, multi_every=0)
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    victim = next(r for r in recs if isinstance(r.get("image"), str))
    Image.new("RGB", (65, 1), (1, 2, 3)).save(tmp_path / "data" / victim["image"])  # a 65x1 stand-in
    real = LoupeImageProcessor.process

    def refuse_thin(self, images, *a, **k):
        if any(im.size[1] == 1 for im in images):
            raise LoupeError("image 65x1: aspect ratio 65 exceeds the slicer's limit")
        return real(self, images, *a, **k)

    monkeypatch.setattr(LoupeImageProcessor, "process", refuse_thin)
    recipe = _recipe(tmp_path / "data", "stages.2.global_batch_size=4", "stages.2.per_device_batch_size=4",
                     "stages.2.data.max_bad_fraction=0.2")
    run_recipe(recipe, output=tmp_path / "run", stages=[1])
    sdir = stage_dir(tmp_path / "run", recipe, 1)
    report = json.loads((sdir / "bad_records.json").read_text())
    assert [(v["id"], v["kind"]) for v in report["records"].values()] == [(victim["id"], "bad_image")]
    assert "aspect ratio 65" in next(iter(report["records"].values()))["message"]
    assert json.loads((sdir / "DONE.json").read_text())["global_step"] == 4


# --- 5 + 7. resume: damaged newest checkpoint, only the remaining steps, bad-record counts kept --------------
class _Steps:
    """A TrainerCallback counting the optimizer steps this process runs."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                outer.steps.append(state.global_step)

        self.steps: list[int] = []
        self.cb = CB()


def test_resume_skips_a_truncated_checkpoint_trains_only_the_rest_and_keeps_bad_counts(tmp_path, monkeypatch,
                                                                                       caplog):
    from transformers import Trainer

    from loupe.data import write_tiny_dataset
    from loupe.training import run_recipe, stage_dir

    path = write_tiny_dataset(tmp_path / "data", n=32, multi_every=0)
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    corrupt = [r["id"] for r in recs if isinstance(r.get("image"), str)][::2]  # 12 lazily found bad records
    for r in recs:
        if r["id"] in corrupt:
            (tmp_path / "data" / r["image"]).write_bytes(b"not an image")
    recipe = _recipe(tmp_path / "data", "stages.2.global_batch_size=4", "stages.2.per_device_batch_size=4",
                     "stages.2.save_steps=2", "stages.2.save_total_limit=5", "stages.2.data.max_bad_fraction=1.0")
    sdir = stage_dir(tmp_path / "run", recipe, 1)
    real = Trainer._save_optimizer_and_scheduler

    def dies_at_step_6(self, output_dir):
        if self.state.global_step == 6:
            raise KeyboardInterrupt("simulated crash while writing checkpoint-6")
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", dies_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, output=tmp_path / "run", stages=[1])
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", real)
    assert (sdir / "checkpoint-4").is_dir() and not (sdir / "checkpoint-6").exists()
    before = json.loads((sdir / "checkpoint-2" / "loupe_bad_records_rank0.json").read_text())
    assert before["records"], "the test needs bad records found before checkpoint-2"
    opt = sdir / "checkpoint-4" / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[: opt.stat().st_size // 2])  # a copy cut short

    counter = _Steps()
    with caplog.at_level(logging.WARNING, logger="loupe.train"):
        run_recipe(recipe, output=tmp_path / "run", stages=[1], resume=True, callbacks=[counter.cb])
    assert "checkpoint-4" in caplog.text and "optimizer.pt is truncated" in caplog.text
    assert counter.steps == [3, 4, 5, 6, 7, 8]  # resumed after step 2: only the remaining steps ran
    assert json.loads((sdir / "DONE.json").read_text())["global_step"] == 8
    report = json.loads((sdir / "bad_records.json").read_text())
    assert sorted(v["id"] for v in report["records"].values()) == sorted(corrupt)  # none forgotten


def test_no_intact_checkpoint_is_a_clear_error(tmp_path):
    from loupe.training.runner import intact_checkpoint

    ck = tmp_path / "checkpoint-3"
    ck.mkdir()
    (ck / "trainer_state.json").write_text("{")
    with pytest.raises(LoupeError, match="no intact checkpoint.*checkpoint-3.*trainer_state.json"):
        intact_checkpoint(tmp_path, "stage 2")
