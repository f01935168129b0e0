"""The `atelier` command: a typer root that registers each command group lazily-importing its heavy work."""

from __future__ import annotations

import importlib
import sys

import typer

import core._offline  # noqa: F401  (offline defaults before anything else)
from core.errors import InputError

app = typer.Typer(
    name="atelier",
    help="Atelier: recommender-driven personalized product images, banners and outfits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (module in app.commands, attribute, CLI name, help) — groups are Typer apps, commands are functions.
GROUPS = [
    ("data", "app", "data", "Inspect data sets (catalogs, interaction logs, benchmark folders)."),
    ("shop", "app", "shop", "Build and inspect the demo shop."),
    ("rec", "app", "rec", "Train, evaluate and benchmark recommenders."),
    ("demo_model", "app", "demo-model", "Evaluate the shipped demo text-to-image model."),
    ("generate", "app", "generate", "Generate personalized product images, backgrounds, banners, outfits."),
    ("eval", "app", "eval", "Evaluate personalization end to end on the demo shop."),
    ("finetune", "app", "finetune", "Fine-tune: LoRA, DPO, reward model, preference adapter, demo model."),
    ("ab", "app", "ab", "A/B ranking: experiments, Thompson sampling, votes, exports, simulation."),
    ("feedback", "app", "feedback", "Feedback on creatives: record choices and clicks, show a shopper's updated condition."),
]
COMMANDS = [
    ("demo", "demo", "demo", "Run the main job on the shipped demo shop and write outputs/demo."),
    ("batch", "batch", "batch", "Run a marketing campaign YAML (resumable)."),
    ("serve", "serve", "serve", "Start the Gradio UI (and the A/B HTTP API) on 127.0.0.1."),
]


def _load(module: str, attr: str):
    try:
        mod = importlib.import_module(f"app.commands.{module}")
    except ModuleNotFoundError as e:
        if e.name == f"app.commands.{module}":
            return None  # command group not installed in this build
        raise
    return getattr(mod, attr, None)


for module, attr, name, help_text in GROUPS:
    sub = _load(module, attr)
    if sub is not None:
        app.add_typer(sub, name=name, help=help_text)
for module, attr, name, help_text in COMMANDS:
    fn = _load(module, attr)
    if fn is not None:
        app.command(name=name, help=help_text)(fn)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one `error:` line and exit code 2, never a traceback.

    Usage errors (unknown options, out-of-range values) are caught too, so a bad flag gives one
    line naming the command and the problem instead of a framed help box.
    """
    from typer._click import exceptions as click_exc  # typer bundles its own click

    try:
        rv = app(args=argv, prog_name="atelier", standalone_mode=False)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except click_exc.UsageError as e:
        message = " ".join(e.format_message().split())
        if not message:  # `no_args_is_help` shows the help and raises without a message
            sys.exit(e.exit_code)
        where = f"atelier {e.ctx.command_path.split(' ', 1)[1]}: " if e.ctx and " " in e.ctx.command_path else ""
        print(f"error: {where}{message} (see --help)", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(getattr(e, "exit_code", 0))
    except click_exc.ClickException as e:
        print(f"error: {' '.join(e.format_message().split())}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
        sys.exit(rv)


if __name__ == "__main__":
    main()
