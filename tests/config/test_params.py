"""Tests of params.yaml checking (sdl.config.params) and the strict typed config reader (sdl.config.typed)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from sdl.config.params import DatasetParams, check_params, dataset_params, load_params
from sdl.config.training import TrainConfig
from sdl.config.typed import ParamsError, from_mapping, load_yaml
from tests.helpers.repo import REPO_ROOT

PARAMS = REPO_ROOT / "params.yaml"


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    return load_params(PARAMS)


def _variant(real: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    params = copy.deepcopy(real)
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    return params


def test_real_params_pass(real):
    checked = check_params(real)
    assert [p.name for p in checked] == real["datasets"]
    embedded = checked[0]
    assert isinstance(embedded, DatasetParams)
    # values come through with their YAML types, nested dataclasses built
    assert embedded.train.lr == pytest.approx(float(real["train"]["embedded"]["lr"])) and isinstance(embedded.train.lr, float)
    assert embedded.train.num_rows == real["train"]["embedded"]["num_rows"]
    assert embedded.train.augment.cutout_p == real["train"]["embedded"]["augment"]["cutout_p"]
    assert embedded.split.tags.unseen == real["split"]["embedded"]["tags"]["unseen"]
    assert embedded.split.images.train_seen_only is real["split"]["embedded"]["images"]["train_seen_only"]
    assert embedded.evaluate.ks == real["evaluate"]["embedded"]["ks"]
    assert embedded.model_name == "sdl-embedded"


@pytest.mark.parametrize("dataset", ["nus_wide", "coco", "open_images"])
def test_paper_datasets_have_the_papers_settings(real, dataset):
    """Each paper dataset is a params entry away, with section 4.1's settings."""
    p = dataset_params(real, dataset)
    rows, batch, epochs = {"nus_wide": (7, 192, 7), "coco": (2, 32, 20), "open_images": (7, 96, 7)}[dataset]
    assert (p.train.num_rows, p.train.batch_size, p.train.epochs) == (rows, batch, epochs)
    # MIIL's ImageNet-1k TResNet-M (the released code's tresnet_m.pth), not timm's default tag
    assert p.train.backbone == "tresnet_m.miil_in1k" and p.train.image_size == 224
    assert p.train.lr == pytest.approx(1e-4) and p.train.weight_decay == pytest.approx(3e-4)
    assert p.train.loss_kwargs["reg_lambda"] == pytest.approx(0.3) and p.train.augment.cutout_p == 0.5
    assert p.train.released_checkpoint is None  # trains unless a released checkpoint is given
    assert p.evaluate.ks == {"nus_wide": [3, 5], "coco": [3], "open_images": [10, 20]}[dataset]
    expected = {"nus_wide": (925, 81), "coco": (48, 17), "open_images": (7186, 400)}[dataset]
    assert (p.validate.expected_seen, p.validate.expected_unseen) == expected
    assert p.embed.source["kind"] == "fasttext" and p.download.kind == dataset


@pytest.mark.parametrize("dataset", ["nus_wide", "coco", "open_images"])
def test_paper_datasets_train_the_released_loss_form(real, dataset):
    """The |P|-normalised SDL loss (the released SDLLoss) at lambda 0.3, as the loss is built."""
    from sdl.losses import create_loss

    p = dataset_params(real, dataset)
    assert p.train.loss == "sdl"
    loss = create_loss(p.train.loss, **p.train.loss_kwargs)
    assert loss.variant == "per_positive" and loss.reg_lambda == pytest.approx(0.3)


def test_every_backbone_is_a_tagged_timm_name(real):
    import timm

    from sdl._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    backbones = {name: dataset_params(real, name).train.backbone for name in real["train"]}
    assert backbones["embedded"] == "tf_efficientnet_lite0.in1k"
    for name, backbone in backbones.items():
        architecture, _, tag = backbone.partition(".")
        assert tag and backbone in timm.list_pretrained(architecture), (name, backbone)


@pytest.mark.parametrize(
    ("section", "typo"),
    [("train.embedded", "epoch"), ("train.embedded.augment", "h_flip"), ("split.embedded.images", "seeed")],
)
def test_unknown_key_named(real, section, typo):
    params = _variant(real, f"{section}.{typo}", 3)
    with pytest.raises(ParamsError) as caught:
        check_params(params)
    message = str(caught.value)
    assert message.startswith(f"{section}:") and f"'{typo}'" in message


def test_unknown_top_level_key(real):
    with pytest.raises(ParamsError, match="trian"):
        check_params({**real, "trian": {}})
    check_params({**real, "_anchors": {"x": 1}})  # underscore keys are free for YAML anchors


