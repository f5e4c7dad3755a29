"""``hf-tasks compare``: a pretrained model as it comes vs fine-tuned/modified models, on the same test split.

A pretrained model's own head predicts its own classes (e.g. ImageNet-1k's 1000). A label map says which of
them stand for each dataset label; a label's probability is the sum of its classes' probabilities, and the
prediction is the most probable dataset label. The table it writes is what the model card shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers.modeling_outputs import ImageClassifierOutput

from hf_tasks.errors import ConfigError
from hf_tasks.tasks.classification.card import markdown_table

# ImageNet-1k class indices: 281-285 are the domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian cat),
# 151-268 the dog breeds (Chihuahua ... Mexican hairless).
IMAGENET_CATS_DOGS = {"cat": list(range(281, 286)), "dog": list(range(151, 269))}
BUILTIN_LABEL_MAPS = {"imagenet-cats-dogs": IMAGENET_CATS_DOGS}


class LabelMappedClassifier(torch.nn.Module):
    """Scores the dataset's labels with a model trained on other classes, through a fixed class → label map."""

    def __init__(self, model: torch.nn.Module, groups: list[list[int]]):
        super().__init__()
        self.model = model
        num_source = model.config.num_labels
        membership = torch.zeros(num_source, len(groups))
        for label, classes in enumerate(groups):
            membership[classes, label] = 1.0
        self.register_buffer("membership", membership)

    def forward(self, pixel_values: torch.Tensor) -> ImageClassifierOutput:
        probs = self.model(pixel_values=pixel_values).logits.float().softmax(-1)
        return ImageClassifierOutput(logits=(probs @ self.membership).clamp_min(1e-12).log())


def read_label_map(spec: str) -> dict[str, list]:
    if spec in BUILTIN_LABEL_MAPS:
        return BUILTIN_LABEL_MAPS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--label-map {spec!r} is neither a built-in map ({', '.join(BUILTIN_LABEL_MAPS)}) "
                          "nor a file")
    import yaml

    try:
        mapping = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"--label-map {path}: not valid JSON/YAML ({err})") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, list) for v in mapping.values()):
        raise ConfigError(f"--label-map {path} must map each dataset label to a list of class ids or names")
    return mapping


def resolve_groups(mapping: dict[str, list], dataset_labels: list[str], config) -> list[list[int]]:
    """For each dataset label (in dataset order) the model class indices mapped to it; every label must be mapped."""
    missing = [label for label in dataset_labels if label not in mapping]
    if missing:
        raise ConfigError(f"--label-map does not map dataset labels {missing}; it maps {sorted(mapping)}")
    by_name = {str(name).lower(): int(i) for i, name in config.id2label.items()}
    by_name.update({str(name).split(",")[0].strip().lower(): int(i) for i, name in config.id2label.items()})
    groups = []
    for label in dataset_labels:
        ids = []
        for entry in mapping[label]:
            index = entry if isinstance(entry, int) else by_name.get(str(entry).lower())
            if index is None or not 0 <= index < config.num_labels:
                raise ConfigError(f"--label-map: {entry!r} (for {label!r}) is not a class of the baseline model, "
                                  f"which has {config.num_labels} classes")
            ids.append(index)
        groups.append(ids)
    return groups


def run_compare(args) -> int:
    from hf_tasks.config import evaluation_config
    from hf_tasks.engine.accelerator import make_accelerator
    from hf_tasks.engine.evaluation import evaluate_bundle
    from hf_tasks.labels import check_model_labels
    from hf_tasks.tasks.classification.spec import SPEC as spec
    from hf_tasks.trust import LoadPolicy
    from hf_tasks.util import write_json

    policy = LoadPolicy(trust_pickle=args.trust_pickle)
    cfg = evaluation_config(spec.name, args.dataset, args.split, args.batch_size, args.image_column,
                            args.label_column)
    accelerator = make_accelerator(cfg)
    data = spec.load_data(cfg)
    rows = [evaluate_baseline(accelerator, spec, cfg, data, args, policy)]
    for name in args.model:
        bundle = spec.load_model(name, policy)
        check_model_labels(bundle.label_names, data.info["label_names"], name)
        metrics = evaluate_bundle(accelerator, spec, bundle, cfg, data, args.split, desc=str(name))
        rows.append(row(str(name), "fine-tuned", metrics))
    result = {"dataset": args.dataset, "split": args.split, "label_map": args.label_map, "rows": rows}
    if accelerator.is_main_process:
        print(markdown_table(rows))
        output = Path(args.output) if args.output else Path(args.model[0]) / "comparison.json"
        if output.parent.is_dir():
            write_json(output, result)
            print(f"wrote {output}")
            if (output.parent / "results.json").is_file() and output.name == "comparison.json":
                from hf_tasks.cards.render import write_card

                print(f"updated {write_card(output.parent)}")
    return 0


def evaluate_baseline(accelerator, spec, cfg, data, args, policy) -> dict[str, Any]:
    from hf_tasks.engine.evaluation import evaluate_bundle

    bundle = spec.load_model(args.baseline, policy)
    if bundle.label_names == data.info["label_names"]:
        role = "pretrained"
    elif args.label_map:
        groups = resolve_groups(read_label_map(args.label_map), data.info["label_names"], bundle.model.config)
        bundle.model = LabelMappedClassifier(bundle.model, groups)
        role = f"pretrained, label map {args.label_map}"
    else:
        raise ConfigError(f"baseline {args.baseline} predicts {len(bundle.label_names)} classes, not the dataset's "
                          f"labels {data.info['label_names']}: pass --label-map")
    metrics = evaluate_bundle(accelerator, spec, bundle, cfg, data, args.split, desc="baseline")
    return row(str(args.baseline), role, metrics)


def row(model: str, role: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "role": role, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "num_samples": metrics["num_samples"]}
