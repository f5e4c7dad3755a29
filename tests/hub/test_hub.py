"""Push through the REAL huggingface_hub client to the local Hub server, then load back over HTTP.

huggingface_hub reads ``HF_ENDPOINT``/``HF_HUB_OFFLINE`` into module constants at import, so: pushes run in-process
with ``constants.ENDPOINT``/``HF_HUB_OFFLINE`` patched (``HfApi`` reads them per call), and everything that downloads
(``from_pretrained``, ``pipeline``, ``timm``, ``ModelCard.load``, the card snippet) runs in a subprocess whose
environment points at the server, with a fresh cache.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hf_tasks.registry import load_config
from tests.conftest import TOKEN
from tests.helpers import REPO, client_env, read_json, subprocess_env

CNN, TIMM = "user/shapes-cnn", "user/shapes-timm"


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def runs(shapes_classification, tmp_path_factory) -> dict[str, Path]:
    """Two finished run folders: hf-tasks' small_cnn (transformers auto classes) and a timm model."""
    from hf_tasks.train import train

    root = tmp_path_factory.mktemp("runs")
    common = ["--data.dataset", str(shapes_classification), "--batch-size", "8", "--data.image_size", "32"]
    train(load_config(None, [*common, "--output-dir", str(root / "cnn"), "--epochs", "2",
                             "--model.config", "{hidden_sizes: [8, 16], convs_per_stage: 1}"]))
    _reset_accelerate()
    train(load_config(None, [*common, "--output-dir", str(root / "timm"), "--max-steps", "2",
                             "--model.name", "timm/test_resnet", "--model.pretrained", "false"]))
    _reset_accelerate()
    return {"cnn": root / "cnn", "timm": root / "timm"}


def api(hub, token=None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=token)


@pytest.fixture(scope="module")
def pushed(runs, hub) -> dict[str, object]:
    from hf_tasks.hub.push import push_run

    return {"cnn": push_run(runs["cnn"], CNN), "timm": push_run(runs["timm"], TIMM)}


LOAD_BACK = """
import json, sys
import torch
from safetensors.torch import load_file
import hf_tasks.models  # registers small_cnn with the auto classes
import timm
from huggingface_hub import ModelCard, hf_hub_download
from PIL import Image
from transformers import AutoModelForImageClassification, pipeline

cnn, timm_id, inputs, image, out = sys.argv[1:6]
pixels = load_file(inputs)["pixels"]
model = AutoModelForImageClassification.from_pretrained(cnn).eval()
native = timm.create_model("hf-hub:" + timm_id, pretrained=True).eval()
with torch.no_grad():
    result = {"cnn": model(pixel_values=pixels).logits.tolist(), "timm": native(pixels).tolist()}
result["pipeline"] = pipeline("image-classification", model=cnn)(Image.open(image))
result["weights"] = hf_hub_download(cnn, "model.safetensors")
card = ModelCard.load(cnn)
result["card_data"], result["card_text"] = card.data.to_dict(), card.text
json.dump(result, open(out, "w"))
"""


