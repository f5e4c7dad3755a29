"""``hf-tasks demo``: the whole flow, end to end, for each task.

For every job: build the dataset → train with ``accelerate launch`` (the run ends with the evaluation on the test
split) → write the card → push to a Hub (a local endpoint the demo serves itself, or a folder: ``--hub-dir``) →
load the model back in a fresh process, by repo id, and predict a held-out image. Then one summary table, and
``summary.json`` plus ``report.html`` (plots, galleries, the held-out predictions) in the output folder.

With no ``--recipe`` the jobs are the built-in tasks' demo presets (``TaskSpec.demo.preset``) on the embedded
synthetic shapes data, each with the bar its task sets. ``--recipe NAME --dataset PATH [--key value ...]`` runs the
same stages on a real prepared dataset: the demo is only the default data, not a separate code path. Nothing here
knows a task: what differs between tasks comes from their specs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from hf_tasks.demo.jobs import MARKER, NAMESPACE, OFFLINE_ENV, STAGES, Job, Outcome, presets
from hf_tasks.errors import ConfigError, HfTasksError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hf-tasks demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Any other --key value pairs are training overrides, as for `hf-tasks train`.")
    p.add_argument("--out", default="demo_outputs", help="folder for datasets, runs, the local Hub and the report")
    p.add_argument("--quick", action="store_true", help="smaller data and fewer epochs: a smoke run of the flow")
    p.add_argument("--tasks", help="comma list of the built-in jobs to run, by task name (default: all of them)")
    p.add_argument("--recipe", help="run this recipe instead of the built-in jobs (with --dataset)")
    p.add_argument("--dataset", help="prepared dataset folder or Hub id for --recipe (default: the recipe's)")
    p.add_argument("--hub-dir", help="publish into this folder instead of a local Hub endpoint")
    p.add_argument("--namespace", default=NAMESPACE, help="namespace of the repo ids")
    p.add_argument("--num-processes", type=int, default=1, help="processes per training (accelerate launch)")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    p.add_argument("--overwrite", action="store_true", help="replace the output of an earlier demo in --out")
    return p


def make_jobs(args, overrides: list[str]) -> list[Job]:
    """The built-in shapes jobs, or one job from ``--recipe``; everything is checked before any work starts.
    ``--tasks T --recipe R``: the built-in job of task T (its shapes data, its bar) trained with recipe R."""
    if args.recipe and not args.tasks:
        return [recipe_job(args, overrides)]
    if args.dataset:
        raise ConfigError("--dataset goes with --recipe (the built-in jobs build their own shapes data)")
    return builtin_jobs(args, overrides)


def recipe_job(args, overrides: list[str]) -> Job:
    from hf_tasks.registry import get_task, load_config

    if args.quick:
        raise ConfigError("--quick shrinks the built-in shapes jobs; for a smoke run of a recipe pass "
                          "training overrides such as --max-steps 10")
    extra = [*overrides, *(["--data.dataset", args.dataset] if args.dataset else [])]
    cfg = load_config(args.recipe, extra)
    if not cfg.data.dataset:
        raise ConfigError("data.dataset: the recipe names no dataset; pass --dataset PATH")
    if get_task(cfg.task).demo is None:
        raise ConfigError(f"task {cfg.task!r} has no demo parts (TaskSpec.demo): the demo could not load its model "
                          "back to predict")
    name = Path(args.recipe).stem.replace("_", "-")
    return Job(cfg.task, args.recipe, name, Path(cfg.data.dataset), None, extra, None, offline=False)


def builtin_jobs(args, overrides: list[str]) -> list[Job]:
    from hf_tasks.registry import load_config

    known = presets()
    tasks = [t.strip() for t in (args.tasks or ",".join(known)).split(",") if t.strip()]
    unknown = [t for t in tasks if t not in known]
    if unknown or not tasks:
        raise ConfigError(f"--tasks {args.tasks!r}: choose from {', '.join(known)}")
    if args.recipe and len(tasks) != 1:
        raise ConfigError("--recipe with --tasks names one built-in job to run that recipe on its shapes data")
    if args.dataset:
        raise ConfigError("--dataset goes with --recipe alone (a built-in job builds its own shapes data)")
    jobs = []
    for task in tasks:
        preset = known[task]
        recipe = args.recipe or preset.recipe
        dataset = Path(args.out) / "data" / f"shapes_{task}"
        build = list(preset.quick_build if args.quick and preset.quick_build else preset.build)
        # the preset's quick overrides are its own recipe's (YOLO's hyp); another recipe gets only the user's
        quick = preset.quick_overrides if args.quick and not args.recipe else ()
        extra = [*preset.overrides, *quick, *overrides]
        cfg = load_config(recipe, [*extra, "--data.dataset", str(dataset)])  # bad overrides fail here, not later
        if cfg.task != task:
            raise ConfigError(f"--recipe {recipe!r} trains task {cfg.task!r}, not the {task!r} job's")
        name = Path(recipe).stem.replace("_", "-") if args.recipe else preset.repo_name
        jobs.append(Job(task, recipe, name, dataset, build, extra, preset.bar, offline=True))
    return jobs


def prepare_out(out: Path, overwrite: bool) -> None:
    """A fresh folder, or (with --overwrite) one an earlier demo made; never someone else's files."""
    if out.exists() and not out.is_dir():
        raise HfTasksError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise HfTasksError(f"--out {out} is not empty and was not made by `hf-tasks demo`; choose another folder")
        if not overwrite:
            raise HfTasksError(f"--out {out} holds an earlier demo; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by hf-tasks demo\n")


