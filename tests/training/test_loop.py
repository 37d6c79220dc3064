"""Tests of the training loop (sdl.training.loop): overfitting, exact resume, checkpoints, settings.

The runs use timm's ``test_efficientnet`` (a 0.1 M-parameter EfficientNet built for tests,
with BatchNorm and the same timm code paths as the real backbones) on 32 px images of
coloured squares, one colour per tag, so that a run takes about a second on one CPU thread.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torch import nn

from sdl.data.dataset import AugmentConfig, TaggedImageDataset
from sdl.data.images import ImageDecodeError
from sdl.eval.inference import compute_scores
from sdl.losses import create_loss
from sdl.models import create_model, load_model
from sdl.training.loop import (
    BEST_DIR,
    CHECKPOINT_FILE,
    EpochOrder,
    TrainConfig,
    TrainData,
    loss_kwargs,
    parameter_groups,
    seed_everything,
    train,
)
from tests.helpers.images import SEEN, UNSEEN, make_tagged_images
from tests.helpers.scoring import ref_open_images_map

WORDVEC_DIM = 16
BACKBONE = "test_efficientnet"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs on one torch thread (see tests/conftest.py)."""


def _multi_hot(tag_lists: list[list[str]], vocabulary: list[str]) -> np.ndarray:
    out = np.zeros((len(tag_lists), len(vocabulary)), dtype=np.float32)
    for i, tags in enumerate(tag_lists):
        for tag in tags:
            out[i, vocabulary.index(tag)] = 1.0
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("squares")
    train_paths, train_tags = make_tagged_images(root / "train", 24, SEEN, seed=0)
    val_paths, val_tags = make_tagged_images(root / "val", 8, SEEN + UNSEEN, seed=1)
    return root, train_paths, train_tags, val_paths, val_tags


def _data(train_paths, train_tags, val_paths, val_tags) -> TrainData:
    vectors = np.random.default_rng(0).normal(size=(len(SEEN) + len(UNSEEN), WORDVEC_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return TrainData(
        train_paths=train_paths, train_targets=_multi_hot(train_tags, SEEN), seen_vectors=vectors[: len(SEEN)],
        val_paths=val_paths, val_targets=_multi_hot(val_tags, SEEN + UNSEEN), all_vectors=vectors,
        seen_index=np.arange(len(SEEN)), unseen_index=np.arange(len(SEEN), len(SEEN) + len(UNSEEN)),
    )


@pytest.fixture(scope="module")
def data(images) -> TrainData:
    _, train_paths, train_tags, val_paths, val_tags = images
    return _data(train_paths, train_tags, val_paths, val_tags)


def _config(**changes) -> TrainConfig:
    base = TrainConfig(
        backbone=BACKBONE, pretrained=False, num_rows=2, image_size=32, epochs=3, batch_size=8, lr=3e-3,
        augment=AugmentConfig(hflip=True, cutout_p=0.5), best_metric="gzsl.f1@1", checkpoint_every_steps=1,
    )
    return dataclasses.replace(base, **changes)


def _final_state(out_dir: Path) -> dict:
    return torch.load(out_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for index, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][key]), (index, key)
    assert a["scheduler"] == b["scheduler"]
    assert torch.equal(a["torch_rng"], b["torch_rng"])
    assert (a["epoch"], a["step_in_epoch"]) == (b["epoch"], b["step_in_epoch"])


def _validation_history(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k.startswith("val.") or k in ("epoch", "lr")} for h in history]


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("uninterrupted")
    return out, train(_config(), data, out, progress=False)


# --------------------------------------------------------------------------- learning


def _train_map(model, paths, targets, vectors) -> float:
    dataset = TaggedImageDataset(paths, None, 32, model.config.mean, model.config.std)
    scores = compute_scores(model, dataset, vectors, batch_size=16, device="cpu")
    return float(np.mean([average_precision_score(targets[:, c], scores[:, c]) for c in range(targets.shape[1])]))


