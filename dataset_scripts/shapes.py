"""Synthetic "shapes": the project's embedded default data and test-fixture source.

A seeded *scene description* (textured background + coloured shapes) is the single source of truth: the
image, the class label, the boxes and the captions are all derived from it, so the labels are exact.
Each scene draws from its own seeded PCG64 stream, the texture is integer arithmetic and PNG encoding is
deterministic, so the same arguments give the same bytes and therefore the same dataset fingerprint.
"""

from __future__ import annotations

import argparse
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from hf_tasks.errors import DataError

from .common import (
    BadInputReport,
    BuildResult,
    add_output_arguments,
    add_split_arguments,
    check_fractions,
    class_counts,
    image_value,
    rows_to_dataset,
    stratified_split,
)

SOURCE = "shapes"
SHAPES = ("circle", "square", "triangle", "star")
#: saturated colours only: a grey-ish background can never produce one of these exact RGB values.
COLOURS = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 70, 220), "yellow": (240, 220, 30),
    "orange": (250, 140, 20), "purple": (140, 40, 200), "cyan": (20, 200, 220), "pink": (240, 80, 180),
}
#: radius as a fraction of the image side; classification objects stay ≥ ~1/4 of the image wide.
SIZE_RANGES = {"small": (0.13, 0.19), "large": (0.24, 0.31)}
TASKS = ("classification", "detection", "captioning")
DEFAULT_NUM_IMAGES = {"classification": 600, "detection": 500, "captioning": 500}
BBOX_FORMAT = "COCO [x_min, y_min, width, height] in pixels"
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Background:
    """Texture parameters: base tint, diagonal stripes, coarse blotches and per-pixel noise (all integers)."""

    base_rgb: tuple[int, int, int]
    stripe_period: int
    stripe_direction: tuple[int, int]
    stripe_amplitude: int
    blotch_cell: int
    blotch_amplitude: int
    noise_amplitude: int
    noise_seed: int


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object; ``radius`` is the half-extent of the shape around ``center``."""

    shape: str
    colour: str
    rgb: tuple[int, int, int]
    size: str
    center: tuple[int, int]
    radius: int
    rotation: int  # degrees, ignored for circles


@dataclass(frozen=True)
class Scene:
    """Everything needed to render an image and derive its labels; ``objects[0]`` is the main object."""

    width: int
    height: int
    background: Background
    objects: tuple[ShapeObject, ...]

    @property
    def main(self) -> ShapeObject:
        return self.objects[0]


# --------------------------------------------------------------------------------------------- sampling
def random_background(rng: np.random.Generator) -> Background:
    grey = int(rng.integers(80, 176))
    tint = rng.integers(-15, 16, size=3)
    directions = ((1, 0), (0, 1), (1, 1), (1, -1))
    return Background(
        base_rgb=tuple(int(grey + t) for t in tint),
        stripe_period=int(rng.integers(4, 13)),
        stripe_direction=directions[int(rng.integers(len(directions)))],
        stripe_amplitude=int(rng.integers(0, 21)),
        blotch_cell=int(rng.integers(4, 17)),
        blotch_amplitude=int(rng.integers(0, 21)),
        noise_amplitude=int(rng.integers(4, 19)),
        noise_seed=int(rng.integers(2**31)),
    )


def _place(rng, radius: int, image_size: int, placed: list[ShapeObject], tries: int = 40) -> tuple[int, int] | None:
    """A centre keeping the object inside the image and clear of the others (so nothing is occluded)."""
    lo, hi = radius + 1, image_size - radius - 2
    if lo > hi:
        return None
    for _ in range(tries):
        cx, cy = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        if all(math.dist((cx, cy), o.center) >= radius + o.radius + 2 for o in placed):
            return cx, cy
    return None


def random_object(rng, shape: str, image_size: int, placed: list[ShapeObject], size: str | None = None):
    """A shape with an unused colour at a free spot, or ``None`` when the image is too full."""
    used = {o.colour for o in placed}
    colour = str(rng.choice([c for c in COLOURS if c not in used]))
    size = size or str(rng.choice(list(SIZE_RANGES)))
    lo, hi = SIZE_RANGES[size]
    radius = int(round(image_size * float(rng.uniform(lo, hi))))
    center = _place(rng, max(radius, 2), image_size, placed)
    if center is None:
        return None
    rotation = int(rng.integers(-20, 21))
    return ShapeObject(shape, colour, COLOURS[colour], size, center, max(radius, 2), rotation)


def classification_scene(rng: np.random.Generator, shape: str, image_size: int) -> Scene:
    """One object of the given shape, any colour and size, on a random texture."""
    background = random_background(rng)
    obj = random_object(rng, shape, image_size, [])
    return Scene(image_size, image_size, background, (obj,))


def multi_object_scene(rng: np.random.Generator, shapes: Sequence[str], image_size: int, max_objects: int) -> Scene:
    """1..max_objects non-overlapping objects; the first placed is the main one."""
    background = random_background(rng)
    wanted = int(rng.integers(1, max(1, min(max_objects, len(COLOURS))) + 1))
    objects: list[ShapeObject] = []
    for _ in range(wanted):
        shape = str(rng.choice(list(shapes)))
        obj = random_object(rng, shape, image_size, objects) or random_object(rng, shape, image_size, objects, "small")
        if obj is None:
            break
        objects.append(obj)
    if not objects:  # the first object always fits an empty image
        objects.append(random_object(rng, str(rng.choice(list(shapes))), image_size, [], "small"))
    return Scene(image_size, image_size, background, tuple(objects))


# -------------------------------------------------------------------------------------------- rendering
def _polygon(obj: ShapeObject) -> list[tuple[float, float]]:
    """Vertices of polygon shapes around the centre, rotated by ``obj.rotation``."""
    cx, cy = obj.center
    if obj.shape == "square":
        angles, radii = [45, 135, 225, 315], [obj.radius] * 4
    elif obj.shape == "triangle":
        angles, radii = [-90, 30, 150], [obj.radius] * 3
    elif obj.shape == "star":
        angles = [-90 + 36 * k for k in range(10)]
        radii = [obj.radius if k % 2 == 0 else obj.radius * 0.45 for k in range(10)]
    else:
        raise DataError(f"Unknown shape {obj.shape!r}; known: {', '.join(SHAPES)}.")
    return [
        (cx + r * math.cos(math.radians(a + obj.rotation)), cy + r * math.sin(math.radians(a + obj.rotation)))
        for a, r in zip(angles, radii)
    ]


def object_mask(obj: ShapeObject, width: int, height: int) -> Image.Image:
    """Binary ``L`` mask of the object: used both to paint it and to measure its box, so they agree exactly."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    if obj.shape == "circle":
        cx, cy, r = *obj.center, obj.radius
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        draw.polygon(_polygon(obj), fill=255)
    return mask


