"""Bad configuration for every task (issue 9), through `hf-tasks train`'s entry point: each invalid value fails
before training with exit 2 and ONE `error:` line naming the key; a fine-tuned model, exported .pt or checkpoint
whose labels differ from the dataset's is refused unless --reset-head; a finished run is never overwritten without
--overwrite or --resume.

Captioning has no label head (its vocabulary comes with its tokenizer), so the label checks are classification's
and detection's; a captioning resume on another dataset is refused by the data.dataset check like any task's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.faults import DATASETS, TASKS, checkpoint_steps, task_args, train
from tests.helpers import build_dataset, read_json


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    from hf_tasks.train import main

    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


def one_error(capsys, *argv: str) -> str:
    """Run `hf-tasks train ARGV`, expect exit 2 with exactly one `error:` line and no traceback; return the line."""
    code, err = run_cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


UNKNOWN_MODEL = {
    "classification": (["--model.name", "no-such-org/no-such-model"], "error: 'model.name' 'no-such-org/no-such-model'"
                                                                       " could not be loaded ("),
    "detection": (["--model.name", "yolov99n.yaml"], "error: 'model.name' 'yolov99n.yaml': no such ultralytics model "
                                                     "yaml"),
    "captioning": (["--model.config", "{encoder: null, decoder: null}", "--model.pretrained", "true", "--model.name", "no-such-org/captioner"],
                   "error: 'model.name' 'no-such-org/captioner' could not be loaded ("),
}
BAD_VALUES = {
    "batch-size-0": (["--batch-size", "0"], "error: 'batch_size' must be >= 1 (got 0)"),
    "negative-lr": (["--lr", "-0.001"], "error: 'optim.lr' must be > 0 (got -0.001)"),
    "missing-split": (["--data.eval_split", "valid"], "error: 'data.eval_split': the dataset has no split 'valid'; "
                                                      "it has train, validation, test"),
    "unknown-model": None,
}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_each_bad_value_fails_before_training_naming_the_key(task, case, fault_data, tmp_path, capsys):
    overrides, expected = BAD_VALUES[case] or UNKNOWN_MODEL[task]
    out = tmp_path / "run"
    line = one_error(capsys, *task_args(task, fault_data[task], out), *overrides)
    assert line.startswith(expected), line
    assert not (out / "checkpoints").exists() and not (out / "train_config.yaml").exists()


# ------------------------------------------------------------------------------------------------ labels


@pytest.fixture(scope="module")
def finished(fault_data, tmp_path_factory):
    """Per task, a finished 1-step run (detection also exports model.pt), built on first use."""
    cache = {}

    def get(task: str) -> Path:
        if task not in cache:
            cache[task] = tmp_path_factory.mktemp(task) / "run"
            extra = ["--model.config", "{width_multiple: 0.0625, max_channels: 64, plots: false, export_pt: true}"] \
                if task == "detection" else []
            train(task, fault_data[task], cache[task], "--max-steps", "1", "--data.eval_split", "none", *extra)
        return cache[task]

    return get


def shapes(task: str, out: Path, classes: str) -> Path:
    """The task's fault dataset, but with other classes."""
    args = list(DATASETS[task])
    if "--classes" in args:
        del args[args.index("--classes"):args.index("--classes") + 2]
    build_dataset(["shapes", "--task", task, *args, "--classes", classes, "--val-fraction", "0.2",
                   "--test-fraction", "0.2", "--seed", "0", "--out", str(out)])
    return out


def fine_tune_from(task: str, run: Path) -> list[str]:
    return ["--model.name", str(run / "model.pt")] if task == "detection" else ["--model.pretrained", "true",
                                                                              "--model.name", str(run)]


@pytest.mark.parametrize("task, trained_on", [("classification", "circle, square, triangle"),
                                              ("detection", "circle, square, triangle, star")])
@pytest.mark.parametrize("classes", ["circle,square", "circle,square,star"], ids=["count", "names"])
def test_fine_tuned_head_must_match_the_dataset_labels(task, trained_on, classes, finished, tmp_path, capsys):
    """Starting from a run's model (classification: its folder; detection: its exported model.pt) on a dataset with
    other labels fails before training naming model.name and data.dataset; --reset-head trains a new head."""
    run, other = finished(task), shapes(task, tmp_path / "other", classes)
    name = run / "model.pt" if task == "detection" else run
    labels = [c for c in ("circle", "square", "triangle", "star") if c in classes.split(",")]  # shapes' order
    out = tmp_path / "run"
    line = one_error(capsys, *task_args(task, other, out, "--max-steps", "1"), *fine_tune_from(task, run))
    assert line == (f"error: 'model.name' '{name}' was fine-tuned for {len(trained_on.split(', '))} labels "
                    f"[{trained_on}], but 'data.dataset' '{other}' has {len(labels)} labels [{', '.join(labels)}]: "
                    "its head does not fit. Set model.reset_head: true (--reset-head) to train a new head for the "
                    "dataset's labels, or use a dataset with the same labels")
    assert not (out / "checkpoints").exists()
    code, err = run_cli(capsys, *task_args(task, other, out, "--max-steps", "1"), *fine_tune_from(task, run),
                        "--reset-head")
    assert code == 0, err[-3000:]
    assert read_json(out / "results.json")["label_names"] == labels


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_resume_refuses_a_checkpoint_trained_on_other_labels(task, fault_data, tmp_path, capsys):
    """The dataset folder was rebuilt with other classes between the runs: --resume fails naming the checkpoint."""
    data = shapes(task, tmp_path / "data", "circle,square,triangle")
    out = tmp_path / "run"
    train(task, data, out, "--max-steps", "1", "--data.eval_split", "none", "--data.test_split", "none")
    shapes(task, data, "circle,square")
    line = one_error(capsys, *task_args(task, data, out, "--max-steps", "2", "--data.eval_split", "none",
                                        "--data.test_split", "none", "--resume", "auto"))
    assert line == (f"error: --resume: checkpoint {out / 'checkpoints' / 'checkpoint-1'} was trained for 3 labels "
                    f"[circle, square, triangle], but 'data.dataset' '{data}' now has 2 labels [circle, "
                    "square]: resume with the dataset it was trained on, or train into a new output_dir")
    assert checkpoint_steps(out) == [1]


# ------------------------------------------------------------------------------------------------ overwrite


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("task", TASKS)
def test_a_finished_run_is_kept_unless_overwrite_or_resume(task, fault_data, tmp_path, capsys):
    out = tmp_path / "run"
    common = [*task_args(task, fault_data[task], out), "--data.eval_split", "none", "--checkpoint-every", "1"]
    assert run_cli(capsys, *common, "--max-steps", "2")[0] == 0
    before = snapshot(out)
    line = one_error(capsys, *common, "--max-steps", "3")
    assert line == (f"error: output_dir {out} already holds a run; pass --overwrite to replace it or --resume auto "
                    "to continue it")
    assert snapshot(out) == before  # not a byte changed
    code, err = run_cli(capsys, *common, "--max-steps", "3", "--resume", "auto")
    assert code == 0 and read_json(out / "results.json")["train_steps"] == 3, err[-3000:]
    assert checkpoint_steps(out) == [2, 3]
    code, err = run_cli(capsys, *common, "--max-steps", "1", "--overwrite")
    assert code == 0 and read_json(out / "results.json")["train_steps"] == 1, err[-3000:]
    assert checkpoint_steps(out, complete_only=False) == [1]  # the earlier run's checkpoints are gone
    assert not re.search(r"checkpoint-[23]", str(sorted(p.name for p in (out / "checkpoints").iterdir())))