def test_overfits_a_tiny_set(data, tmp_path):
    config = _config(epochs=12, augment=AugmentConfig(hflip=False, cutout_p=0.0), checkpoint_every_steps=0)
    seed_everything(config.seed)
    initial = create_model(BACKBONE, 2, WORDVEC_DIM, False, image_size=32)
    start = _train_map(initial, data.train_paths, data.train_targets, data.seen_vectors)

    result = train(config, data, tmp_path, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 12
    assert losses[-1] < 0.5 * losses[0]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])

    final = create_model(BACKBONE, 2, WORDVEC_DIM, False, image_size=32)
    final.load_state_dict(_final_state(tmp_path)["model"])
    end = _train_map(final, data.train_paths, data.train_targets, data.seen_vectors)
    assert start < 0.6  # near chance: about 1.5 of 4 tags per image
    assert end > 0.9 and end > start + 0.3, (start, end)


def test_best_model_is_the_best_epoch(uninterrupted):
    out, result = uninterrupted
    values = [h["val.gzsl.f1@1"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmax(values))  # first epoch with the highest value
    assert result.best_value == max(values)
    assert result.resumed_from is None
    best = load_model(out / BEST_DIR)
    assert best.config.backbone == BACKBONE and best.config.num_rows == 2
    assert [h["epoch"] for h in result.history] == [1, 2, 3]


# --------------------------------------------------------------------------- resume


def test_resume_mid_epoch_is_exact(images, uninterrupted, tmp_path):
    """Interrupt in epoch 2 (an image vanishes), resume from the step checkpoint: same final state."""
    root, train_paths, train_tags, val_paths, val_tags = images
    copy = tmp_path / "train"
    shutil.copytree(root / "train", copy)
    data = _data([copy / p.name for p in train_paths], train_tags, val_paths, val_tags)
    config = _config()

    order = EpochOrder(len(train_paths), config.seed)
    order.set_position(1, 0)
    victim = data.train_paths[list(order)[config.batch_size]]  # first image of step 2 of epoch 2
    saved = victim.read_bytes()

    def delete_after_first_epoch(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            victim.unlink()

    out = tmp_path / "run"
    with pytest.raises(ImageDecodeError, match=victim.name):
        train(config, data, out, progress=False, on_epoch_end=delete_after_first_epoch)
    interrupted = _final_state(out)
    assert (interrupted["epoch"], interrupted["step_in_epoch"]) == (1, 1)

    victim.write_bytes(saved)
    result = train(config, data, out, progress=False)
    assert result.resumed_from == 1
    _assert_same_state(_final_state(out), _final_state(uninterrupted[0]))
    assert _validation_history(result.history) == _validation_history(uninterrupted[1].history)
    # the interrupted epoch's mean loss covers its steps before the resume too
    losses = [h["train_loss"] for h in result.history]
    assert losses == pytest.approx([h["train_loss"] for h in uninterrupted[1].history], rel=1e-6)
    assert (result.best_epoch, result.best_value) == (uninterrupted[1].best_epoch, uninterrupted[1].best_value)


def test_resume_at_epoch_boundary_is_exact(data, uninterrupted, tmp_path):
    """A callback fails after epoch 2; with no step checkpoints the run resumes after epoch 1."""
    config = _config(checkpoint_every_steps=0)  # not part of what training computes

    def fail(epoch: int, metrics: dict) -> None:
        if epoch == 2:
            raise RuntimeError("tracking server unreachable")

    with pytest.raises(RuntimeError, match="unreachable"):
        train(config, data, tmp_path, progress=False, on_epoch_end=fail)
    assert _final_state(tmp_path)["epoch"] == 1
    result = train(config, data, tmp_path, progress=False)
    assert result.resumed_from == 1
    _assert_same_state(_final_state(tmp_path), _final_state(uninterrupted[0]))
    # whole epochs were re-run: every logged number but the speed repeats
    speedless = [{k: v for k, v in h.items() if k != "images_per_second"} for h in result.history]
    assert speedless == [{k: v for k, v in h.items() if k != "images_per_second"} for h in uninterrupted[1].history]


def test_checkpoint_of_other_settings_is_ignored(data, uninterrupted, tmp_path):
    train(_config(lr=1e-3, epochs=1), data, tmp_path, progress=False)
    assert _final_state(tmp_path)["epoch"] == 1
    result = train(_config(), data, tmp_path, progress=False)
    assert result.resumed_from is None  # started over ...
    _assert_same_state(_final_state(tmp_path), _final_state(uninterrupted[0]))  # ... and ran in full
    assert len(result.history) == 3


def test_checkpoint_of_other_data_is_ignored(images, data, tmp_path):
    _, train_paths, train_tags, val_paths, val_tags = images
    config = _config(epochs=1)
    train(config, data, tmp_path, progress=False)
    relabelled = _data(train_paths, [list(reversed(SEEN[:2]))] + train_tags[1:], val_paths, val_tags)
    assert train(config, relabelled, tmp_path, progress=False).resumed_from is None
    assert train(config, relabelled, tmp_path, progress=False).resumed_from == 1  # its own: resumes
    assert train(config, relabelled, tmp_path, progress=False, resume=False).resumed_from is None


def test_corrupt_checkpoint_is_ignored_with_a_warning(data, uninterrupted, tmp_path, caplog):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="sdl.training.loop"):
        result = train(_config(), data, tmp_path, progress=False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and CHECKPOINT_FILE in r.getMessage()]
    assert warnings and "ignoring" in warnings[0].getMessage()
    assert result.resumed_from is None
    _assert_same_state(_final_state(tmp_path), _final_state(uninterrupted[0]))


def test_checkpoint_loads_without_pickle(uninterrupted):
    out, _ = uninterrupted
    state = torch.load(out / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "scheduler", "torch_rng", "epoch", "step_in_epoch", "history", "best",
            "fingerprint", "config"} <= set(state)
    assert (state["epoch"], state["step_in_epoch"]) == (3, 0)
    assert not list(out.glob(".*partial"))  # written atomically, nothing left over


# --------------------------------------------------------------------------- pieces


def test_parameter_groups_split_by_kind():
    model = create_model("resnet18", num_rows=2, wordvec_dim=4)
    model.backbone.conv1.weight.requires_grad_(False)
    expected_no_decay, expected_decay = set(), set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm | nn.LayerNorm | nn.GroupNorm)
            (expected_no_decay if is_norm or name == "bias" else expected_decay).add(id(parameter))
    groups = parameter_groups(model, weight_decay=3e-4)
    assert [g["weight_decay"] for g in groups] == [0.0, 3e-4]
    assert {id(p) for p in groups[0]["params"]} == expected_no_decay
    assert {id(p) for p in groups[1]["params"]} == expected_decay
    assert id(model.embedding.weight) in expected_decay
    assert id(model.backbone.bn1.weight) in expected_no_decay
    assert id(model.backbone.conv1.weight) not in expected_decay | expected_no_decay
    assert len(expected_no_decay) == 2 * 20  # resnet18: 20 BatchNorm layers, weight and bias each


