"""Ultralytics YOLO detectors (YOLOv8 n/s/m/l/x, YOLOv5u, …) as a Hub-loadable module, built from ultralytics' parts.

``YoloDetector`` wraps ultralytics' own ``DetectionModel`` (so its loss, head and NMS are used unchanged) and adds
``PyTorchModelHubMixin``: ``save_pretrained`` writes ``model.safetensors`` plus a ``config.json`` holding the full
architecture yaml (with its scale), ``nc`` and ``names``; ``YoloDetector.from_pretrained(folder_or_repo)`` rebuilds
it in one call. ``export_ultralytics_pt`` writes the checkpoint ``ultralytics.YOLO(path)`` loads.

ultralytics is imported only through ``prepare_ultralytics`` (never at module import): importing it writes a
settings file and replaces ``torch.save``, and it checks connectivity. We import it offline (``YOLO_OFFLINE=1``
unless the user set ``YOLO_OFFLINE=0``), with auto-install of missing packages off, and restore ``torch.save``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin

from hf_tasks.errors import ConfigError
from hf_tasks.images import to_rgb

PT_FILE = "model.pt"
MANIFEST_FILE = "export_manifest.json"
# architecture keys of model.config: they rescale the yaml's scale entry (tiny test models, custom widths)
SCALE_KEYS = ("depth_multiple", "width_multiple", "max_channels")
_PREPARED = False


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def prepare_ultralytics() -> None:
    """Import ultralytics once, offline, with its process-wide side effects contained.

    - ``YOLO_OFFLINE=1`` (default; ``YOLO_OFFLINE=0`` opts in to downloads): no connectivity probe, no telemetry
      events, no hub or settings sync; ultralytics' ``ONLINE`` flag is computed at import, so this must come first.
    - ``YOLO_AUTOINSTALL=false``: a checkpoint naming a missing package never triggers ``pip install``.
    - ``torch.save`` is restored after import (ultralytics replaces it with a retrying wrapper), so accelerate's
      checkpoints are written by torch itself; ``PIL.Image.open`` too (ultralytics swaps in a wrapper that, on a file
      that is not an image, tries an optional HEIF plugin and fails with ModuleNotFoundError instead of PIL's own
      ``UnidentifiedImageError``, which the dataset scripts report as a bad file).
    Nothing here draws with fonts (no Arial.ttf download) or calls ``check_amp``: we never run ultralytics'
    trainer, validator or plotting; precision is accelerate's ``mixed_precision``.
    """
    global _PREPARED
    if _PREPARED:
        return
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    from PIL import Image

    original_save, original_open = torch.save, Image.open
    import ultralytics  # noqa: F401
    import ultralytics.utils  # noqa: F401  (the module that patches torch.save)

    torch.save, Image.open = original_save, original_open
    _PREPARED = True


def ultralytics_hyperparameters(overrides: dict[str, Any] | None = None):
    """ultralytics' default cfg (``default.yaml``) with our overrides, as the namespace its loss/dataset expect.

    ``v8DetectionLoss`` reads ``box``/``cls``/``dfl`` gains from ``model.args``, the dataset reads the augmentation
    values; both get this one namespace, so they are ultralytics' defaults unless the recipe says otherwise.
    """
    prepare_ultralytics()
    from ultralytics.cfg import get_cfg

    try:
        return get_cfg(overrides={"task": "detect", "mode": "train", **(overrides or {})})
    except (SyntaxError, TypeError, ValueError) as err:  # check_dict_alignment / check_cfg
        raise ConfigError(f"'model.config.hyp' is invalid for ultralytics: {err}") from None


# ----------------------------------------------------------------------------------------------- building


def architecture(name: str, model_config: dict[str, Any]) -> dict[str, Any]:
    """The yaml dict of ``name`` (``yolov8n.yaml`` → ``yolov8.yaml`` at scale ``n``), with scale overrides applied."""
    prepare_ultralytics()
    from ultralytics.nn.tasks import yaml_model_load

    try:
        spec = yaml_model_load(name)
    except FileNotFoundError as err:
        raise ConfigError(f"'model.name' {name!r}: no such ultralytics model yaml ({err})") from None
    overrides = {k: model_config[k] for k in SCALE_KEYS if model_config.get(k) is not None}
    if overrides:
        scale = spec.get("scale") or next(iter(spec.get("scales") or {"": None}))
        depth, width, channels = (spec.get("scales") or {}).get(scale) or (1.0, 1.0, 1024)
        values = {"depth_multiple": depth, "width_multiple": width, "max_channels": channels, **overrides}
        spec["scales"] = {scale: [values[k] for k in SCALE_KEYS]}
        spec["scale"] = scale
    return json_safe(spec)


def json_safe(value: Any) -> Any:
    """Yaml dicts as plain JSON types (tuples → lists), so they round-trip through config.json unchanged."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def resolve_pt(name: str) -> Path:
    """A local ``.pt``, or ultralytics' own download of a released one (only with ``YOLO_OFFLINE=0``)."""
    prepare_ultralytics()
    path = Path(name).expanduser()
    if path.is_file():
        return path
    from ultralytics.utils import SETTINGS

    cached = Path(SETTINGS["weights_dir"]) / path.name
    if cached.is_file():
        return cached
    if env_flag("YOLO_OFFLINE") or env_flag("HF_HUB_OFFLINE"):
        raise ConfigError(f"'model.name' {name!r}: no such file, and downloads are off (YOLO_OFFLINE/HF_HUB_OFFLINE). "
                          "Pass a local .pt path, or set YOLO_OFFLINE=0 online to fetch ultralytics' released weights")
    from ultralytics.utils.downloads import attempt_download_asset

    return Path(attempt_download_asset(name))


