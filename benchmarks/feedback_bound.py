"""A measured reference for `atelier eval feedback`: how often could a genie name the favourite after b choices?

The genie knows each held-out shopper's whole true taste except which value of the kind (color or
pattern) is her favourite: its hypotheses are the true taste and every swap of the favourite with
another value, as in `benchmarks/favourite_identifiability.py`. It asks the most telling question
there is against the hardest alternative, chosen knowing the truth: two creatives identical but for
that kind, one in her favourite value and one in her runner-up. She answers with the shop's choice
logit on her true taste (P = w_fav / (w_fav + w_runner_up)), the same simulator as the evaluation.
After b answers the genie picks the hypothesis of highest log-likelihood (answers, plus for warm
shoppers the history under the world's browsing model, as the identifiability oracle computes it);
a tie counts half. No policy that has to learn which two values compete, and reads the creatives
through probes, should beat this curve; it is a measured reference, not a theorem.

    python benchmarks/feedback_bound.py --feedback-json benchmarks/results/feedback.json --plot benchmarks/results/feedback.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--choices", type=int, default=20)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=20, help="answer draws per user (the curve is their mean)")
    ap.add_argument("--feedback-json", type=Path, help="add the bound to this `eval feedback` result (rewritten)")
    ap.add_argument("--plot", type=Path, help="redraw the feedback plot with the bound")
    args = ap.parse_args(argv)

    from favourite_identifiability import SESSION_GAP_S, history_loglik, shop_world

    from app.evaluation_feedback import bootstrap, plot_curves
    from core.io import read_json_object, write_results_json
    from recommenders.shop.heldout import heldout_users
    from recommenders.shop.tastes import TASTE_MODEL
    from recommenders.shop.vocab import ATTRIBUTE_KINDS

    world = shop_world()
    shop, boost, index, appeal, values, codes, shared, inter, rows_of, stamps = (
        world.shop, world.boost, world.index, world.appeal, world.values, world.codes, world.shared, world.inter,
        world.rows_of, world.stamps)
    keep = 1.0 - TASTE_MODEL["drift_mix"]
    users = heldout_users(list(shop.users), args.users, args.seed)
    rng = np.random.default_rng(args.seed + 11)
    boot_rng = np.random.default_rng(args.seed + 7)
    curves: dict = {"warm/genie": {}, "cold/genie": {}}
    for kind in ("color", "pattern"):
        hits = {"warm": np.zeros((len(users), args.choices + 1)), "cold": np.zeros((len(users), args.choices + 1))}
        for n, u in enumerate(users):
            taste = shop.taste(u)
            w = {k: np.array([taste.weights[k][v] for v in values[k]]) for k in ATTRIBUTE_KINDS}
            s = {k: np.array([taste.start_weights[k][v] for v in values[k]]) for k in ATTRIBUTE_KINDS}
            order = np.argsort(-w[kind], kind="stable")
            fav, second = int(order[0]), int(order[1])
            drifts = not np.allclose(s[kind], w[kind])
            rows = rows_of[u]
            seq = np.array([index[inter.item_ids[r]] for r in rows])
            in_session = np.r_[False, np.diff(stamps[rows]) < SESSION_GAP_S]
            base = taste.popularity_bias * appeal
            hyps, hist_ll = [], []
            for c in range(len(values[kind])):  # c == fav: the true taste
                wk = w[kind].copy()
                wk[[fav, c]] = w[kind][[c, fav]]
                w_alt, s_alt = dict(w), dict(s)
                w_alt[kind] = wk
                s_alt[kind] = s[kind] + keep * (wk - w[kind]) if drifts else wk
                hyps.append(wk)
                hist_ll.append(history_loglik(seq, in_session, w_alt, s_alt, codes, base, shared, boost))
            hyps, hist_ll = np.maximum(np.array(hyps), 1e-9), np.array(hist_ll)
            # log P(the fav-valued creative is picked) and of the runner-up, under each hypothesis
            lp_fav = np.log(hyps[:, fav] / (hyps[:, fav] + hyps[:, second]))
            lp_sec = np.log(hyps[:, second] / (hyps[:, fav] + hyps[:, second]))
            q = hyps[fav, fav] / (hyps[fav, fav] + hyps[fav, second])
            for start, prior_ll in (("warm", hist_ll), ("cold", np.zeros(len(hyps)))):
                acc = np.zeros(args.choices + 1)
                for _ in range(args.repeats):
                    picks = rng.random(args.choices) < q
                    k_fav = np.r_[0, np.cumsum(picks)]
                    b = np.arange(args.choices + 1)
                    ll = prior_ll[None, :] + k_fav[:, None] * lp_fav[None, :] + (b - k_fav)[:, None] * lp_sec[None, :]
                    best = ll.max(1, keepdims=True)
                    winners = np.isclose(ll, best, rtol=0, atol=1e-12)
                    acc += winners[:, fav] / winners.sum(1)
                hits[start][n] = acc / args.repeats
        for start in ("warm", "cold"):
            curves[f"{start}/genie"][kind] = [dict(zip(("mean", "lo", "hi"), bootstrap(hits[start][:, b], boot_rng)),
                                                   budget=b) for b in range(args.choices + 1)]
    result = {"users": len(users), "choices": args.choices, "repeats": args.repeats,
              "rule": "genie: questions fav vs runner-up chosen knowing the truth; decision among favourite-swap "
                      "hypotheses by log-likelihood (warm: + the history under the world's browsing model)",
              "curves": curves}
    for name, c in curves.items():
        for kind in ("color", "pattern"):
            print(f"{name:<11} {kind:<8} " + " ".join(f"{b}:{c[kind][b]['mean']:.3f}" for b in (0, 1, 4, 8, 12, 20)
                                                      if b <= args.choices))
    if args.feedback_json:
        fb = read_json_object(args.feedback_json)
        fb["bound"] = curves
        fb["bound_rule"] = result["rule"]
        write_results_json(args.feedback_json, fb)
        if args.plot:
            plot_curves(fb, args.plot)
    return result


if __name__ == "__main__":
    main()