class Progress:
    """One header line per stage: which job and stage, how many stages are done, time so far."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.monotonic()

    @contextlib.contextmanager
    def stage(self, outcome: Outcome, name: str) -> Iterator[None]:
        self.done += 1
        elapsed = time.monotonic() - self.start
        print(f"\n==> [{self.done}/{self.total}] {outcome.job.task}: {name}   ({elapsed / 60:.1f} min so far)",
              flush=True)
        began = time.monotonic()
        try:
            yield
        finally:
            outcome.seconds[name] = round(time.monotonic() - began, 2)


def launch_command(job: Job, run_dir: Path, num_processes: int, mixed_precision: str) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
           "--num_machines", "1", "--mixed_precision", mixed_precision, "--dynamo_backend", "no"]
    if num_processes > 1:
        cmd.append("--multi_gpu")
    return [*cmd, "-m", "hf_tasks.train", "--recipe", job.recipe, *job.overrides, "--data.dataset", str(job.dataset),
            "--output-dir", str(run_dir), "--mixed-precision", mixed_precision, "--overwrite"]


def run_streamed(cmd: list[str], env: dict[str, str], log_path: Path) -> int:
    """Run ``cmd`` showing its output live (progress bars included) and keeping all of it in ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                                      stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(4096):
            log.write(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        return proc.wait()


def child_env(job: Job, num_processes: int, **extra: str) -> dict[str, str]:
    env = {**os.environ, **(OFFLINE_ENV if job.offline else {}), **extra}
    if num_processes > 1 and not _has_gpu():
        env["ACCELERATE_USE_CPU"] = "1"
    return env


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def run_job(job: Job, out: Path, hub, progress: Progress, args) -> Outcome:
    """The five stages of one job; a failing stage is recorded (with where its log is) and ends this job only."""
    outcome = Outcome(job, out / "runs" / job.repo_name)
    steps = dict(zip(STAGES, (lambda: build_dataset(job), lambda: train(job, outcome, out, args),
                              lambda: write_card_of(outcome), lambda: publish(outcome, hub),
                              lambda: load_back(job, outcome, out, hub))))
    if job.build_args is None:  # --recipe: the dataset is the user's
        del steps[STAGES[0]]
    for stage, step in steps.items():
        try:
            with progress.stage(outcome, stage):
                step()
        except HfTasksError as err:
            outcome.failed = f"{stage}: {err}"
            print(f"error: {job.task}: {outcome.failed}", file=sys.stderr)
            break
    return outcome


def write_card_of(outcome: Outcome) -> None:
    from hf_tasks.cards.render import write_card

    print(f"wrote {write_card(outcome.run_dir)}")


def publish(outcome: Outcome, hub) -> None:
    outcome.repo = hub.publish(outcome.run_dir, outcome.job.repo_name)
    print(f"published {outcome.run_dir} as {outcome.repo} on the {hub.where}")


def build_dataset(job: Job) -> None:
    """``hf-tasks build-dataset shapes ...`` through its own parser (``dataset_scripts.cli``)."""
    from dataset_scripts.cli import add_build_dataset_parser, run_build_dataset

    parser = argparse.ArgumentParser(prog="hf-tasks")
    add_build_dataset_parser(parser.add_subparsers(dest="command", required=True))
    run_build_dataset(parser.parse_args(["build-dataset", "shapes", *job.build_args, "--out", str(job.dataset)]))


def train(job: Job, outcome: Outcome, out: Path, args) -> None:
    cmd = launch_command(job, outcome.run_dir, args.num_processes, args.mixed_precision)
    log = out / "logs" / f"{job.repo_name}-train.log"
    print("$ " + " ".join(cmd[cmd.index("-m", 2) + 1:]) + f"   (log: {log})", flush=True)
    code = run_streamed(cmd, child_env(job, args.num_processes), log)
    if code != 0:
        raise HfTasksError(f"training exited with status {code}; its output is in {log}")
    import yaml

    outcome.results = json.loads((outcome.run_dir / "results.json").read_text())
    outcome.model = yaml.safe_load((outcome.run_dir / "train_config.yaml").read_text())["model"]["name"]


def load_back(job: Job, outcome: Outcome, out: Path, hub) -> None:
    """A fresh process loads the published model by its id and predicts the first held-out image."""
    import yaml

    data_cfg = yaml.safe_load((outcome.run_dir / "train_config.yaml").read_text())["data"]
    split = data_cfg.get("test_split") or data_cfg.get("eval_split") or data_cfg["train_split"]
    image = out / "report" / f"{job.repo_name}-heldout.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hf_tasks.demo.predict", "--task", job.task, "--model", outcome.repo,
           "--dataset", str(job.dataset), "--split", split, "--image-column", data_cfg["image_column"],
           "--label-column", data_cfg["label_column"], "--image-out", str(image)]
    log = out / "logs" / f"{job.repo_name}-predict.log"
    with open(log, "w") as err:
        proc = subprocess.run(cmd, env=child_env(job, 1, **hub.client_env()), stdout=subprocess.PIPE, stderr=err,
                              text=True)
    if proc.returncode != 0:
        raise HfTasksError(f"loading {outcome.repo} back failed (status {proc.returncode}); see {log}")
    outcome.prediction = json.loads(proc.stdout.strip().splitlines()[-1])
    outcome.heldout_image = image
    print(f"{outcome.repo} on held-out image 0 of '{split}': {json.dumps(outcome.prediction['prediction'])}")
    print(f"  truth: {json.dumps(outcome.prediction['truth'])}")