@pytest.mark.parametrize(
    ("dotted", "value", "path"),
    [
        ("train.embedded.num_rows", "seven", "train.embedded.num_rows"),
        ("train.embedded.epochs", True, "train.embedded.epochs"),  # bool is not an int
        ("train.embedded.lr", "fast", "train.embedded.lr"),
        ("train.embedded.lr", False, "train.embedded.lr"),
        ("train.embedded.amp", 1, "train.embedded.amp"),
        ("train.embedded.pretrained", 1, "train.embedded.pretrained"),
        ("evaluate.embedded.ks", 3, "evaluate.embedded.ks"),
        ("evaluate.embedded.ks", [1, "2"], r"evaluate.embedded.ks\[1\]"),
        ("evaluate.embedded.protocol", "some", "evaluate.embedded.protocol"),
        ("split.embedded.tags.unseen", "cat", "split.embedded.tags.unseen"),
        ("train.embedded.augment", [], "train.embedded.augment"),
    ],
)
def test_wrong_types_named(real, dotted, value, path):
    with pytest.raises(ParamsError, match=f"^{path}:"):
        check_params(_variant(real, dotted, value))


def test_int_accepted_for_float(real):
    checked = dataset_params(_variant(real, "train.embedded.lr", 1), "embedded")
    assert checked.train.lr == 1.0 and isinstance(checked.train.lr, float)
    checked = dataset_params(_variant(real, "validate.embedded.max_tag_prevalence", 1), "embedded")
    assert isinstance(checked.validate.max_tag_prevalence, float)


def test_optional_and_union_fields(real):
    checked = dataset_params(_variant(real, "train.embedded.pretrained", "/weights/backbone.safetensors"), "embedded")
    assert checked.train.pretrained == "/weights/backbone.safetensors"
    checked = dataset_params(_variant(real, "register.embedded.model_name", "zoo"), "embedded")
    assert checked.model_name == "zoo"


@pytest.mark.parametrize(
    ("dotted", "value", "named", "reason"),
    [
        ("train.embedded.num_rows", 0, "train.embedded", "num_rows"),
        ("train.embedded.epochs", -1, "train.embedded", "epochs"),
        ("train.embedded.optimizer", "sgd", "train.embedded", "optimizer"),
        ("evaluate.embedded.ks", [1, 0], "evaluate.embedded", "ks"),
        ("evaluate.embedded.ks", [], "evaluate.embedded", "ks"),
        ("evaluate.embedded.ks", [1, 4], "evaluate.embedded.ks", "larger than the 3 unseen"),
        ("train.embedded.best_metric", "gzsl.f1@5", "train.embedded.best_metric", "3 unseen"),
        ("split.embedded.images.test_fraction", 1.5, "split.embedded.images", "test_fraction"),
        ("train.embedded.augment.cutout_p", 2.0, "train.embedded.augment", "cutout_p"),
    ],
)
def test_impossible_values_named(real, dotted, value, named, reason):
    with pytest.raises(ParamsError) as caught:
        check_params(_variant(real, dotted, value))
    message = str(caught.value)
    assert message.startswith(f"{named}:"), message
    assert reason in message


def test_k_bound_follows_the_tag_split(real):
    # four listed unseen tags allow k = 4, a random split of 2 does not allow k = 3
    params = _variant(real, "split.embedded.tags.unseen", ["cat", "sheep", "zebra", "dog"])
    params = _variant(params, "evaluate.embedded.ks", [1, 4])
    params = _variant(params, "validate.embedded.expected_unseen", 4)
    assert dataset_params(params, "embedded").evaluate.ks == [1, 4]
    params = _variant(real, "split.embedded.tags", {"method": "random", "num_unseen": 2})
    params = _variant(params, "evaluate.embedded.ks", [3])
    with pytest.raises(ParamsError, match=r"^evaluate\.embedded\.ks:"):
        dataset_params(params, "embedded")


def test_missing_sections(real):
    params = copy.deepcopy(real)
    del params["train"]["embedded"]
    with pytest.raises(ParamsError, match=r"train\.embedded"):
        check_params(params)
    with pytest.raises(ParamsError, match="datasets"):
        check_params({**real, "datasets": []})
    with pytest.raises(ParamsError, match=r"download\.other"):
        check_params({**real, "datasets": ["embedded", "other"]})


