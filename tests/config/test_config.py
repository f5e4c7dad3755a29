"""Typed config: recipes + overrides, unknown keys with the nearest name, invalid values before any model."""

from __future__ import annotations

import pytest

from hf_tasks.config import TrainConfig, parse_overrides, read_recipe
from hf_tasks.registry import load_config
from hf_tasks.errors import ConfigError
from hf_tasks.engine.optim import lr_factor


def _cfg(*overrides: str) -> TrainConfig:
    return load_config(None, ["--data.dataset", "some/data", *overrides])


def test_overrides_are_typed_and_dotted():
    cfg = _cfg("--optim.lr", "3e-4", "--epochs=5", "batch_size=8", "--report-to", "tensorboard",
               "--optim.step_epochs", "50,75", "--scheduler", "step", "--model.config", "{hidden_sizes: [8, 16]}",
               "--overwrite")
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.epochs == 5 and cfg.batch_size == 8
    assert cfg.report_to == ["tensorboard"]
    assert cfg.optim.step_epochs == [50, 75] and cfg.optim.scheduler == "step"
    assert cfg.model.config == {"hidden_sizes": [8, 16]}
    assert cfg.overwrite is True


def test_unique_leaf_names_resolve_and_none_parses():
    cfg = _cfg("--lr", "0.1", "--max-grad-norm", "none", "--resume", "auto")
    assert cfg.optim.lr == 0.1 and cfg.optim.max_grad_norm is None and cfg.resume == "auto"


@pytest.mark.parametrize("override, suggestion", [
    (["--optim.lrr", "1"], "optim.lr"),
    (["--epoch", "3"], "epochs"),
    (["--data.imagesize", "3"], "data.image_size"),
])
def test_unknown_keys_name_the_nearest_valid_one(override, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        _cfg(*override)


def test_unknown_recipe_key_is_rejected(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: classification\noptim:\n  learning_rate: 0.1\ndata: {dataset: x}\n")
    with pytest.raises(ConfigError, match="unknown key 'optim.learning_rate'.*did you mean 'optim.lr'"):
        load_config(recipe)


@pytest.mark.parametrize("override, key", [
    (["--batch-size", "0"], "batch_size"),
    (["--lr", "-1"], "optim.lr"),
    (["--epochs", "0"], "epochs"),
    (["--grad-accum", "0"], "grad_accum"),
    (["--optim.optimizer", "adam"], "optim.optimizer"),
    (["--mixed-precision", "fp8"], "mixed_precision"),
    (["--batch-size", "two"], "batch_size"),
    (["--optim.warmup_ratio", "1.5"], "optim.warmup_ratio"),
    (["--scheduler", "step"], "optim.step_epochs"),
    (["--task", "segmentation"], "segmentation"),
    (["--model.name", "timm/resnet_eighteen"], "model.name"),
    (["--data.augment.rotation", "400"], "data.augment.rotation"),
])
def test_invalid_values_fail_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _cfg(*override)


def test_dataset_is_required():
    with pytest.raises(ConfigError, match="data.dataset"):
        load_config(None, [])


def test_fp16_on_cpu_is_refused_before_building_anything():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        _cfg("--mixed-precision", "fp16")


def test_packaged_recipes_all_load():
    from hf_tasks.config import RECIPES_DIR

    recipes = sorted(RECIPES_DIR.glob("*.yaml"))
    assert len(recipes) >= 5
    for recipe in recipes:
        cfg = load_config(recipe.stem)
        assert cfg.data.dataset, recipe


def test_unknown_recipe_name_lists_packaged_ones():
    with pytest.raises(ConfigError, match="shapes_cnn"):
        read_recipe("shapes_cn")


def test_bare_flag_before_negative_number():
    assert parse_overrides(["--overwrite", "--lr", "-1e-3"]) == [("overwrite", "true"), ("optim.lr", "-1e-3")]


def test_saved_config_round_trips(tmp_path):
    cfg = _cfg("--lr", "0.01", "--data.augment.preset", "keras")
    cfg.save(tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg


def test_keras_preset_resolves_with_explicit_fields_winning():
    cfg = _cfg("--data.augment.preset", "keras", "--data.augment.rotation", "10")
    resolved = cfg.data.augment.resolved()
    assert resolved == {"rotation": 10.0, "width_shift": 0.2, "height_shift": 0.2, "shear": 0.2, "zoom": 0.2,
                        "hflip": True, "fill_mode": "nearest"}


def test_step_schedule_expresses_lr_times_point_one_after_epoch_50():
    kwargs = dict(kind="step", total_steps=100 * 10, warmup_steps=0, steps_per_epoch=10, step_epochs=(50,),
                  gamma=0.1)
    assert lr_factor(0, **kwargs) == 1.0
    assert lr_factor(499, **kwargs) == 1.0  # last step of epoch 50 (epochs 0..49 are the first fifty)
    assert lr_factor(500, **kwargs) == pytest.approx(0.1)
    assert lr_factor(999, **kwargs) == pytest.approx(0.1)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_warmup_then_decay_to_zero(kind):
    kwargs = dict(kind=kind, total_steps=100, warmup_steps=10, steps_per_epoch=10, step_epochs=(), gamma=0.1)
    warm = [lr_factor(s, **kwargs) for s in range(10)]
    assert warm == sorted(warm) and warm[0] > 0 and warm[-1] < 1
    assert lr_factor(10, **kwargs) == pytest.approx(1.0)
    assert lr_factor(100, **kwargs) == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(55, **kwargs) < lr_factor(30, **kwargs)
