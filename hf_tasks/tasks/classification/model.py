"""The classification task's model glue: build, load and save the network (the architectures themselves live in
``hf_tasks.models``)."""

from __future__ import annotations

from pathlib import Path

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.errors import ConfigError
from hf_tasks.registry import ModelBundle, TaskData
from hf_tasks.trust import LoadPolicy, load_pretrained

SMALL_CNN = "small_cnn"
TIMM_PREFIX = "timm/"
DEFAULT_CNN_SIZE = 64
TIMM_OWN_KEYS = frozenset({"architecture", "num_classes", "label_names", "model_type"})  # set from the run
LOAD_HINT = ("Offline, pass a local folder, or set model.pretrained=false with model.config.model_type to build from "
             "a config")


# ----------------------------------------------------------------------------------------------- model


def build_model(cfg: TrainConfig, data: TaskData) -> ModelBundle:
    labels = data.info["label_names"]
    label_kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                    "label2id": {name: i for i, name in enumerate(labels)}}
    name = cfg.model.name
    if name == SMALL_CNN:
        model, processor = _build_small_cnn(cfg, label_kwargs)
    elif name.startswith(TIMM_PREFIX):
        model, processor = _build_timm(cfg, label_kwargs)
    else:
        model, processor = _build_transformers(cfg, label_kwargs)
    if cfg.model.checkpoint:
        from hf_tasks.tasks.classification.start_weights import load_checkpoint

        load_checkpoint(model, classifier_head(model), cfg.model.checkpoint, cfg.model.trust_pickle,
                        cfg.model.reset_head)
    if cfg.model.reset_head:
        reset_head(model)
    if cfg.model.freeze_backbone:
        freeze_backbone(model)
    return ModelBundle(model=model, processor=processor, label_names=labels)


def _build_small_cnn(cfg: TrainConfig, label_kwargs: dict):
    from transformers import ViTImageProcessor

    from hf_tasks.models import SmallCNNConfig, SmallCNNForImageClassification

    size = cfg.data.image_size or DEFAULT_CNN_SIZE
    model = SmallCNNForImageClassification(SmallCNNConfig(**cfg.model.config, **label_kwargs))
    processor = ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return model, processor


def _build_timm(cfg: TrainConfig, label_kwargs: dict):
    from timm.data import resolve_data_config
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification, TimmWrapperImageProcessor

    hub_id = cfg.model.name
    if cfg.model.pretrained:
        model = _from_pretrained(TimmWrapperForImageClassification, hub_id, cfg, label_kwargs)
    else:
        arch = hub_id[len(TIMM_PREFIX):].split(".", 1)[0]
        model = TimmWrapperForImageClassification(TimmWrapperConfig(architecture=arch, **cfg.model.config,
                                                                    **label_kwargs))
    args = {"input_size": (3, cfg.data.image_size, cfg.data.image_size)} if cfg.data.image_size else {}
    data_config = resolve_data_config(args=args, model=model.timm_model)
    return model, TimmWrapperImageProcessor(pretrained_cfg=data_config)


def _build_transformers(cfg: TrainConfig, label_kwargs: dict):
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, ViTImageProcessor

    import hf_tasks.models  # noqa: F401  a saved small_cnn folder loads through the auto classes
    from hf_tasks.tasks.options import check_unused

    overrides, policy = dict(cfg.model.config), LoadPolicy.of(cfg.model)
    if cfg.model.pretrained:
        model = _from_pretrained(AutoModelForImageClassification, cfg.model.name, cfg, label_kwargs)
        processor = _hub_call(AutoImageProcessor.from_pretrained, cfg.model.name, **policy.config_kwargs())
    else:
        if "model_type" in overrides:
            config = AutoConfig.for_model(**overrides, **label_kwargs)
        else:
            config, unused = _hub_call(AutoConfig.from_pretrained, cfg.model.name, return_unused_kwargs=True,
                                       **policy.config_kwargs(), **overrides, **label_kwargs)
            check_unused(unused, config, "model.config.")
        model = AutoModelForImageClassification.from_config(config)
        size = cfg.data.image_size or getattr(config, "image_size", 224)
        processor = ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    if cfg.data.image_size and cfg.model.pretrained:
        _resize_processor(processor, cfg.data.image_size)
    return model, processor


