"""A small VGG-style CNN trained from scratch, packaged as a real transformers model.

Why a transformers model and not a bare ``nn.Module``: the baseline then shares every tool the pretrained models
use (``save_pretrained`` to safetensors, ``from_pretrained``, the Auto classes, ``pipeline("image-classification")``,
model cards, ``push_to_hub``), so the training loop and the hub code need no special case for it.

Architecture: ``len(hidden_sizes)`` stages; each stage is ``convs_per_stage`` x (conv3x3 -> BatchNorm -> ReLU)
followed by a 2x2 max-pool. Global average pooling makes the network accept any input size; the head is
dropout -> [optional dense -> ReLU -> dropout] -> linear.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention

MODEL_TYPE = "hf_tasks_small_cnn"


class SmallCNNConfig(PreTrainedConfig):
    """Configuration of :class:`SmallCNNForImageClassification`.

    transformers 5 configs are keyword-only dataclasses: fields are declared as annotated class attributes, and
    ``num_labels`` / ``id2label`` / ``label2id`` come from :class:`PreTrainedConfig`. Values are checked in
    ``__post_init__`` so a bad recipe fails with a ``ValueError`` naming the field, before any model is built.

    Args:
        num_channels: channels of the input image (3 for RGB).
        hidden_sizes: output channels of each stage; its length is the number of stages (and of 2x2 pools).
        convs_per_stage: conv3x3 -> BatchNorm -> ReLU blocks per stage.
        dropout: dropout probability on the pooled features, before the classifier.
        classifier_hidden_size: width of an optional dense layer between pooling and the classifier (0 = none).
        hidden_dropout: dropout probability after that dense layer (only used when it exists).
        batch_norm_eps: epsilon of every BatchNorm layer.
    """

    model_type = MODEL_TYPE

    num_channels: int = 3
    # A tuple default because dataclasses reject mutable defaults; __post_init__ turns it into a list so the
    # saved config.json and the in-memory value have the same type.
    hidden_sizes: list[int] | tuple[int, ...] = (32, 64, 128)
    convs_per_stage: int = 2
    dropout: float = 0.3
    classifier_hidden_size: int = 0
    hidden_dropout: float = 0.0
    batch_norm_eps: float = 1e-5

    def __post_init__(self, **kwargs: Any) -> None:
        self.hidden_sizes = list(self.hidden_sizes)
        super().__post_init__(**kwargs)
        self.check_values()

    def check_values(self) -> None:
        """Raise ``ValueError`` naming the first invalid field; called at construction and before building a model."""
        _require_int("num_channels", self.num_channels, minimum=1)
        if len(self.hidden_sizes) == 0:
            raise ValueError("hidden_sizes must list at least one stage width, e.g. [32, 64, 128]")
        for i, size in enumerate(self.hidden_sizes):
            _require_int(f"hidden_sizes[{i}]", size, minimum=1)
        _require_int("convs_per_stage", self.convs_per_stage, minimum=1)
        _require_int("classifier_hidden_size", self.classifier_hidden_size, minimum=0)
        _require_probability("dropout", self.dropout)
        _require_probability("hidden_dropout", self.hidden_dropout)
        if isinstance(self.batch_norm_eps, bool) or not isinstance(self.batch_norm_eps, (int, float)):
            raise ValueError(f"batch_norm_eps must be a positive number, got {self.batch_norm_eps!r}")
        if self.batch_norm_eps <= 0:
            raise ValueError(f"batch_norm_eps must be > 0, got {self.batch_norm_eps}")
        if self.num_labels is None or self.num_labels < 2:
            raise ValueError(
                f"num_labels must be >= 2 for single-label classification, got {self.num_labels} "
                "(use num_labels=2 for a binary task)"
            )


def _require_int(name: str, value: Any, *, minimum: int) -> None:
    """bool is an int subclass, so reject it explicitly: ``hidden_sizes=[True]`` is a typo, not a width."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _require_probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")


class SmallCNNStage(nn.Module):
    """``convs`` x (conv3x3 -> BatchNorm -> ReLU), then a 2x2 max-pool that halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int, convs: int, eps: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(convs):
            # No conv bias: the BatchNorm right after it has its own shift, a bias would be redundant.
            layers.append(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False))
            layers.append(nn.BatchNorm2d(out_channels, eps=eps))
            layers.append(nn.ReLU(inplace=True))
        # ceil_mode keeps a 1-pixel map alive when a small input is pooled more times than it can be halved.
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden)


class SmallCNNHead(nn.Module):
    """Pooled features -> logits: dropout, an optional dense layer, then the linear classifier."""

    def __init__(self, config: SmallCNNConfig) -> None:
        super().__init__()
        width = config.hidden_sizes[-1]
        layers: list[nn.Module] = [nn.Dropout(config.dropout)]
        if config.classifier_hidden_size > 0:
            layers += [
                nn.Linear(width, config.classifier_hidden_size),
                nn.ReLU(inplace=True),
                nn.Dropout(config.hidden_dropout),
            ]
            width = config.classifier_hidden_size
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(pooled))


class SmallCNNPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the class attributes transformers needs to save, load and dispatch the model."""

    config: SmallCNNConfig
    config_class = SmallCNNConfig
    base_model_prefix = "small_cnn"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["SmallCNNStage"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Kaiming (fan_out, ReLU) for convs as in ResNet; small normal for linear layers; identity BatchNorm.

        The ``transformers.initialization`` functions are used instead of ``torch.nn.init`` because they skip
        tensors already filled by ``from_pretrained``: with plain torch init a reload would overwrite the
        loaded weights (and BatchNorm running statistics).
        """
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.01)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


class SmallCNNForImageClassification(SmallCNNPreTrainedModel):
    """The baseline classifier: ``forward(pixel_values, labels)`` -> loss and logits, like any HF image classifier."""

    def __init__(self, config: SmallCNNConfig) -> None:
        super().__init__(config)
        config.check_values()  # the config may have been edited after construction
        self.num_labels = config.num_labels
        stages = []
        in_channels = config.num_channels
        for width in config.hidden_sizes:
            stages.append(SmallCNNStage(in_channels, width, config.convs_per_stage, config.batch_norm_eps))
            in_channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = SmallCNNHead(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
    ) -> ImageClassifierOutputWithNoAttention | tuple[torch.Tensor, ...]:
        """Classify a batch of ``(batch, num_channels, height, width)`` images of any size.

        ``labels`` of shape ``(batch,)`` add a mean cross-entropy loss (single-label classification). The loss is
        computed in float32 so it stays accurate under bf16/fp16 autocast.
        """
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values must have shape (batch, {self.config.num_channels}, height, width), "
                f"got {tuple(pixel_values.shape)}"
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        features = self.pool(self.stages(pixel_values)).flatten(1)
        logits = self.head(features)
        loss = None
        if labels is not None:
            labels = labels.to(logits.device).view(-1)
            loss = nn.functional.cross_entropy(logits.float(), labels)
        if not return_dict:
            return (loss, logits) if loss is not None else (logits,)
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits)


__all__ = ["MODEL_TYPE", "SmallCNNConfig", "SmallCNNForImageClassification", "SmallCNNPreTrainedModel"]
