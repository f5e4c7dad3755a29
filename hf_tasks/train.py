"""Training entry point: ``accelerate launch -m hf_tasks.train --recipe R [--key value ...]``.

Also reached as ``hf-tasks train``. Overrides use the config's dotted names (``--optim.lr 3e-4``), a unique leaf
name (``--lr 3e-4``), or ``key=value``; dashes and underscores are interchangeable (``--report-to tensorboard``).
"""

from __future__ import annotations

import argparse
import sys

from hf_tasks.config import load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-tasks train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  hf-tasks train --recipe shapes_cnn --data.dataset data/shapes --epochs 5\n"
               "  accelerate launch -m hf_tasks.train --recipe cats_vs_dogs_vit --resume auto")
    parser.add_argument("--recipe", help="a recipe YAML file or the name of a packaged recipe")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def run(argv: list[str]) -> int:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    cfg = load_config(args.recipe, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    from hf_tasks.engine.loop import train

    train(cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    from hf_tasks.cli import guarded

    return guarded(run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
