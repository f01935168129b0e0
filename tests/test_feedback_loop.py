"""The Shopper-tab loop's logic: the pool is stored once, answers move the condition, generate and campaigns read it."""
from __future__ import annotations

from pathlib import Path

import pytest

from app import feedback_loop as loop
from app.ab.store import ABStore
from core.errors import InputError

USER = "u0007"


def _catalog_reader(calls: list):
    """A reader that reads each render as its catalog labels (a perfect probe), counting its calls."""
    def read(catalog, ids):
        calls.append(len(ids))
        return [{"category": catalog[i].category, **catalog[i].attributes} for i in ids]
    return read


@pytest.fixture()
def store(tmp_path) -> ABStore:
    return ABStore(tmp_path / "ab.sqlite")


@pytest.fixture()
def pool(store, shop):
    return loop.ensure_pool(store, shop.catalog, _catalog_reader([]))


def test_the_pool_is_read_once_and_kept_in_the_store(store, shop, tmp_path):
    calls: list = []
    first = loop.ensure_pool(store, shop.catalog, _catalog_reader(calls))
    again = loop.ensure_pool(ABStore(tmp_path / "ab.sqlite"), shop.catalog, _catalog_reader(calls))  # a restart
    assert calls == [len(shop.catalog.item_ids)]
    assert first.ids == again.ids == [str(i) for i in shop.catalog.item_ids]
    assert (first.x == again.x).all() and len(first.pairs) > 0


def _color_pair(pool, catalog):
    """Two pool creatives that differ in color only (a matched pair)."""
    a, b = pool.pairs[0]
    ia, ib = pool.ids[a], pool.ids[b]
    if catalog[ia].attributes["color"] == catalog[ib].attributes["color"]:
        pytest.skip("first matched pair is not a color pair")
    return ia, ib


def test_an_answer_moves_the_condition_toward_the_chosen_creative(store, pool, shop):
    chosen, other = _color_pair(pool, shop.catalog)
    c_win, c_lose = shop.catalog[chosen].attributes["color"], shop.catalog[other].attributes["color"]
    base, before = loop.posterior(store, USER)
    assert not before.choices
    rec = loop.record_answer(store, USER, chosen, other, event_id="t1")
    assert not rec.duplicate and loop.record_answer(store, USER, chosen, other, event_id="t1").duplicate
    _, after = loop.posterior(store, USER)
    assert len(after.choices) == 1
    w0, w1 = before.weights()["color"], after.weights()["color"]
    assert w1[c_win] > w0[c_win] and w1[c_lose] < w0[c_lose]
    rows = loop.changes(before.weights(), after.weights())["color"]
    assert {rows[0][0], rows[1][0]} == {c_win, c_lose}  # what the answer was about moved most
    text = loop.change_text(before.weights(), after.weights())
    assert f"{c_win} {w0[c_win]:.2f} -> {w1[c_win]:.2f}" in text
    assert loop.change_text(after.weights(), after.weights()) == "no weight moved by 0.01 or more"
    rows_by_kind = loop.changes(before.weights(), after.weights())
    moved = {k: max(abs(a - b) for _, b, a in rows) for k, rows in rows_by_kind.items()}
    assert moved["color"] > moved.get("pattern", 0.0)  # a color-only pair moves color most


def test_next_pair_is_two_pool_creatives_and_changes_with_the_round(store, pool):
    _, post = loop.posterior(store, USER)
    pairs = {loop.next_pair(pool, post, seed=0, round_=r) for r in range(4)}
    for a, b in pairs:
        assert a != b and a in pool.ids and b in pool.ids
    assert loop.next_pair(pool, post, seed=0, round_=1) == loop.next_pair(pool, post, seed=0, round_=1)


def test_a_shopper_without_events_keeps_her_condition(store, pool, shop):
    from app.conditions import load_shop_data, user_condition

    cond = user_condition(load_shop_data("demo", "ease"), USER)
    assert loop.feedback_condition(cond, store, USER) is cond
    a, b = pool.ids[0], pool.ids[1]
    loop.record_answer(store, "someone-else", a, b)
    assert loop.feedback_condition(cond, store, USER) is cond


def test_generate_reads_the_condition_updated_by_stored_events(store, pool, shop, tiny_sd, tmp_path):
    from app.commands.generate import pipeline_spec, prepare

    spec = pipeline_spec(model=str(tiny_sd), lora=None, lora_scale=1.0, adapter=None, reward=None, device="cpu",
                         dtype=None, score=False, allow_unsafe=False)
    db = str(tmp_path / "ab.sqlite")
    plain = prepare(spec, user=USER, condition_file=None, shop="demo", recommender="ease").condition
    same = prepare(spec, user=USER, condition_file=None, shop="demo", recommender="ease", feedback_db=db).condition
    assert same.to_dict() == plain.to_dict()  # no events yet: unchanged
    chosen, other = _color_pair(pool, shop.catalog)
    color = shop.catalog[chosen].attributes["color"]
    loop.record_answer(store, USER, chosen, other)
    once = prepare(spec, user=USER, condition_file=None, shop="demo", recommender="ease", feedback_db=db).condition
    for _ in range(3):
        loop.record_answer(store, USER, chosen, other)
    more = prepare(spec, user=USER, condition_file=None, shop="demo", recommender="ease", feedback_db=db).condition
    assert "feedback (1 choices)" in once.source and "feedback (4 choices)" in more.source
    assert more.attributes["color"][color] > once.attributes["color"][color]
    assert once.item_scores == plain.item_scores  # only the attribute weights change


