"""Training Epsilon through the same loop as SDL (sdl.training.loop with ``model: epsilon``):
the backbone stays frozen and out of the optimizer, a tiny model overfits, checkpoints resume
exactly, the step schedule, the token cache (same training as recomputing, resumable build),
and DDP with a cache. Images: the coloured squares of tests/helpers/images.py at 32 px; the
backbone: timm's ``test_vit`` with random weights (1 CLS + 4 patch tokens of width 64)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from sdl.config.epsilon import EpsilonOptions
from sdl.config.training import AugmentConfig, TrainConfig
from sdl.data.dataset import TaggedImageDataset
from sdl.eval.inference import compute_scores
from sdl.models import EpsilonModel, load_model
from sdl.training import token_cache
from sdl.training.loop import BEST_DIR, CHECKPOINT_FILE, train
from sdl.training.schedules import make_scheduler
from sdl.training.setup import new_model, seed_everything
from tests.helpers.images import SEEN, UNSEEN, make_tagged_images
from tests.training.test_loop import _assert_same_state, _data, _final_state

NO_AUGMENT = AugmentConfig(hflip=False, cutout_p=0.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs on one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("squares")
    train_paths, train_tags = make_tagged_images(root / "train", 24, SEEN, seed=0)
    val_paths, val_tags = make_tagged_images(root / "val", 8, SEEN + UNSEEN, seed=1)
    return _data(train_paths, train_tags, val_paths, val_tags)


def _config(**changes) -> TrainConfig:
    base = TrainConfig(
        model="epsilon", backbone="test_vit", pretrained=False, num_rows=2, image_size=32, epochs=3, batch_size=8,
        lr=3e-3, weight_decay=4e-3, augment=AugmentConfig(hflip=True, cutout_p=0.5), best_metric="gzsl.f1@1",
        checkpoint_every_steps=1, epsilon=EpsilonOptions(encoder_heads=2, dropout=0.0),
    )
    return dataclasses.replace(base, **changes)


def _backbone(state: dict) -> dict:
    return {k: v for k, v in state["model"].items() if k.startswith("backbone.")}


def test_backbone_is_frozen_through_training_and_only_the_head_has_optimizer_state(data, tmp_path):
    config = _config(epochs=2)
    seed_everything(config.seed)
    initial = new_model(config, data.seen_vectors.shape[1]).state_dict()
    train(config, data, tmp_path, progress=False)
    state = _final_state(tmp_path)
    frozen = _backbone(state)
    assert frozen and all(torch.equal(tensor, initial[name]) for name, tensor in frozen.items())
    head = [k for k in state["model"] if not k.startswith("backbone.") and state["model"][k].is_floating_point()]
    assert len(state["optimizer"]["state"]) == len(head)  # Adam moments for the head only
    assert any(not torch.equal(state["model"][k], initial[k]) for k in head)  # and the head did train
    best = load_model(tmp_path / BEST_DIR)
    assert isinstance(best, EpsilonModel) and best.config.options.encoder_heads == 2


def _train_map(model, data) -> float:
    dataset = TaggedImageDataset(data.train_paths, None, 32, model.config.mean, model.config.std)
    scores = compute_scores(model, dataset, data.seen_vectors, batch_size=16, device="cpu")
    targets = data.train_targets
    return float(np.mean([average_precision_score(targets[:, c], scores[:, c]) for c in range(targets.shape[1])]))


def test_a_tiny_model_overfits_a_tiny_multilabel_set(data, tmp_path):
    config = _config(epochs=15, augment=NO_AUGMENT, token_cache="float32", checkpoint_every_steps=0)
    seed_everything(config.seed)
    start = _train_map(new_model(config, data.seen_vectors.shape[1]), data)
    result = train(config, data, tmp_path, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    final = new_model(config, data.seen_vectors.shape[1])
    final.load_state_dict(_final_state(tmp_path)["model"])
    end = _train_map(final, data)
    assert start < 0.6 and end > 0.9, (start, end)


def test_resume_mid_epoch_is_exact(data, tmp_path):
    """A run stopped after a step checkpoint of epoch 2 resumes to the uninterrupted run's state."""
    config = _config(epochs=2)
    reference = train(config, data, tmp_path / "full", progress=False)

    def stop_after_first_epoch(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, data, tmp_path / "run", progress=False, on_epoch_end=stop_after_first_epoch)
    stopped = _final_state(tmp_path / "run")
    assert (stopped["epoch"], stopped["step_in_epoch"]) == (0, 2)  # the last step checkpoint of epoch 1
    resumed = train(config, data, tmp_path / "run", progress=False)
    assert resumed.resumed_from == 0
    _assert_same_state(_final_state(tmp_path / "run"), _final_state(tmp_path / "full"))
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in reference.history])