def load_pt(name: str, trust_pickle: bool = False):
    """The ``DetectionModel`` inside an ultralytics checkpoint, unpickled safely unless the user trusts the file.

    First ``torch.load(weights_only=True)`` against ultralytics' allow-list of model classes; a checkpoint that
    needs anything else is refused unless ``model.trust_pickle: true`` (``--trust-pickle``) — a pickle can run
    arbitrary code.
    """
    path = resolve_pt(name)
    from ultralytics.nn.tasks import torch_safe_load

    try:
        ckpt, _ = torch_safe_load(str(path), safe_only=True)
    except Exception as err:  # TypeError / UnpicklingError from the restricted unpickler
        if not trust_pickle:
            raise ConfigError(f"'model.name' {name!r} cannot be loaded with weights_only=True ({err}). Loading it "
                              "fully runs code from the file: only if you trust it, pass --trust-pickle "
                              "(model.trust_pickle: true)") from None
        ckpt, _ = torch_safe_load(str(path), safe_only=False)
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "yaml"):
        raise ConfigError(f"'model.name' {name!r} is not an ultralytics detection checkpoint")
    return model.float()


def class_list(dataset_names: list[str], pretrained_names: list[str] | None, keep_coco: bool) -> list[str]:
    """The detector's classes. Without ``keep_coco_classes``: the dataset's, in its order (rows of pretrained classes
    with the same name are still copied by ultralytics' name remapping). With it: the checkpoint's classes in their
    order, then each dataset class the checkpoint lacks (matched case-insensitively), in dataset order."""
    if not keep_coco or not pretrained_names:
        return list(dataset_names)
    known = {n.strip().lower() for n in pretrained_names}
    return list(pretrained_names) + [n for n in dataset_names if n.strip().lower() not in known]


def build_detector(name: str, dataset_names: list[str], imgsz: int, model_config: dict[str, Any],
                   hyp=None, pretrained: bool = True, trust_pickle: bool = False,
                   check_source: Callable[[list[str]], None] | None = None) -> YoloDetector:
    """A yaml from scratch, or a ``.pt`` whose weights are transferred into a head sized to the new class list.

    ``check_source`` sees the ``.pt``'s class names before anything is built (it raises to refuse them).
    """
    prepare_ultralytics()
    source = None
    if name.endswith(".pt"):
        source = load_pt(name, trust_pickle)
        if check_source is not None:
            check_source([source.names[i] for i in sorted(source.names)])
        spec = json_safe(copy.deepcopy(source.yaml))
        spec.pop("nc", None)
        if not pretrained:
            source = None
    else:
        spec = architecture(name, model_config)
    source_names = [source.names[i] for i in sorted(source.names)] if source is not None else None
    names = class_list(dataset_names, source_names, bool(model_config.get("keep_coco_classes")))
    detector = YoloDetector(model_yaml=spec, names=names, imgsz=imgsz)
    if source is not None:
        detector.model.load(source, verbose=False)  # ultralytics' transfer: matching shapes + class rows by name
    detector.set_hyperparameters(hyp)
    return detector


