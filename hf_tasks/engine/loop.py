"""The one accelerate training loop shared by every task.

prepare → step counts recomputed after prepare → accumulate → clip → step → evaluate each epoch with
``gather_for_metrics`` → keep the best weights → atomic checkpoints → unwrap and save on the main process →
final test evaluation into ``results.json``. Tasks only supply ``forward`` and ``predict`` (see ``TaskSpec``); the
loop is handed the task's spec and knows no task, card or Hub (``hf_tasks.train`` orchestrates those).
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from hf_tasks.config import TrainConfig
from hf_tasks.engine import checkpoint as ckpt
from hf_tasks.engine import run_folder
from hf_tasks.engine.accelerator import keep_freed_memory, make_accelerator
from hf_tasks.engine.evaluation import evaluate, format_metrics, make_loader, prefixed, scalar_metrics
from hf_tasks.engine.optim import build_optimizer, build_scheduler
from hf_tasks.engine.preemption import Preempted, stop_on_signals
from hf_tasks.errors import HfTasksError
from hf_tasks.registry import ModelBundle, TaskData, TaskSpec, TrainHooks
from hf_tasks.util import flatten, write_json

#: called on the main process with the finished run folder, while the run still holds it (the card is written so)
Describe = Callable[[Path], None]


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs to continue exactly where it stopped."""

    epoch: int = 0  # the epoch in progress (or the next one, when batches_done == 0)
    global_step: int = 0  # optimizer steps taken
    batches_done: int = 0  # batches of `epoch` already consumed
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the last improvement
    train_seconds: float = 0.0
    skipped_steps: int = 0  # steps dropped for a non-finite loss or gradient (skip_nonfinite)
    label_names: list[str] | None = None  # what the head predicts: a resumed run must have the same
    num_processes: int | None = None  # the schedule and the sample order depend on it: a resume must match
    log_history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Run:
    """The prepared objects of one run, passed around instead of a dozen arguments."""

    cfg: TrainConfig
    spec: TaskSpec
    data: TaskData
    bundle: ModelBundle
    accelerator: Any
    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    loaders: dict[str, Any]
    train_dataset: Any
    total_steps: int
    output_dir: Path
    stop_flag: Any = None  # hf_tasks.engine.preemption.StopFlag while training
    hooks: TrainHooks = field(default_factory=TrainHooks)
    foreign_at_start: set[str] = field(default_factory=set)  # entries of output_dir that are not the run's

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is evaluated, kept as best and saved: the task's EMA copy, or the trained model itself."""
        return self.hooks.model_for_eval(self.model)


def train(cfg: TrainConfig, spec: TaskSpec, describe: Describe | None = None) -> dict[str, Any]:
    """Train, evaluate and save one run of the task ``spec`` described by a validated config; return the results.

    ``describe`` (optional) runs on the main process once the run folder is complete, before its outputs are listed.
    """
    accelerator = make_accelerator(cfg)
    keep_freed_memory(accelerator.device.type)
    with ExitStack() as held:  # the main process holds the folder's lock; a refusal stops every process
        run_folder.agree(accelerator, lambda: held.enter_context(run_folder.exclusive(Path(cfg.output_dir))))
        return train_in(cfg, spec, accelerator, describe)


def train_in(cfg: TrainConfig, spec: TaskSpec, accelerator, describe: Describe | None = None) -> dict[str, Any]:
    from accelerate.utils import set_seed

    output_dir, foreign = run_folder.prepare(cfg, accelerator)
    set_seed(cfg.seed)
    run = setup_run(cfg, spec, accelerator, output_dir)
    run.foreign_at_start = foreign
    state = resume(run, cfg.resume) if cfg.resume else TrainState()
    state.label_names, state.num_processes = run.bundle.label_names, accelerator.num_processes
    if accelerator.is_main_process:
        cfg.save(output_dir / "train_config.yaml")
        run_folder.mark_in_progress(output_dir)
    accelerator.init_trackers("hf-tasks", config=_tracker_config(cfg))
    with stop_on_signals() as run.stop_flag:
        train_epochs(run, state)
    results = finish(run, state, describe)
    accelerator.end_training()  # ends trackers and, on N processes, the process group: nothing collective after
    return results


