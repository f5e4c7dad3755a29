"""``build-dataset`` subcommand: ``hf-tasks build-dataset <source> [source options]``.

``hf_tasks/cli.py`` mounts it with :func:`add_build_dataset_parser` and dispatches to
:func:`run_build_dataset`; ``python -m dataset_scripts.cli build-dataset ...`` runs it standalone.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from hf_tasks.errors import HfTasksError

from . import SOURCES, get_source
from .common import BuildResult
from .publish import publish


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


def add_build_dataset_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``build-dataset`` with one nested sub-command per source, each with that source's own options."""
    parser = subparsers.add_parser(
        "build-dataset",
        help="turn a raw download into a train/validation/test DatasetDict and publish it",
        description="Build a DatasetDict from raw files (or the synthetic shapes generator) and save/push it.",
    )
    sources = parser.add_subparsers(dest="source", metavar="source", required=True)
    for name in SOURCES:
        module = get_source(name)
        summary = _first_line(module.__doc__)
        source_parser = sources.add_parser(name, help=summary, description=module.__doc__,
                                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(source_parser)
    parser.set_defaults(func=run_build_dataset)
    return parser


def format_summary(result: BuildResult) -> str:
    """A few lines a human can check at a glance: split sizes, classes, rejected inputs, the source's notes."""
    info = result.info
    sizes = "  ".join(f"{name}: {len(split)}" for name, split in result.dataset.items())
    classes = info.get("class_names", [])
    lines = [
        f"built {info.get('source', '?')} ({info.get('task', 'classification')})" +
        (f" from {info['src']}" if info.get("src") else ""),
        f"  splits: {sizes}",
        f"  rejected inputs: {result.report.count}",
    ]
    if classes:
        lines.insert(2, f"  classes ({len(classes)}): {', '.join(classes)}")
    lines += [f"  note: {note}" for note in info.get("notes", [])]
    if result.report.count:
        lines.append("  " + result.report.summary().replace("\n", "\n  "))
    return "\n".join(lines)


def run_build_dataset(args: argparse.Namespace) -> int:
    """Build, print the summary, publish atomically (and push when asked). Errors surface as HfTasksError."""
    module = get_source(args.source)
    result = module.build(args)
    if getattr(args, "resize", None):
        from .resize import resize_dataset

        result.dataset = resize_dataset(result.dataset, args.resize, getattr(args, "num_proc", None))
        result.info["resize"] = f"longer side at most {args.resize} px (LANCZOS); smaller images untouched"
    print(format_summary(result))
    out = publish(result, args.out, format=args.format, push_to_hub=args.push_to_hub,
                  private=args.private, revision=getattr(args, "revision", None))
    print(f"  saved ({args.format}) to {out}")
    if args.push_to_hub:
        print(f"  pushed to {args.push_to_hub} ({'private' if args.private else 'public'})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: user mistakes become ``error: <message>`` on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m dataset_scripts.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    add_build_dataset_parser(commands)
    args = parser.parse_args(argv)
    try:
        return run_build_dataset(args)
    except HfTasksError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
