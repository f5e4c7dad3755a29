"""Training entry point: ``accelerate launch -m hf_tasks.train --recipe R [--key value ...]``.

Also reached as ``hf-tasks train``. Overrides use the config's dotted names (``--optim.lr 3e-4``), a unique leaf
name (``--lr 3e-4``), or ``key=value``; dashes and underscores are interchangeable (``--report-to tensorboard``).
A task's model options are reachable the same way (``--model.config.dropout 0.2``) and merge into the recipe's.

Orchestration only: config → the task's spec and checks → ``hf_tasks.engine`` trains → card → push.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hf_tasks.config import TrainConfig
from hf_tasks.errors import guarded
from hf_tasks.registry import check_task, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-tasks train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  hf-tasks train --recipe shapes_cnn --data.dataset data/shapes --epochs 5\n"
               "  accelerate launch -m hf_tasks.train --recipe cats_vs_dogs_vit --resume auto")
    parser.add_argument("--recipe", help="a recipe YAML file or the name of a packaged recipe")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def train(cfg: TrainConfig, spec=None) -> dict[str, Any]:
    """Train one run: the task's checks, the engine's loop (which writes the card through ``describe``), then the
    push on the main process when ``push_to_hub`` names a repo. ``spec`` replaces the task's registered spec (tests
    use it to change one part of a task)."""
    from hf_tasks.cards.render import write_card
    from hf_tasks.engine.loop import train as train_run

    checked = check_task(cfg)
    results = train_run(cfg, spec or checked, describe=write_card)
    if cfg.push_to_hub and _is_main_process():
        from hf_tasks.hub.push import push_run

        push_run(cfg.output_dir, cfg.push_to_hub, private=cfg.hub_private, revision=cfg.hub_revision)
    return results


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def run(argv: list[str]) -> int:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    cfg = load_config(args.recipe, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    train(cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    return guarded(run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