def test_cuda_training_uses_the_sync_free_loss_bounded_by_the_largest_label_count(data):
    config = _config(loss_kwargs={"reg_lambda": 0.1})
    most = int(data.train_targets.sum(axis=1).max())
    assert most >= 2
    on_cpu = loss_kwargs(config, data, torch.device("cpu"))
    assert on_cpu == {"reg_lambda": 0.1, "reduction": "max"}  # the CPU keeps the data-sized walk
    on_cuda = loss_kwargs(config, data, torch.device("cuda"))
    assert on_cuda == {**on_cpu, "max_positives": most}
    explicit = loss_kwargs(_config(loss_kwargs={"max_positives": 9}), data, torch.device("cuda"))
    assert explicit["max_positives"] == 9
    # The bound admits every training image: the loss over the whole set is the same either way.
    gen = torch.Generator().manual_seed(0)
    matrices = torch.randn(len(data.train_targets), 2, WORDVEC_DIM, generator=gen)
    vectors, targets = torch.from_numpy(data.seen_vectors), torch.from_numpy(data.train_targets)
    fixed = create_loss("sdl", **on_cuda)(matrices, vectors, targets)
    sized = create_loss("sdl", **on_cpu)(matrices, vectors, targets)
    torch.testing.assert_close(fixed, sized, rtol=1e-6, atol=1e-7)


