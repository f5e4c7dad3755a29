"""Untrusted model files, for every task (issue 9): pickled weights only with --trust-pickle (ultralytics .pt, a
transformers .bin-only folder or captioner, a timm .pth.tar), remote code only with a pinned commit, no eval/exec
or pip at run time. Untrusted dataset files are tests/dataset_scripts/test_faults_data.py's."""

from __future__ import annotations

import argparse
import ast
import json
import os
from pathlib import Path

import pytest
import torch

from hf_tasks.registry import load_config
from hf_tasks.errors import ConfigError
from tests.faults import TASKS, Payload, task_args
from tests.helpers import REPO, write

SHA = "0123456789abcdef0123456789abcdef01234567"
TRUST_HINT = "pass --trust-pickle (model.trust_pickle: true) only if you trust the file"


def build(*overrides: str):
    """The model bundle a run would train (validation, data and model building; no training)."""
    from hf_tasks.registry import get_task

    cfg = load_config(None, list(overrides))
    spec = get_task(cfg.task)
    return spec.build_model(cfg, spec.load_data(cfg))


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_equal_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class NotAllowed:
    """A harmless class outside every weights_only allow-list."""


# ------------------------------------------------------------------------------------------------ pickles


def test_ultralytics_pt_is_unpickled_safely_unless_trusted(fault_data, tmp_path):
    from hf_tasks.models.yolo import YoloDetector, architecture, export_ultralytics_pt

    spec = architecture("yolov8n.yaml", {"width_multiple": 0.0625, "max_channels": 64})
    export_ultralytics_pt(YoloDetector(spec, ["circle", "square", "triangle", "star"], imgsz=64), tmp_path)
    ckpt = torch.load(tmp_path / "model.pt", weights_only=False)
    marker = tmp_path / "PWNED"
    torch.save({**ckpt, "extra": Payload(str(marker))}, tmp_path / "hostile.pt")
    torch.save({**ckpt, "extra": NotAllowed()}, tmp_path / "odd.pt")
    common = [*task_args("detection", fault_data["detection"], tmp_path / "out")]
    for name in ("hostile.pt", "odd.pt"):
        with pytest.raises(ConfigError) as err:
            build(*common, "--model.name", str(tmp_path / name))
        assert str(err.value).startswith(f"'model.name' '{tmp_path / name}' cannot be loaded with weights_only=True")
        assert str(err.value).endswith("only if you trust it, pass --trust-pickle (model.trust_pickle: true)")
    assert not marker.exists()
    bundle = build(*common, "--model.name", str(tmp_path / "odd.pt"), "--trust-pickle")
    assert bundle.label_names == ["circle", "square", "triangle", "star"]
    assert_equal_states(state(bundle.model.model), state(ckpt["ema"]))  # same classes: every tensor transferred


def _vit(labels: list[str]):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    return ViTForImageClassification(ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32,
        patch_size=8, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)}))


def pickle_only(folder: Path, model) -> Path:
    """A transformers-format folder whose weights are only ``pytorch_model.bin`` (legacy ``save_pretrained``)."""
    from safetensors.torch import load_file

    model.save_pretrained(folder)
    for shard in folder.glob("*.safetensors"):
        torch.save(load_file(str(shard)), folder / "pytorch_model.bin")
        shard.unlink()
    return folder


def test_pickle_only_transformers_folder_needs_trust_pickle(fault_data, tmp_path):
    from transformers import ViTImageProcessor

    vit = _vit(["circle", "square", "triangle"])
    folder = pickle_only(tmp_path / "vit", vit)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    common = ["--data.dataset", str(fault_data["classification"]), "--model.name", str(folder)]
    with pytest.raises(ConfigError) as err:
        build(*common)
    assert str(err.value) == (f"'model.name' '{folder}' has no safetensors weights, only pytorch_model.bin: "
                              f"unpickling can run code from the file, so it is refused; {TRUST_HINT} (it is then "
                              "loaded with torch.load(weights_only=True))")
    assert_equal_states(state(build(*common, "--trust-pickle").model), state(vit))


def test_evaluate_and_compare_refuse_pickle_only_models_unless_trusted(fault_data, tmp_path, capsys):
    from transformers import ViTImageProcessor

    from hf_tasks.cli import main

    vit = _vit(["circle", "square", "triangle"])
    with torch.no_grad():  # a constant answer, "square", so its accuracy is the share of squares
        vit.classifier.weight.zero_()
        vit.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    folder = pickle_only(tmp_path / "vit", vit)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    data = str(fault_data["classification"])
    import datasets

    test = datasets.load_from_disk(data)["test"]
    squares = test["label"].count(test.features["label"].names.index("square")) / len(test)
    commands = {"evaluate": ["evaluate", "--model", str(folder), "--dataset", data, "--batch-size", "8"],
                "compare": ["compare", "--baseline", str(folder), "--model", str(folder), "--dataset", data,
                            "--batch-size", "8", "--output", str(tmp_path / "comparison.json")]}
    for name, argv in commands.items():
        capsys.readouterr()
        assert main(argv) == 2, name
        assert "has no safetensors weights, only pytorch_model.bin" in capsys.readouterr().err
        assert main([*argv, "--trust-pickle"]) == 0, name
    rows = json.loads((tmp_path / "comparison.json").read_text())["rows"]
    assert 0 < squares < 1 and [r["accuracy"] for r in rows] == pytest.approx([squares] * 2)