def setup_run(cfg: TrainConfig, spec: TaskSpec, accelerator, output_dir: Path) -> Run:
    data = spec.load_data(cfg)
    bundle = spec.build_model(cfg, data)
    names = {"train": cfg.data.train_split, "eval": cfg.data.eval_split, "test": cfg.data.test_split}
    datasets = {key: spec.make_dataset(data.splits[split], bundle, cfg, data, train=(key == "train"))
                for key, split in names.items() if split is not None}
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    loaders = {key: make_loader(ds, cfg.batch_size if key == "train" else eval_bs, spec.collate,
                                cfg.data.num_workers, shuffle=(key == "train"), seed=cfg.seed)
               for key, ds in datasets.items()}
    optimizer = build_optimizer(bundle.model, cfg.optim)
    keys = list(loaders)
    model, optimizer, *prepared = accelerator.prepare(bundle.model, optimizer, *[loaders[k] for k in keys])
    loaders = dict(zip(keys, prepared))
    # step counts only after prepare: the train loader is now sharded across processes
    steps_per_epoch = math.ceil(len(loaders["train"]) / cfg.grad_accum)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    scheduler = build_scheduler(optimizer, cfg.optim, total_steps, steps_per_epoch)
    accelerator.register_for_checkpointing(scheduler)
    hooks = spec.make_hooks(cfg, model) if spec.make_hooks else TrainHooks()
    if spec.make_hooks:
        accelerator.register_for_checkpointing(hooks)
    return Run(cfg, spec, data, bundle, accelerator, model, optimizer, scheduler, loaders, datasets["train"],
               total_steps, output_dir, hooks=hooks)


def resume(run: Run, resume_from: str) -> TrainState:
    path = ckpt.find_resume_checkpoint(run.output_dir, resume_from)
    if path is None:
        run.accelerator.print(f"--resume {resume_from}: no complete checkpoint in {run.output_dir}; starting fresh")
        return TrainState()
    ckpt.check_same_run(run.cfg.to_dict(), run.output_dir)
    state = TrainState(**ckpt.read_state(path))
    ckpt.check_same_labels(path, state.label_names, run.bundle.label_names, run.cfg.data.dataset)
    ckpt.check_same_world(path, state.num_processes, run.accelerator.num_processes)
    ckpt.load_training_state(run.accelerator, path, trust_pickle=run.cfg.model.trust_pickle)
    run.accelerator.print(f"resumed from {path} (epoch {state.epoch}, step {state.global_step})")
    return state


def train_epochs(run: Run, state: TrainState) -> None:
    bar = tqdm(total=run.total_steps, initial=state.global_step, desc="train",
               disable=not run.accelerator.is_local_main_process)
    stop = state.global_step >= run.total_steps
    while state.epoch < run.cfg.epochs and not stop:
        reached_max_steps = train_one_epoch(run, state, bar)
        stop = end_of_epoch(run, state) or reached_max_steps
    bar.close()


def train_one_epoch(run: Run, state: TrainState, bar) -> bool:
    """Consume the rest of ``state.epoch``; True when ``max_steps`` is reached (possibly mid-epoch)."""
    cfg, acc, model = run.cfg, run.accelerator, run.model
    run.train_dataset.set_epoch(state.epoch)
    run.loaders["train"].set_epoch(state.epoch)
    loader = run.loaders["train"]
    if state.batches_done:
        loader = acc.skip_first_batches(loader, state.batches_done)
    model.train()
    loss_sum, loss_count, started = torch.zeros((), device=acc.device), 0, time.perf_counter()
    for batch in loader:
        with acc.accumulate(model):
            loss = run.spec.forward(model, batch)["loss"]
            if all_finite(run, loss, state, batch, "loss"):
                acc.backward(loss)
                if gradients_ok(run, model, state, batch):
                    run.optimizer.step()
            run.optimizer.zero_grad()
        state.batches_done += 1
        if torch.isfinite(loss.detach()):
            loss_sum, loss_count = loss_sum + loss.detach(), loss_count + 1
        if not acc.sync_gradients:
            continue
        if not acc.optimizer_step_was_skipped:
            run.scheduler.step()
        state.global_step += 1
        run.hooks.after_step(model, state.global_step)
        bar.update(1)
        if state.global_step % cfg.log_every == 0 or state.global_step == run.total_steps:
            log_loss(run, state, loss_sum / max(loss_count, 1), bar)
            loss_sum, loss_count = torch.zeros((), device=acc.device), 0
        if state.global_step >= run.total_steps:
            break
        stop_if_signalled(run, state, started)
        if cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0:
            state.train_seconds += time.perf_counter() - started
            started = time.perf_counter()
            save(run, state)
    state.train_seconds += time.perf_counter() - started
    if state.batches_done >= len(run.loaders["train"]):
        state.epoch, state.batches_done = state.epoch + 1, 0
    return state.global_step >= run.total_steps


