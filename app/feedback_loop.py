"""The feedback loop in the product: show a shopper two creatives, store her answer, update her condition.

The creatives shown are the ones already made: the catalog's rendered products, read through the
scorer's learned attribute probes (`app.evaluation_feedback.catalog_probe_read`, as the feedback
evaluation does; never the judge). The reading is stored once in the A/B store as the creatives of
the experiment `LOOP_EXPERIMENT` (record["attributes"]), so every answer is an ordinary feedback event
of that experiment and `app.ab.feedback.shopper_posterior` (history or population + her events + her
A/B votes) gives the same condition in the UI, `atelier feedback show`, `atelier generate
--feedback-db` and campaigns, and after a restart.
"""
from __future__ import annotations

import threading
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from core.errors import InputError

LOOP_EXPERIMENT = "shopper-loop"
Reader = Callable[[Any, list[str]], list[dict]]  # (catalog, item ids) -> per-item {kind: {value: p}}
_INIT = threading.Lock()


@dataclass
class LoopPool:
    """The creatives the loop can show: ids and their probe reading as taste features (vocab order)."""

    ids: list[str]
    x: np.ndarray
    vocab: dict[str, list[str]]
    pairs: np.ndarray  # matched pairs (differ in one kind only), extra candidates for `elicit`


def probe_reader(scorer=None) -> Reader:
    """A reader through the scorer's learned, cross-fitted attribute probes (loads the demo scorer)."""
    def read(catalog, ids: list[str]) -> list[dict]:
        from app.evaluation_feedback import catalog_probe_read
        from pipelines.scorer import Scorer
        from recommenders.taste import attribute_table

        sc = scorer if scorer is not None else Scorer.load("demo")
        _, vocab, _ = attribute_table(catalog)
        images = [catalog.load_image(i).convert("RGB") for i in ids]
        labels = {k: [catalog[i].category if k == "category" else catalog[i].attributes.get(k) for i in ids]
                  for k in vocab}
        return catalog_probe_read(sc, images, labels, vocab)
    return read


def ensure_pool(store, catalog, reader: Optional[Reader] = None) -> LoopPool:
    """The loop's pool: read from the store's `LOOP_EXPERIMENT` creatives, made there first if missing."""
    from recommenders.feedback import features, matched_pairs
    from recommenders.taste import attribute_table

    _, vocab, _ = attribute_table(catalog)
    ids = [str(i) for i in catalog.item_ids]
    with _INIT:
        if LOOP_EXPERIMENT not in {e.experiment_id for e in store.experiments()}:
            try:
                store.create_experiment(LOOP_EXPERIMENT, meta={"what": "Shopper-tab loop: catalog renders, probe-read"})
            except InputError:  # another process made it first
                pass
        known = {a.creative_id for a in store.arms(LOOP_EXPERIMENT)}
        missing = [i for i in ids if i not in known]
        if missing:  # first use, or a first use cut short: the probes are cross-fitted on all renders
            reads = dict(zip(ids, (reader or probe_reader())(catalog, ids)))
            for iid in missing:
                try:
                    store.add_creative(LOOP_EXPERIMENT, iid, record={"attributes": reads[iid]})
                except InputError:  # added meanwhile by another process
                    pass
            known = {a.creative_id for a in store.arms(LOOP_EXPERIMENT)}
    ids = [i for i in ids if i in known]
    if len(ids) < 2:
        raise InputError(f"experiment {LOOP_EXPERIMENT!r} holds fewer than two catalog creatives")
    reads = [store.creative_record(LOOP_EXPERIMENT, i)["record"]["attributes"] for i in ids]
    x = features(reads, vocab)
    return LoopPool(ids, x, vocab, matched_pairs(x, vocab))


def posterior(store, user_id: str, shop: str = "demo"):
    """(base, updated) taste posterior of a shopper from the store (`app.ab.feedback.shopper_posterior`)."""
    from app.ab.feedback import shopper_posterior

    base, post, _ = shopper_posterior(store, user_id, shop=shop)
    return base, post


def next_pair(pool: LoopPool, post, seed: int, round_: int) -> tuple[str, str]:
    """The two creatives to show next, by the `elicit` policy (expected information gain, Thompson candidates)."""
    from recommenders.feedback import pick_pair

    rng = np.random.default_rng([seed, round_])
    a, b = pick_pair("elicit", post, pool.x, rng, pairs=pool.pairs)
    return pool.ids[a], pool.ids[b]


def record_answer(store, user_id: str, chosen: str, other: str, *, event_id: str | None = None):
    """Store "chosen over other" as a feedback choice of the loop's experiment (idempotent on event_id)."""
    if chosen == other:
        raise InputError("the two creatives shown must differ")
    return store.record_feedback(LOOP_EXPERIMENT, user_id, "choice", [chosen, other], event_id=event_id)