def test_pickle_only_captioner_needs_trust_pickle(fault_data, tmp_path):
    from hf_tasks.registry import get_task

    spec = get_task("captioning")
    cfg = load_config(None, task_args("captioning", fault_data["captioning"], tmp_path / "unused"))
    data = spec.load_data(cfg)
    bundle = spec.build_model(cfg, data)
    folder = tmp_path / "captioner"
    spec.save_model(bundle, folder, data)
    pickle_only(folder, bundle.model)
    common = ["--task", "captioning", "--data.dataset", str(fault_data["captioning"]), "--model.name", str(folder)]
    with pytest.raises(ConfigError, match=f"^'model.name' '{folder}' has no safetensors weights, only "
                                          "pytorch_model.bin: unpickling can run code"):
        build(*common)
    assert_equal_states(state(build(*common, "--trust-pickle").model), state(bundle.model))


def _timm_checkpoint(path: Path, num_classes: int, training_args: bool) -> dict[str, torch.Tensor]:
    """What timm's train.py writes (``model_best.pth.tar``: an argparse.Namespace inside) or a bare state dict."""
    import timm

    torch.manual_seed(1)
    weights_ = timm.create_model("test_resnet", num_classes=num_classes).state_dict()
    payload = {"epoch": 3, "arch": "test_resnet", "state_dict": weights_, "args": argparse.Namespace(lr=0.1)} \
        if training_args else {f"module.{k}": v for k, v in weights_.items()}
    torch.save(payload, path)
    return weights_


def test_timm_pth_checkpoint_loads_safely_or_with_trust_pickle(fault_data, tmp_path):
    common = ["--data.dataset", str(fault_data["classification"]), "--model.name", "timm/test_resnet",
              "--model.pretrained", "false", "--data.image_size", "32", "--model.checkpoint"]
    train_py = tmp_path / "model_best.pth.tar"
    expected = _timm_checkpoint(train_py, 3, training_args=True)
    with pytest.raises(ConfigError) as err:
        build(*common, str(train_py))
    assert str(err.value).startswith(f"'model.checkpoint' '{train_py}' cannot be loaded with weights_only=True (")
    assert str(err.value).endswith(f"loading it fully runs code from the file: {TRUST_HINT}")
    assert_equal_states(state(build(*common, str(train_py), "--trust-pickle").model.timm_model), expected)
    plain = tmp_path / "weights.pth"  # a bare state dict (with DDP's module. prefix) needs no trust
    assert_equal_states(_timm_checkpoint(plain, 3, training_args=False), expected)
    assert_equal_states(state(build(*common, str(plain)).model.timm_model), expected)


def test_timm_checkpoint_with_another_head_needs_reset_head(fault_data, tmp_path):
    path = tmp_path / "in1k.pth"
    source = _timm_checkpoint(path, 5, training_args=False)
    common = ["--data.dataset", str(fault_data["classification"]), "--model.name", "timm/test_resnet",
              "--model.pretrained", "false", "--model.checkpoint", str(path)]
    with pytest.raises(ConfigError) as err:
        build(*common)
    assert str(err.value) == (f"'model.checkpoint' '{path}' has a head with 5 outputs, but the dataset has 3 labels: "
                              "set model.reset_head: true (--reset-head) to train a new head, or use a dataset with "
                              "the same labels")
    loaded = state(build(*common, "--reset-head").model.timm_model)
    assert loaded["fc.weight"].shape == (3, source["fc.weight"].shape[1])
    assert all(torch.equal(loaded[k], v) for k, v in source.items() if not k.startswith("fc."))


# ------------------------------------------------------------------------------------------------ remote code


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("revision", [None, "main", "v1.0", SHA[:12], SHA.upper()])
def test_trust_remote_code_needs_a_pinned_commit(task, revision, fault_data, tmp_path):
    extra = ["--model.revision", revision] if revision else []
    with pytest.raises(ConfigError) as err:
        load_config(None, [*task_args(task, fault_data[task], tmp_path), "--trust-remote-code", *extra])
    assert str(err.value) == ("'model.trust_remote_code' runs Python code from the model repository: it needs "
                              f"model.revision pinned to a full 40-character commit sha (got {revision!r}), so the "
                              "code that runs is the code you reviewed")


@pytest.mark.parametrize("task, message", [
    ("classification", None),
    ("detection", "'model.trust_remote_code' does not apply to YOLO"),
    ("captioning", "'model.trust_remote_code' applies to model.name (a saved captioner, pinned by model.revision)"),
])
def test_trust_remote_code_with_a_pinned_commit(task, message, fault_data, tmp_path):
    overrides = [*task_args(task, fault_data[task], tmp_path), "--trust-remote-code", "--model.revision", SHA]
    if message is None:
        assert load_config(None, overrides).model.trust_remote_code is True
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides)


