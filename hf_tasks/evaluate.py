"""``hf-tasks evaluate``: the metrics of a saved model (run folder or Hub id) on one split of a dataset.

Runs on 1 or N processes (``accelerate launch -m hf_tasks.cli evaluate ...``): the engine's evaluation gathers the
predictions without duplicates, so the numbers do not depend on the process count.
"""

from __future__ import annotations

import json
from pathlib import Path


def run(args) -> int:
    """Print the metrics (prefixed with the split name) and write them to ``--output`` when given."""
    from hf_tasks.config import evaluation_config
    from hf_tasks.engine.accelerator import make_accelerator
    from hf_tasks.engine.evaluation import evaluate_bundle, prefixed
    from hf_tasks.labels import check_model_labels
    from hf_tasks.registry import get_task
    from hf_tasks.trust import LoadPolicy
    from hf_tasks.util import write_json

    cfg = evaluation_config(args.task, args.dataset, args.split, args.batch_size, args.image_column,
                            args.label_column)
    spec = get_task(cfg.task)
    accelerator = make_accelerator(cfg)
    data = spec.load_data(cfg)
    bundle = spec.load_model(args.model, LoadPolicy(trust_pickle=args.trust_pickle))
    if spec.check_model_labels:
        check_model_labels(bundle.label_names, data.info.get("label_names"), args.model)
    metrics = prefixed(evaluate_bundle(accelerator, spec, bundle, cfg, data, args.split, desc=args.split),
                       f"{args.split}_")
    if accelerator.is_main_process:
        print(json.dumps(metrics, indent=2))
        if args.output:
            write_json(Path(args.output), metrics)
    return 0