def test_a_missing_feedback_store_is_one_input_error(tmp_path):
    with pytest.raises(InputError, match="feedback store not found"):
        loop.open_feedback_store(tmp_path / "nope.sqlite")


def test_a_campaign_reads_conditions_updated_by_the_stored_events(store, pool, shop, tmp_path):
    from app.batch.audience import ShopData
    from app.batch.campaign import Campaign
    from app.batch.jobs import AudienceMember

    chosen, other = _color_pair(pool, shop.catalog)
    color = shop.catalog[chosen].attributes["color"]
    for _ in range(3):
        loop.record_answer(store, USER, chosen, other)
    spec = Campaign.model_validate({"name": "c", "products": ["top-0003"], "audience": {"users": [USER]},
                                    "formats": {"product": True}, "feedback_db": "ab.sqlite"})
    assert spec.feedback_db == "ab.sqlite"
    member = AudienceMember(USER, "user", (USER,))
    plain = ShopData("demo", Path(tmp_path), "ease").condition(member)
    updated = ShopData("demo", Path(tmp_path), "ease", feedback_db=spec.feedback_db).condition(member)
    other_user = AudienceMember("u0008", "user", ("u0008",))
    assert "feedback (3 choices)" in updated.source
    assert updated.to_dict() == loop.feedback_condition(plain, store, USER).to_dict()
    assert updated.attributes["color"][color] > loop.posterior(store, USER)[0].weights()["color"][color]
    assert ShopData("demo", Path(tmp_path), "ease", feedback_db="ab.sqlite").condition(other_user).to_dict() == \
        ShopData("demo", Path(tmp_path), "ease").condition(other_user).to_dict()


def test_a_round_stores_the_answer_and_returns_the_updated_condition(store, pool, shop):
    from app.conditions import load_shop_data, user_condition

    base = user_condition(load_shop_data("demo", "ease"), USER)
    chosen, other = _color_pair(pool, shop.catalog)
    r1 = loop.answer(store, pool, USER, chosen, other, base, event_id="e1")
    again = loop.answer(store, pool, USER, chosen, other, base, event_id="e1")  # a double click
    assert not r1.duplicate and again.duplicate and again.choices == r1.choices == 1
    assert len(store.feedback(user_id=USER)) == 1
    assert r1.condition.attributes["color"] == r1.after["color"] != base.attributes["color"]
    assert r1.condition.item_scores == base.item_scores and "feedback (1 choices)" in r1.condition.source
    a, b = r1.next_pair
    assert a != b and {a, b} <= set(pool.ids)
    text = r1.text(chosen, other)
    assert "Condition before:" in text and "->" in text


def test_a_known_shoppers_ab_votes_update_the_condition_the_shopper_tab_shows(tmp_path, shop):
    from app.ui import shopper
    from app.ui.workspace import UIConfig, Workspace

    ws = Workspace(UIConfig(out_dir=tmp_path / "ui", ab_db=tmp_path / "ab.sqlite"))
    st = shopper.loop_store(ws)
    base = shopper.recommend(ws, "ease", shopper.user_history(ws, USER), user_id=USER)
    assert shopper.with_feedback(ws, base, USER) is base
    cat = shop.catalog
    red = [i for i in cat.item_ids if cat[i].attributes["color"] == "red"][:2]
    navy = [i for i in cat.item_ids if cat[i].attributes["color"] == "navy"][:2]
    assert len(red) == len(navy) == 2
    st.create_experiment("votes")
    for c in red + navy:  # catalog ids: the store reads them as the catalog item
        st.add_creative("votes", c)
    for w, l in zip(red, navy):
        st.record_vote("votes", w, l, user_id=USER)
        st.record_vote("votes", w, l, user_id="a-session-hash")  # someone else's votes do not count for her
    updated = shopper.with_feedback(ws, base, USER)
    from app.ab.feedback import shopper_posterior

    _, post, _ = shopper_posterior(st, USER)
    assert "feedback (2 choices)" in updated.source and updated.attributes["color"] == post.weights()["color"]
    hist_only = shopper_posterior(st, "nobody-votes")[0]
    assert updated.attributes["color"]["red"] > shopper_posterior(st, USER)[0].weights()["color"]["red"]
    assert hist_only.source == "population"


def test_a_pool_cut_short_is_completed_on_the_next_use(store, shop):
    ids = [str(i) for i in shop.catalog.item_ids]
    store.create_experiment(loop.LOOP_EXPERIMENT)
    for i in ids[:5]:  # a first use that died after five creatives
        attrs = {"color": shop.catalog[i].attributes["color"]}
        store.add_creative(loop.LOOP_EXPERIMENT, i, record={"attributes": attrs})
    calls: list = []
    pool = loop.ensure_pool(store, shop.catalog, _catalog_reader(calls))
    assert pool.ids == ids and calls == [len(ids)]
    assert loop.ensure_pool(store, shop.catalog, _catalog_reader(calls)).ids == ids and len(calls) == 1