def test_pinned_revision_and_trust_reach_from_pretrained(fault_data, monkeypatch):
    from transformers import AutoModelForImageClassification

    seen = {}

    def record(name, **kwargs):
        seen.update(kwargs)
        raise OSError("stop here")

    monkeypatch.setattr(AutoModelForImageClassification, "from_pretrained", record)
    with pytest.raises(ConfigError, match="'model.name' 'some-org/vit' could not be loaded"):
        build("--data.dataset", str(fault_data["classification"]), "--model.name", "some-org/vit",
              "--trust-remote-code", "--model.revision", SHA)
    assert (seen["revision"], seen["trust_remote_code"], seen["use_safetensors"]) == (SHA, True, True)


def test_repository_code_never_runs_without_trust_remote_code(fault_data, tmp_path):
    folder = tmp_path / "custom"
    marker = tmp_path / "PWNED"
    write(folder / "config.json", json.dumps({"model_type": "custom_vit", "auto_map": {
        "AutoConfig": "modeling_custom.Config", "AutoModelForImageClassification": "modeling_custom.Model"}}))
    write(folder / "modeling_custom.py", f"open({str(marker)!r}, 'w')\n")
    with pytest.raises(ConfigError) as err:
        build("--data.dataset", str(fault_data["classification"]), "--model.name", str(folder))
    assert str(err.value) == (f"'model.name' '{folder}' contains custom code that must run to load it; it is not run "
                              "unless you set model.trust_remote_code: true with model.revision pinned to a commit "
                              "sha, after reviewing that code")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ nothing executed


def _calls(tree: ast.AST):
    """(call, enclosing function's argument names) for every call in a module."""
    def walk(node, args):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = args | {a.arg for a in [*node.args.args, *node.args.kwonlyargs]}
        if isinstance(node, ast.Call):
            yield node, args
        for child in ast.iter_child_nodes(node):
            yield from walk(child, args)

    yield from walk(tree, frozenset())


def unsafe_calls(text: str, name: str) -> list[str]:
    """Calls that could run code from input: eval/exec/compile, yaml.load/pickle.load, os.system, pip, a hard-wired
    trust_remote_code=True, torch.load without weights_only, weights_only/safe_only=False outside a function that
    takes ``trust_pickle``."""
    problems = []
    for call, args in _calls(ast.parse(text)):
        where, func = f"{name}:{call.lineno}", ast.unparse(call.func)
        keywords = {k.arg: k.value for k in call.keywords}
        if func in ("eval", "exec", "compile", "__import__", "yaml.load", "yaml.unsafe_load", "pickle.load",
                    "pickle.loads", "os.system"):
            problems.append(f"{where}: {func}()")
        if isinstance(keywords.get("trust_remote_code"), ast.Constant) and keywords["trust_remote_code"].value:
            problems.append(f"{where}: trust_remote_code=True")
        if func.endswith("torch.load") and "weights_only" not in keywords:
            problems.append(f"{where}: torch.load without weights_only")
        for key in ("weights_only", "safe_only"):
            value = keywords.get(key)
            if isinstance(value, ast.Constant) and value.value is False and "trust_pickle" not in args:
                problems.append(f"{where}: {key}=False outside a trust_pickle decision")
        strings = [n.value for a in call.args for n in ast.walk(a) if isinstance(n, ast.Constant)]
        if any(isinstance(v, str) and "pip" in v.split() for v in strings):
            problems.append(f"{where}: runs pip")
    return problems


UNSAFE_EXAMPLE = """
def load(path, config):
    eval(config["lr"])
    torch.load(path)
    torch.load(path, weights_only=False)
    AutoModel.from_pretrained(path, trust_remote_code=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "x"])

def trusted(path, trust_pickle):
    return torch.load(path, weights_only=False) if trust_pickle else None
"""


def test_no_eval_exec_remote_code_or_unguarded_pickle_in_the_package():
    assert unsafe_calls(UNSAFE_EXAMPLE, "example") == [
        "example:3: eval()", "example:4: torch.load without weights_only",
        "example:5: weights_only=False outside a trust_pickle decision", "example:6: trust_remote_code=True",
        "example:7: runs pip"]
    problems = []
    for path in sorted([*(REPO / "hf_tasks").rglob("*.py"), *(REPO / "dataset_scripts").rglob("*.py")]):
        problems += unsafe_calls(path.read_text(), str(path.relative_to(REPO)))
    assert problems == []


def test_ultralytics_never_auto_installs_packages():
    from hf_tasks.models.yolo import prepare_ultralytics

    prepare_ultralytics()
    import ultralytics.utils

    assert os.environ["YOLO_AUTOINSTALL"] == "false" and ultralytics.utils.AUTOINSTALL is False
