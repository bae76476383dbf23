"""Chat templates as Jinja strings, one per conversation format of the papers.

Each marks assistant answers with ``{% generation %}`` so ``tokenizer.apply_chat_template(...,
return_assistant_tokens_mask=True)`` yields the label mask (only the answers and their end-of-turn token
are trained; everything else is -100). Only ``assistant`` turns are ever inside ``{% generation %}``: a
``system`` turn anywhere in the conversation (or any other role) is context, never a training target.
Message content is a string (``<image>`` written inline) or a list of ``{"type": "image"}`` /
``{"type": "text", "text": ...}`` blocks (transformers' convention); an image block renders as ``<image>\n``,
as LLaVA puts the image before the text.

* ``vicuna_v1`` — LLaVA-1.5 / ConvLLaVA / UHD v2 (Vicuna): system line, ``USER: ... ASSISTANT: ...</s>``.
* ``llama3`` — INF-LLaVA (Llama-3-8B-Instruct): ``<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>``.
* ``chatml`` — Qwen2 (``qwen_1_5`` in LLaVA) and SmolLM2: ``<|im_start|>role\n...<|im_end|>\n``.
* ``plain`` — stage-1 alignment (LLaVA ``plain``): the image, then the answer and ``</s>``; no roles, the
  human text is dropped.
* ``tiny`` — the tiny presets: ``USER: ... ASSISTANT: ...</s>`` without the system line (short sequences).
"""

from __future__ import annotations

from .errors import LoupeError

_CONTENT = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}{%- for block in content -%}"
    "{%- if block['type'] == 'image' -%}{{ '<image>\\n' }}"
    "{%- elif block['type'] == 'text' -%}{{ block['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
)

VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

TEMPLATES: dict[str, str] = {
    # LLaVA's conv_vicuna_v1 (sep " ", sep2 "</s>"): "SYSTEM USER: q ASSISTANT: a</s>USER: q2 ASSISTANT:".
    # The system line is double-quoted: it contains "human's".
    "vicuna_v1": _CONTENT
    + "{%- if messages[0]['role'] == 'system' -%}{{ render(messages[0]['content']) }}"
    + "{%- set loop_messages = messages[1:] -%}{%- else -%}"
    + '{{ "' + VICUNA_SYSTEM + '" }}{%- set loop_messages = messages -%}{%- endif -%}'
    + "{{ ' ' }}{%- for m in loop_messages -%}"
    + "{%- if m['role'] == 'user' -%}{{ 'USER: ' }}{{ render(m['content']) }}{{ ' ' }}"
    + "{%- elif m['role'] == 'assistant' -%}{{ 'ASSISTANT: ' }}{% generation %}{{ render(m['content']) }}"
    + "{{ eos_token }}{% endgeneration %}"
    # a later system turn (or any other role) is context, never a training target: plain text, no role
    + "{%- else -%}{{ render(m['content']) }}{{ ' ' }}"
    + "{%- endif -%}{%- endfor -%}"
    + "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}",
    "llama3": _CONTENT
    + "{{ bos_token }}{%- for m in messages -%}"
    + "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' }}"
    + "{%- if m['role'] == 'assistant' -%}{% generation %}{{ render(m['content']) }}{{ '<|eot_id|>' }}{% endgeneration %}"
    + "{%- else -%}{{ render(m['content']) }}{{ '<|eot_id|>' }}{%- endif -%}{%- endfor -%}"
    + "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif -%}",
    "chatml": _CONTENT
    + "{%- for m in messages -%}"
    + "{{ '<|im_start|>' + m['role'] + '\n' }}"
    + "{%- if m['role'] == 'assistant' -%}{% generation %}{{ render(m['content']) }}{{ '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    + "{%- else -%}{{ render(m['content']) }}{{ '<|im_end|>\n' }}{%- endif -%}{%- endfor -%}"
    + "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}",
    "plain": _CONTENT
    + "{%- for m in messages -%}"
    + "{%- if m['role'] == 'user' -%}{%- if m['content'] is string -%}"
    + "{{ '<image>' * (m['content'].split('<image>') | length - 1) }}"
    + "{%- else -%}{%- for b in m['content'] if b['type'] == 'image' -%}<image>{%- endfor -%}{%- endif -%}"
    + "{%- elif m['role'] == 'assistant' -%}{% generation %}{{ render(m['content']) }}{{ eos_token }}{% endgeneration %}"
    + "{%- endif -%}{%- endfor -%}",
    "tiny": _CONTENT
    + "{%- for m in messages -%}"
    + "{%- if m['role'] == 'user' -%}{{ 'USER: ' }}{{ render(m['content']) }}"
    + "{%- elif m['role'] == 'assistant' -%}{{ ' ASSISTANT: ' }}{% generation %}{{ render(m['content']) }}{{ eos_token }}{% endgeneration %}{{ ' ' }}"
    + "{%- endif -%}{%- endfor -%}"
    + "{%- if add_generation_prompt -%}{{ ' ASSISTANT:' }}{%- endif -%}",
}


def get_template(name: str) -> str:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise LoupeError(f"unknown chat template {name!r}; known: {', '.join(sorted(TEMPLATES))}") from None