def test_step_schedule_halves_the_lr_from_the_fourth_epoch():
    """Epsilon: "1e-5 ... then decreases by 1/2 at the 4-th epoch": epochs 1-3 at 1e-5, 4-7 at 5e-6."""
    config = TrainConfig(lr=1e-5, epochs=7, schedule="step", lr_milestones=[3], lr_gamma=0.5)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=config.lr)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=4)
    used = []
    for _ in range(7 * 4):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    per_epoch = [sorted(set(used[e * 4 : (e + 1) * 4])) for e in range(7)]
    assert per_epoch == [[1e-5]] * 3 + [[5e-6]] * 4
    two = make_scheduler(torch.optim.Adam([parameter], lr=1.0), dataclasses.replace(config, lr_milestones=[1, 2], lr=1.0), 1)
    lrs = []
    for _ in range(4):
        lrs.append(two.get_last_lr()[0])
        two.optimizer.step()
        two.step()
    assert lrs == [1.0, 0.5, 0.25, 0.25]


def test_token_cache_trains_what_recomputing_trains(data, tmp_path, caplog):
    """Without augmentation a float32 cache gives the recomputed run's losses and weights (to float
    rounding: the backbone ran on other batches), and a second run reuses it."""
    recomputed = train(_config(augment=NO_AUGMENT), data, tmp_path / "recompute", progress=False)
    cached = train(_config(augment=NO_AUGMENT, token_cache="float32"), data, tmp_path / "cache", progress=False)
    assert [h["train_loss"] for h in cached.history] == pytest.approx([h["train_loss"] for h in recomputed.history], rel=1e-4)
    a, b = _final_state(tmp_path / "recompute")["model"], _final_state(tmp_path / "cache")["model"]
    assert max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point()) < 1e-4
    folder = tmp_path / "cache" / token_cache.CACHE_DIR
    assert sorted(p.name for p in folder.iterdir()) == ["train.json", "train.npy", "val.json", "val.npy"]
    assert np.load(folder / "train.npy").shape == (24, 5, 64)
    with caplog.at_level(logging.INFO, logger="sdl.training.token_cache"):
        train(_config(augment=NO_AUGMENT, token_cache="float32", lr=1e-3), data, tmp_path / "cache", progress=False)
    assert sum("up to date" in r.getMessage() for r in caplog.records) == 2


def test_an_interrupted_cache_build_resumes_and_a_changed_key_rebuilds(data, tmp_path, monkeypatch):
    config = _config(augment=NO_AUGMENT, token_cache="float16", eval_batch_size=4)
    model = new_model(config, data.seen_vectors.shape[1])
    folder, options = tmp_path / "cache", {"batch_size": 4, "num_workers": 0, "device": torch.device("cpu")}
    reference = np.load(token_cache.cached_tokens(model, data.train_paths, tmp_path / "ref", "train", "float16", **options))
    monkeypatch.setattr(token_cache, "FLUSH_EVERY_BATCHES", 1)
    calls = {"n": 0}
    original = EpsilonModel.tokens

    def failing(self, images):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk went away")
        return original(self, images)

    monkeypatch.setattr(EpsilonModel, "tokens", failing)
    with pytest.raises(OSError, match="went away"):
        token_cache.cached_tokens(model, data.train_paths, folder, "train", "float16", **options)
    assert json.loads((folder / "train.progress.json").read_text())["rows"] == 12
    calls["n"] = 100  # no more failures
    done = token_cache.cached_tokens(model, data.train_paths, folder, "train", "float16", **options)
    assert calls["n"] == 100 + 3  # only the 3 batches after row 12 were computed again
    np.testing.assert_array_equal(np.load(done), reference)
    assert not (folder / "train.progress.json").exists() and np.load(done).dtype == np.float16
    with torch.no_grad():
        next(model.backbone.parameters()).add_(1.0)  # other weights: another key
    token_cache.cached_tokens(model, data.train_paths, folder, "train", "float16", **options)
    assert calls["n"] == 100 + 3 + 6


