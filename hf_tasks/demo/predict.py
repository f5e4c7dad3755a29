"""Load a published model the way its card tells users to, and predict one held-out image.

``python -m hf_tasks.demo.predict --task T --model REPO_ID_OR_FOLDER --dataset D [--split test] [--index 0]
[--image-out PNG]`` prints one JSON line ``{"prediction": ..., "truth": ...}``. ``hf-tasks demo`` runs it in a fresh
process pointed at the Hub it pushed to (empty cache), so the model really comes back over HTTP.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def predict_classification(ref: str, image) -> dict[str, Any]:
    from transformers import pipeline

    import hf_tasks.models  # noqa: F401  (registers the small CNN with the Auto classes)

    classify = pipeline("image-classification", model=ref, model_kwargs={"use_safetensors": True})
    top = classify(image, top_k=1)[0]
    return {"label": top["label"], "score": round(float(top["score"]), 4)}


def predict_detection(ref: str, image, conf: float = 0.25) -> dict[str, Any]:
    from hf_tasks.models.yolo import YoloDetector

    out = YoloDetector.from_pretrained(ref).eval().predict_images([image], conf=conf)[0]
    return {"boxes": [[round(float(v), 1) for v in box] for box in out["boxes"]],
            "scores": [round(float(s), 3) for s in out["scores"]], "labels": list(out["names"])}


def predict_captioning(ref: str, image) -> dict[str, Any]:
    from transformers import AutoProcessor, VisionEncoderDecoderModel

    import hf_tasks.models  # noqa: F401  (registers the captioning processor, encoders and decoders)

    processor = AutoProcessor.from_pretrained(ref)
    model = VisionEncoderDecoderModel.from_pretrained(ref, use_safetensors=True).eval()
    return {"caption": processor.batch_decode(model.generate(**processor(images=[image])),
                                              skip_special_tokens=True)[0]}


PREDICTORS = {"classification": predict_classification, "detection": predict_detection,
              "captioning": predict_captioning}


def ground_truth(task: str, row: dict, features, image_column: str = "image",
                 label_column: str = "label") -> dict[str, Any]:
    """What the held-out row says, in the same terms as the prediction (empty when the row lacks the column)."""
    if task == "classification" and label_column in row:
        return {"label": _name(features[label_column], row[label_column])}
    if task == "detection" and "objects" in row:
        categories = features["objects"]["category"]
        return {"boxes_xywh": row["objects"]["bbox"],
                "labels": [_name(categories, c) for c in row["objects"]["category"]]}
    if task == "captioning" and "captions" in row:
        return {"captions": list(row["captions"])}
    return {}


def _name(feature, value):
    """A ClassLabel's name for ``value`` (also inside a list feature); the value itself otherwise."""
    while not hasattr(feature, "names") and hasattr(feature, "feature"):
        feature = feature.feature
    return feature.names[value] if hasattr(feature, "names") and isinstance(value, int) else value


def draw(task: str, image, prediction: dict[str, Any]):
    """The image with predicted boxes drawn (detection); other tasks show the image as it is."""
    if task != "detection":
        return image
    from PIL import ImageDraw

    image = image.copy()
    canvas = ImageDraw.Draw(image)
    for box, name, score in zip(prediction["boxes"], prediction["labels"], prediction["scores"]):
        canvas.rectangle(box, outline=(255, 0, 0), width=2)
        canvas.text((box[0] + 2, box[1] + 1), f"{name} {score:.2f}", fill=(255, 0, 0))
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hf_tasks.demo.predict", description=__doc__)
    parser.add_argument("--task", required=True, choices=sorted(PREDICTORS))
    parser.add_argument("--model", required=True, help="Hub repo id or folder")
    parser.add_argument("--dataset", required=True, help="prepared dataset folder or Hub dataset id")
    parser.add_argument("--split", default="test")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--image-out", help="write the image (with predicted boxes for detection) here")
    args = parser.parse_args(argv)
    from hf_tasks.data import load_prepared
    from hf_tasks.images import to_rgb

    split = load_prepared(args.dataset)[args.split]
    row = split[args.index]
    image = to_rgb(row[args.image_column])
    prediction = PREDICTORS[args.task](args.model, image)
    if args.image_out:
        draw(args.task, image, prediction).save(args.image_out)
    print(json.dumps({"prediction": prediction, "truth": ground_truth(args.task, row, split.features, args.image_column,
                                                                     args.label_column)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
