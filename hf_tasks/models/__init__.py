"""Architectures written in this project, registered with transformers' Auto classes.

Importing this package makes ``AutoConfig`` / ``AutoModelForImageClassification.from_pretrained(dir)`` and
``pipeline("image-classification", model=dir)`` understand saved SmallCNN checkpoints. Registration is the one
import-time side effect, it only touches transformers' in-process mappings, and it is idempotent: re-importing or
reloading this module (tests, notebooks) must not raise transformers' "already used by a Transformers model" error.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForImageClassification

from hf_tasks.models.small_cnn import MODEL_TYPE, SmallCNNConfig, SmallCNNForImageClassification


def register_auto_classes() -> None:
    """Map ``model_type="hf_tasks_small_cnn"`` to our config and model classes in the Auto registries.

    ``exist_ok=True`` makes repeated calls harmless, and after an ``importlib.reload`` the freshly created classes
    replace the old ones as a consistent pair (a config/model mismatch would make ``from_pretrained`` fail).
    """
    AutoConfig.register(MODEL_TYPE, SmallCNNConfig, exist_ok=True)
    AutoModelForImageClassification.register(SmallCNNConfig, SmallCNNForImageClassification, exist_ok=True)


register_auto_classes()

__all__ = ["MODEL_TYPE", "SmallCNNConfig", "SmallCNNForImageClassification", "register_auto_classes"]