def test_epsilon_and_cache_settings_change_the_fingerprint():
    base = TrainConfig(model="epsilon", augment=NO_AUGMENT)
    for change in (
        {"model": "sdl"}, {"epsilon": EpsilonOptions(encoder_layers=2)}, {"epsilon": EpsilonOptions(modules="gpa")},
        {"token_cache": "float16"}, {"schedule": "step"}, {"lr_milestones": [2]}, {"lr_gamma": 0.1},
    ):
        assert dataclasses.replace(base, **change).fingerprint() != base.fingerprint(), change
    sdl = TrainConfig()
    assert dataclasses.replace(sdl, epsilon=EpsilonOptions(encoder_layers=3)).fingerprint() == sdl.fingerprint()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"token_cache": "float32"}, "needs model: epsilon"),
        ({"model": "epsilon", "token_cache": "float32"}, "un-augmented"),
        ({"model": "epsilon", "token_cache": "int8"}, "token_cache must be null"),
        ({"model": "vit"}, "train.model"),
        ({"schedule": "cosine"}, "train.schedule"),
        ({"lr_milestones": [3, 2]}, "lr_milestones"),
        ({"lr_gamma": 0.0}, "lr_gamma"),
    ],
)
def test_bad_family_settings_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_ddp_with_a_token_cache_matches_one_process(data, tmp_path):
    """2 gloo processes of 4 cached-token batches = 1 process of 8 (the head has no BatchNorm)."""
    import os
    import pickle
    import subprocess
    import sys

    from tests.helpers.ddp import LOSS_RTOL, WORKER, free_port
    from tests.helpers.repo import REPO_ROOT

    config = _config(epochs=2, augment=NO_AUGMENT, token_cache="float32", device="cpu")
    reference = train(config, data, tmp_path / "single", progress=False)
    spec = {"config": config, "data": data, "runs": {"fresh": str(tmp_path / "ddp")},
            "callbacks": str(tmp_path / "callbacks.txt"), "results": str(tmp_path / "results-{rank}.json")}
    (tmp_path / "spec.pkl").write_bytes(pickle.dumps(spec))
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(tmp_path / "worker.py"),
               str(tmp_path / "spec.pkl")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    history = json.loads((tmp_path / "results-0.json").read_text())["fresh"]["history"]
    single = [h["train_loss"] for h in reference.history]
    assert np.allclose([h["train_loss"] for h in history], single, rtol=LOSS_RTOL, atol=0)
    # Compared as functions, not weight by weight: a few biases get an exactly-zero gradient
    # (the attention key bias, GFP's second MLP bias under a softmax over tokens: constants the
    # softmax ignores), which Adam turns from float noise into lr-sized steps of no effect.
    models = []
    for run in ("ddp", "single"):
        model = new_model(config, data.seen_vectors.shape[1])
        model.load_state_dict(torch.load(tmp_path / run / CHECKPOINT_FILE, weights_only=True)["model"])
        models.append(model.eval())
    tokens = torch.from_numpy(np.load(tmp_path / "single" / token_cache.CACHE_DIR / "train.npy"))
    with torch.no_grad():
        outputs = [m.head_forward(tokens) for m in models]
    assert float((outputs[0] - outputs[1]).abs().max()) < 1e-4
    assert (tmp_path / "ddp" / token_cache.CACHE_DIR / "train.npy").is_file()
    shutil.rmtree(tmp_path / "ddp")