def reset_class_head(detector: YoloDetector) -> None:
    """``model.reset_head``: the Detect head's class outputs start afresh (box regression and features keep their
    transferred weights), with ultralytics' class-prior bias init."""
    head = detector.model.model[-1]
    for attr in ("cv3", "one2one_cv3"):
        for branch in getattr(head, attr, None) or []:
            branch[-1].reset_parameters()
    head.bias_init()


def detection_model(model_yaml: dict, names: list[str]):
    """ultralytics' ``DetectionModel`` for ``model_yaml`` with a head of ``len(names)`` classes.

    The one builder of ``YoloDetector`` and the transformers ``YoloForObjectDetection``: both keep it as ``.model``,
    so their state dicts have the same keys and one ``model.safetensors`` loads in either.
    """
    prepare_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    spec = copy.deepcopy(model_yaml)
    spec["nc"] = len(names)
    model = DetectionModel(spec, nc=len(names), verbose=False)
    model.names = dict(enumerate(names))
    return model


def letterbox_batch(images: list, imgsz: int, stride: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """PIL images / RGB arrays → ``(B, 3, imgsz, imgsz)`` float pixels in [0, 1], and each image's ``(h, w)``.

    ultralytics' ``LetterBox`` on BGR arrays, as ``YOLO(path).predict`` reads images; shared by ``predict_images``
    and ``YoloImageProcessor`` so the pipeline sees exactly the pixels hf-tasks' own evaluation sees.
    """
    prepare_ultralytics()
    from ultralytics.data.augment import LetterBox

    arrays = [np.ascontiguousarray(np.asarray(to_rgb(im) if hasattr(im, "convert") else im)[..., ::-1])
              for im in images]  # BGR, as ultralytics reads images
    letterbox = LetterBox((imgsz, imgsz), auto=False, stride=stride)
    batch = np.stack([letterbox(image=a) for a in arrays])[..., ::-1].transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(batch)).float() / 255, [a.shape[:2] for a in arrays]


def postprocess_detections(raw, input_shape, image_shapes: list | None, conf: float, iou: float, max_det: int,
                           end2end: bool = False) -> list[dict[str, torch.Tensor]]:
    """ultralytics' NMS on the raw inference output, boxes scaled from the letterboxed input back to each image.

    Returns per image ``{"boxes": xyxy (n, 4), "scores": (n,), "labels": (n,) long}`` tensors; an image shape of
    None leaves its boxes in input (letterboxed) pixels.
    """
    prepare_ultralytics()
    from ultralytics.utils import nms, ops

    detections = nms.non_max_suppression(raw, conf, iou, max_det=max_det, nc=0, end2end=end2end)
    shapes = image_shapes if image_shapes is not None else [None] * len(detections)
    results = []
    for det, shape in zip(detections, shapes, strict=True):
        boxes = det[:, :4].clone()
        if shape is not None:
            boxes = ops.scale_boxes(tuple(input_shape), boxes, tuple(int(v) for v in shape[:2]))
        results.append({"boxes": boxes, "scores": det[:, 4], "labels": det[:, 5].long()})
    return results


# ----------------------------------------------------------------------------------------------- the module