def stop_if_signalled(run: Run, state: TrainState, started: float) -> None:
    """On SIGTERM/SIGINT (any process), save a resumable checkpoint at this step and stop every process."""
    signum = run.stop_flag.agreed(run.accelerator) if run.stop_flag is not None else None
    if signum is None:
        return
    state.train_seconds += time.perf_counter() - started
    save(run, state)
    name = signal.Signals(signum).name
    raise Preempted(f"stopped by {name} at step {state.global_step}; checkpoint saved in "
                    f"{ckpt.checkpoint_dir(run.output_dir)}: continue with --resume auto", signum)


def gradients_ok(run: Run, model: torch.nn.Module, state: TrainState, batch: dict) -> bool:
    """At a sync step: clip, and check the gradient norm (fp16 overflow is left to the grad scaler)."""
    acc, max_norm = run.accelerator, run.cfg.optim.max_grad_norm
    if not acc.sync_gradients:
        return True
    norm = acc.clip_grad_norm_(model.parameters(), max_norm if max_norm is not None else float("inf"))
    if run.cfg.mixed_precision == "fp16" or norm is None:
        return True
    return all_finite(run, torch.as_tensor(norm), state, batch, "gradient norm")


def all_finite(run: Run, value: torch.Tensor, state: TrainState, batch: dict, what: str) -> bool:
    """True when ``value`` is finite on every process; otherwise all processes stop together (or skip the step).

    Never trains on silently and never patches values: the default raises, keeping the last complete checkpoint;
    with ``skip_nonfinite`` every process drops this step's gradients and the skip is counted and reported.
    """
    acc = run.accelerator
    local_bad = not bool(torch.isfinite(value.detach()).all())
    if local_bad:
        acc.set_trigger()
    if not acc.check_trigger():
        return True
    ids = batch.get("index")
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids) if ids is not None else None
    where = (f"sample ids {ids} on process {acc.process_index}" if local_bad else "a batch on another process")
    message = f"non-finite {what} at step {state.global_step + 1} (epoch {state.epoch}, {where})"
    if run.cfg.skip_nonfinite:
        state.skipped_steps += 1
        allowed = max(1, int(run.cfg.max_skipped_fraction * run.total_steps))
        if state.skipped_steps > allowed:
            raise HfTasksError(f"{message}: {state.skipped_steps} of the run's {run.total_steps} steps skipped, more "
                               f"than max_skipped_fraction {run.cfg.max_skipped_fraction} allows ({allowed}); the "
                               "data or the settings are broken, not one batch (the last complete checkpoint is kept)")
        acc.print(f"skipping the step: {message}")
        return False
    raise HfTasksError(f"{message}; the last complete checkpoint in {ckpt.checkpoint_dir(run.output_dir)} is kept "
                       "(--skip-nonfinite skips such steps instead)")


def log_loss(run: Run, state: TrainState, mean_loss: torch.Tensor, bar) -> None:
    loss = run.accelerator.reduce(mean_loss, reduction="mean").item()
    entry = {"step": state.global_step, "epoch": round(state.epoch + state.batches_done /
                                                       max(1, len(run.loaders["train"])), 4),
             "loss": loss, "lr": run.scheduler.get_last_lr()[0]}
    state.log_history.append(entry)
    run.accelerator.log({"train/loss": loss, "train/lr": entry["lr"]}, step=state.global_step)
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{entry['lr']:.2e}")


def end_of_epoch(run: Run, state: TrainState) -> bool:
    """Evaluate, keep the best weights, checkpoint; True when early stopping triggers.

    Also runs when ``max_steps`` ends training mid-epoch, so the last weights are evaluated too.
    """
    stop = False
    if "eval" in run.loaders:
        metrics = evaluate(run.accelerator, run.eval_model, run.loaders["eval"], run.spec, run.data, run.bundle,
                           desc="eval")
        scalars = scalar_metrics(metrics, "eval_")
        state.log_history.append({"step": state.global_step, "epoch": state.epoch, **scalars})
        run.accelerator.log({k.replace("eval_", "eval/"): v for k, v in scalars.items()}, step=state.global_step)
        run.accelerator.print(f"epoch {state.epoch}: {format_metrics(scalars)}")
        stop = update_best(run, state, metrics)
    save(run, state)  # at the step of an in-epoch checkpoint too: this one also records the evaluation
    return stop