@pytest.fixture(scope="module")
def loaded_back(pushed, runs, hub, shapes_classification, tmp_path_factory) -> dict:
    """One fresh process loads both pushed models, the pipeline and the card over HTTP."""
    from safetensors.torch import save_file

    work = tmp_path_factory.mktemp("load_back")
    torch.manual_seed(0)
    save_file({"pixels": torch.randn(2, 3, 32, 32)}, work / "inputs.safetensors")
    _an_image(shapes_classification).save(work / "image.png")
    proc = subprocess.run([sys.executable, "-c", LOAD_BACK, CNN, TIMM, str(work / "inputs.safetensors"),
                           str(work / "image.png"), str(work / "out.json")], cwd=work,
                          env=client_env(hub, work / "home"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {**read_json(work / "out.json"), "inputs": work / "inputs.safetensors", "home": work / "home"}


def _an_image(dataset_path):
    import datasets

    return datasets.load_from_disk(str(dataset_path))["test"][0]["image"]


def test_pushed_models_load_back_with_identical_logits(loaded_back, pushed, runs):
    import timm
    from safetensors.torch import load_file
    from transformers import AutoModelForImageClassification

    import hf_tasks.models  # noqa: F401

    pixels = load_file(str(loaded_back["inputs"]))["pixels"]
    with torch.no_grad():
        local_cnn = AutoModelForImageClassification.from_pretrained(runs["cnn"]).eval()(pixel_values=pixels).logits
        local_timm = timm.create_model(f"local-dir:{runs['timm']}", pretrained=True).eval()(pixels)
    assert torch.equal(torch.tensor(loaded_back["cnn"]), local_cnn)
    assert torch.equal(torch.tensor(loaded_back["timm"]), local_timm)
    downloaded = Path(loaded_back["weights"])
    assert downloaded.is_relative_to(loaded_back["home"])  # came over HTTP into the fresh cache, at the pushed commit
    assert pushed["cnn"].oid in downloaded.parts
    assert downloaded.read_bytes() == (runs["cnn"] / "model.safetensors").read_bytes()
    labels = set(read_json(runs["cnn"] / "results.json")["label_names"])
    assert loaded_back["pipeline"] and {p["label"] for p in loaded_back["pipeline"]} <= labels


def test_card_on_the_hub_matches_results_and_its_snippet_runs(loaded_back, runs, hub, tmp_path):
    from huggingface_hub.repocard_data import model_index_to_eval_results

    results = read_json(runs["cnn"] / "results.json")
    _, evals = model_index_to_eval_results(loaded_back["card_data"]["model-index"])
    by_metric = {e.metric_type: e.metric_value for e in evals}
    assert by_metric == {"accuracy": results["test_accuracy"], "f1": results["test_macro_f1"]}
    info = api(hub).model_info(CNN)
    assert info.card_data is not None and info.pipeline_tag == "image-classification"

    snippets = [_usage_snippet(loaded_back["card_text"])]
    timm_card = (runs["timm"] / "README.md").read_text()  # re-rendered by the push, identical to the pushed one
    snippets.append(_usage_snippet(timm_card))
    assert f'model="{CNN}"' in snippets[0] and f'timm.create_model("hf-hub:{TIMM}"' in snippets[1]
    _an_image_file(tmp_path / "image.jpg")
    proc = subprocess.run([sys.executable, "-c", "\n".join(snippets)], cwd=tmp_path,
                          env=client_env(hub, tmp_path / "home"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(f"'label': '{name}'" in proc.stdout for name in results["label_names"]), proc.stdout


def _usage_snippet(card_text: str) -> str:
    return re.search(r"## Usage\n\n```python\n(.*?)```", card_text, re.S).group(1)


def _an_image_file(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (40, 40), "red").save(path)


def test_only_allow_listed_files_are_pushed_in_one_commit(pushed, runs, hub):
    from hf_tasks.hub.push import files_to_push, is_allowed

    for name, repo_id in (("cnn", CNN), ("timm", TIMM)):
        files = api(hub).list_repo_files(repo_id)
        assert not any(f.startswith("checkpoints/") or f.endswith((".bin", ".pkl", ".pt", ".pth")) for f in files)
        assert all(f == ".gitattributes" or is_allowed(f) for f in files), files
        assert set(files) == {".gitattributes", *files_to_push(runs[name])}
        assert {"model.safetensors", "config.json", "README.md", "results.json", "train_config.yaml"} <= set(files)
        commits = api(hub).list_repo_commits(repo_id)
        assert [c.title for c in commits] == [pushed[name].commit_message, "initial commit"]
    assert (runs["cnn"] / "checkpoints").is_dir()  # there was something to leave out
    assert api(hub).model_info(CNN).private is True  # private unless --public


def test_allow_list_rules(tmp_path):
    from hf_tasks.errors import HfTasksError
    from hf_tasks.hub.push import files_to_push

    names = ["model.safetensors", "config.json", "tokenizer.json", "vocab.txt", "curves.png", "optimizer.bin",
             "scheduler.pt", "rng_state.pth", "x.pkl", "last.ckpt", "best.pt", "notes.txt", "random_states_0.pkl"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "model.safetensors").write_bytes(b"x")
    assert files_to_push(tmp_path) == ["config.json", "curves.png", "model.safetensors", "tokenizer.json",
                                       "vocab.txt"]
    (tmp_path / "export_manifest.json").write_text(json.dumps({"pt": "best.pt"}))
    assert files_to_push(tmp_path)[-1] == "best.pt" and "scheduler.pt" not in files_to_push(tmp_path)
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    (tmp_path / "export_manifest.json").write_text(json.dumps({"pt": ["checkpoints/last.pt"]}))
    with pytest.raises(HfTasksError, match="training checkpoint"):
        files_to_push(tmp_path)


def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("checkpoints"))
    return dest


def test_revision_creates_a_branch_and_create_pr_leaves_main_unchanged(runs, hub, tmp_path, capsys):
    from hf_tasks.cli import main

    folder = _copy_run(runs["cnn"], tmp_path / "run")
    assert main(["push", str(folder), "--repo-id", "user/branchy"]) == 0
    main_sha = api(hub).model_info("user/branchy").sha
    (folder / "comparison.json").write_text(json.dumps({"split": "test", "rows": [], "label_map": None}))
    assert main(["push", str(folder), "--repo-id", "user/branchy", "--revision", "dev"]) == 0
    refs = api(hub).list_repo_refs("user/branchy")
    branches = {ref.name: ref.target_commit for ref in refs.branches}
    assert branches["main"] == main_sha and branches["dev"] != main_sha
    assert "comparison.json" in api(hub).list_repo_files("user/branchy", revision="dev")

    capsys.readouterr()
    assert main(["push", str(folder), "--repo-id", "user/branchy", "--create-pr"]) == 0
    assert "pull request: " in capsys.readouterr().out
    refs = api(hub).list_repo_refs("user/branchy", include_pull_requests=True)
    assert [ref.ref for ref in refs.pull_requests] == ["refs/pr/1"]
    assert api(hub).model_info("user/branchy").sha == main_sha
    assert "comparison.json" not in api(hub).list_repo_files("user/branchy")
    assert "comparison.json" in api(hub).list_repo_files("user/branchy", revision="refs/pr/1")


def test_push_failing_half_way_leaves_the_repo_unchanged_and_a_retry_succeeds(runs, hub, tmp_path, monkeypatch):
    import huggingface_hub.utils._http as http
    from safetensors.torch import load_file, save_file

    from hf_tasks.errors import HfTasksError
    from hf_tasks.hub.push import push_run

    folder = _copy_run(runs["cnn"], tmp_path / "run")
    before = push_run(folder, "user/atomic")
    files_before = api(hub).list_repo_files("user/atomic")
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: v + 1 for k, v in weights.items()}, str(folder / "model.safetensors"))
    history = read_json(folder / "log_history.json")
    history[0]["loss"] = history[0].get("loss", 1.0) * 3  # a different plot: two new LFS objects to upload
    (folder / "log_history.json").write_text(json.dumps(history))

    # The client retries a dropped PUT 5 times with 1+2+4+8+8 s of backoff: drop all six, without the waiting.
    monkeypatch.setattr(http, "time", SimpleNamespace(sleep=lambda seconds: None))
    hub.faults.drop_lfs_put(nth=2, times=6)  # the first upload goes through, the second never does
    with pytest.raises(HfTasksError, match=r"pushing to user/atomic failed, nothing was committed: .*Retry the push"):
        push_run(folder, "user/atomic")
    assert hub.faults.dropped == 6
    new = {name: _sha256(folder / name) for name in ("model.safetensors", "training_curves.png")}
    assert sum(hub.storage.has_blob(sha) for sha in new.values()) == 1  # half-way: one object made it
    info = api(hub).model_info("user/atomic", files_metadata=True)
    assert info.sha == before.oid and api(hub).list_repo_files("user/atomic") == files_before
    assert all(s.lfs.sha256 not in new.values() for s in info.siblings if s.lfs)

    hub.faults.clear()
    after = push_run(folder, "user/atomic")
    info = api(hub).model_info("user/atomic", files_metadata=True)
    assert after.oid != before.oid and info.sha == after.oid
    assert {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs} == new
    assert len(api(hub).list_repo_commits("user/atomic")) == 3  # initial, first push, the retry: nothing in between


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_commit_naming_a_missing_lfs_blob_is_refused_atomically(hub):
    import httpx

    api(hub).create_repo("user/strict", exist_ok=True)
    head = api(hub).model_info("user/strict").sha
    lines = [{"key": "header", "value": {"summary": "two files"}},
             {"key": "file", "value": {"path": "a.txt", "content": "aGk=", "encoding": "base64"}},
             {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": "0" * 64, "size": 3}}]
    response = httpx.post(f"{hub.url}/api/models/user/strict/commit/main", headers={"authorization": f"Bearer {TOKEN}"},
                          content="\n".join(json.dumps(line) for line in lines))
    assert response.status_code == 422 and "does not exist" in response.json()["error"]
    assert api(hub).model_info("user/strict").sha == head
    assert api(hub).list_repo_files("user/strict") == [".gitattributes"]


def test_the_token_never_reaches_logs_files_or_the_hub(runs, hub, tmp_path, capsys, caplog):
    import logging

    from huggingface_hub.errors import RepositoryNotFoundError

    from hf_tasks.cli import main

    folder = _copy_run(runs["timm"], tmp_path / "run")
    caplog.set_level(logging.DEBUG)
    for name in ("huggingface_hub", "httpx", "httpx2", "httpcore", "hf_tasks"):
        caplog.set_level(logging.DEBUG, logger=name)
    assert main(["push", str(folder), "--repo-id", "user/public-timm", "--public"]) == 0
    out, err = capsys.readouterr()
    assert "user/public-timm" in out and re.search(r"commit [0-9a-f]{40}", out)
    assert TOKEN not in out + err + caplog.text
    stored = [p for p in [*folder.rglob("*"), *hub.storage.root.rglob("*")] if p.is_file()]
    assert stored and not [p for p in stored if TOKEN.encode() in p.read_bytes()]
    assert api(hub, token=False).model_info("user/public-timm").private is False
    with pytest.raises(RepositoryNotFoundError):
        api(hub, token=False).model_info(CNN)  # private repos need a token


def test_push_refuses_a_folder_without_weights_or_a_bad_repo_id(runs, tmp_path, capsys):
    from hf_tasks.cli import main

    (tmp_path / "results.json").write_text("{}")
    assert main(["push", str(tmp_path), "--repo-id", "user/empty"]) == 2
    assert "has no model.safetensors" in capsys.readouterr().err
    assert main(["push", str(runs["cnn"]), "--repo-id", "not a repo"]) == 2
    assert "must look like 'namespace/name'" in capsys.readouterr().err


def test_hub_errors_are_one_clear_line(runs, hub, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants as constants

    from hf_tasks.cli import main
    from hf_tasks.hub.server import serve
    from tests.helpers import _free_port

    folder = _copy_run(runs["cnn"], tmp_path / "run")
    with serve(tmp_path / "strict", tokens=["hf_some_other_token"]) as strict:
        monkeypatch.setattr(constants, "ENDPOINT", strict.url)
        assert main(["push", str(folder), "--repo-id", "user/denied"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the Hub answered 401 for user/denied (check that your token has write access)")
    assert err.count("\n") == 1 and TOKEN not in err
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    assert main(["push", str(folder), "--repo-id", "user/unreachable"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the Hub for user/unreachable: ConnectError") and err.count("\n") == 1


def test_hub_serve_command_runs_in_the_foreground(tmp_path):
    import time

    import httpx

    from tests.helpers import _free_port

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hf_tasks", "hub", "serve", "--root", str(tmp_path / "root"),
                             "--port", str(port)], cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        for _ in range(100):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/whoami-v2", headers={"authorization": "Bearer x"})
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert response.json()["name"] == "user"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
