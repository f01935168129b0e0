"""`atelier eval personalization`: do generated images match what each shopper truly likes?

The evaluation itself is `app.evaluation.evaluate_personalization`; this module prints it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from app.commands import options

app = typer.Typer(help="Evaluate personalization end to end on the demo shop.", no_args_is_help=True)


@app.command("personalization")
def personalization(
    users: Annotated[int, typer.Option("--users", min=2, help="Held-out users to evaluate (>= 50 for the report).")] = 50,
    candidates: Annotated[int, options.candidates("Images per user and variant.")] = 2,
    steps: Annotated[int, options.steps()] = 20,
    guidance: Annotated[float, options.guidance()] = 7.5,
    seed: Annotated[int, options.seed("Seed for users, pairings and images.")] = 0,
    shop: Annotated[str, typer.Option("--shop", help="'demo' or a demo-shop folder (known tastes needed).")] = "demo",
    recommender: Annotated[str, typer.Option("--recommender", help="Backbone making the conditions (any registered "
                                             "recommender).")] = "ease",
    backbones: Annotated[Optional[str], typer.Option("--backbones", help="Comma-separated backbones to compare "
                                                     "(e.g. mostpop,ease,diffrec,sasrec,dreamrec): one row each, "
                                                     "plus the taste fit alone as the floor.")] = None,
    model: Annotated[str, typer.Option("--model", help="Base model ('demo' or a diffusers folder).")] = "demo",
    adapter: Annotated[Optional[Path], typer.Option("--adapter", help="Preference adapter folder to add tokens.")] = None,
    outfits: Annotated[bool, typer.Option("--outfits/--no-outfits", help="Also evaluate outfit retrieval.")] = True,
    classifier: Annotated[Optional[Path], typer.Option("--classifier", help="Attribute classifier folder (default: the demo one).")] = None,
    scorer: Annotated[str, typer.Option("--scorer", help="Scorer: 'demo' or an open_clip folder.")] = "demo",
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:N.", callback=options.device)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json-out", help="Also write the result to this JSON file.", callback=options.out_file)] = None,
) -> None:
    """Share of generated images matching each user's true favourite color/pattern: own vs other vs plain."""
    from app.evaluation import evaluate_backbones, evaluate_personalization
    from core.io import printable, write_results_json

    if backbones is not None:
        from recommenders.base import model_class

        names = [b.strip().lower() for b in backbones.split(",") if b.strip()]
        for name in names:
            model_class(name)  # unknown names fail before anything loads
        result = evaluate_backbones(backbones=names, shop=shop, model=model, n_users=users, candidates=candidates,
                                    steps=steps, guidance=guidance, seed=seed, device=device, progress=not as_json,
                                    classifier=classifier)
        if json_out is not None:
            write_results_json(json_out, result)
        if as_json:
            typer.echo(json.dumps(printable(result), indent=2, sort_keys=True))
            return
        typer.echo(f"{result['n_users']} held-out users, {result['candidates']} images each per row, "
                   f"{result['device']}, {result['seconds']} s")
        typer.echo(f"{'backbone':<16} {'color':>6} {'pattern':>8} {'cond color':>11} {'cond pattern':>13} "
                   f"{'history':>8} {'backbone':>9} {'prior':>6}")
        for name, r in result["rows"].items():
            sh = r["shares"]
            typer.echo(f"{name:<16} {r['color_match']:>6.3f} {r['pattern_match']:>8.3f} "
                       f"{r['condition_top_color_right']:>11.3f} {r['condition_top_pattern_right']:>13.3f} "
                       f"{sh['history']:>8.2f} {sh['backbone']:>9.2f} {sh['prior']:>6.2f}")
        if "mostpop_vs_dreamrec_top_differs" in result:
            typer.echo(f"users whose top color or pattern differs between mostpop and dreamrec: "
                       f"{result['mostpop_vs_dreamrec_top_differs']}")
        return

    result = evaluate_personalization(shop=shop, recommender=recommender, model=model, adapter=adapter,
                                      n_users=users, candidates=candidates, steps=steps, guidance=guidance,
                                      seed=seed, device=device, outfits=outfits, progress=not as_json,
                                      classifier=classifier, scorer=scorer)
    if json_out is not None:
        write_results_json(json_out, result)
    if as_json:
        typer.echo(json.dumps(printable(result), indent=2, sort_keys=True))
        return
    typer.echo(f"{result['n_users']} held-out users, {result['images_per_variant']} images per variant, "
               f"{result['device']}, {result['seconds']} s")
    typer.echo(f"{'variant':<8} {'color':>7} {'pattern':>8} {'both':>6} {'fidelity':>9} {'personal':>9} {'clip':>7}")
    for name, r in result["variants"].items():
        cells = [r["color_match"], r["pattern_match"], r["color_and_pattern_match"], r["prompt_color_fidelity"],
                 r["personalization"], r["clip_score"]]
        typer.echo(f"{name:<8} " + " ".join(f"{'-' if x is None else f'{x:.3f}':>{w}}"
                                              for x, w in zip(cells, (7, 8, 6, 9, 9, 7))))
    typer.echo(f"the own condition names the true favourite color for {result['own_condition_color_right']} of users "
               f"(the most frequent color in their history: {result['history_majority_color_right']})")
    typer.echo(f"targets met: {result['targets']['met']}")
    if "outfits" in result:
        o = result["outfits"]
        typer.echo(f"outfits: {o['pieces']} pieces, fit {o['fit_share']} (random item {o['fit_share_random_item']}), "
                   f"oracle CTR {o['oracle_ctr_retrieved']} vs {o['oracle_ctr_category_mean']}")


