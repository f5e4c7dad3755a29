"""`hf-tasks demo`: the whole flow (build → accelerate launch training → test metrics → card → push → load back by
repo id in a fresh process → summary table and report), its argument checks and what it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_json, subprocess_env

# The bars the task issues set for the demo, stated here rather than read from the code under test.
BARS = {"classification": ("test_accuracy", 0.95), "detection": ("test_map_50", 0.5),
        "captioning": ("test_bleu4", 0.5)}


def test_each_task_has_its_issue_bar():
    from hf_tasks.demo.jobs import presets

    assert {task: (preset.bar.metric, preset.bar.threshold) for task, preset in presets().items()} == BARS
    assert list(presets()) == ["captioning", "classification", "detection"]  # builtin_tasks() order, every run


def demo_modules() -> dict[str, Path]:
    folder = Path(__file__).resolve().parents[2] / "hf_tasks" / "demo"
    return {f"hf_tasks.demo.{path.stem}": path for path in sorted(folder.glob("*.py")) if path.stem != "__init__"}


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (a lazy import is an import)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def test_the_demo_knows_no_task_and_imports_in_one_direction():
    """No task name in the demo's code (tasks plug in through their specs); its modules import neither the CLI
    (which imports the demo) nor each other in a circle."""
    import ast

    from hf_tasks.registry import builtin_tasks

    modules = demo_modules()
    for name, path in modules.items():
        literals = {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)}
        assert not literals & set(builtin_tasks()), f"{name} names a task"
        assert not any(m == "hf_tasks.cli" or m.startswith("hf_tasks.cli.") for m in imported(path)), name
    graph = {name: imported(path) & set(modules) for name, path in modules.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert [name for name in graph if reaches(name, name, set())] == []


def test_a_missed_bar_exits_1_naming_the_task(tmp_path, monkeypatch, capsys):
    """Every job runs to the end, one misses its bar by a little: the command's status is 1 and the task is named."""
    import hf_tasks.demo.run as demo

    scores = {"classification": 0.97, "detection": 0.49, "captioning": 0.62}

    def run_job(job, out, hub, progress, args):
        metric, _ = BARS[job.task]
        return demo.Outcome(job, out / job.repo_name, results={metric: scores[job.task], "train_runtime_s": 1.0},
                            model="m", repo=f"demo/{job.repo_name}")

    monkeypatch.setattr(demo, "run_job", run_job)
    assert demo.run(["--out", str(tmp_path / "demo"), "--hub-dir", str(tmp_path / "hub")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["FELL SHORT: detection (shapes_yolov8n): test_map_50 = 0.49 < 0.5"]
    scores["detection"] = 0.5  # exactly on the bar passes
    assert demo.run(["--out", str(tmp_path / "demo"), "--hub-dir", str(tmp_path / "hub"), "--overwrite"]) == 0


def run_demo(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hf_tasks", "demo", *args], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)


def check_published(repo: Path) -> None:
    """What a push uploads: weights, config, card; never checkpoints or pickles."""
    names = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}
    assert {"model.safetensors", "config.json", "README.md", "results.json"} <= names
    assert not any(n.startswith("checkpoints/") or n.endswith((".bin", ".pt", ".pkl")) for n in names)


@pytest.mark.parametrize("hub", ["served", "folder"])
def test_recipe_and_dataset_run_every_stage(shapes_classification, tmp_path, hub):
    """The real-data path (a recipe and a prepared dataset) through the same stages as the built-in jobs."""
    out = tmp_path / "out"
    extra = ["--hub-dir", str(tmp_path / "repos")] if hub == "folder" else []
    proc = run_demo(["--recipe", "shapes_cnn", "--dataset", str(shapes_classification), "--out", str(out),
                     "--epochs", "1", "--batch-size", "16", *extra], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the progress display: one numbered header per stage (no build stage for a prepared dataset)
    for i, stage in enumerate(["train + test evaluation", "model card", "push", "load back + predict"], 1):
        assert f"==> [{i}/4] classification: {stage}" in proc.stdout
    summary = read_json(out / "summary.json")
    (job,) = summary["jobs"]
    results = read_json(out / "runs" / "shapes-cnn" / "results.json")
    assert job["test_metrics"]["test_accuracy"] == results["test_accuracy"]
    assert job["failed"] is None and job["bar"] is None  # bars belong to the built-in shapes jobs
    if hub == "folder":
        assert job["repo_id"] == str(tmp_path / "repos" / "demo" / "shapes-cnn")
        check_published(Path(job["repo_id"]))
    else:  # the repo lives in the demo's own local Hub storage, loaded back over HTTP by its id
        assert job["repo_id"] == "demo/shapes-cnn"
        # the held-out prediction came from a fresh download: the demo's empty cache now holds the pushed weights
        (cached,) = (out / "hf_home" / "hub").glob("models--demo--shapes-cnn/snapshots/*/model.safetensors")
        assert cached.read_bytes() == (out / "runs" / "shapes-cnn" / "model.safetensors").read_bytes()
    heldout = job["heldout"]
    labels = results["label_names"]
    assert heldout["prediction"]["label"] in labels and heldout["truth"]["label"] in labels
    assert 0 <= heldout["prediction"]["score"] <= 1
    table = proc.stdout[proc.stdout.index("task "):]
    assert "shapes-cnn" in table and f"accuracy {results['test_accuracy']:.3f}" in table
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2  # the held-out image and the training curves, embedded
    assert "runs/shapes-cnn/README.md" in html


@pytest.mark.parametrize("args, message", [
    (["--tasks", "segmentation"], "--tasks 'segmentation': choose from captioning, classification, detection"),
    (["--dataset", "data/x"], "--dataset goes with --recipe"),
    (["--recipe", "shapes_cnn", "--quick"], "--quick shrinks the built-in shapes jobs"),
    (["--recipe", "shapes_cnn", "--tasks", "detection"], "trains task 'classification', not the 'detection' job's"),
    (["--recipe", "shapes_fasterrcnn", "--tasks", "detection,classification"], "names one built-in job"),
    (["--recipe", "no_such_recipe"], "no_such_recipe"),
    (["--num-processes", "0"], "--num-processes must be at least 1"),
    (["--epochs", "0"], "epochs"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, capsys, args, message):
    from hf_tasks.cli import main

    assert main(["demo", "--out", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_arguments_print_one_error_line(tmp_path):
    proc = run_demo(["--tasks", "segmentation", "--out", str(tmp_path / "out")], tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --tasks 'segmentation': choose from captioning, classification, "
                                   "detection")


def test_output_folder_is_never_clobbered(tmp_path):
    from hf_tasks.demo.run import MARKER, prepare_out
    from hf_tasks.errors import HfTasksError

    foreign = tmp_path / "mine"
    (foreign / "thesis.tex").parent.mkdir()
    (foreign / "thesis.tex").write_text("precious")

    with pytest.raises(HfTasksError, match="not made by `hf-tasks demo`"):
        prepare_out(foreign, overwrite=True)
    assert (foreign / "thesis.tex").read_text() == "precious"
    earlier = tmp_path / "earlier"
    prepare_out(earlier, overwrite=False)
    (earlier / "summary.json").write_text("{}")
    with pytest.raises(HfTasksError, match="pass --overwrite"):
        prepare_out(earlier, overwrite=False)
    prepare_out(earlier, overwrite=True)
    assert (earlier / MARKER).is_file() and not (earlier / "summary.json").exists()


def test_summary_says_which_bar_fell_short(tmp_path):
    from hf_tasks.demo.jobs import Job, Outcome, presets
    from hf_tasks.demo.report import summary_table

    def outcome(task: str, results: dict, failed: str | None = None) -> Outcome:
        preset = presets()[task]
        job = Job(task, preset.recipe, preset.repo_name, tmp_path, [], [], preset.bar, offline=True)
        return Outcome(job, tmp_path, results=results, model="m", repo=f"demo/{preset.repo_name}", failed=failed)

    good = outcome("classification", {"test_accuracy": 0.97, "train_runtime_s": 3.0})
    short = outcome("detection", {"test_map_50": 0.41, "test_map": 0.2, "train_runtime_s": 9.0})
    broken = outcome("captioning", {}, failed="push: the Hub answered 500")
    assert (good.bar_met, short.bar_met, broken.bar_met) == (True, False, None)
    lines = summary_table([good, short, broken]).splitlines()
    assert ">= 0.95: met" in lines[2] and "accuracy 0.970" in lines[2] and "3.0 s" in lines[2]
    assert ">= 0.5: SHORT" in lines[3] and "mAP50 0.410 / mAP50-95 0.200" in lines[3]
    assert "FAILED" in lines[4]
    assert lines[-1] == "failed (captioning): push: the Hub answered 500"


def test_a_failing_stage_ends_its_job_and_is_named(tmp_path, monkeypatch, capsys):
    import hf_tasks.demo.run as demo
    from hf_tasks.errors import HfTasksError

    class Hub:  # stands in for the publishers: a job that failed earlier must never reach it
        where, published = "test hub", []

        def publish(self, run_dir, name):
            self.published.append(name)
            return f"demo/{name}"

    def fail_training(job, outcome, out, args):
        raise HfTasksError("training exited with status 1; its output is in x.log")

    monkeypatch.setattr(demo, "train", fail_training)
    monkeypatch.setattr(demo, "build_dataset", lambda job: None)
    preset = demo.presets()["classification"]
    job = demo.Job("classification", preset.recipe, preset.repo_name, tmp_path, [], [], preset.bar, offline=True)
    progress = demo.Progress(len(demo.STAGES))
    outcome = demo.run_job(job, tmp_path, Hub(), progress, None)
    assert outcome.failed == ("train + test evaluation (accelerate launch): training exited with status 1; its "
                              "output is in x.log")
    assert Hub.published == [] and outcome.bar_met is None and progress.done == 2
    assert list(outcome.seconds) == ["build dataset", "train + test evaluation (accelerate launch)"]
    assert f"error: classification: {outcome.failed}" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_demo_passes_every_bar(tmp_path):
    """The README's main command in its smoke size, end to end on the three tasks (about 3 minutes)."""
    out = tmp_path / "demo"
    proc = run_demo(["--quick", "--out", str(out)], tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    summary = read_json(out / "summary.json")
    assert [job["task"] for job in summary["jobs"]] == ["captioning", "classification", "detection"]
    for job in summary["jobs"]:
        metric, threshold = BARS[job["task"]]
        assert job["failed"] is None and job["bar"] == {"metric": metric, "threshold": threshold, "met": True}, job
        assert job["test_metrics"][metric] >= threshold
        assert job["heldout"]["prediction"], job
        repo = out / "hub" / "repos" / "models" / job["repo_id"]
        assert repo.is_dir(), f"{job['repo_id']} not in the local Hub storage"
    html = (out / "report.html").read_text()
    for plot in ("training_curves.png", "pr_curve.png", "predictions.png", "caption_gallery.png"):
        assert plot in html
    json.dumps(summary)  # plain JSON all the way down
