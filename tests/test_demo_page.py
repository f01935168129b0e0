"""The demo page (`app/demo_job.py`): the outfit's "buy" line is a link named by the product's title."""

from __future__ import annotations

from types import SimpleNamespace


def test_outfit_buy_line_links_to_the_catalog_item_by_title(tmp_path, shop):
    """Issue 18 item 10: "buy p0434" was bare text; now a link whose text is the title, the id still shown."""
    from app.demo_job import _section, buy_link
    from recommenders.condition import PreferenceCondition

    catalog = shop.catalog
    item = catalog.item_ids[3]
    udir = tmp_path / "u0001"
    link = buy_link(catalog, item, udir, tmp_path)
    assert link.startswith("<a href=") and f"{catalog[item].title} ({item})" in link
    href = link.split('href="')[1].split('"')[0]
    assert (tmp_path / href).is_file(), "the link points at a file next to the page"

    piece = SimpleNamespace(creative_id="outfit-0", extra={"category": catalog[item].category, "retrieved_item": item})
    cond = PreferenceCondition("u0001", attributes={"color": {"red": 1.0}})
    page = _section("u0001", {}, cond, [], [], SimpleNamespace(creatives=[]), SimpleNamespace(creatives=[]),
                    SimpleNamespace(creatives=[piece]), udir, tmp_path, {"outfit-0": link})
    assert f"buy {link}" in page
    assert buy_link(catalog, "no-such-item", udir, tmp_path) == "no-such-item"

