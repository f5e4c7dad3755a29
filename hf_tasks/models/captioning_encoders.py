"""A CNN as a captioning encoder: its feature map ``(B, C, H, W)`` becomes the token sequence ``(B, H*W, C)``.

``VisionEncoderDecoderModel`` expects an encoder whose ``last_hidden_state`` is a sequence of tokens with
``config.hidden_size`` channels (what ViT returns). transformers' CNNs (``ResNetModel``, ``ConvNextModel``, ...)
return a feature map instead, so :class:`FeatureMapEncoder` wraps any of them: it builds the backbone from a nested
``backbone_config`` with ``AutoModel`` and flattens its last feature map, adding learned row/column position
embeddings so the decoder can tell left from right and top from bottom (captions say "to the left of").

Registered with ``AutoConfig``/``AutoModel`` by ``import hf_tasks.models``, so the encoder-decoder, which rebuilds
its encoder with ``AutoModel.from_config(config.encoder)``, reloads with ``VisionEncoderDecoderModel.from_pretrained``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.configuration_auto import AutoConfig
from transformers.modeling_outputs import BaseModelOutput

FEATURE_MAP_MODEL_TYPE = "hf_tasks_feature_map_encoder"
#: transformers CNNs whose AutoModel returns a (B, C, H, W) last_hidden_state with C = hidden_sizes[-1]
FEATURE_MAP_BACKBONES = ("resnet", "convnext", "convnextv2", "regnet")


class FeatureMapEncoderConfig(PreTrainedConfig):
    """Configuration of :class:`FeatureMapEncoder`.

    Args:
        backbone_config: the CNN's own config (any of ``FEATURE_MAP_BACKBONES``), as a config or a dict.
        hidden_size: channels of the last feature map; derived from the backbone (read it, don't set it).
        max_grid_size: largest feature-map side the position embeddings cover (64 px ResNet input -> 2x2 ... 4x4).
        position_embeddings: add learned row + column embeddings to every token.
    """

    model_type = FEATURE_MAP_MODEL_TYPE
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="resnet")}

    backbone_config: dict | PreTrainedConfig | None = None
    hidden_size: int | None = None
    max_grid_size: int = 32
    position_embeddings: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        backbone_type = self.backbone_config.model_type
        if backbone_type not in FEATURE_MAP_BACKBONES:
            raise ValueError(f"backbone_config.model_type {backbone_type!r} is not a supported CNN; "
                             f"use one of {', '.join(FEATURE_MAP_BACKBONES)}")
        self.hidden_size = int(self.backbone_config.hidden_sizes[-1])
        if self.max_grid_size < 1:
            raise ValueError(f"max_grid_size must be >= 1, got {self.max_grid_size}")


class FeatureMapEncoder(PreTrainedModel):
    """``pixel_values -> last_hidden_state (B, H*W, C)``: a CNN backbone's last feature map as tokens."""

    config: FeatureMapEncoderConfig
    config_class = FeatureMapEncoderConfig
    base_model_prefix = "feature_map_encoder"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: FeatureMapEncoderConfig) -> None:
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.backbone_config)
        if config.position_embeddings:
            self.row_embeddings = nn.Embedding(config.max_grid_size, config.hidden_size)
            self.column_embeddings = nn.Embedding(config.max_grid_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Our own layers; transformers dispatches the backbone's modules to the backbone's ``_init_weights``."""
        if isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=self.config.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    def forward(self, pixel_values: torch.Tensor, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                **kwargs: Any) -> BaseModelOutput | tuple:
        features = self.backbone(pixel_values=pixel_values, return_dict=True).last_hidden_state
        batch, channels, height, width = features.shape
        if max(height, width) > self.config.max_grid_size:
            raise ValueError(f"the feature map is {height}x{width}, larger than max_grid_size "
                             f"{self.config.max_grid_size}: use smaller images or raise max_grid_size")
        tokens = features.flatten(2).transpose(1, 2)  # (B, H*W, C), row-major: token i is at (i // W, i % W)
        if self.config.position_embeddings:
            rows = self.row_embeddings.weight[:height, None, :]
            columns = self.column_embeddings.weight[None, :width, :]
            tokens = tokens + (rows + columns).reshape(height * width, channels)
        tokens = self.norm(tokens)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return BaseModelOutput(last_hidden_state=tokens) if return_dict else (tokens,)


def build_encoder(spec: dict[str, Any], pretrained: bool, image_size: int | None, policy=None):
    """The encoder and its image processor from a recipe's ``model.config.encoder``.

    ``{name: ...}`` loads a Hub id or folder (weights only when ``pretrained``), ``{model_type: ...}`` builds from
    a config. CNN types are wrapped in :class:`FeatureMapEncoder`; anything else (ViT, DeiT, Swin, ...) is used as
    ``AutoModel`` gives it. An unused pooler is frozen: multi-process (DDP) training waits for gradients of every
    trainable parameter, and the pooler would never get one. ``policy`` (``hf_tasks.trust.LoadPolicy``, safe by
    default) decides whether pickled weights or remote code may load.
    """
    from hf_tasks.trust import LoadPolicy

    overrides, policy = {k: v for k, v in spec.items() if k not in ("name", "model_type")}, policy or LoadPolicy()
    name = spec.get("name")
    if name is not None:
        config = AutoConfig.from_pretrained(name, **policy.config_kwargs(), **overrides)
    else:
        config = AutoConfig.for_model(spec["model_type"], **overrides)
    if image_size and hasattr(config, "image_size") and "image_size" not in overrides and not pretrained:
        config.image_size = image_size
    load = pretrained and name is not None
    if config.model_type in FEATURE_MAP_BACKBONES:
        encoder = FeatureMapEncoder(FeatureMapEncoderConfig(backbone_config=config))
        if load:
            encoder.backbone = AutoModel.from_pretrained(name, config=config, **policy.model_kwargs())
    else:
        encoder = AutoModel.from_pretrained(name, config=config, **policy.model_kwargs()) if load else \
            AutoModel.from_config(config)
    for param_name, param in encoder.named_parameters():
        if param_name.startswith("pooler."):
            param.requires_grad = False
    return encoder, build_image_processor(name if load else None, config, image_size, policy.trust_remote_code)


def build_image_processor(name: str | None, config: PreTrainedConfig, image_size: int | None,
                          trust_remote_code: bool = False):
    """A pretrained encoder's own processor (resized to ``image_size`` if given), else a plain resize + [-1, 1]."""
    from transformers import AutoImageProcessor, ViTImageProcessor

    if name is None:
        size = image_size or getattr(config, "image_size", None) or 224
        return ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = AutoImageProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
    if image_size:
        processor.size = {"height": image_size, "width": image_size}
        if getattr(processor, "crop_size", None):
            processor.crop_size = {"height": image_size, "width": image_size}
    return processor


__all__ = ["FEATURE_MAP_BACKBONES", "FEATURE_MAP_MODEL_TYPE", "FeatureMapEncoder", "FeatureMapEncoderConfig",
           "build_encoder", "build_image_processor"]