def run(argv: list[str]) -> int:
    """``hf-tasks demo``: exit 0 when every job finished and passed its bar, 1 otherwise (the table says which)."""
    from hf_tasks.demo.report import summary_table, write_report

    args, overrides = build_parser().parse_known_args(argv)
    if args.num_processes < 1:
        raise ConfigError(f"--num-processes must be at least 1 (got {args.num_processes})")
    out = Path(args.out)
    jobs = make_jobs(args, overrides)
    prepare_out(out, args.overwrite)
    started = time.monotonic()
    progress = Progress(sum(len(STAGES) - (job.build_args is None) for job in jobs))
    from hf_tasks.demo.publish import FolderHub, ServedHub

    hub = FolderHub(Path(args.hub_dir), args.namespace) if args.hub_dir else ServedHub(out / "hub", args.namespace)
    try:
        outcomes = [run_job(job, out, hub, progress, args) for job in jobs]
    finally:
        hub.close()
    minutes = (time.monotonic() - started) / 60
    print("\n" + summary_table(outcomes))
    report = write_report(out, outcomes, minutes, " ".join(["hf-tasks", "demo", *argv]))
    print(f"\nall stages: {minutes:.1f} min; report: {report}; summary: {out / 'summary.json'}")
    if not args.hub_dir:
        print(f"the repos stay in {out / 'hub'}: `hf-tasks hub serve --root {out / 'hub'}` serves them again")
    short = [o for o in outcomes if o.failed or o.bar_met is False]
    for o in short:
        reason = o.failed or f"{o.job.bar.metric} = {o.results.get(o.job.bar.metric)} < {o.job.bar.threshold}"
        print(f"FELL SHORT: {o.job.task} ({o.job.recipe}): {reason}", file=sys.stderr)
    return 1 if short else 0
