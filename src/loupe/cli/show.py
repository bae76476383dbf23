"""``loupe show IMAGE --preset P | --model DIR [--output out.png|out.html] [--question Q]``: what a method does
to an image — its tiles, their boxes over the image, the canvas padding and the visual tokens of each tile — and,
with ``--model`` and ``--question``, the greedy answer and a heat map of the LLM's attention from the answer to the
visual tokens, mapped back onto the image through the layout (:mod:`loupe.visualize`).

``--max-image-tokens N`` / ``--detail low`` show the layout the per-request budget picks (:mod:`loupe.budget`)."""

from __future__ import annotations

from pathlib import Path

from .args import positive_int


def add_parser(sub):
    p = sub.add_parser("show", help="draw a method's tiles and tokens over an image (and where the model looked)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("image", help="image file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help="a preset name (loupe info lists them): layout only, no weights")
    src.add_argument("--model", help="folder written by save_pretrained (model + processor)")
    p.add_argument("--output", default=None, help="out.png or out.html (default: <image stem>.loupe.png here)")
    p.add_argument("--question", default=None, help="with --model: answer it and map the answer's attention")
    p.add_argument("--max-new-tokens", type=positive_int, default=16)
    p.add_argument("--max-image-tokens", type=positive_int, default=None, help="visual-token budget for the image")
    p.add_argument("--detail", choices=("low", "high", "auto"), default=None)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    p.set_defaults(func=run)


def run(args) -> int:
    from loupe.budget import choose_slicer
    from loupe.errors import LoupeError
    from loupe.geometry import ImageGeometry
    from loupe.images import load_image
    from loupe.visualize import attention_map, html_page, plan_figure, tokens_per_tile

    out = Path(args.output or Path(args.image).with_suffix("").name + ".loupe.png")
    if out.suffix.lower() not in (".png", ".html"):
        raise LoupeError(f"--output must end in .png or .html, got {str(out)!r}")
    if not out.parent.is_dir():
        raise LoupeError(f"--output: the folder {str(out.parent)!r} does not exist")
    if args.question is not None and not args.model:
        raise LoupeError("--question needs --model (a preset has no trained weights to answer with)")
    if args.question is not None and not args.question.strip():
        raise LoupeError("--question is empty")
    img = load_image(args.image)
    model = None
    if args.model:
        from loupe.serving.chat import check_device, load_model_folder

        check_device(args.device)
        model, processor = load_model_folder(args.model, device=args.device)
        name = Path(args.model).resolve().name
    else:
        import loupe

        try:
            processor = loupe.build_processor(args.preset)
        except KeyError as e:
            raise LoupeError(f"unknown preset {args.preset!r} ({e})") from None
        name = args.preset
    ip = processor.image_processor
    slicer = None
    if args.max_image_tokens is not None or args.detail is not None:
        slicer = choose_slicer(ip.slicer, ip.vision, ip.connector, img.size, args.max_image_tokens, args.detail)
    geom = ImageGeometry(slicer or ip.slicer, ip.vision, ip.connector)
    layout = geom.layout(img.size)
    attn = None
    if args.question is not None:
        attn = attention_map(model, processor, img, args.question.strip(), args.max_new_tokens, slicer=slicer)
        layout = attn.layout
    fig = plan_figure(img, layout, geom, title=name, attention=attn)
    if out.suffix.lower() == ".html":
        out.write_text(html_page(fig, geom, layout, attn, title=f"loupe show: {name}"))
    else:
        fig.savefig(out)
    per, other = tokens_per_tile(geom, layout)
    print(f"{name}: {layout.num_tiles} tiles, {geom.num_tokens(layout)} visual tokens"
          + (f" ({other} shared between tiles)" if other else "") + f" -> {out}")
    for i, (role, box, t) in enumerate(zip(layout.roles, layout.boxes, per)):
        print(f"  tile {i}: {role:8s} box {tuple(round(v) for v in box)} tokens {'shared' if t is None else t}")
    if attn is not None:
        print(f"answer: {attn.answer}")
        print(attn.note())
    return 0
