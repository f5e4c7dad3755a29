"""The shared accelerate loop, driven in-process with tiny models on generated shapes data."""

from __future__ import annotations

import pytest
import torch

from hf_tasks.registry import load_config
from hf_tasks.errors import HfTasksError
from tests.helpers import read_json

TINY_VIT = ["--model.name", "vit-tiny", "--model.pretrained", "false", "--model.config",
            "{model_type: vit, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32,"
            " image_size: 32, patch_size: 8}"]
TINY_CNN = ["--model.name", "small_cnn", "--model.pretrained", "false",
            "--model.config", "{hidden_sizes: [8, 16], convs_per_stage: 1, dropout: 0.0}"]


def sizes(dataset) -> dict[str, int]:
    import datasets

    return {split: len(ds) for split, ds in datasets.load_from_disk(str(dataset)).items()}


def batches(n: int, batch_size: int = 8) -> int:
    return -(-n // batch_size)


def train(dataset, out, *overrides: str) -> dict:
    from hf_tasks.train import train as run

    cfg = load_config(None, ["--data.dataset", str(dataset), "--output-dir", str(out), "--batch-size", "8",
                             "--data.image_size", "32", *TINY_CNN, *overrides])
    return run(cfg)


def test_outputs_results_and_history(shapes_classification, tmp_path):
    results = train(shapes_classification, tmp_path / "run", "--epochs", "2", "--log-every", "2")
    out = tmp_path / "run"
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "results.json",
                 "log_history.json", "train_config.yaml"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    assert read_json(out / "results.json") == results
    n = sizes(shapes_classification)
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["test_num_samples"] == n["test"]
    history = read_json(out / "log_history.json")
    assert [h["epoch"] for h in history if "eval_accuracy" in h] == [1, 2]  # epochs completed
    assert any("loss" in h and "lr" in h for h in history)
    assert results["train_steps"] == 2 * batches(n["train"])
    assert len(list((out / "checkpoints").glob("checkpoint-*"))) == 2


def test_gradient_accumulation_counts_optimizer_steps(shapes_classification, tmp_path):
    results = train(shapes_classification, tmp_path / "run", "--epochs", "1", "--grad-accum", "4",
                    "--data.eval_split", "none")
    assert results["train_steps"] == -(-batches(sizes(shapes_classification)["train"]) // 4)
    assert "best_step" not in results


def test_max_steps_stops_mid_epoch_and_still_evaluates(shapes_classification, tmp_path):
    results = train(shapes_classification, tmp_path / "run", "--epochs", "5", "--max-steps", "3")
    assert results["train_steps"] == 3 and results["best_step"] == 3


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """Three classes of noisy red, green and blue squares: a tiny CNN learns them in a few epochs."""
    import numpy as np
    from PIL import Image

    from tests.helpers import build_dataset

    raw, out = tmp_path_factory.mktemp("colours_raw"), tmp_path_factory.mktemp("colours") / "ds"
    rng = np.random.default_rng(0)
    for name, rgb in {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}.items():
        (raw / name).mkdir()
        for i in range(40):
            pixels = np.clip(np.array(rgb)[None, None] + rng.normal(0, 60, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(raw / name / f"{i}.png")
    build_dataset(["image_folder", "--src", str(raw), "--out", str(out), "--val-fraction", "0.25",
                   "--test-fraction", "0.25", "--seed", "0"])
    return out


def test_early_stopping_and_best_weights_on_a_run_that_learns(colours, tmp_path):
    """Validation accuracy climbs to a plateau: training stops ``patience`` evaluations after the first epoch that
    reached it, and the saved model holds that epoch's weights (not the first's, not the last's)."""
    from safetensors.torch import load_file

    from hf_tasks.cli import main

    patience, out = 2, tmp_path / "run"
    results = train(colours, out, "--epochs", "15", "--lr", "0.001", "--scheduler", "constant",
                    "--early-stopping-patience", str(patience), "--keep-checkpoints", "15")
    evals = [h for h in read_json(out / "log_history.json") if "eval_accuracy" in h]
    accuracy = [h["eval_accuracy"] for h in evals]
    best = accuracy.index(max(accuracy))  # the first epoch to reach the best value; later ties do not improve
    improved = [i for i, a in enumerate(accuracy) if a > max(accuracy[:i], default=-1)]
    assert 0 < best < len(accuracy) - 1, accuracy  # the case under test: neither the first nor the last epoch
    assert improved[-1] == best and len(accuracy) == best + 1 + patience < 15  # stopped after `patience` evals
    assert results["train_epochs"] == len(accuracy) and results["best_step"] == evals[best]["step"]
    saved = load_file(str(out / "model.safetensors"))
    checkpoint = {step: load_file(str(out / "checkpoints" / f"checkpoint-{step}" / "model.safetensors"))
                  for step in (evals[best]["step"], evals[-1]["step"])}
    for key, value in saved.items():
        assert torch.equal(value, checkpoint[evals[best]["step"]][key]), key
    assert any(not torch.equal(v, checkpoint[evals[-1]["step"]][k]) for k, v in saved.items())
    metrics = tmp_path / "validation.json"
    assert main(["evaluate", "--task", "classification", "--model", str(out), "--dataset", str(colours), "--split",
                 "validation", "--output", str(metrics)]) == 0
    again = read_json(metrics)
    assert again["validation_accuracy"] == accuracy[best]
    assert again["validation_loss"] == pytest.approx(evals[best]["eval_loss"], rel=1e-5)
    assert again["validation_loss"] != pytest.approx(evals[-1]["eval_loss"], rel=1e-3)


def test_existing_output_is_not_overwritten(shapes_classification, tmp_path):
    train(shapes_classification, tmp_path / "run", "--epochs", "1")
    with pytest.raises(HfTasksError, match="--overwrite"):
        train(shapes_classification, tmp_path / "run", "--epochs", "1")
    train(shapes_classification, tmp_path / "run", "--epochs", "1", "--overwrite")


def test_tensorboard_tracker_logs_what_the_history_records(shapes_classification, tmp_path):
    """The event file holds each step's training loss and lr and each evaluation, as log_history.json has them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(shapes_classification, tmp_path / "run", "--epochs", "2", "--log-every", "1", "--report-to", "tensorboard")
    events = list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    assert events
    scalars = {}
    for event_file in events:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    history = read_json(tmp_path / "run" / "log_history.json")
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    assert len(losses) == 2 * batches(sizes(shapes_classification)["train"])
    assert sorted(scalars["train/loss"]) == [(step, pytest.approx(loss, rel=1e-6)) for step, loss in losses]
    assert sorted(scalars["eval/accuracy"]) == [(h["step"], pytest.approx(h["eval_accuracy"]))
                                                for h in history if "eval_accuracy" in h]


def test_missing_split_fails_naming_the_key(shapes_classification, tmp_path):
    with pytest.raises(HfTasksError, match="data.eval_split.*no split 'valid'"):
        train(shapes_classification, tmp_path / "run", "--data.eval_split", "valid")


def test_freeze_backbone_trains_only_the_head(shapes_classification, tmp_path):
    from hf_tasks.registry import get_task

    cfg = load_config(None, ["--data.dataset", str(shapes_classification), "--model.name", "timm/test_resnet",
                             "--model.pretrained", "false", "--model.freeze_backbone", "true"])
    spec = get_task("classification")
    bundle = spec.build_model(cfg, spec.load_data(cfg))
    trainable = [name for name, p in bundle.model.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith("timm_model.fc.") for name in trainable)


def test_bf16_mixed_precision_trains_on_cpu(shapes_classification, tmp_path):
    results = train(shapes_classification, tmp_path / "run", "--max-steps", "2", "--mixed-precision", "bf16")
    assert results["train_steps"] == 2 and 0 <= results["test_accuracy"] <= 1


def test_worker_count_does_not_change_the_run(shapes_classification, tmp_path):
    """Augmentation is seeded per (seed, epoch, sample), so data-loading workers give the same weights."""
    from safetensors.torch import load_file

    common = ("--epochs", "1", "--data.augment.preset", "keras", "--data.eval_split", "none")
    train(shapes_classification, tmp_path / "w0", *common)
    train(shapes_classification, tmp_path / "w2", *common, "--data.num_workers", "2")
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("w0", "w2"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _poison(monkeypatch, at_call: int, kind: str):
    """Make the 3rd forward return a NaN loss, or a finite loss whose gradient is NaN."""
    import dataclasses

    import hf_tasks.registry as registry
    from hf_tasks.registry import get_task

    spec = get_task("classification")
    calls = {"n": 0}

    def forward(model, batch):
        calls["n"] += 1
        out = spec.forward(model, batch)
        if calls["n"] != at_call:
            return out
        if kind == "loss":
            return {"loss": out["loss"] * float("nan")}
        weight = next(p for p in model.parameters() if p.requires_grad)
        return {"loss": out["loss"] + 0.0 * torch.sqrt(weight.abs().sum() * 0.0)}  # d/dx sqrt at 0: inf * 0

    monkeypatch.setattr(registry, "get_task", lambda name: dataclasses.replace(spec, forward=forward))


@pytest.mark.parametrize("kind, what", [("loss", "loss"), ("gradient", "gradient norm")])
def test_non_finite_values_stop_with_step_and_sample_ids(shapes_classification, tmp_path, monkeypatch, kind, what):
    _poison(monkeypatch, 3, kind)
    with pytest.raises(HfTasksError, match=rf"non-finite {what} at step 3 \(epoch 0, sample ids \[\d+(, \d+)*\]"):
        train(shapes_classification, tmp_path / "run", "--epochs", "2", "--checkpoint-every", "2")
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2"]  # the last good one, nothing written after the fault
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_skip_nonfinite_drops_the_step_and_keeps_weights_finite(shapes_classification, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    _poison(monkeypatch, 3, "gradient")
    results = train(shapes_classification, tmp_path / "run", "--epochs", "1", "--skip-nonfinite")
    assert results["train_skipped_steps"] == 1
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


@pytest.mark.parametrize("damage", ["weights", "state"])
def test_corrupt_checkpoint_is_reported_with_its_path(shapes_classification, tmp_path, damage):
    train(shapes_classification, tmp_path / "run", "--epochs", "1")
    checkpoint = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"))[-1]
    target = checkpoint / ("model.safetensors" if damage == "weights" else "trainer_state.json")
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    with pytest.raises(HfTasksError, match=f"checkpoint {checkpoint} is corrupt"):
        train(shapes_classification, tmp_path / "run", "--epochs", "2", "--resume", "auto")


def test_resume_refuses_a_different_model(shapes_classification, tmp_path):
    train(shapes_classification, tmp_path / "run", "--epochs", "1")
    with pytest.raises(HfTasksError, match="model.name differ from the run"):
        train(shapes_classification, tmp_path / "run", "--epochs", "2", "--resume", "auto",
              "--model.name", "timm/test_resnet",  # the small CNN's options removed: they are not timm's
              "--model.config", "{hidden_sizes: null, convs_per_stage: null, dropout: null}")
    results = train(shapes_classification, tmp_path / "run", "--epochs", "2", "--resume", "auto")
    assert results["train_epochs"] == 2  # more epochs on resume is a legitimate change


class CountingHooks:
    """Hooks with state: counts optimizer steps; the count must survive a checkpoint and resume."""

    instances: list = []

    def __init__(self):
        self.steps, self.evaluated = 0, 0
        CountingHooks.instances.append(self)

    def after_step(self, model, step):
        self.steps += 1

    def model_for_eval(self, model):
        self.evaluated += 1
        return model

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def test_task_hooks_run_every_step_and_resume_with_their_state(shapes_classification, tmp_path, monkeypatch):
    import dataclasses

    import hf_tasks.registry as registry
    from hf_tasks.registry import get_task

    spec = dataclasses.replace(get_task("classification"), make_hooks=lambda cfg, model: CountingHooks())
    monkeypatch.setattr(registry, "get_task", lambda name: spec)
    first = train(shapes_classification, tmp_path / "run", "--epochs", "1")
    assert CountingHooks.instances[-1].steps == first["train_steps"] and CountingHooks.instances[-1].evaluated > 0
    second = train(shapes_classification, tmp_path / "run", "--epochs", "2", "--resume", "auto")
    assert CountingHooks.instances[-1].steps == second["train_steps"] == 2 * first["train_steps"]


def test_best_weights_reload_into_a_model_with_tied_embeddings(tmp_path):
    """accelerate's save_model keeps one copy of tied tensors; restoring the best weights must accept that."""
    from accelerate import Accelerator
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_tasks.engine.checkpoint import load_best_weights, save_best_weights

    model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50, n_positions=16))
    assert model.lm_head.weight is model.transformer.wte.weight
    save_best_weights(Accelerator(cpu=True), model, tmp_path)
    fresh = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50, n_positions=16))
    assert load_best_weights(fresh, tmp_path)
    assert torch.equal(fresh.lm_head.weight, model.lm_head.weight)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
