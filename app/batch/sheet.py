"""The campaign's HTML contact sheet: every creative, grouped by audience and format, with provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from jinja2 import Environment, select_autoescape

from core.creative import Creative
from core.io import atomic_write_text

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ name }} · contact sheet</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#111;background:#fafafa}
h1{margin:0 0 4px} .meta{color:#555;margin-bottom:20px}
h2{margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{margin:14px 0 6px;color:#333;font-size:15px;text-transform:uppercase;letter-spacing:.05em}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:8px;width:{{ thumb }}px}
figure img{width:100%;max-height:{{ thumb }}px;object-fit:contain;display:block;margin:auto;image-rendering:pixelated}
figcaption{font-size:11px;color:#444;margin-top:6px;word-wrap:break-word}
.score{color:#0a5}
</style></head><body>
<h1>{{ name }}</h1>
<div class="meta">{{ n }} creatives · {{ groups|length }} audience{{ "s" if groups|length != 1 }} ·
model {{ model.base }}{% if model.lora %} + LoRA {{ model.lora }}{% endif %} · {{ model.steps }} steps ·
guidance {{ model.guidance }} · manifest <a href="manifest.jsonl">manifest.jsonl</a></div>
{% for audience, formats in groups.items() %}
<h2>{{ audience }}</h2>
{% if likes[audience] %}<div class="meta">likes: {{ likes[audience] }}</div>{% endif %}
{% for fmt, items in formats.items() %}
<h3>{{ fmt }}</h3>
<div class="grid">
{% for c in items %}
<figure id="{{ c.creative_id }}">
<a href="{{ c.image_path }}"><img src="{{ c.image_path }}" alt="{{ c.prompt }}" loading="lazy"></a>
<figcaption><b>{{ c.extra.product }}</b> · {{ c.width }}×{{ c.height }} · seed {{ c.seed }}<br>
{{ c.prompt|truncate(160) }}
{% if c.extra.retrieved_item %}<br>nearest catalog item: <b>{{ c.extra.retrieved_item }}</b>{% endif %}
{% for k, v in c.scores.items() if k != "rank" %}<br><span class="score">{{ k }} {{ "%.3f"|format(v) }}</span>{% endfor %}
</figcaption></figure>
{% endfor %}
</div>
{% endfor %}
{% endfor %}
</body></html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))


def write_contact_sheet(out_dir: str | Path, campaign, creatives: Iterable[Creative], *, thumb: int = 180) -> Path:
    """Write `index.html` beside the images (relative links, so the folder can be zipped and moved)."""
    out_dir = Path(out_dir)
    groups: dict[str, dict[str, list[Creative]]] = {}
    n = 0
    for c in creatives:
        groups.setdefault(str(c.extra.get("audience", c.user_id or "?")), {}).setdefault(
            str(c.extra.get("format", c.pipeline)), []
        ).append(c)
        n += 1
    likes = {a: _likes(next(iter(f.values()))[0]) for a, f in groups.items()}
    html = _env.from_string(TEMPLATE).render(name=campaign.name, model=campaign.model, groups=groups, n=n,
                                             thumb=thumb, likes=likes)
    return atomic_write_text(out_dir / "index.html", html)


def _likes(creative: Creative, n: int = 2) -> str:
    """The audience's strongest keywords per attribute, from the condition the creatives were made with."""
    from recommenders.condition import PreferenceCondition

    if not creative.condition:
        return ""
    try:
        words = PreferenceCondition.from_dict(creative.condition).top_keywords(n)
    except (ValueError, TypeError):
        return ""
    return " · ".join(f"{kind} {', '.join(vals)}" for kind, vals in words.items() if vals)
