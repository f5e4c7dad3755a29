"""``model.config`` is typed per task: overrides reach single keys and merge into the recipe's values, and an unknown
key fails naming the nearest one, for every task (no data or model is built: these are config checks)."""

from __future__ import annotations

import pytest

from hf_tasks.errors import ConfigError
from hf_tasks.registry import load_config

DATA = ["--data.dataset", "data/not-needed-for-config-checks"]
RECIPES = {"classification": "shapes_cnn", "detection": "shapes_yolov8n", "captioning": "shapes_captioning_cnn_lstm"}
# (override key, CLI value, expected typed value, a recipe key that must survive the override)
OVERRIDES = {
    "classification": ("dropout", "0.25", 0.25, "hidden_sizes"),
    "detection": ("iou", "0.5", 0.5, "hyp"),
    "captioning": ("generation", "{num_beams: 2}", {"num_beams": 2}, "decoder"),
}
TYPOS = {"classification": ("droput", "dropout"), "detection": ("max_dets", "max_det"),
         "captioning": ("encodr", "encoder")}


def config(task: str, *overrides: str):
    return load_config(RECIPES[task], [*DATA, *overrides])


@pytest.mark.parametrize("task", sorted(RECIPES))
def test_a_dotted_override_changes_one_key_and_keeps_the_recipes_others(task):
    key, value, expected, kept = OVERRIDES[task]
    recipe = config(task).model.config
    cfg = config(task, f"--model.config.{key}", value)
    got = cfg.model.config[key]
    if isinstance(expected, dict):  # a mapping merges into the recipe's mapping
        assert got == {**recipe.get(key, {}), **expected} and got != recipe.get(key)
    else:
        assert got == expected and type(got) is type(expected)
    assert cfg.model.config[kept] == recipe[kept]


@pytest.mark.parametrize("task", sorted(RECIPES))
def test_a_mapping_override_merges_instead_of_replacing(task):
    key, value, expected, kept = OVERRIDES[task]
    recipe = config(task).model.config
    cfg = config(task, "--model.config", f"{{{key}: {value}}}")
    assert cfg.model.config[kept] == recipe[kept]
    assert cfg.model.config[key] == ({**recipe.get(key, {}), **expected} if isinstance(expected, dict) else expected)


@pytest.mark.parametrize("task", sorted(RECIPES))
@pytest.mark.parametrize("form", ["dotted", "mapping"])
def test_an_unknown_key_fails_naming_the_nearest(task, form):
    typo, right = TYPOS[task]
    args = [f"--model.config.{typo}", "1"] if form == "dotted" else ["--model.config", f"{{{typo}: 1}}"]
    with pytest.raises(ConfigError, match=rf"unknown key 'model\.config\.{typo}'; did you mean "
                                          rf"'model\.config\.{right}'\?"):
        config(task, *args)


def test_a_from_config_transformers_model_has_its_config_classs_keys():
    """classification with model.pretrained false and a model_type: the keys are ViTConfig's own."""
    base = ["--model.name", "vit-from-config", "--model.pretrained", "false", "--model.config",
            "{model_type: vit, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}"]
    cfg = load_config(None, [*DATA, *base, "--model.config.hidden_size", "48"])
    assert cfg.model.config["hidden_size"] == 48 and cfg.model.config["num_hidden_layers"] == 1
    with pytest.raises(ConfigError, match=r"did you mean 'model\.config\.hidden_size'\?"):
        load_config(None, [*DATA, *base, "--model.config.hiden_size", "48"])


def test_null_removes_a_key_as_in_a_json_merge_patch():
    cfg = config("captioning", "--model.config", "{encoder: null, decoder: null}", "--model.pretrained", "true",
                 "--model.name", "some/captioner")
    assert not cfg.model.config["encoder"] and not cfg.model.config["decoder"]  # the recipe's parts are gone
    assert cfg.model.config["generation"] == config("captioning").model.config["generation"]


def test_a_nested_typo_in_a_caption_decoder_names_the_field():
    with pytest.raises(ConfigError, match=r"decoder\.hiden_size is not a field of .*did you mean 'hidden_size'"):
        config("captioning", "--model.config.decoder.hiden_size", "64")


def test_a_key_with_no_near_name_lists_the_keys_the_task_takes():
    """Switching model.name from the small CNN to timm keeps the recipe's options, which timm's config lacks."""
    with pytest.raises(ConfigError, match=r"unknown key 'model\.config\.hidden_sizes'; model\.config takes "
                                          r"[a-z_, ]*\bmodel_args\b"):
        config("classification", "--model.name", "timm/test_resnet")
    with pytest.raises(ConfigError, match=r"unknown key 'model\.config\.zzz'; model\.config takes depth_multiple, "
                                          r"width_multiple, max_channels, hyp, ema, "):
        config("detection", "--model.config.zzz", "1")
