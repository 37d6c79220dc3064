"""The small data-parallel runs the DDP tests compare (tests/training/test_distributed.py):
the tagged-squares data, the run's settings (a GroupNorm backbone, so that ranks compute the
function one process does), the rank script torchrun starts, and weight comparisons."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import numpy as np
import torch

from sdl.config.training import AugmentConfig, TrainConfig
from sdl.training.checkpoints import CHECKPOINT_FILE
from sdl.training.state import TrainData
from tests.helpers.images import make_tagged_images

SEEN, UNSEEN = ["red", "green", "blue", "yellow"], ["cyan", "magenta"]


def multi_hot(tag_lists: list[list[str]], vocabulary: list[str]) -> np.ndarray:
    out = np.zeros((len(tag_lists), len(vocabulary)), dtype=np.float32)
    for i, tags in enumerate(tag_lists):
        out[i, [vocabulary.index(t) for t in tags]] = 1.0
    return out


def ddp_data(root: Path) -> TrainData:
    train_paths, train_tags = make_tagged_images(root / "train", 24, SEEN, seed=0)
    val_paths, val_tags = make_tagged_images(root / "val", 8, SEEN + UNSEEN, seed=1)
    vectors = np.random.default_rng(0).normal(size=(6, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return TrainData(
        train_paths=train_paths, train_targets=multi_hot(train_tags, SEEN), seen_vectors=vectors[:4],
        val_paths=val_paths, val_targets=multi_hot(val_tags, SEEN + UNSEEN), all_vectors=vectors,
        seen_index=np.arange(4), unseen_index=np.arange(4, 6),
    )


# What DDP may change: float rounding of the all-reduce (loss) and what Adam makes of it (weights).
LOSS_RTOL = 1e-5

CONFIG = TrainConfig(
    backbone="test_efficientnet_gn", pretrained=False, num_rows=2, image_size=32, epochs=2, batch_size=8,
    lr=3e-3, augment=AugmentConfig(hflip=True, cutout_p=0.5), best_metric="gzsl.f1@1",
    checkpoint_every_steps=1, device="cpu",
    # The tolerances of the DDP tests were set on this loss form. The default, per_positive, has
    # ~|N| times larger gradients, so Adam takes full-size steps on weights whose gradient is float
    # noise: one element of 2 x 4 vs 8 images then ends 5e-4 apart (the rest within 2e-5).
    loss_kwargs={"reg_lambda": 0.3, "variant": "per_pair"},
)

WORKER = textwrap.dedent('''
    """One rank of the DDP equivalence test (started by torchrun)."""
    import json, os, pickle, sys
    import torch
    torch.set_num_threads(1)
    from sdl.training.loop import train

    spec = pickle.loads(open(sys.argv[1], "rb").read())
    rank = int(os.environ["RANK"])
    results = {}
    for name, out_dir in spec["runs"].items():
        def on_epoch_end(epoch, metrics, name=name):
            with open(spec["callbacks"], "a") as handle:
                handle.write(f"{name} {epoch} rank{rank}\\n")
        result = train(spec["config"], spec["data"], out_dir, progress=False, on_epoch_end=on_epoch_end)
        results[name] = {"history": result.history, "resumed_from": result.resumed_from,
                         "best_epoch": result.best_epoch}
    with open(spec["results"].format(rank=rank), "w") as handle:
        json.dump(results, handle)
''')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=True)["model"]


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if wa[k].is_floating_point())
