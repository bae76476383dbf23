"""``loupe serve --model DIR``: an OpenAI-compatible server with exact visual-token accounting (see
:mod:`loupe.serving.server`)."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("serve", help="serve a saved Loupe model over an OpenAI-compatible HTTP API")
    p.add_argument("--model", required=True, help="folder written by save_pretrained (model + processor)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=8, help="requests run together at most")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting at most (then 429)")
    p.add_argument("--max-image-pixels", type=int, default=None, help="pixel cap per image (default: processor's)")
    p.add_argument("--max-body-mb", type=float, default=20.0)
    p.add_argument("--image-root", default=None, help="allow file:// URLs and paths under this folder")
    p.add_argument("--allow-url-fetch", action="store_true", help="fetch http(s) image URLs")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/*")
    p.add_argument("--model-name", default=None, help="the model id clients send (default: the folder name)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from loupe.errors import LoupeError

    try:
        from loupe.serving.server import ServeOptions, serve
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise LoupeError(f"loupe serve needs the [serve] extra ({e}); pip install 'loupe[serve]'") from None
    for name in ("max_batch", "max_queue", "port"):
        if getattr(args, name) < (0 if name == "port" else 1):
            raise LoupeError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_body_mb <= 0:
        raise LoupeError(f"--max-body-mb must be > 0, got {args.max_body_mb}")
    opts = ServeOptions(host=args.host, port=args.port, max_batch=args.max_batch, max_queue=args.max_queue,
                        max_image_pixels=args.max_image_pixels, max_body_mb=args.max_body_mb,
                        image_root=args.image_root, allow_url_fetch=args.allow_url_fetch, api_key=args.api_key,
                        model_name=args.model_name)
    serve(args.model, opts, device=args.device)
    return 0
