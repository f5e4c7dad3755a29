"""Each loop feature shown to take effect inside the loop, observed where it acts: the lr and weight decay the
optimizer steps with, the gradient norm it sees, the dtype the convolutions compute in and the pixels each training
forward gets. Expected values are worked out here from the settings, not read from the code under test."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tests.engine.test_train_loop import batches, sizes, train

LR = 0.01


class Recorder:
    """Wraps the classification task's ``forward`` and ``AdamW.step`` for one run."""

    def __init__(self, monkeypatch):
        import hf_tasks.registry as registry
        from hf_tasks.registry import get_task

        self.pixels, self.autocast, self.lrs, self.decays, self.grad_norms = [], [], [], [], []
        spec = get_task("classification")

        def conv_output(module, inputs, output):
            self.autocast.append(output.dtype)

        def forward(model, batch):
            self.pixels.append(batch["pixel_values"].detach().clone())
            if not self.pixels[1:]:  # the first convolution reports the dtype it computes in
                next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).register_forward_hook(conv_output)
            return spec.forward(model, batch)

        step = torch.optim.AdamW.step

        def recording_step(optimizer, *args, **kwargs):
            self.lrs.append({group["lr"] for group in optimizer.param_groups})
            self.decays.append([(group["weight_decay"], {p.ndim > 1 for p in group["params"]})
                                for group in optimizer.param_groups])
            grads = [p.grad.detach().flatten() for g in optimizer.param_groups for p in g["params"]
                     if p.grad is not None]
            self.grad_norms.append(float(torch.cat(grads).norm()))
            return step(optimizer, *args, **kwargs)

        monkeypatch.setattr(registry, "get_task", lambda name: dataclasses.replace(spec, forward=forward))
        monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)


def record(monkeypatch, dataset, out, *overrides: str) -> Recorder:
    recorder = Recorder(monkeypatch)
    train(dataset, out, "--lr", str(LR), "--data.eval_split", "none", *overrides)
    monkeypatch.undo()
    return recorder


def test_warmup_then_cosine_lr_is_what_the_optimizer_steps_with(shapes_classification, tmp_path, monkeypatch):
    per_epoch = batches(sizes(shapes_classification)["train"])
    total, warmup = 2 * per_epoch, 3
    seen = record(monkeypatch, shapes_classification, tmp_path / "run", "--epochs", "2", "--scheduler", "cosine",
                  "--optim.warmup_steps", str(warmup)).lrs
    want = [LR * (k + 1) / (warmup + 1) if k < warmup else
            LR * 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup))) for k in range(total)]
    assert len(seen) == total and all(len(lrs) == 1 for lrs in seen)  # every parameter group at one lr
    assert [lrs.pop() for lrs in seen] == pytest.approx(want, rel=1e-9)


def test_step_schedule_drops_the_lr_after_the_listed_epoch(shapes_classification, tmp_path, monkeypatch):
    per_epoch = batches(sizes(shapes_classification)["train"])
    seen = record(monkeypatch, shapes_classification, tmp_path / "run", "--epochs", "3", "--scheduler", "step",
                  "--optim.step_epochs", "[2]", "--optim.gamma", "0.5").lrs
    assert [lrs.pop() for lrs in seen] == pytest.approx([LR] * 2 * per_epoch + [LR / 2] * per_epoch, rel=1e-9)


def test_clipping_bounds_the_gradient_norm_the_optimizer_sees(shapes_classification, tmp_path, monkeypatch):
    free = record(monkeypatch, shapes_classification, tmp_path / "free", "--max-steps", "4",
                  "--optim.max_grad_norm", "null").grad_norms
    clipped = record(monkeypatch, shapes_classification, tmp_path / "clipped", "--max-steps", "4",
                     "--optim.max_grad_norm", "0.05").grad_norms
    assert min(free) > 0.05  # without clipping every step's gradient is larger than the bound...
    assert clipped == pytest.approx([0.05] * 4, rel=1e-4)  # ...and with it each is scaled down onto it