class YoloDetector(torch.nn.Module, PyTorchModelHubMixin, library_name="hf-tasks", pipeline_tag="object-detection",
                   tags=["object-detection", "yolo", "ultralytics", "hf-tasks"]):
    """An ultralytics ``DetectionModel`` that saves as safetensors + config.json and loads back with one call.

    ``forward(dict)`` is ultralytics' training loss, ``forward(tensor)`` its raw inference output;
    ``predict_images`` runs the same letterbox + NMS as ``YOLO(path).predict``.
    """

    def __init__(self, model_yaml: dict, names: list[str], imgsz: int = 640, nc: int | None = None):
        super().__init__()
        if nc is not None and nc != len(names):
            raise ValueError(f"nc={nc} but {len(names)} names")
        self.imgsz, self.names = int(imgsz), list(names)
        self.model = detection_model(model_yaml, self.names)
        self._hub_mixin_config = {"model_yaml": model_yaml, "names": self.names, "imgsz": self.imgsz,
                                  "nc": len(self.names)}
        self.set_hyperparameters(None)

    def set_hyperparameters(self, hyp) -> None:
        """``model.args``: the namespace ultralytics' loss reads its box/cls/dfl gains from (defaults if None)."""
        self.model.args = hyp if hyp is not None else ultralytics_hyperparameters()
        self.model.criterion = None  # rebuilt lazily from the new gains

    def forward(self, x):
        return self.model(x)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         map_location: str = "cpu", strict: bool = True, **model_kwargs):
        """Safetensors only (never a pickled fallback), and strict: a missing tensor is an error, not a silent init."""
        from huggingface_hub import hf_hub_download

        model = cls(**model_kwargs)
        if os.path.isdir(model_id):
            model_file = os.path.join(model_id, "model.safetensors")
        else:
            model_file = hf_hub_download(repo_id=model_id, filename="model.safetensors", revision=revision,
                                         cache_dir=cache_dir, force_download=force_download, token=token,
                                         local_files_only=local_files_only)
        return cls._load_as_safetensor(model, model_file, map_location, True).eval()

    @torch.no_grad()
    def predict_images(self, images: list, conf: float = 0.25, iou: float = 0.7, max_det: int = 300) -> list[dict]:
        """Boxes for PIL images / RGB arrays, as ``YOLO(path).predict`` computes them (its letterbox, its NMS).

        Returns per image ``{"boxes": xyxy pixels (n, 4), "scores": (n,), "labels": (n,), "names": [...]}``.
        """
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        pixels, shapes = letterbox_batch(images, self.imgsz, int(self.model.stride.max()))
        raw = self.model(pixels.to(device))
        detections = postprocess_detections(raw, pixels.shape[2:], shapes, conf, iou, max_det,
                                            end2end=getattr(self.model, "end2end", False))
        self.train(was_training)
        results = []
        for det in detections:
            labels = det["labels"].cpu().numpy()
            results.append({"boxes": det["boxes"].cpu().numpy(), "scores": det["scores"].cpu().numpy(),
                            "labels": labels, "names": [self.names[i] for i in labels]})
        return results


def export_ultralytics_pt(detector: YoloDetector, folder: str | Path) -> Path:
    """Write ``model.pt`` (loadable by ``ultralytics.YOLO``) and list it in ``export_manifest.json``.

    The checkpoint holds the model in float32 (ultralytics saves half; float32 keeps predictions identical to the
    safetensors weights) and only allow-listed types, so ``torch.load(weights_only=True)`` can read it.
    """
    import json
    from datetime import datetime

    prepare_ultralytics()
    from ultralytics import __version__

    folder = Path(folder)
    model = copy.deepcopy(detector.model).float().cpu().eval()
    model.criterion = None
    model.args = {"imgsz": detector.imgsz, "task": "detect"}
    model.names = dict(enumerate(detector.names))
    ckpt = {"epoch": -1, "best_fitness": None, "model": None, "ema": model, "updates": 0, "optimizer": None,
            "train_args": {"imgsz": detector.imgsz, "task": "detect", "model": detector.model.yaml.get("yaml_file")},
            "date": datetime.now().astimezone().isoformat(), "version": __version__,
            "license": "AGPL-3.0 (https://ultralytics.com/license)", "docs": "https://docs.ultralytics.com"}
    path = folder / PT_FILE
    torch.save(ckpt, path)
    manifest = folder / MANIFEST_FILE
    entries = json.loads(manifest.read_text()) if manifest.is_file() else {}
    manifest.write_text(json.dumps({**entries, "pt": PT_FILE}, indent=2))
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m hf_tasks.models.yolo export-pt RUN_DIR``: add the ultralytics ``.pt`` to a saved detector folder."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hf_tasks.models.yolo", description=main.__doc__)
    parser.add_argument("command", choices=["export-pt"])
    parser.add_argument("folder", help="a folder written by a detection run (model.safetensors + config.json)")
    args = parser.parse_args(argv)
    path = export_ultralytics_pt(YoloDetector.from_pretrained(args.folder), args.folder)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
