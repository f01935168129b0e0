"""Contact sheet of every generation pipeline for three demo-shop users (one row per pipeline).

    python benchmarks/pipelines_sheet.py                  # demo models -> benchmarks/results/pipelines_sheet.png
    python benchmarks/pipelines_sheet.py --model DIR --out /tmp/sheet.png

Users are picked from three different shopper segments with different true favourite colors, so
a reader can see personalization at a glance. Prints what each cell shows and how long it took.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TILE = 256
LABEL_H = 54


def pick_users(data, n: int = 3) -> list[str]:
    """Users from different segments with different favourite colors (the most active of each)."""
    chosen, segments, colors = [], set(), set()
    for u in sorted(data.history, key=lambda u: (-len(data.history[u]), u)):
        if u not in data.shop.users:
            continue
        taste = data.shop.taste(u)
        fav = taste.top("color", 1)[0]
        if taste.segment in segments or fav in colors:
            continue
        chosen.append(u)
        segments.add(taste.segment)
        colors.add(fav)
        if len(chosen) == n:
            break
    return chosen


def fit_tile(image, size: int = TILE):
    """Letterbox an image into a square tile on white."""
    from PIL import Image

    im = image.convert("RGB")
    scale = min(size / im.width, size / im.height)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    tile = Image.new("RGB", (size, size), "white")
    tile.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return tile


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--controlnet", default=None, help="ControlNet folder (default: the demo one with the demo model)")
    parser.add_argument("--recommender", default="ease")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pipelines_sheet.png")
    args = parser.parse_args(argv)

    from PIL import Image, ImageDraw

    from app.conditions import load_shop_data, user_condition
    from core.io import atomic_save_image
    from pipelines.assemble import AUTO, PipelineSpec, assemble
    from pipelines.device import describe, pick_device, set_threads
    from pipelines.layout import load_font
    from pipelines.outfit import BOTTOMS, ONE_PIECES, TOPS, outfit_board

    set_threads()
    data = load_shop_data("demo", args.recommender)
    users = pick_users(data)
    spec = PipelineSpec(model=args.model, controlnet=args.controlnet or AUTO, scorer="demo", device=args.device)
    spec.check()
    parts = assemble(spec)
    pipes = {k: parts.pipeline(k, catalog=data.catalog) for k in ("product", "background", "banner", "outfit")}
    kw = dict(seed=args.seed, steps=args.steps, progress=False)
    cells, report, seconds = {}, [], {k: 0.0 for k in pipes}
    for u in users:
        cond = user_condition(data, u)
        fav = data.shop.true_top_attributes(u, 1)
        category = cond.top_keywords(1, kinds=("category",))["category"][0]
        # the user's top recommended item of that category is the product for background and banner
        product_id = next((i for i, _ in cond.item_scores if data.catalog[i].category == category), cond.item_scores[0][0])
        anchor = next((i for i in reversed(data.history[u]) if data.catalog[i].category in TOPS + BOTTOMS + ONE_PIECES),
                      data.history[u][-1])
        jobs = {
            "product": lambda: pipes["product"](cond, category=category, num_candidates=args.candidates, **kw),
            "background": lambda: pipes["background"](cond, item_id=product_id, num_candidates=args.candidates, **kw),
            "banner": lambda: pipes["banner"](cond, item_id=product_id, sizes=["1200x628"], **kw),
            "outfit": lambda: pipes["outfit"](cond, [anchor], **kw),
        }
        for name, job in jobs.items():
            t = time.time()
            out = job()
            seconds[name] += time.time() - t
            image = outfit_board(data.catalog, [anchor], out) if name == "outfit" else out.images[0]
            c = out.creatives[0]
            note = (", ".join(f"{x.extra['category']}->{x.extra['retrieved_item']}" for x in out.creatives)
                    if name == "outfit" else c.prompt)
            cells[(name, u)] = (image, note)
            report.append({"pipeline": name, "user": u, "segment": data.shop.segment_of(u),
                           "true_color": fav["color"][0], "true_pattern": fav["pattern"][0], "shows": note,
                           "creative_id": c.creative_id, "scores": c.scores,
                           **({"min_contrast": c.extra["min_contrast"], "text_inside": c.extra["text_inside"]}
                              if name == "banner" else {})})

    # one row per pipeline, one column per user
    head_h, row_label_w = 40, 120
    sheet = Image.new("RGB", (row_label_w + len(users) * TILE, head_h + len(pipes) * (TILE + LABEL_H)), "white")
    draw = ImageDraw.Draw(sheet)
    small, bold = load_font(12, bold=False), load_font(15)
    for j, u in enumerate(users):
        fav = data.shop.true_top_attributes(u, 1)
        draw.text((row_label_w + j * TILE + 6, 4), f"{u} ({data.shop.segment_of(u)})", font=bold, fill="black")
        draw.text((row_label_w + j * TILE + 6, 22), f"likes {fav['color'][0]} {fav['pattern'][0]}", font=small, fill="black")
    for r, name in enumerate(pipes):
        y = head_h + r * (TILE + LABEL_H)
        draw.text((6, y + TILE // 2), name, font=bold, fill="black")
        for j, u in enumerate(users):
            image, note = cells[(name, u)]
            x = row_label_w + j * TILE
            sheet.paste(fit_tile(image), (x, y))
            draw.text((x + 4, y + TILE + 4), _clip(note, small, TILE - 8), font=small, fill=(40, 40, 40))
    atomic_save_image(sheet, args.out)
    result = {"out": str(args.out), "model": args.model, "device": describe(pick_device(args.device)),
              "steps": args.steps, "users": users, "seconds_per_pipeline": {k: round(v, 2) for k, v in seconds.items()},
              "cells": report}
    print(f"{'pipeline':<11} {'user':<7} {'likes':<16} shows")
    for row in report:
        print(f"{row['pipeline']:<11} {row['user']:<7} {row['true_color'] + ' ' + row['true_pattern']:<16} {row['shows']}")
    print(json.dumps({"seconds_per_pipeline": result["seconds_per_pipeline"], "device": result["device"]}))
    print(f"wrote {args.out}")
    return result


def _clip(text: str, font, width: int) -> str:
    while text and font.getlength(text) > width:
        text = text[:-2] + "…" if not text.endswith("…") else text[:-2] + "…"
    return text


if __name__ == "__main__":
    main()
