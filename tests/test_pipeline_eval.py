"""`atelier eval personalization` end to end on the demo shop with tiny random models (the plumbing, not the numbers)."""
from __future__ import annotations

import pytest
from tiny_models import ColorScorer


@pytest.fixture(scope="module")
def demo_shop_dir():
    from recommenders.shop import DEMO_SHOP_DIR

    if not (DEMO_SHOP_DIR / "shop.json").is_file():
        pytest.skip("the demo shop is not built (assets/demo_shop)")
    return DEMO_SHOP_DIR


@pytest.mark.slow  # loads the demo shop and fits a recommender: ~20 s alone, over 60 s on a busy CPU
def test_eval_personalization_json(tmp_path, demo_shop_dir, tiny_sd):
    from app.evaluation import VARIANTS, derangement, evaluate_personalization
    from pipelines.attribute_classifier import AttributeClassifier
    from recommenders.shop.heldout import heldout_users
    from recommenders.shop.vocab import vocabulary

    judge = AttributeClassifier({k: list(vocabulary(k)) for k in ("color", "pattern", "category")}, width=8)
    judge.save(tmp_path / "judge")
    result = evaluate_personalization(model=str(tiny_sd), recommender="mostpop",
                                      n_users=2, candidates=1, steps=1, classifier=tmp_path / "judge",
                                      scorer=ColorScorer(), progress=False)
    assert result["n_users"] == 2 and set(result["variants"]) == set(VARIANTS)
    for r in result["variants"].values():
        assert 0.0 <= r["color_match"] <= 1.0 and 0.0 <= r["pattern_match"] <= 1.0
        assert r["personalization"] is not None and r["clip_score"] is not None
    assert isinstance(result["targets"]["met"], bool)
    assert result["outfits"]["pieces"] >= 2 and 0.0 <= result["outfits"]["fit_share"] <= 1.0
    assert {e["variant"] for e in result["examples"]} == set(VARIANTS)
    # the other-user pairing never pairs a user with itself; held-out users are reproducible
    users = [f"u{i:04d}" for i in range(1, 301)]
    assert heldout_users(users, 5, 0) == heldout_users(users, 5, 0)
    assert all(u >= "u0101" for u in heldout_users(users, 50, 0))
    pairs = derangement(heldout_users(users, 50, 0), 0)
    assert all(a != b for a, b in pairs.items())
