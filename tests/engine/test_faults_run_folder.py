"""A run folder holds one run and nothing is lost (issue 16, points 1-4, 6-8 and the resume half of 16): --overwrite
deletes only what a run wrote, a changed setting is refused on resume rather than silently ignored, two runs never
share a folder, an unfinished run is never carded or pushed, a checkpoint is never deleted before its replacement is
whole, a full disk is one line, and skipping most steps stops the run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from hf_tasks.errors import HfTasksError
from tests.faults import train
from tests.helpers import read_json, subprocess_env

QUICK = ["--max-steps", "2", "--data.test_split", "none"]


@pytest.fixture
def data(fault_data):
    return fault_data["classification"]


def test_overwrite_refuses_a_folder_holding_files_no_run_wrote(data, tmp_path):
    out = tmp_path / "run"
    train("classification", data, out, *QUICK)
    (out / "notes.txt").write_text("my notes")
    (out / "src").mkdir()
    (out / "src" / "model.py").write_text("print('mine')")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    with pytest.raises(HfTasksError, match=re.escape(f"--overwrite: {out} also holds notes.txt, src, which no "
                                                     "hf-tasks run wrote; nothing was deleted")):
        train("classification", data, out, *QUICK, "--overwrite")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before


def test_overwrite_replaces_exactly_what_the_run_wrote(data, tmp_path):
    """The run lists what it wrote; a folder that also held the user's files before the first run is written into
    (nothing of theirs is touched) but never overwritten."""
    out = tmp_path / "run"
    train("classification", data, out, *QUICK)
    written = read_json(out / "run_outputs.json")
    assert {"model.safetensors", "config.json", "results.json", "README.md", "training_curves.png"} <= set(written)
    (out / "model.safetensors").write_bytes(b"stale")
    train("classification", data, out, *QUICK, "--overwrite")
    assert (out / "model.safetensors").read_bytes() != b"stale"
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("my notes")
    train("classification", data, shared, *QUICK)
    assert "notes.txt" not in read_json(shared / "run_outputs.json")
    with pytest.raises(HfTasksError, match="also holds notes.txt, which no hf-tasks run wrote"):
        train("classification", data, shared, *QUICK, "--overwrite")
    assert (shared / "notes.txt").read_text() == "my notes"


def test_overwrite_of_the_working_directory_deletes_nothing_of_it(data, tmp_path):
    """`--output-dir . --overwrite` where a run once wrote beside source code: refused, everything kept."""
    (tmp_path / "train.py").write_text("print('mine')")
    (tmp_path / "results.json").write_text("{}")  # a run's marker among the user's files
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(HfTasksError, match="also holds train.py, which no hf-tasks run wrote"):
            train("classification", data, tmp_path / ".", *QUICK, "--overwrite")
    finally:
        os.chdir(cwd)
    assert (tmp_path / "train.py").read_text() == "print('mine')" and (tmp_path / "results.json").is_file()


@pytest.mark.parametrize("change", [["--lr", "0.5"], ["--weight-decay", "0.1"], ["--batch-size", "2"],
                                    ["--seed", "4"], ["--optim.scheduler", "constant"]])
def test_resume_refuses_a_setting_the_restored_state_would_ignore(data, tmp_path, change):
    out = tmp_path / "run"
    train("classification", data, out, "--max-steps", "4", "--checkpoint-every", "2")
    saved = (out / "train_config.yaml").read_text()
    key = {"--lr": "optim.lr", "--weight-decay": "optim.weight_decay", "--batch-size": "batch_size",
           "--seed": "seed", "--optim.scheduler": "optim.scheduler"}[change[0]]
    with pytest.raises(HfTasksError, match=rf"--resume: {re.escape(key)} differ"):
        train("classification", data, out, "--max-steps", "6", "--checkpoint-every", "2", "--resume", "auto",
              *change)
    assert (out / "train_config.yaml").read_text() == saved  # the saved config still says what was used


def test_resume_on_another_number_of_processes_is_refused(data, tmp_path):
    from hf_tasks.engine import checkpoint as ckpt

    out = tmp_path / "run"
    train("classification", data, out, "--max-steps", "4", "--checkpoint-every", "2")
    state_file = out / "checkpoints" / "checkpoint-4" / ckpt.STATE_FILE
    state = read_json(state_file)
    assert state["num_processes"] == 1
    state_file.write_text(json.dumps({**state, "num_processes": 2}))
    with pytest.raises(HfTasksError, match="was written by a run on 2 process"):
        train("classification", data, out, "--max-steps", "6", "--resume", "auto")


HOLD_LOCK = """
import sys, time
from pathlib import Path
from hf_tasks.engine.run_folder import exclusive
with exclusive(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_run_on_a_busy_folder_fails_at_once_naming_the_holder(data, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], env=subprocess_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(HfTasksError, match=rf"output_dir {re.escape(str(out))} is in use by another run "
                                               rf"\(pid {holder.pid} on "):
            train("classification", data, out, *QUICK)
        assert not (out / "train_config.yaml").exists()  # the second run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    train("classification", data, out, *QUICK)  # the lock died with its holder


def test_an_interrupted_extension_is_never_carded_or_pushed(data, tmp_path, monkeypatch, capsys):
    """A finished run extended with more epochs and stopped half-way: its folder mixes two runs until the extension
    finishes, so `card` and `push` refuse it with one line."""
    import dataclasses

    import hf_tasks.registry as registry
    from hf_tasks.cli import main
    from hf_tasks.registry import get_task

    out = tmp_path / "run"
    train("classification", data, out, "--epochs", "1")
    spec, calls = get_task("classification"), {"n": 0}

    def forward(model, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user's Ctrl-C, or a crash, mid-way through the extension
        return spec.forward(model, batch)

    with monkeypatch.context() as patch:
        patch.setattr(registry, "get_task", lambda name: dataclasses.replace(spec, forward=forward))
        with pytest.raises(KeyboardInterrupt):
            train("classification", data, out, "--epochs", "2", "--resume", "auto")
    capsys.readouterr()
    for argv in (["card", str(out)], ["push", str(out), "--repo-id", "me/run"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "has not finished" in err[0] and "--resume auto" in err[0], err
    train("classification", data, out, "--epochs", "2", "--resume", "auto")
    assert main(["card", str(out)]) == 0 and read_json(out / "results.json")["train_epochs"] == 2


def test_saving_a_step_again_keeps_a_complete_checkpoint_at_every_moment(data, tmp_path, monkeypatch):
    """Killed between moving the old checkpoint of a step aside and renaming the new one into place: the old one is
    still complete and found by --resume auto."""
    from hf_tasks.engine import checkpoint as ckpt

    out = tmp_path / "run"
    train("classification", data, out, "--max-steps", "4", "--checkpoint-every", "2")
    root = out / "checkpoints"
    tmp = root / ".tmp-checkpoint-4"
    tmp.mkdir()
    real_replace = os.replace

    def killed_at_the_second_rename(src, dst):
        if str(src) == str(tmp):
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", killed_at_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        ckpt.publish(tmp, root / "checkpoint-4")
    assert not (root / "checkpoint-4").exists()
    assert ckpt.find_resume_checkpoint(out, "auto") == root / ".replaced-checkpoint-4"


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    import accelerate

    out, real_save = tmp_path / "run", accelerate.Accelerator.save_state
    saves = {"n": 0}

    def save_state(self, output_dir=None, **kwargs):
        saves["n"] += 1
        if saves["n"] < 2:
            return real_save(self, output_dir, **kwargs)
        with open(os.path.join(output_dir, "model.safetensors"), "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    monkeypatch.setattr(accelerate.Accelerator, "save_state", save_state)
    with pytest.raises(HfTasksError) as err:
        train("classification", data, out, "--max-steps", "4", "--checkpoint-every", "2")
    root = out / "checkpoints"
    assert str(err.value) == (f"no space left on the device while saving checkpoint {root / 'checkpoint-4'}: the "
                              f"partial folder was removed; the newest complete checkpoint {root / 'checkpoint-2'} "
                              "is kept; free some space and continue with --resume auto")
    assert sorted(p.name for p in root.iterdir()) == ["best", "checkpoint-2"]


def test_skipping_more_than_the_allowed_share_of_steps_stops_the_run(data, tmp_path, monkeypatch):
    """Every loss is NaN: --skip-nonfinite stops after max(1, 10 %) of the steps instead of 'training' on."""
    import dataclasses

    import hf_tasks.registry as registry
    from hf_tasks.registry import get_task

    spec = get_task("classification")
    monkeypatch.setattr(registry, "get_task", lambda name: dataclasses.replace(
        spec, forward=lambda model, batch: {"loss": spec.forward(model, batch)["loss"] * float("nan")}))
    with pytest.raises(HfTasksError, match=r"2 of the run's 12 steps skipped, more than max_skipped_fraction 0.1 "
                                           r"allows \(1\)"):
        train("classification", data, tmp_path / "run", "--max-steps", "12", "--skip-nonfinite")


def test_the_card_tells_skipped_steps_from_optimizer_steps(data, tmp_path, monkeypatch):
    from tests.faults import poison

    poison(monkeypatch, "classification", 2, "nan")
    results = train("classification", data, tmp_path / "run", "--max-steps", "6", "--skip-nonfinite")
    assert results["train_steps"] == 6 and results["train_skipped_steps"] == 1
    card = (tmp_path / "run" / "README.md").read_text()
    assert "5 optimizer steps (1 more skipped for a non-finite loss or gradient)" in card


def test_a_build_cleans_what_killed_builds_left_beside_its_output(tmp_path, capsys):
    """Temporary folders of dead builders are removed (a live builder's is kept), and an earlier build moved aside
    by a swap that was killed half-way is put back before the next build starts."""
    from dataset_scripts.cli import main

    out = tmp_path / "ds"
    args = ["build-dataset", "shapes", "--num-images", "12", "--image-size", "32", "--out", str(out)]
    assert main(args) == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in ((".ds.tmp-dead", dead.pid), (".ds.tmp-live", os.getpid())):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".builder.json").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    (tmp_path / ".ds.tmp-old-version").mkdir()  # from a build that wrote no builder file
    os.replace(out, tmp_path / ".ds.old-1234abcd")  # killed between the two renames of the swap
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.tmp-live", "ds"]
    err = capsys.readouterr().err
    assert "removed .ds.tmp-dead" in err and ".ds.old-1234abcd (restored as ds)" in err
