"""A small tokenizer built locally, for the tiny presets, tests and the demo (no hub needed).

A byte-level BPE trained with `tokenizers` on an embedded English corpus (deterministic), wrapped as a
``PreTrainedTokenizerFast`` with ``<s>``, ``</s>``, ``<pad>``, ``<unk>``, ``<image>`` special tokens and a chat
template from :mod:`loupe.templates`. Pads on the left (saved as ``padding_side: "left"``, as llava-hf's
tokenizers), so a batched ``generate`` or ``pipeline`` call continues every prompt from its last token.
Always exactly ``vocab_size`` entries long (filled with reserved tokens), so tiny model configs can fix their
vocabulary size up front.
"""

from __future__ import annotations

import functools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .templates import get_template

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]

_WORDS = """
the a an is are was were be been of to in on at by for with from and or not no yes what which who where
when how why this that these those it its there here left right top bottom middle center centre above
below between next near far inside outside corner up down first second third last one two three four
five six seven eight nine ten zero 0 1 2 3 4 5 6 7 8 9 red green blue yellow orange purple pink brown black
white gray grey cyan magenta colour color shape circle square triangle star cross line dot mark marks
tag label digit digits number letter letters word text small tiny big large many few count how many
image picture photo figure chart document page table read answer question single phrase option
choose describe detail details object objects side half quarter row column grid tile tiles view
user assistant human system please the image shows there is there are a the of see look find
""".split()

_SENTENCES = [
    "What is the digit on the tag? Answer with a single word.",
    "Is the big shape on the left or the right?",
    "Which colour is the small mark in the top left corner?",
    "How many small dots are there in the image?",
    "Describe the image in one sentence.",
    "The image shows a large circle on the left and a small tag with a digit.",
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
    "USER: ASSISTANT: USER: ASSISTANT:",
    "USER: <image> ASSISTANT:",
]


def _corpus() -> list[str]:
    lines = list(_SENTENCES)
    for i in range(0, len(_WORDS), 8):
        lines.append(" ".join(_WORDS[i : i + 8]))
    lines += [" ".join(_WORDS[i::7]) for i in range(7)]
    lines += [str(n) for n in range(100)]
    return lines * 4


@functools.lru_cache(maxsize=8)
def _trained(vocab_size: int) -> str:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    n = tok.get_vocab_size()
    if n < vocab_size:
        tok.add_tokens([f"<reserved_{i}>" for i in range(vocab_size - n)])
    return tok.to_str()


def build_tiny_tokenizer(vocab_size: int = 1024, template: str = "tiny") -> PreTrainedTokenizerFast:
    """The tiny presets' tokenizer: ``len(tokenizer) == vocab_size`` exactly."""
    if vocab_size < 300:
        raise ValueError("vocab_size must be at least 300 (256 bytes + specials + merges)")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained(vocab_size)),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        chat_template=get_template(template),
        model_max_length=4096,
        padding_side="left",  # generation pads on the left, as llava-hf's saved tokenizers; training pads in its collator
    )
    assert len(tok) == vocab_size, (len(tok), vocab_size)
    return tok