def test_yaml_12_floats(tmp_path):
    text = "lr: 1e-4\nwd: 3.0e-4\nbig: 2E+3\nepochs: 4\nname: 1e-4x\nneg: -5e-1\nhalf: .5\n"
    (tmp_path / "p.yaml").write_text(text)
    loaded = load_yaml(tmp_path / "p.yaml")
    assert loaded == {"lr": 1e-4, "wd": 3e-4, "big": 2000.0, "epochs": 4, "name": "1e-4x", "neg": -0.5, "half": 0.5}
    assert isinstance(loaded["lr"], float) and isinstance(loaded["big"], float)
    assert type(loaded["epochs"]) is int
    assert yaml.safe_load(text)["lr"] == "1e-4"  # PyYAML's YAML 1.1 default reads a string


def test_yaml_float_checks_as_float(real, tmp_path):
    original = PARAMS.read_text()
    start = original.index("\n  embedded:", original.index("\ntrain:\n"))  # train.embedded
    head, tail = original[:start], original[start:]
    tail, count = re.subn(r"(?m)^(\s+)lr:[^\n#]*", r"\1lr: 1e-3", tail, count=1)
    assert count == 1
    text = head + tail
    (tmp_path / "params.yaml").write_text(text)
    assert check_params(load_params(tmp_path / "params.yaml"))[0].train.lr == 1e-3


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ParamsError, match="no such file"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ParamsError, match=r"bad\.yaml"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="top level"):
        load_params(tmp_path / "list.yaml")
    (tmp_path / "code.yaml").write_text("x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ParamsError):
        load_yaml(tmp_path / "code.yaml")  # a safe loader: no Python objects


def test_image_cache_must_hold_the_training_size(real):
    # the cache never upscales: a 256 px cache cannot feed the released COCO run's 608 px
    params = _variant(real, "train.coco.image_size", 608)
    with pytest.raises(ParamsError, match=r"download\.coco\.cache_short_side: 256 px is smaller than train\.coco\.image_size 608"):
        dataset_params(params, "coco")
    assert dataset_params(_variant(params, "download.coco.cache_short_side", 608), "coco").train.image_size == 608
    assert dataset_params(_variant(params, "download.coco.cache_short_side", 0), "coco").download.cache_short_side == 0


def test_evaluation_protocols(real):
    assert dataset_params(real, "open_images").evaluate.protocol == "open_images"  # LESA / BiAM
    assert {dataset_params(real, d).evaluate.protocol for d in ("embedded", "nus_wide", "coco")} == {"sdl"}
    assert dataset_params(_variant(real, "evaluate.nus_wide.protocol", "all"), "nus_wide").evaluate.protocol == "all"
    with pytest.raises(ParamsError, match=r"evaluate\.nus_wide\.protocol"):
        dataset_params(_variant(real, "evaluate.nus_wide.protocol", "lesa"), "nus_wide")


@pytest.mark.parametrize(("preset", "best"), [("_epsilon_nus_wide", "gzsl.f1@3"), ("_epsilon_open_images", "gzsl.f1@10")])
def test_epsilon_presets_have_the_papers_recipe(real, preset, best):
    """Epsilon, "Implementation Details" and Figure 3: Adam, weight decay 4e-3, lr 1e-5 halved from
    epoch 4, batch 96, 7 epochs, M = 8, lambda = 0.3 per pair, a ViT-B/16; usable as a train section."""
    config = from_mapping(TrainConfig, real[preset], preset)
    assert (config.model, config.num_rows, config.batch_size, config.epochs) == ("epsilon", 8, 96, 7)
    assert config.backbone.startswith("vit_base_patch16_224.") and config.image_size == 224
    assert (config.optimizer, config.lr, config.weight_decay) == ("adam", pytest.approx(1e-5), pytest.approx(4e-3))
    assert (config.schedule, config.lr_milestones, config.lr_gamma) == ("step", [3], 0.5)
    assert config.loss == "sdl" and config.loss_kwargs == {"reg_lambda": 0.3, "variant": "per_pair"}
    assert config.best_metric == best and config.token_cache is None
    dataset = preset.removeprefix("_epsilon_")
    switched = _variant(real, f"train.{dataset}", real[preset])
    assert dataset_params(switched, dataset).train.model == "epsilon"


def test_embedded_trains_sdl_by_default_and_epsilon_when_switched(real):
    assert dataset_params(real, "embedded").train.model == "sdl"
    switched = dataset_params(_variant(real, "train.embedded.model", "epsilon"), "embedded").train
    assert switched.model == "epsilon" and switched.epsilon.project_tokens and switched.epsilon.token_dim == 128
    with pytest.raises(ParamsError, match=r"train.embedded.epsilon: unknown key"):
        check_params(_variant(real, "train.embedded.epsilon.layers", 2))
