"""What ``hf-tasks demo`` shows at the end: one summary table, ``summary.json`` and a self-contained ``report.html``.

Every number comes from the runs' ``results.json`` files; every picture from the run folders (the plots the cards
show) and from the held-out predictions of the models loaded back from the Hub.
"""

from __future__ import annotations

import base64
import html
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hf_tasks.demo.jobs import Outcome

CURVES = "training_curves.png"  # every run draws it; the report shows it first, then the task's own figures


def headline(outcome: Outcome) -> str:
    """The task's headline numbers (``TaskSpec.headline``) from the run's results, the first one first."""
    from hf_tasks.registry import get_task

    parts = [f"{short} {outcome.results[key]:.3f}" for key, short in get_task(outcome.job.task).headline
             if isinstance(outcome.results.get(key), (int, float))]
    return " / ".join(parts) or "-"


def figures(run_dir: Path) -> list[Path]:
    """The figures of a run folder (what its card shows and a push uploads): the training curves, then the rest."""
    return sorted(run_dir.glob("*.png"), key=lambda path: (path.name != CURVES, path.name))


def bar_text(outcome: Outcome) -> str:
    bar = outcome.job.bar
    if outcome.failed:
        return "FAILED"
    if bar is None:
        return "-"
    return f">= {bar.threshold:g}: {'met' if outcome.bar_met else 'SHORT'}"


def prediction_text(outcome: Outcome) -> str:
    """One line: what the loaded-back model said about the held-out image, and the truth."""
    if not outcome.prediction:
        return "-"
    from hf_tasks.registry import get_task

    pred, truth = outcome.prediction["prediction"], outcome.prediction.get("truth", {})
    demo = get_task(outcome.job.task).demo
    if demo is not None and demo.describe is not None:
        return demo.describe(pred, truth)
    return f"{json.dumps(pred)}; truth {json.dumps(truth)}"


def rows(outcomes: list[Outcome]) -> list[dict[str, str]]:
    table = []
    for o in outcomes:
        seconds = o.results.get("train_runtime_s")
        table.append({"task": o.job.task, "model": o.model or o.job.recipe, "test metric": headline(o),
                      "bar": bar_text(o), "train time": f"{seconds:.1f} s" if seconds is not None else "-",
                      "repo id": o.repo or "-"})
    return table


def summary_table(outcomes: list[Outcome]) -> str:
    table = rows(outcomes)
    columns = list(table[0]) if table else []
    widths = {c: max(len(c), *(len(r[c]) for r in table)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in table]
    lines += [f"held-out ({o.job.task}): {prediction_text(o)}" for o in outcomes if o.prediction]
    lines += [f"failed ({o.job.task}): {o.failed}" for o in outcomes if o.failed]
    return "\n".join(lines)


def summary(outcomes: list[Outcome], minutes: float, command: str) -> dict[str, Any]:
    import torch

    jobs = []
    for o in outcomes:
        bar = o.job.bar
        jobs.append({
            "task": o.job.task, "recipe": o.job.recipe, "model": o.model, "dataset": str(o.job.dataset),
            "run_dir": str(o.run_dir), "repo_id": o.repo or None, "failed": o.failed,
            "bar": None if bar is None else {"metric": bar.metric, "threshold": bar.threshold, "met": o.bar_met},
            "test_metrics": {k: v for k, v in o.results.items() if k.startswith("test_")
                             and isinstance(v, (int, float))},
            "train_runtime_s": o.results.get("train_runtime_s"), "stage_seconds": o.seconds,
            "heldout": o.prediction})
    return {"command": command, "total_minutes": round(minutes, 2), "machine": machine(torch), "jobs": jobs}


def machine(torch) -> str:
    import os

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, {device}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def write_report(out: Path, outcomes: list[Outcome], minutes: float, command: str) -> Path:
    data = summary(outcomes, minutes, command)
    (out / "summary.json").write_text(json.dumps(data, indent=2))
    path = out / "report.html"
    path.write_text(render_html(out, outcomes, data))
    return path


def _img(path: Path, alt: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">' \
           f"<figcaption>{html.escape(alt)}</figcaption></figure>"


def render_html(out: Path, outcomes: list[Outcome], data: dict[str, Any]) -> str:
    """A single file (images embedded) that opens anywhere: the table, then one section per job."""
    table = rows(outcomes)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in (table[0] if table else []))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r.values()) + "</tr>" for r in table)
    sections = [_section(out, o) for o in outcomes]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>hf-tasks demo</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}} figure{{display:inline-block;margin:8px;
vertical-align:top}} img{{max-width:520px;image-rendering:pixelated}} .short{{color:#b00}}</style></head><body>
<h1>hf-tasks demo</h1>
<p><code>{html.escape(data["command"])}</code>: {data["total_minutes"]:.1f} min on {html.escape(data["machine"])}</p>
<table><tr>{head}</tr>{body}</table>
{"".join(sections)}
</body></html>
"""


def _section(out: Path, outcome: Outcome) -> str:
    title = f"{outcome.job.task}: {outcome.model or outcome.job.recipe}"
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if outcome.failed:
        parts.append(f'<p class="short">failed at {html.escape(outcome.failed)}</p>')
    metrics = {k: v for k, v in outcome.results.items() if k.startswith("test_") and isinstance(v, (int, float))}
    if metrics:
        cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in metrics.items())
        parts.append(f"<table>{cells}</table>")
    card = outcome.run_dir / "README.md"
    if card.is_file():
        parts.append(f'<p>Model card: <a href="{html.escape(card.relative_to(out).as_posix())}">'
                     f"{html.escape(card.relative_to(out).as_posix())}</a>; repo <code>"
                     f"{html.escape(outcome.repo or '-')}</code></p>")
    if outcome.heldout_image and outcome.heldout_image.is_file():
        parts.append(_img(outcome.heldout_image, f"held-out image, loaded-back model: {prediction_text(outcome)}"))
    parts += [_img(path, path.name) for path in figures(outcome.run_dir)]
    return "\n".join(parts)
