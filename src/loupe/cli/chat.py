"""``loupe chat --model DIR [--image PATH ...] [--truncate] ["question"]``: answer once, or chat on stdin.

The model folder and the device are checked before loading (:func:`loupe.serving.chat.load_model_folder`).
A question whose prompt (text + visual tokens) exceeds the model's context is refused with both numbers;
``--truncate`` cuts the question to fit instead. In interactive mode a refused line is reported and the
conversation goes on (the exit status is then 2)."""

from __future__ import annotations

import sys

from .args import positive_int


def add_parser(sub):
    p = sub.add_parser("chat", help="chat with a saved Loupe model", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="folder written by save_pretrained (model + processor)")
    p.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    p.add_argument("--max-new-tokens", type=positive_int, default=128)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    p.add_argument("--truncate", action="store_true",
                   help="cut a question that does not fit the model's context (default: refuse it)")
    p.add_argument("--max-image-tokens", type=positive_int, default=None,
                   help="visual-token budget per image: the largest setting of the slicer's own knob that fits "
                        "(loupe.budget, as the server's max_image_tokens); refused with the minimum if none does")
    p.add_argument("question", nargs="?", help="omit to chat interactively (one question per line)")
    p.set_defaults(func=run)


def run(args) -> int:
    from loupe.errors import LoupeError
    from loupe.images import load_image
    from loupe.serving.chat import ChatSession, check_device, load_model_folder

    check_device(args.device)
    images = [load_image(path) for path in args.image]
    model, processor = load_model_folder(args.model, device=args.device)
    session = ChatSession(model, processor, max_new_tokens=args.max_new_tokens, truncate=args.truncate,
                          max_image_tokens=args.max_image_tokens)
    if args.question is not None:
        if not args.question.strip():
            raise LoupeError("the question is empty")
        print(session.ask(args.question, images))
        return 0
    first, rc = True, 0
    for line in sys.stdin:
        if line.strip():
            try:
                print(session.ask(line.strip(), images if first else []), flush=True)
            except LoupeError as e:  # this question is refused; the conversation goes on without it
                print(f"loupe chat: error: {e}", file=sys.stderr, flush=True)
                rc = 2
                continue
            first = False
    return rc
