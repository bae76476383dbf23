"""``loupe chat --model DIR [--image PATH ...] ["question"]``: answer once, or chat on stdin."""

from __future__ import annotations

import sys


def add_parser(sub):
    p = sub.add_parser("chat", help="chat with a saved Loupe model")
    p.add_argument("--model", required=True, help="folder written by save_pretrained (model + processor)")
    p.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("question", nargs="?", help="omit to chat interactively (one question per line)")
    p.set_defaults(func=run)


def run(args) -> int:
    from loupe.images import load_image
    from loupe.serving.chat import ChatSession, load

    images = [load_image(path) for path in args.image]
    model, processor = load(args.model, device=args.device)
    session = ChatSession(model, processor, max_new_tokens=args.max_new_tokens)
    if args.question:
        print(session.ask(args.question, images))
        return 0
    first = True
    for line in sys.stdin:
        if line.strip():
            print(session.ask(line.strip(), images if first else []), flush=True)
            first = False
    return 0
