"""Architectures written in this project, registered with transformers' Auto classes.

Importing this package makes ``AutoConfig`` / ``AutoModelForImageClassification.from_pretrained(dir)`` and
``pipeline("image-classification", model=dir)`` understand saved SmallCNN checkpoints, and makes
``VisionEncoderDecoderModel`` / ``AutoProcessor.from_pretrained(dir)`` and ``pipeline("image-text-to-text")``
understand captioning outputs (CNN feature-map encoder, LSTM decoder, CaptioningProcessor). Registration is the one
import-time side effect, it only touches transformers' in-process mappings, and it is idempotent: re-importing or
reloading this module (tests, notebooks) must not raise transformers' "already used by a Transformers model" error.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForImageClassification, AutoProcessor

from hf_tasks.models.captioning_encoders import FEATURE_MAP_MODEL_TYPE, FeatureMapEncoder, FeatureMapEncoderConfig
from hf_tasks.models.captioning_processor import CaptioningProcessor
from hf_tasks.models.lstm_decoder import LSTM_MODEL_TYPE, LSTMDecoderConfig, LSTMDecoderForCausalLM
from hf_tasks.models.small_cnn import MODEL_TYPE, SmallCNNConfig, SmallCNNForImageClassification
from hf_tasks.models.torchvision_detection import register_torchvision_auto_classes


def register_auto_classes() -> None:
    """Map ``model_type="hf_tasks_small_cnn"`` to our config and model classes in the Auto registries.

    ``exist_ok=True`` makes repeated calls harmless, and after an ``importlib.reload`` the freshly created classes
    replace the old ones as a consistent pair (a config/model mismatch would make ``from_pretrained`` fail).
    """
    AutoConfig.register(MODEL_TYPE, SmallCNNConfig, exist_ok=True)
    AutoModelForImageClassification.register(SmallCNNConfig, SmallCNNForImageClassification, exist_ok=True)
    # captioning: the CNN encoder and LSTM decoder that VisionEncoderDecoderModel rebuilds from its sub-configs, and
    # the processor (keyed by our encoder config only so AutoProcessor finds the class by the name it saved)
    AutoConfig.register(FEATURE_MAP_MODEL_TYPE, FeatureMapEncoderConfig, exist_ok=True)
    AutoModel.register(FeatureMapEncoderConfig, FeatureMapEncoder, exist_ok=True)
    AutoConfig.register(LSTM_MODEL_TYPE, LSTMDecoderConfig, exist_ok=True)
    AutoModelForCausalLM.register(LSTMDecoderConfig, LSTMDecoderForCausalLM, exist_ok=True)
    AutoProcessor.register(FeatureMapEncoderConfig, CaptioningProcessor, exist_ok=True)
    # detection: torchvision's detectors behind AutoModelForObjectDetection / pipeline("object-detection")
    register_torchvision_auto_classes()
    # detection: hf-tasks' ultralytics YOLO (config, model, letterbox/NMS image processor); ultralytics loads lazily
    from hf_tasks.models.yolo_transformers import register_yolo_auto_classes

    register_yolo_auto_classes()


register_auto_classes()

__all__ = ["MODEL_TYPE", "CaptioningProcessor", "FeatureMapEncoder", "FeatureMapEncoderConfig", "LSTMDecoderConfig",
           "LSTMDecoderForCausalLM", "SmallCNNConfig", "SmallCNNForImageClassification", "register_auto_classes"]
