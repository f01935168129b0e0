"""The main job on the demo shop: for three shoppers, recommendations, ranked personalized images,
banners in two sizes and a completed outfit, gathered in one `index.html` with every score.

It calls exactly what the CLI commands call (shop data, recommender conditions, the pipelines),
so the page shows what a user of `atelier generate` would get.
"""

from __future__ import annotations

import html
import shutil
import time
from pathlib import Path

from core.io import atomic_save_image, atomic_write_json, atomic_write_text
from core.paths import safe_name

BANNER_SIZES = ("300x250", "728x90")


def _thumb(src: Path, dst: Path, root: Path) -> str:
    """Copy a catalog image next to the page (so the folder is self-contained); return its page-relative path."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        shutil.copyfile(src, dst)
    return _rel(dst, root)


def run_demo(out: Path, *, n_users: int = 3, candidates: int = 4, steps: int = 20, seed: int = 0,
             recommender: str = "ease", model: str = "demo", progress: bool = True, echo=print,
             upscale: bool = True) -> Path:
    """Write `out/index.html` (plus images and `summary.json`) and return its path."""
    from tqdm.auto import tqdm

    from app.conditions import load_shop_data, user_condition
    from core.creative import Manifest
    from pipelines.assemble import AUTO, PipelineSpec, assemble
    from pipelines.device import set_threads
    from pipelines.outfit import outfit_board
    from recommenders.preference import why_line
    from recommenders.shop.sheets import catalog_sheet, pick_users, users_sheet

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_threads()
    echo(f"loading the demo shop and fitting the {recommender} recommender ...")
    data = load_shop_data("demo", recommender)
    shop = data.shop
    atomic_save_image(catalog_sheet(shop), out / "catalog.png")
    users = pick_users(shop, n_users)
    atomic_save_image(users_sheet(shop, users), out / "users.png")

    echo("loading the demo text-to-image model and scorer ...")
    spec = PipelineSpec(model=model, controlnet=None, scorer="demo", upscaler=AUTO if upscale else None)
    spec.check()
    parts = assemble(spec)
    product_pipe, banner_pipe, outfit_pipe = (parts.pipeline(k, catalog=data.catalog)
                                              for k in ("product", "banner", "outfit"))
    manifest = Manifest(out / "manifest.jsonl")
    if manifest.path.exists():
        manifest.path.unlink()  # the demo is regenerated whole each run; the manifest must match the page

    sections, summary = [], {"users": {}, "recommender": recommender, "steps": steps, "candidates": candidates}
    bar = tqdm(users, desc="demo users", disable=not progress)
    for user in bar:
        cond = user_condition(data, user)
        truth = shop.true_top_attributes(user, 2)
        udir = out / safe_name(user)
        history = data.history[user][-8:]
        hist_imgs = [_thumb(data.catalog.image_file(i), udir / "history" / f"{safe_name(i)}.png", out) for i in history]
        recs = [iid for iid, _ in cond.item_scores[:8]]
        rec_imgs = [_thumb(data.catalog.image_file(i), udir / "recs" / f"{safe_name(i)}.png", out) for i in recs]
        favourite = cond.top_keywords(1).get("category", [None])[0]

        product = product_pipe(cond, category=favourite, num_candidates=candidates, seed=seed, steps=steps, progress=False)
        product.save(udir / "product", manifest)
        banner = banner_pipe(cond, item_id=recs[0], sizes=list(BANNER_SIZES), seed=seed, steps=steps, progress=False)
        banner.save(udir / "banner", manifest)
        outfit_items = _outfit_start(shop, data.catalog, favourite)
        outfit = outfit_pipe(cond, outfit_items, seed=seed, steps=steps, progress=False)
        outfit.save(udir / "outfit", manifest)
        atomic_save_image(outfit_board(data.catalog, outfit_items, outfit), udir / "outfit.png")

        summary["users"][user] = {
            "true_top": truth, "condition_top": cond.top_keywords(2), "recommended": recs,
            "why": why_line(cond), "shares": (cond.why or {}).get("shares"),
            "product": [c.scores for c in product.creatives],
            "banner": [{"size": f"{c.width}x{c.height}", **c.extra.get("checks", {}), **c.scores} for c in banner.creatives],
            "outfit": [{"category": c.extra.get("category"), "retrieved": c.extra.get("retrieved_item")} for c in outfit.creatives],
        }
        buy = {c.creative_id: buy_link(data.catalog, c.extra.get("retrieved_item"), udir, out) for c in outfit.creatives}
        sections.append(_section(user, truth, cond, hist_imgs, rec_imgs, product, banner, outfit, udir, out, buy))
    summary["seconds"] = round(time.time() - t0, 1)
    atomic_write_json(out / "summary.json", summary)
    page = out / "index.html"
    atomic_write_text(page, _page(sections, summary))
    return page


def _outfit_start(shop, catalog, favourite: str | None) -> list[str]:
    """One real item to start an outfit from: the first shipped outfit's piece in the user's favourite category."""
    for outfit in shop.outfits:
        ids = outfit["item_ids"] if isinstance(outfit, dict) else outfit.item_ids
        for iid in ids:
            if catalog[iid].category == favourite:
                return [iid]
    first = shop.outfits[0]
    return [(first["item_ids"] if isinstance(first, dict) else first.item_ids)[0]]


def _rel(path: Path, root: Path) -> str:
    return str(Path(path).resolve().relative_to(root.resolve()))


def _fmt_scores(scores: dict) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in sorted(scores.items()) if isinstance(v, (int, float)) and k != "rank")


def buy_link(catalog, item_id: str | None, udir: Path, root: Path) -> str:
    """'<a href="...">title (id)</a>' for a catalog item to buy: the link opens its catalog picture, copied next
    to the page; a missing or unknown id is shown as plain text."""
    e = html.escape
    if not item_id or item_id not in catalog:
        return e(str(item_id))
    href = _thumb(catalog.image_file(item_id), udir / "buy" / f"{safe_name(item_id)}.png", root)
    return f'<a href="{e(href)}" title="{e(item_id)}">{e(catalog[item_id].title)} ({e(item_id)})</a>'


def _section(user, truth, cond, hist_imgs, rec_imgs, product, banner, outfit, udir: Path, root: Path,
             buy: dict[str, str]) -> str:
    from recommenders.preference import why_line

    e = html.escape
    imgs = lambda paths, h=96: "".join(f'<img src="{e(p)}" height="{h}">' for p in paths)  # noqa: E731
    truth_txt = "; ".join(f"{k}: {', '.join(v)}" for k, v in truth.items())
    cond_txt = "; ".join(f"{k}: {', '.join(v)}" for k, v in cond.top_keywords(2).items())
    prod = "".join(
        f'<figure><img src="{e(_rel(udir / "product" / (c.creative_id + ".png"), root))}" height="128">'
        f"<figcaption>#{k + 1} seed {c.seed}<br>{e(_fmt_scores(c.scores))}</figcaption></figure>"
        for k, c in enumerate(product.creatives))
    ban = "".join(
        f'<figure><img src="{e(_rel(udir / "banner" / (c.creative_id + ".png"), root))}" style="max-width:100%">'
        f"<figcaption>{c.width}x{c.height} {e(_fmt_scores(c.scores))}</figcaption></figure>" for c in banner.creatives)
    pieces = "".join(
        f'<figure><img src="{e(_rel(udir / "outfit" / (c.creative_id + ".png"), root))}" height="96">'
        f"<figcaption>generated {e(str(c.extra.get('category')))}<br>&rarr; buy {buy[c.creative_id]}"
        f"</figcaption></figure>" for c in outfit.creatives)
    return (f"<section><h2>Shopper {e(user)}</h2>"
            f"<p><b>True taste</b> (demo ground truth): {e(truth_txt)}<br><b>Recommender condition</b>: {e(cond_txt)}"
            f"<br><b>Why</b>: {e(why_line(cond))}</p>"
            f"<h3>Recent history</h3>{imgs(hist_imgs)}<h3>Recommended</h3>{imgs(rec_imgs)}"
            f"<h3>Personalized product images (ranked)</h3><div class=row>{prod}</div>"
            f"<h3>Banners</h3>{ban}<h3>Completed outfit</h3>"
            f'<img src="{e(_rel(udir / "outfit.png", root))}" height="160"><div class=row>{pieces}</div></section>')


def _page(sections: list[str], summary: dict) -> str:
    return ("<!doctype html><html><head><meta charset=utf-8><title>Atelier demo</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:1400px}figure{display:inline-block;margin:4px}"
            "figcaption{font-size:12px;color:#444}img{image-rendering:pixelated;border:1px solid #ddd}"
            "section{border-top:2px solid #333;margin-top:2em}</style></head><body>"
            "<h1>Atelier demo</h1><p>Recommender: " + html.escape(summary["recommender"]) +
            f" &middot; {summary['steps']} denoising steps &middot; made in {summary['seconds']} s. "
            'Catalog: <a href="catalog.png">catalog.png</a> &middot; shoppers: <a href="users.png">users.png</a> '
            '&middot; records: <a href="manifest.jsonl">manifest.jsonl</a>, <a href="summary.json">summary.json</a></p>'
            + "".join(sections) + "</body></html>\n")