def test_weight_decay_is_decoupled_and_spares_biases_and_norms(shapes_classification, tmp_path, monkeypatch):
    """One AdamW step from the same start: w_decay - w_plain = -lr * wd * w0 for matrices, 0 for 1-d tensors."""
    from safetensors.torch import load_file

    wd = 0.5
    recorder = record(monkeypatch, shapes_classification, tmp_path / "decay", "--max-steps", "1",
                      "--weight-decay", str(wd))
    assert recorder.decays[0] == [(wd, {True}), (0.0, {False})]
    record(monkeypatch, shapes_classification, tmp_path / "plain", "--max-steps", "1")
    decayed, plain = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("decay", "plain"))
    matrices = [key for key, value in plain.items() if value.ndim > 1]
    assert matrices
    for key, value in plain.items():
        if value.ndim > 1:  # w0 = plain + O(lr) (one Adam step moves each weight by about lr)
            torch.testing.assert_close((value - decayed[key]) / (LR * wd), value, atol=1.5 * LR, rtol=0)
        else:
            assert torch.equal(value, decayed[key]), key


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("no", torch.float32)])
def test_bf16_autocast_is_active_in_the_training_forward(shapes_classification, tmp_path, monkeypatch, precision,
                                                         dtype):
    """The model's convolutions compute in bfloat16 under ``--mixed-precision bf16`` (float32 weights)."""
    seen = record(monkeypatch, shapes_classification, tmp_path / "run", "--max-steps", "2", "--mixed-precision",
                  precision, "--data.test_split", "none").autocast
    assert seen == [dtype, dtype]


def test_augmentation_reaches_the_batches_and_workers_do_not_change_them(shapes_classification, tmp_path,
                                                                          monkeypatch):
    common = ("--epochs", "1", "--data.augment.preset")
    plain = record(monkeypatch, shapes_classification, tmp_path / "plain", *common, "none").pixels
    keras = record(monkeypatch, shapes_classification, tmp_path / "keras", *common, "keras").pixels
    workers = record(monkeypatch, shapes_classification, tmp_path / "workers", *common, "keras",
                     "--data.num_workers", "2").pixels
    assert len(plain) == len(keras) == len(workers) == batches(sizes(shapes_classification)["train"])
    assert all(a.shape == b.shape for a, b in zip(plain, keras))
    assert not any(torch.equal(a, b) for a, b in zip(plain, keras))  # every batch transformed
    assert all(torch.equal(a, b) for a, b in zip(keras, workers))  # seeded per sample, not per worker


def test_sgd_with_momentum_is_the_optimizer_that_steps(shapes_classification, tmp_path, monkeypatch):
    """``--optim.optimizer sgd``: two steps follow SGD's rule with momentum (buf = m * buf + g; w -= lr * buf)."""
    momentum, seen = 0.5, []
    step = torch.optim.SGD.step

    def recording_step(optimizer, *args, **kwargs):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        before = [(p.detach().clone(), p.grad.detach().clone()) for p in params]
        result = step(optimizer, *args, **kwargs)
        seen.append((before, [p.detach().clone() for p in params],
                     [(g["lr"], g["momentum"], g["nesterov"]) for g in optimizer.param_groups]))
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    train(shapes_classification, tmp_path / "run", "--lr", str(LR), "--data.eval_split", "none", "--max-steps", "2",
          "--scheduler", "constant", "--optim.optimizer", "sgd", "--optim.momentum", str(momentum),
          "--optim.max_grad_norm", "null")
    assert len(seen) == 2 and all(hyper == [(LR, momentum, False)] * 2 for *_, hyper in seen)
    (first, after_first, _), (second, after_second, _) = seen
    for (w0, g0), w1, (_, g1), w2 in zip(first, after_first, second, after_second):
        torch.testing.assert_close(w1, w0 - LR * g0)
        torch.testing.assert_close(w2, w1 - LR * (momentum * g0 + g1))
