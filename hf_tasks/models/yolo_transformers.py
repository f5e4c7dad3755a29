"""The YOLO detector as a transformers model: ``AutoModelForObjectDetection`` and ``pipeline("object-detection")``.

hf-tasks trains ``YoloDetector`` (``hf_tasks.models.yolo``: ultralytics' loss, head and NMS, saved with
``PyTorchModelHubMixin``). Users load a finished run with transformers' own entry points, so ``save_transformers``
writes a folder that both sides read:

- ``config.json``: a :class:`YoloConfig` (``model_type="hf_tasks_yolo"``, ``architectures``, ``id2label``) whose
  ``model_yaml`` / ``names`` / ``imgsz`` / ``nc`` are exactly the keys ``YoloDetector.__init__`` takes, so
  ``YoloDetector.from_pretrained`` keeps working (the mixin passes only ``__init__`` parameters);
- ``model.safetensors``: ``YoloDetector``'s state dict; :class:`YoloForObjectDetection` keeps the same
  ``DetectionModel`` under the same attribute name, so the keys are identical;
- ``preprocessor_config.json``: :class:`YoloImageProcessor`, ultralytics' letterbox and NMS, the same functions
  ``YoloDetector.predict_images`` calls, so the pipeline returns the boxes hf-tasks evaluated.

Nothing here imports ultralytics at module import (``hf_tasks.models`` is imported by every user of the Auto
classes); it is imported when a model is built or an image processed, through ``prepare_ultralytics``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.utils import ModelOutput

from hf_tasks.models.yolo import (
    detection_model,
    letterbox_batch,
    postprocess_detections,
)

if TYPE_CHECKING:
    from hf_tasks.models.yolo import YoloDetector

YOLO_MODEL_TYPE = "hf_tasks_yolo"
WEIGHTS_FILE = "model.safetensors"
# what transformers' Auto classes and pipeline() pass to from_pretrained besides the hub arguments: bookkeeping for
# their own loaders (telemetry, remote code, PEFT adapters) that has no meaning for a model built in this package
_LOADER_KWARGS = frozenset({"_from_auto", "_from_pipeline", "_commit_hash", "trust_remote_code", "code_revision",
                            "adapter_kwargs", "adapter_name", "use_safetensors", "low_cpu_mem_usage", "weights_only"})
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


class YoloConfig(PreTrainedConfig):
    """Configuration of :class:`YoloForObjectDetection`: the ultralytics architecture and the class names.

    Args:
        model_yaml: the full ultralytics architecture dict (``architecture()`` or a ``.pt``'s yaml), scale included.
        names: class names in label order; ``id2label`` / ``label2id`` are derived from them (the pipeline reads
            ``config.id2label``), and without names they are read back from ``id2label``.
        imgsz: square input size of the letterbox.
        nc: number of classes; optional, must equal ``len(names)`` (kept because old ``config.json`` files have it).
        iou, max_det: NMS defaults, ultralytics' predict values.
    """

    model_type = YOLO_MODEL_TYPE

    model_yaml: dict | None = None
    names: list[str] | tuple[str, ...] = ()  # a tuple: dataclass fields reject mutable defaults
    imgsz: int = 640
    nc: int | None = None
    iou: float = 0.7
    max_det: int = 300

    def __post_init__(self, **kwargs: Any) -> None:
        names = list(self.names)
        if not names and self.id2label:
            names = [self.id2label[key] for key in sorted(self.id2label, key=int)]
        if self.nc is not None and names and int(self.nc) != len(names):
            raise ValueError(f"nc={self.nc} but {len(names)} names")
        self.names = names
        if names:
            self.nc = len(names)
            self.id2label = dict(enumerate(names))
            self.label2id = {name: i for i, name in enumerate(names)}
        super().__post_init__(**kwargs)


@dataclass
class YoloObjectDetectionOutput(ModelOutput):
    """``logits``: ultralytics' raw inference output, ``(B, 4 + nc, anchors)`` xywh + class scores in input pixels
    (``(B, max_det, 6)`` for end-to-end heads); ``YoloImageProcessor.post_process_object_detection`` decodes it."""

    logits: torch.FloatTensor | None = None


class YoloForObjectDetection(PreTrainedModel):
    """Inference wrapper around the ``DetectionModel`` that ``YoloDetector`` trains (same ``.model``, same weights)."""

    config: YoloConfig
    config_class = YoloConfig
    base_model_prefix = "yolo"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: YoloConfig) -> None:
        super().__init__(config)
        if not config.model_yaml or not config.names:
            raise ValueError("YoloConfig needs model_yaml and names to build a model")
        self.model = detection_model(config.model_yaml, list(config.names))
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Nothing: ultralytics initialises its own layers (BatchNorm eps/momentum, the Detect head's bias priors)."""

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None,
                **kwargs: Any) -> YoloObjectDetectionOutput | tuple[torch.Tensor]:
        """Raw detections for ``(B, 3, imgsz, imgsz)`` letterboxed pixels in [0, 1].

        Inference only: in training mode ultralytics' head returns its loss inputs instead, and training belongs to
        ``YoloDetector`` (hf-tasks' detection task), whose forward computes ultralytics' loss. Other keywords that
        generic callers pass (``output_hidden_states``, ...) are accepted and ignored; ``labels`` is refused.
        """
        if kwargs.get("labels") is not None:
            raise ValueError("YoloForObjectDetection computes no loss: train with hf-tasks (YoloDetector)")
        if self.training:
            raise RuntimeError("YoloForObjectDetection is inference-only: call .eval() first (hf-tasks trains "
                               "YoloDetector, whose forward computes ultralytics' loss)")
        raw = self.model(pixel_values)
        logits = raw[0] if isinstance(raw, (tuple, list)) else raw
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return YoloObjectDetectionOutput(logits=logits) if return_dict else (logits,)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any,
                        config: YoloConfig | str | os.PathLike | None = None, dtype: Any = None,
                        device_map: Any = None, **kwargs: Any) -> YoloForObjectDetection:
        """Build on the CPU, load ``model.safetensors`` strictly, then cast and move.

        transformers' own ``from_pretrained`` builds models on the meta device, where ultralytics'
        ``DetectionModel.__init__`` fails (it runs a forward pass to find its strides and calls ``.item()``). The
        arguments are the ones transformers' loaders pass: hub arguments, ``dtype`` (a torch dtype, its name,
        ``"auto"`` or None: the checkpoint's dtype), a single-device ``device_map`` and loader bookkeeping
        (ignored); any other keyword is a config override (as in transformers), else a ``TypeError``.
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes no positional model arguments")
        dtype = dtype if dtype is not None else kwargs.pop("torch_dtype", None)
        for name in _LOADER_KWARGS:
            kwargs.pop(name, None)
        hub = {name: kwargs.pop(name) for name in _HUB_KWARGS if name in kwargs}
        path = os.fspath(pretrained_model_name_or_path)
        if not isinstance(config, PreTrainedConfig):
            config, kwargs = YoloConfig.from_pretrained(config if config is not None else path,
                                                        return_unused_kwargs=True, **hub, **kwargs)
        if kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected keyword arguments: {sorted(kwargs)}")
        if not isinstance(config, YoloConfig):
            raise TypeError(f"{path} holds a {type(config).__name__}, not a YoloConfig")
        model = cls(config)
        model.config.name_or_path = path
        _load_weights(model, _weights_file(path, hub))
        model.to(dtype=_resolve_dtype(dtype, model))
        device = _single_device(device_map)
        if device is not None:
            model.to(device)
        return model.eval()


def _weights_file(path: str, hub: dict[str, Any]) -> str:
    """``model.safetensors`` of a local folder, or from the Hub (cache, revision, token as the config was read)."""
    subfolder = hub.get("subfolder") or ""
    if os.path.isdir(path):
        return os.path.join(path, subfolder, WEIGHTS_FILE)
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id=path, filename=WEIGHTS_FILE, subfolder=subfolder or None,
                           revision=hub.get("revision"), cache_dir=hub.get("cache_dir"), token=hub.get("token"),
                           force_download=hub.get("force_download", False),
                           local_files_only=hub.get("local_files_only", False))


def _load_weights(model: YoloForObjectDetection, file: str) -> None:
    """Strict: a missing or unexpected tensor is an error, never a silently initialised layer."""
    from safetensors.torch import load_model

    if not os.path.isfile(file):
        raise OSError(f"no {WEIGHTS_FILE} at {file}: a YOLO checkpoint is loaded from safetensors only")
    load_model(model, file, strict=True)


def _resolve_dtype(dtype: Any, model: torch.nn.Module) -> torch.dtype:
    """None / ``"auto"``: the checkpoint's own dtype (``load_model`` kept the float32 parameters, so look at the
    config's saved ``dtype``, else float32); a name such as ``"float16"`` or a ``torch.dtype`` as given."""
    if dtype is None or dtype == "auto":
        saved = getattr(model.config, "dtype", None)
        return saved if isinstance(saved, torch.dtype) else torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise TypeError(f"dtype={dtype!r} is not a torch dtype")
        return resolved
    if isinstance(dtype, torch.dtype):
        return dtype
    raise TypeError(f"dtype={dtype!r}: pass a torch.dtype, its name, or 'auto'")


