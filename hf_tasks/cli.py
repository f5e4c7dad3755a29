"""The ``hf-tasks`` command: demo, build-dataset, train, evaluate, compare, card, push, hub serve.

User mistakes (``HfTasksError``) print one ``error:`` line and exit with status 2, never a stack trace.
"""

from __future__ import annotations

import argparse
import os
import sys

from hf_tasks.errors import HfTasksError, guarded


def build_parser() -> argparse.ArgumentParser:
    from dataset_scripts.cli import add_build_dataset_parser

    parser = argparse.ArgumentParser(prog="hf-tasks", description="Computer-vision tasks on the Hugging Face stack.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_build_dataset_parser(sub)
    sub.add_parser("train", help="train a model from a recipe (see `hf-tasks train --help`)", add_help=False)
    sub.add_parser("demo", help="the whole flow for each task: data, training, evaluation, card, push, load back "
                                "(see `hf-tasks demo --help`)", add_help=False)
    add_evaluate_parser(sub)
    add_compare_parser(sub)
    card = sub.add_parser("card", help="(re)write the model card README.md of a finished run folder")
    card.add_argument("output_dir")
    card.add_argument("--model-id", help="the repo id the usage snippet loads (default: the folder's path)")
    from hf_tasks.hub.push import add_hub_parser, add_push_parser

    add_push_parser(sub)
    add_hub_parser(sub)
    return parser


def add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a saved model on a dataset split")
    p.add_argument("--model", required=True, help="output folder of a run, or a Hub id")
    p.add_argument("--dataset", required=True, help="prepared dataset folder or Hub dataset id")
    p.add_argument("--split", default="test")
    p.add_argument("--task", default="classification", help="a built-in task (a folder of hf_tasks/tasks/) or the "
                                                             "import path of a task module")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-column", default="image")
    p.add_argument("--label-column", default="label")
    p.add_argument("--output", help="write the metrics to this JSON file")
    add_trust_pickle(p)


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="pretrained vs fine-tuned models on the same test split, side by side")
    p.add_argument("--dataset", required=True, help="prepared dataset folder or Hub dataset id")
    p.add_argument("--split", default="test")
    p.add_argument("--baseline", required=True, help="the pretrained model as it comes (Hub id or folder)")
    p.add_argument("--label-map", help="how the baseline's classes map to the dataset's labels: a built-in name "
                                       "(imagenet-cats-dogs) or a JSON/YAML file {label: [class ids or names]}")
    p.add_argument("--model", action="append", required=True, help="a fine-tuned/modified model (repeatable)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-column", default="image")
    p.add_argument("--label-column", default="label")
    p.add_argument("--output", help="comparison JSON (default: comparison.json in the first --model folder)")
    add_trust_pickle(p)


def add_trust_pickle(p) -> None:
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow models with only pickled weights (.bin); unpickling can run code from the file, so "
                        "only for files you trust (they are still loaded with weights_only=True)")


def dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "train":
        from hf_tasks.train import run

        return run(argv[1:])
    if argv and argv[0] == "demo":
        from hf_tasks.demo.run import run as run_demo

        return run_demo(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "build-dataset":
        from dataset_scripts.cli import run_build_dataset

        return run_build_dataset(args)
    if args.command == "evaluate":
        from hf_tasks.evaluate import run as run_evaluate

        return run_evaluate(args)
    if args.command == "compare":
        from hf_tasks.tasks.classification.compare import run_compare

        return run_compare(args)
    if args.command == "card":
        from hf_tasks.cards.render import write_card

        print(f"wrote {write_card(args.output_dir, args.model_id)}")
        return 0
    if args.command in ("push", "hub"):
        from hf_tasks.hub.push import run_hub, run_push

        return run_push(args) if args.command == "push" else run_hub(args)
    raise HfTasksError(f"unknown command {args.command!r}")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return guarded(dispatch, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
