"""Dataset build throughput: `hf-tasks build-dataset image_folder` vs `load_dataset("imagefolder")` + save_to_disk.

Both read the same raw class-per-folder tree of N JPEG files in one run and write an Arrow dataset to disk:
  ours:      full decode check of every file (corrupt/zero-byte/non-image reporting), stratified seeded split,
             original bytes embedded in the Arrow files, build_report.json, atomic swap into place;
  reference: datasets' imagefolder builder (no decode check; one "train" split) then `save_to_disk`, with a fresh
             cache folder so nothing is reused. save_to_disk embeds the image bytes too.
Throughput = images / wall-clock seconds, each measured in a fresh subprocess (imports included in neither).

    python benchmarks/dataset_build.py --images 5000 [--num-proc 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OURS = """
import sys, time
import datasets, PIL.Image, tqdm  # imported before the clock starts, as in the reference
import dataset_scripts.common, dataset_scripts.image_folder
from dataset_scripts.cli import main
start = time.perf_counter()
code = main(["build-dataset", "image_folder", "--src", sys.argv[1], "--out", sys.argv[2], "--num-proc", sys.argv[3]])
print("SECONDS", time.perf_counter() - start)
sys.exit(code)
"""

REFERENCE = """
import sys, time
import datasets
start = time.perf_counter()
ds = datasets.load_dataset("imagefolder", data_dir=sys.argv[1], cache_dir=sys.argv[3], num_proc=int(sys.argv[4]) if int(sys.argv[4]) > 1 else None)
ds.save_to_disk(sys.argv[2])
print("SECONDS", time.perf_counter() - start)
"""


def write_jpeg_folder(root: Path, images: int) -> None:
    """Half circles, half squares, 96x96 JPEGs (quality 90), like a small Kaggle-style download."""
    sys.path.insert(0, str(REPO))
    from PIL import Image

    from dataset_scripts.shapes import write_image_folder

    png_root = root.parent / "png"
    write_image_folder(png_root, classes=["circle", "square"], per_class=images // 2, image_size=96, seed=0)
    for png in png_root.rglob("*.png"):
        target = root / png.parent.name / (png.stem + ".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(png).convert("RGB").save(target, quality=90)


def run(script: str, args: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, check=True)
    return float(proc.stdout.rsplit("SECONDS", 1)[1].split()[0])


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        work = Path(tmp)
        write_jpeg_folder(work / "raw", args.images)
        ours = run(OURS, [str(work / "raw"), str(work / "ours"), str(args.num_proc)])
        reference = run(REFERENCE, [str(work / "raw"), str(work / "reference"), str(work / "cache"),
                                    str(args.num_proc)])
        row = {"benchmark": "dataset_build_image_folder", "images": args.images, "num_proc": args.num_proc,
               "ours_s": round(ours, 2), "ours_images_per_s": round(args.images / ours, 1),
               "reference_s": round(reference, 2), "reference_images_per_s": round(args.images / reference, 1),
               "speed_ratio_ours_over_reference": round(reference / ours, 2),
               "ours_bytes": dir_size(work / "ours"), "reference_bytes": dir_size(work / "reference"),
               "cpus": os.cpu_count(), "machine": platform.machine()}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