def _single_device(device_map: Any) -> torch.device | None:
    """The one device of a simple ``device_map`` (a device, its name or index, ``{"": device}``, or ``"auto"``: the
    accelerator if any). A YOLO detector is small; layer-by-layer placement across devices is not supported."""
    if device_map is None:
        return None
    if isinstance(device_map, dict):
        if set(device_map) != {""}:
            raise ValueError(f"device_map={device_map!r}: only a single device ({{'': device}}) is supported")
        device_map = device_map[""]
    if device_map == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device_map in ("balanced", "balanced_low_0", "sequential"):
        raise ValueError(f"device_map={device_map!r}: only a single device is supported")
    return torch.device(device_map)


class YoloImageProcessor(BaseImageProcessor):
    """ultralytics' letterbox before the model and its NMS after, as ``YoloDetector.predict_images`` runs them.

    ``conf`` is the score threshold used when ``post_process_object_detection`` is called with ``threshold=None``
    (the pipeline always passes its own, 0.5 unless ``threshold=`` is given); ``end2end`` marks NMS-free heads.
    """

    def __init__(self, imgsz: int = 640, stride: int = 32, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                 end2end: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.imgsz, self.stride, self.end2end = int(imgsz), int(stride), bool(end2end)
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """PIL images or RGB ``(H, W, 3)`` uint8 arrays (one or a list) → ``pixel_values`` ``(B, 3, imgsz, imgsz)``."""
        if kwargs:
            raise TypeError(f"{type(self).__name__}.preprocess got unexpected keyword arguments: {sorted(kwargs)}")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors={return_tensors!r}: only 'pt' is supported")
        if not isinstance(images, (list, tuple)):
            images = [images]
        pixels, _ = letterbox_batch(list(images), self.imgsz, self.stride)
        return BatchFeature({"pixel_values": pixels}, tensor_type="pt")

    def post_process_object_detection(self, outputs: Any, threshold: float | None = 0.5,
                                      target_sizes: Any = None) -> list[dict[str, torch.Tensor]]:
        """NMS, then boxes scaled to each ``target_sizes`` entry ``(height, width)`` (the original image sizes).

        Returns per image ``{"scores", "labels", "boxes"}`` tensors, boxes xyxy in pixels of the target size (of the
        letterboxed input when ``target_sizes`` is None), like transformers' detection processors.
        """
        logits = outputs["logits"] if isinstance(outputs, (dict, ModelOutput)) else outputs
        conf = self.conf if threshold is None else float(threshold)
        shapes = [tuple(int(v) for v in size) for size in target_sizes] if target_sizes is not None else None
        if shapes is not None and len(shapes) != len(logits):
            raise ValueError(f"{len(shapes)} target sizes for a batch of {len(logits)}")
        detections = postprocess_detections(logits, (self.imgsz, self.imgsz), shapes, conf, self.iou, self.max_det,
                                            end2end=self.end2end)
        return [{"scores": d["scores"], "labels": d["labels"], "boxes": d["boxes"]} for d in detections]


def save_transformers(detector: YoloDetector, folder: str | Path, conf: float = 0.25, iou: float = 0.7,
                      max_det: int = 300) -> Path:
    """Write ``detector`` so that transformers (Auto classes, ``pipeline``) and ``YoloDetector`` both load it.

    ``config.json`` + ``model.safetensors`` + ``preprocessor_config.json``; the weights are written the way
    ``YoloDetector.save_pretrained`` writes them (``safetensors.torch.save_model``, float32 as trained).
    """
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = YoloConfig(model_yaml=detector._hub_mixin_config["model_yaml"], names=list(detector.names),
                        imgsz=detector.imgsz, nc=len(detector.names), iou=iou, max_det=max_det,
                        architectures=[YoloForObjectDetection.__name__],
                        dtype=next(detector.parameters()).dtype)
    config.save_pretrained(folder)
    save_model(detector, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    processor = YoloImageProcessor(imgsz=detector.imgsz, stride=int(detector.model.stride.max()), conf=conf, iou=iou,
                                   max_det=max_det, end2end=bool(getattr(detector.model, "end2end", False)))
    processor.save_pretrained(folder)
    return folder


def register_yolo_auto_classes() -> None:
    """``model_type="hf_tasks_yolo"`` → our config, model and image processor in transformers' Auto registries.

    Idempotent (``exist_ok=True``). The processor is registered for both image-processor backends: it is one
    implementation (ultralytics' numpy letterbox), and AutoImageProcessor would otherwise warn that the default
    torchvision backend is "not available" on every load.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

    AutoConfig.register(YOLO_MODEL_TYPE, YoloConfig, exist_ok=True)
    AutoModelForObjectDetection.register(YoloConfig, YoloForObjectDetection, exist_ok=True)
    AutoImageProcessor.register(YoloConfig, image_processor_classes={"torchvision": YoloImageProcessor,
                                                                     "pil": YoloImageProcessor}, exist_ok=True)


__all__ = ["YOLO_MODEL_TYPE", "YoloConfig", "YoloForObjectDetection", "YoloImageProcessor",
           "YoloObjectDetectionOutput", "register_yolo_auto_classes", "save_transformers"]
