"""A/B tab functions (issue 18, item 5): same-format pairs, names beside ids, no made-up CTR, honest export."""

from __future__ import annotations

import pytest
from browser_tools import fake_run

from core.errors import InputError


@pytest.fixture()
def ws(tmp_path):
    from app.ui.workspace import UIConfig, Workspace

    return Workspace(UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite",
                              campaigns_dir=tmp_path / "campaigns"))


FORMATS = [("banner", 300, 250), ("product", 64, 64), ("banner", 300, 250), ("product", 64, 64),
           ("banner", 728, 90)]


def test_pairs_are_of_one_format_and_named(ws, tmp_path):
    from app.ui import ab_tab

    exp = ab_tab.experiment_from_manifest(ws, "mix", None, fake_run(ws.config.campaigns_dir / "mix", FORMATS))
    seen = set()
    for _ in range(40):
        p = ab_tab.next_pair(ws, exp)
        fmt = {p["left"].split("-")[0], p["right"].split("-")[0]}
        assert len(fmt) == 1, p
        assert "banner-04" not in (p["left"], p["right"])  # alone in its format: never paired
        assert p["left_name"].startswith(p["left"].split("-")[0]) and "for u0001" in p["left_name"]
        seen.add(frozenset((p["left"], p["right"])))
    assert seen == {frozenset(("banner-00", "banner-02")), frozenset(("product-01", "product-03"))}


def test_no_two_of_a_format_is_one_error(ws):
    from app.ui import ab_tab

    exp = ab_tab.experiment_from_manifest(ws, "odd", None, fake_run(ws.config.campaigns_dir / "odd", FORMATS[:2]))
    with pytest.raises(InputError, match="no two creatives of the same format"):
        ab_tab.next_pair(ws, exp)


def test_tables_name_creatives_and_show_no_ctr_without_impressions(ws):
    from app.ui import ab_tab

    exp = ab_tab.experiment_from_manifest(ws, "t", None, fake_run(ws.config.campaigns_dir / "t", FORMATS[:4]))
    ab_tab.store(ws).record_impression(exp, "banner-00")
    ranking, ctr, _ = ab_tab.results_tables(ws, exp)
    assert all(row[2].startswith(("banner", "product")) for row in ranking)
    by_id = {row[0]: row for row in ctr}
    unseen = [row for row in ctr if row[2] == 0]
    assert len(unseen) == 3 and all(row[4:] == [ab_tab.NO_DATA] * 5 for row in unseen)
    assert isinstance(by_id["banner-00"][4], float)  # one impression: a posterior, shown as a number
    assert by_id["product-01"][1] == "product · 64x64 · for u0001 · seed 1"


def test_export_without_pairs_says_why_and_writes_nothing(ws, tmp_path):
    from app.ui import ab_tab

    exp = ab_tab.experiment_from_manifest(ws, "e", None, fake_run(ws.config.campaigns_dir / "e", FORMATS[:4]))
    out = tmp_path / "pairs"
    for source, why in (("votes", "no votes yet"), ("ctr", "impressions and clicks"), ("bradley-terry", "vote more")):
        with pytest.raises(InputError, match=why):
            ab_tab.export_pairs(ws, exp, out, source)
    assert not out.exists() or not list(out.iterdir())
    ab_tab.cast_vote(ws, ab_tab.next_pair(ws, exp), "left")
    path, stats = ab_tab.export_pairs(ws, exp, out, "votes")
    assert stats["written"] == 1 and path.read_text().count("\n") == 1