def render_background(bg: Background, width: int, height: int) -> np.ndarray:
    """Integer-only texture (no transcendental functions), so pixels are identical on every platform."""
    rng = np.random.default_rng(bg.noise_seed)
    yy, xx = np.mgrid[0:height, 0:width]
    a, b = bg.stripe_direction
    stripes = ((xx * a + yy * b) // bg.stripe_period % 2) * 2 * bg.stripe_amplitude - bg.stripe_amplitude
    cells = rng.integers(-bg.blotch_amplitude, bg.blotch_amplitude + 1,
                         size=(height // bg.blotch_cell + 1, width // bg.blotch_cell + 1))
    blotches = np.kron(cells, np.ones((bg.blotch_cell, bg.blotch_cell), dtype=np.int64))[:height, :width]
    noise = rng.integers(-bg.noise_amplitude, bg.noise_amplitude + 1, size=(height, width, 3))
    pixels = np.array(bg.base_rgb, dtype=np.int64) + (stripes + blotches)[..., None] + noise
    return np.clip(pixels, 0, 255).astype(np.uint8)


def render_scene(scene: Scene) -> Image.Image:
    """The RGB image: texture, then each object painted in its flat colour through its mask."""
    image = Image.fromarray(render_background(scene.background, scene.width, scene.height), "RGB")
    for obj in scene.objects:
        image.paste(Image.new("RGB", image.size, obj.rgb), (0, 0), object_mask(obj, scene.width, scene.height))
    return image


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- labels & captions
def scene_boxes(scene: Scene) -> list[list[float]]:
    """COCO ``[x, y, w, h]`` per object: the pixel extent of its drawn mask (hence clipped to the image)."""
    boxes = []
    for obj in scene.objects:
        left, top, right, bottom = object_mask(obj, scene.width, scene.height).getbbox() or (0, 0, 0, 0)
        boxes.append([float(left), float(top), float(right - left), float(bottom - top)])
    return boxes


def describe(obj: ShapeObject) -> str:
    return f"a {obj.size} {obj.colour} {obj.shape}"


def relation(a: ShapeObject, b: ShapeObject) -> str:
    """Where ``a`` is relative to ``b`` along the dominant axis (image y grows downwards)."""
    dx, dy = b.center[0] - a.center[0], b.center[1] - a.center[1]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def join_phrases(phrases: Sequence[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def scene_captions(scene: Scene) -> list[str]:
    """Three phrasings of the same scene: relation, reversed relation (or texture), and a counted list."""
    objs, phrases = scene.objects, [describe(o) for o in scene.objects]
    count = COUNT_WORDS[len(objs)] if len(objs) < len(COUNT_WORDS) else str(len(objs))
    counted = f"{count} shape{'s' if len(objs) > 1 else ''}: {join_phrases(phrases)}"
    if len(objs) == 1:
        return [phrases[0], f"{phrases[0]} on a noisy background", counted]
    extra = f" and {join_phrases(phrases[2:])}" if len(objs) > 2 else ""
    first = f"{phrases[0]} {relation(objs[0], objs[1])} {phrases[1]}{extra}"
    second = f"{phrases[1]} {relation(objs[1], objs[0])} {phrases[0]}{extra}"
    return [first, second, counted]


# ------------------------------------------------------------------------------------------- builders
def parse_classes(text: str | Sequence[str] | None) -> list[str]:
    """Requested shapes in the fixed ``SHAPES`` order; unknown names fail with the known ones."""
    if text is None:
        return list(SHAPES)
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        raise DataError(f"Unknown shape(s) {unknown or names}; choose from {', '.join(SHAPES)}.")
    return [s for s in SHAPES if s in names]


def _features(task: str, classes: list[str]):
    from datasets import ClassLabel, Features, Sequence, Value
    from datasets import Image as ImageFeature

    if task == "classification":
        return Features({"image": ImageFeature(), "label": ClassLabel(names=classes)})
    if task == "detection":
        objects = Sequence({"bbox": Sequence(Value("float32"), length=4), "category": ClassLabel(names=classes)})
        return Features({"image": ImageFeature(), "image_id": Value("int64"), "width": Value("int32"),
                         "height": Value("int32"), "objects": objects})
    return Features({"image": ImageFeature(), "captions": Sequence(Value("string"))})


def make_scene(task: str, index: int, classes: list[str], args: argparse.Namespace) -> Scene:
    """Scene ``index`` from its own stream: adding images never changes earlier ones. Labels cycle → balanced."""
    rng = np.random.default_rng([args.seed, index])
    if task == "classification":
        return classification_scene(rng, classes[index % len(classes)], args.image_size)
    return multi_object_scene(rng, classes, args.image_size, args.objects)


def make_row(task: str, index: int, scene: Scene, classes: list[str]) -> dict[str, Any]:
    image = image_value(encode_png(render_scene(scene)), f"shapes_{index:05d}.png")
    if task == "classification":
        return {"image": image, "label": classes.index(scene.main.shape)}
    if task == "detection":
        objects = {"bbox": scene_boxes(scene), "category": [classes.index(o.shape) for o in scene.objects]}
        return {"image": image, "image_id": index, "width": scene.width, "height": scene.height, "objects": objects}
    return {"image": image, "captions": scene_captions(scene)}


def _check_args(args: argparse.Namespace) -> tuple[str, list[str], int]:
    if args.task not in TASKS:
        raise DataError(f"Unknown --task {args.task!r}; choose from {', '.join(TASKS)}.")
    if args.image_size < 32:
        raise DataError(f"--image-size must be at least 32 pixels (got {args.image_size}).")
    if args.objects < 1:
        raise DataError(f"--objects must be at least 1 (got {args.objects}).")
    check_fractions(args.val_fraction, args.test_fraction)
    num_images = args.num_images if args.num_images is not None else DEFAULT_NUM_IMAGES[args.task]
    if num_images < 1:
        raise DataError(f"--num-images must be positive (got {num_images}).")
    return args.task, parse_classes(args.classes), num_images


def build(args: argparse.Namespace) -> BuildResult:
    """Generate scenes, stratify splits on the main object's shape, and encode each split as PNG rows."""
    from datasets import DatasetDict

    task, classes, num_images = _check_args(args)
    scenes = [make_scene(task, i, classes, args) for i in range(num_images)]
    labels = [classes.index(s.main.shape) for s in scenes]
    parts = stratified_split(labels, args.val_fraction, args.test_fraction, args.seed)
    features = _features(task, classes)
    description = f"Synthetic shapes ({task}); bbox format: {BBOX_FORMAT}." if task == "detection" else ""
    dataset = DatasetDict({
        name: rows_to_dataset((make_row(task, i, scenes[i], classes) for i in idx), features, description)
        for name, idx in parts.items() if idx
    })
    info = {
        "source": SOURCE, "task": task, "seed": args.seed, "num_images": num_images, "image_size": args.image_size,
        "val_fraction": args.val_fraction, "test_fraction": args.test_fraction, "class_names": classes,
        "split_method": dict.fromkeys(parts, "stratified (seeded) on the main object's shape"),
        "num_examples": {name: len(idx) for name, idx in parts.items() if idx},
        "counts": class_counts({n: [labels[i] for i in idx] for n, idx in parts.items() if idx}, classes),
    }
    if task != "classification":
        info["max_objects"] = args.objects
    if task == "detection":
        info["bbox_format"] = BBOX_FORMAT
    return BuildResult(dataset=dataset, report=BadInputReport(), info=info)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS, default="classification")
    parser.add_argument("--num-images", type=int, default=None,
                        help="total images (default: 600 classification, 500 detection/captioning)")
    parser.add_argument("--image-size", type=int, default=64, help="square image side in pixels")
    parser.add_argument("--classes", default=None, help=f"comma list of shapes (default: {','.join(SHAPES)})")
    parser.add_argument("--objects", type=int, default=3, help="max objects per image (detection/captioning)")
    add_output_arguments(parser)
    add_split_arguments(parser)


def write_image_folder(dest: str | Path, classes: Sequence[str] | str | None = None, per_class: int = 10,
                       image_size: int = 64, seed: int = 0) -> Path:
    """Write ``dest/<class>/<class>_NNNN.png``: raw class-per-folder input for tests and demos."""
    dest = Path(dest)
    names = parse_classes(classes)
    for name in names:
        (dest / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, SHAPES.index(name), i])
            scene = classification_scene(rng, name, image_size)
            (dest / name / f"{name}_{i:04d}.png").write_bytes(encode_png(render_scene(scene)))
    return dest