def test_epoch_order():
    order = EpochOrder(10, seed=3)
    epoch0 = list(order)
    assert sorted(epoch0) == list(range(10)) and len(order) == 10
    order.set_position(1, 0)
    epoch1 = list(order)
    assert sorted(epoch1) == list(range(10)) and epoch1 != epoch0
    again = EpochOrder(10, seed=3)
    again.set_position(1, 0)
    assert list(again) == epoch1  # reproducible
    again.set_position(1, 4)
    assert list(again) == epoch1[4:] and len(again) == 6
    other = EpochOrder(10, seed=4)
    assert list(other) != epoch0
    distinct = set()
    for epoch in range(6):
        order.set_position(epoch, 0)
        distinct.add(tuple(order))
    assert len(distinct) == 6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"num_rows": 0}, "num_rows"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"best_metric": "foo"}, "best_metric"),
        ({"best_metric": "gzsl."}, "best_metric"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"pct_start": 1.0}, "pct_start"),
        ({"checkpoint_every_steps": -1}, "checkpoint_every_steps"),
    ],
)
def test_train_config_rejects(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_fingerprint_ignores_only_how_and_where():
    base = TrainConfig()
    assert base.fingerprint() == TrainConfig(num_workers=4, device="cpu", eval_batch_size=7, checkpoint_every_steps=5).fingerprint()
    for change in ({"lr": 2e-4}, {"epochs": 8}, {"seed": 1}, {"augment": AugmentConfig(hflip=False)}, {"amp": False}):
        assert TrainConfig(**change).fingerprint() != base.fingerprint(), change


def test_too_few_images(data, tmp_path):
    tiny = dataclasses.replace(data, train_paths=data.train_paths[:1], train_targets=data.train_targets[:1])
    with pytest.raises(ValueError, match="at least 2"):
        train(_config(), tiny, tmp_path, progress=False)


# --------------------------------------------------------------------------- evaluation protocol


def _signed(data: TrainData) -> TrainData:
    """The validation targets with verified negatives: some 0s become -1 (Open Images labels)."""
    rng = np.random.default_rng(3)
    signed = data.val_targets.astype(np.int8)
    signed[(signed == 0) & (rng.random(signed.shape) < 0.5)] = -1
    return dataclasses.replace(data, val_targets=signed, val_protocol="open_images")


def test_the_best_epoch_is_chosen_under_the_evaluation_protocol(data, tmp_path):
    signed = _signed(data)
    config = _config(epochs=2, best_metric="gzsl.map", checkpoint_every_steps=0)
    result = train(config, signed, tmp_path, progress=False)
    values = [h["val.gzsl.map"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmax(values)) and result.best_value == max(values)
    final = create_model(BACKBONE, 2, WORDVEC_DIM, False, image_size=32)
    final.load_state_dict(_final_state(tmp_path)["model"])
    dataset = TaggedImageDataset(signed.val_paths, None, 32, final.config.mean, final.config.std)
    scores = compute_scores(final, dataset, signed.all_vectors, batch_size=16, device="cpu")
    expected = ref_open_images_map(scores, signed.val_targets, drop_unverified=True)
    assert values[-1] == pytest.approx(expected, abs=1e-3)  # the last epoch's validation, independently
    # "sdl": every image ranked for every tag
    ranked_all = ref_open_images_map(scores, np.where(signed.val_targets == 1, 1, -1), drop_unverified=True)
    assert expected != pytest.approx(ranked_all, abs=1e-3)


def test_the_protocol_is_in_the_fingerprint_only_when_not_the_default(data, tmp_path):
    import hashlib

    # the fingerprint before the protocol existed, written out: runs under "sdl" keep resuming
    digest = hashlib.sha256()
    for path in data.train_paths:
        digest.update(str(path).encode())
    for array in (data.train_targets, data.seen_vectors):
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    assert data.val_protocol == "sdl" and data.fingerprint() == digest.hexdigest()
    assert dataclasses.replace(data, val_protocol="all").fingerprint() != data.fingerprint()
    config = _config(epochs=1)
    train(config, data, tmp_path, progress=False)
    # another protocol would choose the best epoch differently: it starts over
    assert train(config, _signed(data), tmp_path, progress=False).resumed_from is None


def test_the_loss_treats_only_1_as_positive(data):
    """Verified negatives (-1) reach no loss as positives: -1 and 0 give the same loss."""
    matrices = torch.randn(4, 2, WORDVEC_DIM, requires_grad=True)
    vectors = torch.as_tensor(data.seen_vectors)
    zeros = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.float32)
    signed = torch.where((zeros == 0) & (torch.arange(4) % 2 == 0), torch.tensor(-1.0), zeros)
    assert (signed == -1).any()
    for name, kwargs, rows in (("sdl", {"reg_lambda": 0.3}, matrices), ("fast0tag", {}, matrices[:, :1])):
        loss = create_loss(name, **kwargs)
        assert torch.equal(loss(rows, vectors, signed), loss(rows, vectors, zeros)), name
