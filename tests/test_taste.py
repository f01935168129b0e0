"""The attribute-taste choice model: it recovers planted tastes and separates taste from supply."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputError
from recommenders.catalog import Catalog, Item
from recommenders.taste import attribute_table, fit_attribute_taste

COLORS = ["blue", "green", "red"]
PATTERNS = ["dotted", "solid"]


def _catalog(per_color: dict[str, int]) -> Catalog:
    items = []
    for color, n in per_color.items():
        for k in range(n):
            pattern = PATTERNS[k % 2]
            items.append(Item(f"{color}{k}", f"{color} {pattern} shirt", "shirt", {"color": color, "pattern": pattern}))
    return Catalog(items)


def _draw(rng, catalog: Catalog, color_w: dict[str, float], n: int) -> list[str]:
    """A history drawn without replacement, item chance proportional to its color's weight."""
    ids = catalog.item_ids
    w = np.array([color_w[catalog[i].attributes["color"]] for i in ids])
    out = []
    for _ in range(n):
        p = w / w.sum()
        j = int(rng.choice(len(ids), p=p))
        out.append(ids[j])
        w[j] = 0.0
    return out


def test_recovers_planted_favourite_colors():
    rng = np.random.default_rng(0)
    catalog = _catalog({c: 30 for c in COLORS})
    favourites = [COLORS[k % 3] for k in range(30)]
    histories = [_draw(rng, catalog, {c: (6.0 if c == f else 1.0) for c in COLORS}, 25) for f in favourites]
    estimates = fit_attribute_taste(histories, catalog)
    assert sum(e.top("color") == f for e, f in zip(estimates, favourites)) >= 28
    for e in estimates:
        assert np.isclose(sum(e.weights["color"].values()), 1.0) and e.n_events == 25
        # no signal on the pattern: its weights stay near indifferent
        assert abs(e.weights["pattern"]["solid"] - 0.5) < 0.2


def test_separates_taste_from_what_the_catalog_has_left():
    # Red is liked 4x more than blue, but the catalog has only 3 red items: a 20-item history holds
    # at most 3 red ones, so counting says "blue"; the choice model knows red ran out.
    rng = np.random.default_rng(1)
    catalog = _catalog({"red": 3, "blue": 40, "green": 40})
    weights = {"red": 4.0, "blue": 1.0, "green": 0.5}
    histories = [_draw(rng, catalog, weights, 20) for _ in range(20)]
    estimates = fit_attribute_taste(histories, catalog, l2=0.1)
    counted = [max(COLORS, key=lambda c: sum(catalog[i].attributes["color"] == c for i in h)) for h in histories]
    assert counted.count("red") == 0
    assert sum(e.top("color") == "red" for e in estimates) >= 18

    # the taste-fit floor of the preference path reads its attributes from the choice model
    from recommenders.preference import ShopperEvents, taste_condition

    choice = taste_condition(ShopperEvents("u", histories[0]), catalog)
    assert choice.top_keywords(1, kinds=("color",))["color"] == ["red"]


def test_recency_follows_a_drifting_taste():
    rng = np.random.default_rng(2)
    catalog = _catalog({c: 60 for c in COLORS})
    # 30 old events favour green, the latest 15 favour red
    histories = [_draw(rng, catalog, {"green": 8.0, "red": 1.0, "blue": 1.0}, 30) for _ in range(10)]
    for h in histories:
        rest = _catalog({c: 60 for c in COLORS})
        late = [i for i in _draw(rng, rest, {"red": 8.0, "green": 1.0, "blue": 1.0}, 40) if i not in h][:15]
        h += late
    flat = fit_attribute_taste(histories, catalog, recency=0.0)
    recent = fit_attribute_taste(histories, catalog, recency=4.0)
    assert all(e.top("color") == "green" for e in flat)
    assert sum(e.top("color") == "red" for e in recent) >= 8


def test_taste_vector_and_errors():
    catalog = _catalog({"red": 4, "blue": 4})
    est = fit_attribute_taste([["red0", "red1", "unknown-id"], []], catalog)
    ids, vocab, codes = attribute_table(catalog)
    assert vocab == {"category": ["shirt"], "color": ["blue", "red"], "pattern": ["dotted", "solid"]}
    v = est[0].vector(vocab)
    assert v.shape == (5,) and v[2] > 0 > v[1]  # red above indifference, blue below
    assert est[0].n_events == 2 and np.allclose(est[1].vector(vocab), 0.0)  # empty history: indifferent
    bare = Catalog([Item("a", "a thing", "")])
    with pytest.raises(InputError, match="no categories or attributes"):
        fit_attribute_taste([["a"]], bare)
    with pytest.raises(InputError, match="l2"):
        fit_attribute_taste([["red0"]], catalog, l2=0)