def _from_pretrained(model_class, name: str, cfg: TrainConfig, label_kwargs: dict):
    """Pretrained weights with a head sized to the dataset's labels: a new one for a pretrained backbone; a
    fine-tuned run's own one only if its labels are the dataset's (``hf_tasks.labels``)."""
    policy = LoadPolicy.of(cfg.model)
    _check_run_labels(name, cfg, list(label_kwargs["id2label"].values()), policy)
    if cfg.model.config and not name.startswith(TIMM_PREFIX):
        _check_pretrained_options(name, cfg.model.config, policy)
    return _hub_call(model_class.from_pretrained, name, ignore_mismatched_sizes=True, **policy.model_kwargs(),
                     **cfg.model.config, **label_kwargs)


def _check_pretrained_options(name: str, overrides: dict, policy: LoadPolicy) -> None:
    from transformers import AutoConfig

    from hf_tasks.tasks.options import check_unused

    config, unused = _hub_call(AutoConfig.from_pretrained, name, return_unused_kwargs=True,
                               **policy.config_kwargs(), **overrides)
    check_unused(unused, config, "model.config.")


def _check_run_labels(name: str, cfg: TrainConfig, labels: list[str], policy: LoadPolicy) -> None:
    from transformers import AutoConfig

    from hf_tasks.labels import check_head_labels, is_run

    if cfg.model.reset_head or not is_run(name, cfg.model.revision):
        return
    config = _hub_call(AutoConfig.from_pretrained, name, **policy.config_kwargs())
    saved = [config.id2label[i] for i in range(config.num_labels)]
    check_head_labels(name, saved, labels, cfg.data.dataset)


def _hub_call(fn, name: str, **kwargs):
    return load_pretrained(fn, name, "model.name", LOAD_HINT, **kwargs)


def _resize_processor(processor, size: int) -> None:
    current = getattr(processor, "size", None) or {}
    if "height" in current:
        processor.size = {"height": size, "width": size}
    elif "shortest_edge" in current:
        processor.size = {"shortest_edge": size}
        if getattr(processor, "crop_size", None):
            processor.crop_size = {"height": size, "width": size}


def classifier_head(model: torch.nn.Module) -> torch.nn.Module:
    """The final classification layer(s) of any supported model."""
    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        return timm_model.get_classifier()
    head = getattr(model, "classifier", None)
    if head is None:
        head = getattr(model, "head", None)  # small_cnn: its hidden layer(s) and classifier
    if head is None:
        raise ConfigError(f"cannot find the classification head of {type(model).__name__}, which "
                          "model.freeze_backbone, model.reset_head and model.checkpoint need")
    return head


def reset_head(model: torch.nn.Module) -> None:
    """``model.reset_head``: the classification head starts afresh (PyTorch's default init), even when a fine-tuned
    head of the same size was loaded."""
    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        timm_model.reset_classifier(model.config.num_labels)
        return
    for module in classifier_head(model).modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def freeze_backbone(model: torch.nn.Module) -> None:
    """Linear probe: only the new head trains."""
    for param in model.parameters():
        param.requires_grad = False
    for param in classifier_head(model).parameters():
        param.requires_grad = True


def load_model(path: str | Path, policy: LoadPolicy | None = None) -> ModelBundle:
    """A saved output folder (or Hub id) back as a bundle, for evaluation and comparison (safetensors only unless
    ``policy`` trusts pickles)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    import hf_tasks.models  # noqa: F401  registers small_cnn with the auto classes

    policy = policy or LoadPolicy()
    model = _hub_call(AutoModelForImageClassification.from_pretrained, str(path), **policy.model_kwargs())
    processor = _hub_call(AutoImageProcessor.from_pretrained, str(path), **policy.config_kwargs())
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return ModelBundle(model=model, processor=processor, label_names=labels)


def save_model(bundle: ModelBundle, path: Path, data: TaskData) -> None:
    """Safetensors weights plus config and processor; timm models in timm's own layout."""
    model = bundle.model
    if getattr(model, "timm_model", None) is not None:
        save_timm(model, bundle.processor, path, bundle.label_names)
        return
    model.save_pretrained(path)
    bundle.processor.save_pretrained(path)


def save_timm(model, processor, path: Path, label_names: list[str]) -> None:
    """Write timm's native layout, which both timm ``local-dir:`` and transformers' TimmWrapper read."""
    import json

    from timm.models import save_for_hf

    save_for_hf(model.timm_model, str(path), model_config={"label_names": list(label_names)},
                safe_serialization=True, data_config=dict(processor.data_config))
    config_file = Path(path) / "config.json"
    config = json.loads(config_file.read_text())
    # transformers' wrapper passes num_classes itself and rejects a second copy in model_args
    config.get("model_args", {}).pop("num_classes", None)
    config_file.write_text(json.dumps(config, indent=2))
