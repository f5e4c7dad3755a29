"""ultralytics YOLO's steps in the shared loop: its loss, its NMS and its ModelEMA (through ``TrainHooks``)."""

from __future__ import annotations

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.registry import ModelBundle, TrainHooks
from hf_tasks.tasks.detection.settings import DetectionSettings

# ----------------------------------------------------------------------------------------------- steps


def forward(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """ultralytics' v8DetectionLoss: (box, cls, dfl) gains-weighted, times the batch size, summed — its scale, so
    its learning rates and gradient clipping at 10 carry over."""
    inputs = {"img": batch["img"].float() / 255, "batch_idx": batch["batch_idx"], "cls": batch["cls"],
              "bboxes": batch["bboxes"]}
    loss, _ = model(inputs)
    return {"loss": loss.sum()}


def predict(model: torch.nn.Module, batch: dict, bundle: ModelBundle | None = None) -> list[dict]:
    """NMS'd boxes in original-image COCO xywh pixels, with the sample's exact ground truth, one dict per image."""
    from hf_tasks.models.yolo import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.utils import nms, ops

    core = getattr(model, "module", model)
    settings = (bundle.settings if bundle is not None and bundle.settings is not None else DetectionSettings()).nms
    img = batch["img"].float() / 255
    raw = model(img)
    raw = raw[0] if isinstance(raw, (tuple, list)) else raw
    detections = nms.non_max_suppression(raw.float(), settings["conf"], settings["iou"], multi_label=True,
                                         max_det=settings["max_det"], nc=0,
                                         end2end=getattr(core.model, "end2end", False))
    outputs = []
    for i, det in enumerate(detections):
        boxes = ops.scale_boxes(img.shape[2:], det[:, :4].clone(), batch["ori_shape"][i],
                                ratio_pad=batch["ratio_pad"][i])
        boxes[:, 2:] -= boxes[:, :2]  # xyxy → COCO xywh
        outputs.append({"index": int(batch["index"][i]), "boxes": boxes.cpu().numpy(),
                        "scores": det[:, 4].cpu().numpy(), "labels": det[:, 5].long().cpu().numpy(),
                        "gt": batch["gt"][i]})
    return outputs


# ----------------------------------------------------------------------------------------------- EMA


class EmaHooks(TrainHooks):
    """ultralytics' ModelEMA in the shared loop: updated after each optimizer step, evaluated and saved instead of
    the raw weights, and checkpointed (weights + update count, which sets the decay) so a resume is exact."""

    def __init__(self, model: torch.nn.Module, decay: float, tau: float):
        from ultralytics.utils.torch_utils import ModelEMA

        self.settings = {"decay": decay, "tau": tau}
        self.ema = ModelEMA(model, **self.settings)

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        self.ema.update(model)

    def model_for_eval(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.ema.ema

    def state_dict(self) -> dict:
        return {"ema": {k: v.detach().clone() for k, v in self.ema.ema.state_dict().items()},
                "updates": self.ema.updates}

    def load_state_dict(self, state: dict) -> None:
        """A fresh ModelEMA around the restored weights, so nothing it cached from before the restore survives."""
        from ultralytics.utils.torch_utils import ModelEMA

        ema = ModelEMA(self.ema.ema, **self.settings)
        ema.ema.load_state_dict(state["ema"])
        ema.updates = int(state["updates"])
        self.ema = ema


def make_hooks(cfg: TrainConfig, model: torch.nn.Module) -> TrainHooks:
    mc = cfg.model.config
    if not mc.get("ema", True):
        return TrainHooks()
    return EmaHooks(model, decay=float(mc.get("ema_decay", 0.9999)), tau=float(mc.get("ema_tau", 2000)))