def changes(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], *,
            kinds: Sequence[str] = ("color", "pattern", "style"), n: int = 2) -> dict[str, list[tuple]]:
    """Per kind, the `n` values whose weight moved most: (value, before, after); moves that do not show at two
    decimals are left out (and a kind with none)."""
    out = {}
    for kind in kinds:
        if kind not in after:
            continue
        b, a = before.get(kind, {}), after[kind]
        moved = sorted(a, key=lambda v: (-abs(a[v] - b.get(v, 0.0)), v))[:n]
        rows = [(v, float(b.get(v, 0.0)), float(a[v])) for v in moved]
        rows = [r for r in rows if f"{r[1]:.2f}" != f"{r[2]:.2f}"]
        if rows:
            out[kind] = rows
    return out


def change_text(before: dict, after: dict, **kw: Any) -> str:
    """One line: "color: navy 0.41 -> 0.55, red 0.20 -> 0.12; pattern: ..." (what the answer changed)."""
    parts = []
    for kind, rows in changes(before, after, **kw).items():
        parts.append(f"{kind}: " + ", ".join(f"{v} {b:.2f} -> {a:.2f}" for v, b, a in rows))
    return "; ".join(parts) or "no weight moved by 0.01 or more"


def top_line(weights: dict[str, dict[str, float]], kinds: Sequence[str] = ("color", "pattern", "style")) -> str:
    """The top value of each kind with its weight: "color navy 0.55, pattern striped 0.40"."""
    parts = []
    for kind in kinds:
        if kind in weights and weights[kind]:
            v = max(sorted(weights[kind]), key=weights[kind].get)
            parts.append(f"{kind} {v} {weights[kind][v]:.2f}")
    return ", ".join(parts)


def open_feedback_store(db: str | Path):
    """The A/B store a `--feedback-db` / `feedback_db` names; a SQLite file that does not exist is refused
    (opening it would make an empty store and silently change nothing)."""
    from app.ab.store import ABStore

    text = str(db)
    if not text.startswith(("postgresql://", "postgres://")) and not Path(text).is_file():
        raise InputError("feedback store not found (a SQLite file written by `atelier feedback` / the app)", text)
    return ABStore(text)


def question_line(user_id: str, answered: int, weights: dict) -> str:
    """"Which do you prefer? Round n for u: current condition ..." above a pair."""
    return f"**Which do you prefer?** Round {answered + 1} for `{user_id}`. Current condition: {top_line(weights)}"


def feedback_condition(condition, store, user_id: str, shop: str = "demo"):
    """The condition updated by the shopper's stored events and votes (`apply_feedback`); unchanged if she has none."""
    from recommenders.feedback import apply_feedback

    _, post = posterior(store, user_id, shop)
    return apply_feedback(condition, post) if post.choices else condition


@dataclass
class Round:
    """What one answer did: the taste weights before and after, the updated condition, the next pair."""

    before: dict
    after: dict
    condition: Any
    next_pair: tuple[str, str]
    choices: int
    duplicate: bool

    def question(self, user_id: str) -> str:
        """The line above the next pair (as `app.ui.shopper.loop_question` writes it)."""
        return question_line(user_id, self.choices, self.after)

    def text(self, chosen: str, other: str) -> str:
        """Markdown: what was stored, the condition before -> after, and what changed."""
        again = " (already stored: not counted twice)" if self.duplicate else ""
        return (f"Stored `{chosen}` over `{other}`{again}: {self.choices} answer(s) so far.\n\n"
                f"**Condition before:** {top_line(self.before)}\n\n**Condition after:** {top_line(self.after)}\n\n"
                f"**What changed:** {change_text(self.before, self.after)}")


def answer(store, pool: LoopPool, user_id: str, chosen: str, other: str, base_condition, *, shop: str = "demo",
           seed: int = 0, event_id: str | None = None) -> Round:
    """One round of the loop: store the answer, update the condition through `apply_feedback`, pick the next pair."""
    from recommenders.feedback import apply_feedback

    if chosen not in pool.ids or other not in pool.ids:
        raise InputError("the answered creatives are not in the loop's pool")
    _, before = posterior(store, user_id, shop)
    rec = record_answer(store, user_id, chosen, other, event_id=event_id)
    _, after = posterior(store, user_id, shop)
    return Round(before.weights(), after.weights(), apply_feedback(base_condition, after),
                 next_pair(pool, after, seed, len(after.choices)), len(after.choices), rec.duplicate)
