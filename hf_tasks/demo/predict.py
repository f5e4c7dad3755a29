"""Load a published model the way its card tells users to, and predict one held-out image.

``python -m hf_tasks.demo.predict --task T --model REPO_ID_OR_FOLDER --dataset D [--split test] [--index 0]
[--image-out PNG]`` prints one JSON line ``{"prediction": ..., "truth": ...}``. ``hf-tasks demo`` runs it in a fresh
process pointed at the Hub it pushed to (empty cache), so the model really comes back over HTTP. What to load, how
to read the row's truth and what to draw are the task's demo parts (``TaskSpec.demo``).
"""

from __future__ import annotations

import argparse
import json
import sys

from hf_tasks.errors import ConfigError, HfTasksError
from hf_tasks.registry import DemoParts, builtin_tasks, get_task


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hf_tasks.demo.predict", description=__doc__)
    parser.add_argument("--task", required=True, help=f"a built-in task ({', '.join(builtin_tasks())}) or a task "
                                                      "module's import path")
    parser.add_argument("--model", required=True, help="Hub repo id or folder")
    parser.add_argument("--dataset", required=True, help="prepared dataset folder or Hub dataset id")
    parser.add_argument("--split", default="test")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--image-out", help="write the image (as the task draws its prediction) here")
    return parser


def demo_parts(task: str) -> DemoParts:
    """The task's demo parts; a task without them cannot be loaded back and shown."""
    parts = get_task(task).demo
    if parts is None:
        raise ConfigError(f"task {task!r} has no demo parts (TaskSpec.demo): nothing loads its model back to predict")
    return parts


def predict_row(args: argparse.Namespace) -> dict:
    from hf_tasks.data import load_prepared
    from hf_tasks.images import to_rgb

    parts = demo_parts(args.task)
    split = load_prepared(args.dataset)[args.split]
    row = split[args.index]
    image = to_rgb(row[args.image_column])
    prediction = parts.predict(args.model, image)
    if args.image_out:
        (parts.draw(image, prediction) if parts.draw else image).save(args.image_out)
    truth = parts.ground_truth(row, split.features, args.image_column, args.label_column)
    return {"prediction": prediction, "truth": truth}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = predict_row(args)
    except HfTasksError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
