"""The classification task's typed ``model.config``: the fields of the chosen model's own config class.

The small CNN's ``SmallCNNConfig``, a from-config transformers model's (``model.pretrained: false`` with a
``model_type``), timm's ``TimmWrapperConfig``; a pretrained transformers model's keys are checked against its
config when it is loaded (``model.build_model``), since knowing them needs that config.
"""

from __future__ import annotations

from hf_tasks.config import TrainConfig
from hf_tasks.tasks.classification.model import SMALL_CNN, TIMM_OWN_KEYS, TIMM_PREFIX


def options(cfg: TrainConfig) -> type | None:
    """``model.config`` is the model's own config: the small CNN's fields, a from-config transformers model's
    (``model_type``), timm's wrapper's; a pretrained transformers model's are checked when its config is loaded."""
    from hf_tasks.tasks.options import options_from_config, transformers_config_class

    name, model_type = cfg.model.name, cfg.model.config.get("model_type")
    if name == SMALL_CNN:
        from hf_tasks.models import SmallCNNConfig

        return options_from_config(SmallCNNConfig, exclude=frozenset({"model_type"}))
    if name.startswith(TIMM_PREFIX):
        from transformers import TimmWrapperConfig

        return options_from_config(TimmWrapperConfig, exclude=TIMM_OWN_KEYS)
    if model_type is not None and not cfg.model.pretrained:
        return options_from_config(transformers_config_class(model_type, "model.config.model_type"))
    return None