def update_best(run: Run, state: TrainState, metrics: dict[str, Any]) -> bool:
    name, greater = best_metric(run.cfg, run.spec)
    if name not in metrics:
        raise HfTasksError(f"'metric_for_best' {name!r} is not among the evaluation metrics {sorted(metrics)}")
    value = float(metrics[name])
    improved = state.best_metric is None or (value > state.best_metric if greater else value < state.best_metric)
    if improved:
        state.best_metric, state.best_step, state.bad_evals = value, state.global_step, 0
        save_best_weights(run)
        return False
    state.bad_evals += 1
    patience = run.cfg.early_stopping_patience
    if patience is not None and state.bad_evals >= patience:
        run.accelerator.print(f"early stopping: {name} did not improve for {patience} evaluations")
        return True
    return False


def best_metric(cfg: TrainConfig, spec: TaskSpec) -> tuple[str, bool]:
    name = (cfg.metric_for_best or spec.main_metric).removeprefix("eval_")
    greater = cfg.greater_is_better
    if greater is None:
        greater = spec.greater_is_better if name == spec.main_metric else not name.endswith("loss")
    return name, greater


def save_best_weights(run: Run) -> None:
    ckpt.save_best_weights(run.accelerator, run.eval_model, run.output_dir)


def load_best_weights(run: Run) -> None:
    ckpt.load_best_weights(run.accelerator.unwrap_model(run.eval_model), run.output_dir)


def save(run: Run, state: TrainState) -> None:
    ckpt.save_checkpoint(run.accelerator, run.output_dir, state.global_step, asdict(state), run.cfg.keep_checkpoints)
    if run.accelerator.is_main_process:
        write_json(run.output_dir / "log_history.json", state.log_history)


def finish(run: Run, state: TrainState, describe: Describe | None = None) -> dict[str, Any]:
    """Restore the best weights, save the loadable model, evaluate on test, write results.json."""
    acc = run.accelerator
    acc.wait_for_everyone()
    load_best_weights(run)
    unwrapped = acc.unwrap_model(run.eval_model)
    if acc.is_main_process:
        run.spec.save_model(ModelBundle(unwrapped, run.bundle.processor, run.bundle.label_names,
                                        run.bundle.settings), run.output_dir, run.data)
    results: dict[str, Any] = {"train_steps": state.global_step, "train_epochs": state.epoch,
                               "train_runtime_s": round(state.train_seconds, 3),
                               "train_skipped_steps": state.skipped_steps,
                               "train_samples": len(run.train_dataset), "num_processes": acc.num_processes,
                               "dataset": run.cfg.data.dataset,
                               "dataset_split_sizes": run.data.info.get("split_sizes", {})}
    if run.bundle.label_names is not None:
        results["label_names"] = list(run.bundle.label_names)
    if state.best_metric is not None:
        name, _ = best_metric(run.cfg, run.spec)
        results.update({f"best_eval_{name}": state.best_metric, "best_step": state.best_step})
    if "test" in run.loaders:
        metrics = evaluate(acc, run.eval_model, run.loaders["test"], run.spec, run.data, run.bundle, desc="test")
        results.update(prefixed(metrics, "test_"))
        acc.log({k.replace("test_", "test/"): v for k, v in scalar_metrics(metrics, "test_").items()},
                step=state.global_step)
        acc.print(f"test: {format_metrics(scalar_metrics(metrics, 'test_'))}")
    if acc.is_main_process:
        write_json(run.output_dir / "results.json", results)
        write_json(run.output_dir / "log_history.json", state.log_history)
        run_folder.mark_finished(run.output_dir)
        if describe is not None:
            describe(run.output_dir)
        run_folder.record_outputs(run.output_dir, run.foreign_at_start)
    acc.wait_for_everyone()
    return results


def _tracker_config(cfg: TrainConfig) -> dict[str, Any]:
    """Trackers (tensorboard hparams) accept only scalars: flatten and stringify the rest."""
    return {key: value if isinstance(value, (int, float, str, bool)) else str(value)
            for key, value in flatten(cfg.to_dict()).items()}
