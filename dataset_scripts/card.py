"""Dataset cards: a build's info and rejected inputs → README.md, from ``model_cards/dataset_card.md``.

A pure function of the build report, so the card says exactly what ``build_report.json`` records.
"""

from __future__ import annotations

from typing import Any

TASK_CATEGORIES = {"classification": "image-classification", "detection": "object-detection",
                   "captioning": "image-to-text"}
MAX_LISTED = 50


def render_dataset_card(report: dict[str, Any], features: dict[str, str], repo_id: str | None = None) -> str:
    """Card text for a build ``report`` ({"info", "rejected"}) and its ``features`` (column -> type text)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from model_cards import TEMPLATES_DIR

    info, rejected = report["info"], report["rejected"]
    task = info.get("task") or ("classification" if info.get("class_names") else None)
    sizes = info.get("num_examples", {})
    data = DatasetCardData(pretty_name=_pretty_name(info), task_categories=[TASK_CATEGORIES[task]] if task in
                           TASK_CATEGORIES else None, size_categories=[_size_category(sum(sizes.values()))],
                           tags=["hf-tasks", str(info.get("source", ""))])
    card = DatasetCard.from_template(data, template_path=str(TEMPLATES_DIR / "dataset_card.md"),
                                     **card_context(info, rejected, features, repo_id, task))
    return str(card)


def card_context(info: dict, rejected: dict, features: dict[str, str], repo_id: str | None,
                 task: str | None) -> dict[str, Any]:
    sizes, methods = info.get("num_examples", {}), info.get("split_method", {})
    canonical = [s for s in ("train", "validation", "test") if s in sizes]
    split_names = canonical + sorted(s for s in sizes if s not in canonical)
    items = rejected.get("items", [])
    return {
        "pretty_name": _pretty_name(info), "source": info.get("source", "?"), "src": info.get("src", "generated"),
        "task": task, "usage": _usage(info, repo_id), "features": list(features.items()),
        "box_format": _box_format(info.get("box_format")),
        "splits": [{"name": s, "size": sizes[s], "method": methods.get(s, "") if isinstance(methods, dict)
                    else methods} for s in split_names],
        "seed": info.get("seed"), "fractions": _fractions(info), "split_names": split_names,
        "class_rows": _class_rows(info, split_names), "class_order": info.get("class_order"),
        "rejected_count": rejected.get("count", 0),
        "rejected_reasons": sorted(rejected.get("by_reason", {}).items()),
        "rejected_items": items[:MAX_LISTED], "rejected_more": max(0, len(items) - MAX_LISTED),
    }


def _class_rows(info: dict, split_names: list[str]) -> list[dict[str, Any]]:
    counts = info.get("counts", {})
    return [{"id": i, "name": name, "counts": [counts.get(split, {}).get(name, 0) for split in split_names]}
            for i, name in enumerate(info.get("class_names") or [])]


def _usage(info: dict, repo_id: str | None) -> str:
    if repo_id:
        return f'from datasets import load_dataset\n\ndataset = load_dataset("{repo_id}")'
    if info.get("format") == "parquet":
        return ('from datasets import load_dataset\n\ndataset = load_dataset("parquet", data_files={\n'
                '    split: f"path/to/this/folder/{split}/*.parquet" for split in ("train", "validation", "test")})')
    return 'from datasets import load_from_disk\n\ndataset = load_from_disk("path/to/this/folder")'


def _box_format(value: str | None) -> str | None:
    return {"coco_xywh_pixels": "COCO xywh in pixels"}.get(value, value) if value else None


def _fractions(info: dict) -> str:
    parts = [f"{name} fraction {info[key]}" for name, key in (("validation", "val_fraction"),
                                                             ("test", "test_fraction")) if key in info]
    return ", ".join(parts)


def _pretty_name(info: dict) -> str:
    source = str(info.get("source", "dataset")).replace("_", " ")
    task = info.get("task")
    return f"{source} ({task})" if task else source


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def push_dataset_card(repo_id: str, text: str, revision: str | None = None) -> None:
    """Replace the card ``push_to_hub`` wrote, keeping its ``configs``/``dataset_info`` (load_dataset reads them)."""
    from huggingface_hub import DatasetCard

    from huggingface_hub import hf_hub_download

    ours = DatasetCard(text)
    theirs = DatasetCard.load(hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision))
    for key in ("configs", "dataset_info"):
        value = theirs.data.to_dict().get(key)
        if value is not None:
            setattr(ours.data, key, value)
    ours.push_to_hub(repo_id, repo_type="dataset", revision=revision,
                     commit_message="Dataset card from hf-tasks build-dataset")