# --- `atelier eval feedback` (issue #16) -------------------------------------------------------
@app.command("feedback")
def feedback(
    users: Annotated[int, typer.Option("--users", min=1, max=200, help="Held-out users to simulate.")] = 200,
    choices: Annotated[int, typer.Option("--choices", min=0, max=100, help="Pairwise choices per user.")] = 20,
    policy: Annotated[str, typer.Option("--policy", help="Comma-separated: elicit, random, exploit.")] = "elicit,random,exploit",
    starts: Annotated[str, typer.Option("--starts", help="Comma-separated: warm (history), cold (population prior).")] = "warm,cold",
    probes: Annotated[str, typer.Option("--probes", help="How Atelier reads creatives: catalog (learned probes) or zero-shot.")] = "catalog",
    image_users: Annotated[int, typer.Option("--image-users", min=0, max=200, help="Users whose new images are generated and judged (0: none).")] = 0,
    image_policies: Annotated[str, typer.Option("--image-policies", help="Comma-separated policies whose images are generated.")] = "elicit",
    steps: Annotated[int, typer.Option("--steps", min=1, max=100, help="Denoising steps of the image rows.")] = 20,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Seed of users, pairs and answers.")] = 0,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the curves as a PNG here.", callback=options.out_file)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json-out", help="Also write the result to this JSON file.", callback=options.out_file)] = None,
):
    """Simulated shoppers answer pairwise choices; how often does the updated condition name the favourite?"""
    from app.evaluation_feedback import evaluate_feedback, plot_curves
    from core.errors import InputError
    from core.io import atomic_write_json

    pols = [p.strip() for p in policy.split(",") if p.strip()]
    sts = [s.strip() for s in starts.split(",") if s.strip()]
    if not pols or not sts or set(sts) - {"warm", "cold"}:
        raise InputError("--policy needs at least one policy and --starts only warm and/or cold")
    result = evaluate_feedback(n_users=users, choices=choices, policies=pols, starts=sts, probes=probes,
                               image_users=image_users, steps=steps, seed=seed,
                               image_policies=[p.strip() for p in image_policies.split(",") if p.strip()])
    if plot is not None:
        plot_curves(result, plot)
        result["plot"] = plot.name
    if json_out is not None:
        atomic_write_json(json_out, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    budgets = [b for b in (0, 1, 2, 4, 8, 12, 16, 20) if b <= choices]
    typer.echo(f"{result['n_users']} held-out users, {choices} choices, reads: {probes} probes; "
               f"one round (pick + answer + update) {result['round_ms_mean']} ms")
    for kind in ("color", "pattern"):
        typer.echo(f"top {kind} == true favourite (share of users) at budgets {budgets}")
        for name, c in result["curves"].items():
            typer.echo(f"  {name:<24} " + " ".join(f"{c[kind][b]['mean']:.3f}" for b in budgets))
    for name, row in result.get("images", {}).get("match", {}).items():
        typer.echo(f"images {name:<14} " + " ".join(f"{b}:{v['color']['mean']:.2f}/{v['pattern']['mean']:.2f}"
                                                      for b, v in row.items()) + "  (color/pattern)")
    typer.echo(f"targets: {json.dumps(result['targets'])}")
