"""An Epsilon training step against an SDL step on the same batch, side by side in one run.

Both models come from ``sdl.models.create_model`` (random weights: the cost is the same as
pretrained) and train with the same loss (``sdl.losses`` SDL loss, paper form), Adam over the
trainable parameters (``sdl.training.setup.parameter_groups``), on the same images, targets and
tag vectors. Measured, interleaved repeat by repeat so that load on the shared machine hits
every variant alike (minimum and median of the repeats):

- ``sdl``: SDL's step, the whole backbone trains (forward + backward + Adam).
- ``epsilon``: Epsilon recomputing the frozen backbone's tokens (no_grad) every step, then the
  head's forward + backward + Adam: what a run with augmentation does.
- ``epsilon_cached``: Epsilon's head step on tokens computed once (``train.<d>.token_cache``).
- ``backbone``: Epsilon's frozen backbone forward alone (the part a cache saves).

Settings: ``embedded`` (the embedded defaults: EfficientNet-Lite0 at 128 px, batch 32, M = 2,
d = 50, 7 seen tags, Epsilon at D = 128 over lite0's 4 x 4 x 1280 map) and ``paper`` (SDL's
TResNet-M vs Epsilon's ViT-B/16 at 224 px, M = 7 / 8, d = 300, NUS-WIDE's 925 seen tags, at a
CPU-sized batch of 8 instead of 192 / 96).

    .venv/bin/python benchmarks/bench_epsilon.py --setting embedded --repeats 10
    .venv/bin/python benchmarks/bench_epsilon.py --setting paper --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import bench_common  # noqa: F401  (puts the repository on sys.path)
import torch
from bench_common import header, markdown_table, random_targets

from sdl.config.epsilon import EpsilonOptions
from sdl.losses import SDLLoss
from sdl.models import create_model
from sdl.training.setup import parameter_groups

SETTINGS: dict[str, dict[str, Any]] = {
    "embedded": {
        "sdl_backbone": "tf_efficientnet_lite0", "epsilon_backbone": "tf_efficientnet_lite0", "image_size": 128,
        "batch_size": 32, "sdl_rows": 2, "epsilon_rows": 2, "dim": 50, "tags": 7, "max_positives": 3,
        "options": {"token_dim": 128, "project_tokens": True, "adapter_layer_norm": True, "encoder_heads": 4},
    },
    "paper": {
        "sdl_backbone": "tresnet_m", "epsilon_backbone": "vit_base_patch16_224", "image_size": 224,
        "batch_size": 8, "sdl_rows": 7, "epsilon_rows": 8, "dim": 300, "tags": 925, "max_positives": 10,
        "options": {},
    },
    "tiny": {  # the smoke test's
        "sdl_backbone": "test_efficientnet", "epsilon_backbone": "test_vit", "image_size": 32,
        "batch_size": 4, "sdl_rows": 2, "epsilon_rows": 2, "dim": 8, "tags": 5, "max_positives": 2,
        "options": {"encoder_heads": 2, "backbone_kwargs": {"img_size": 32}},
    },
}


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_step(model: torch.nn.Module, inputs: torch.Tensor, forward: Callable[[torch.Tensor], torch.Tensor],
              vectors: torch.Tensor, targets: torch.Tensor) -> tuple[Callable[[], None], torch.optim.Optimizer]:
    """One training step of ``model`` on ``inputs`` (images or tokens), as the loop does it."""
    optimizer = torch.optim.Adam(parameter_groups(model, 4e-3), lr=1e-4)
    loss_fn = SDLLoss(reg_lambda=0.3, variant="paper")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(forward(inputs), vectors, targets).backward()
        optimizer.step()

    return step, optimizer


def optimizer_mib(optimizer: torch.optim.Optimizer) -> float:
    return sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
               if torch.is_tensor(t)) / 2**20


def measure(setting: dict[str, Any], repeats: int, warmup: int) -> dict[str, Any]:
    torch.manual_seed(0)
    size, batch = setting["image_size"], setting["batch_size"]
    images = torch.randn(batch, 3, size, size)
    vectors = torch.nn.functional.normalize(torch.randn(setting["tags"], setting["dim"]), dim=1)
    targets = torch.from_numpy(random_targets(batch, setting["tags"], setting["max_positives"]))
    sdl = create_model(setting["sdl_backbone"], setting["sdl_rows"], setting["dim"], image_size=size).train()
    epsilon = create_model(setting["epsilon_backbone"], setting["epsilon_rows"], setting["dim"], family="epsilon",
                           image_size=size, options=EpsilonOptions(**setting["options"])).train()
    tokens = epsilon.tokens(images)
    steps: dict[str, Callable[[], None]] = {}
    optimizers: dict[str, torch.optim.Optimizer] = {}
    steps["sdl"], optimizers["sdl"] = make_step(sdl, images, sdl, vectors, targets)
    steps["epsilon"], optimizers["epsilon"] = make_step(epsilon, images, epsilon, vectors, targets)
    steps["epsilon_cached"], optimizers["epsilon_cached"] = make_step(epsilon, tokens, epsilon.head_forward, vectors, targets)
    steps["backbone"] = lambda: epsilon.tokens(images)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for repeat in range(warmup + repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            if repeat >= warmup:
                times[name].append(time.perf_counter() - started)
    results = {name: {"min_ms": 1e3 * min(t), "median_ms": 1e3 * statistics.median(t)} for name, t in times.items()}
    return {
        "results": results, "tokens": list(tokens.shape[1:]),
        "trainable": {"sdl": trainable(sdl), "epsilon": trainable(epsilon)},
        "frozen": sum(p.numel() for p in epsilon.backbone.parameters()),
        "optimizer_mib": {"sdl": optimizer_mib(optimizers["sdl"]), "epsilon": optimizer_mib(optimizers["epsilon"])},
    }


def report(name: str, setting: dict[str, Any], out: dict[str, Any]) -> None:
    r = out["results"]
    rows = [[k, f"{v['min_ms']:.1f}", f"{v['median_ms']:.1f}", f"{setting['batch_size'] / v['min_ms'] * 1e3:.0f}"]
            for k, v in r.items()]
    print(f"\n## {name}: SDL {setting['sdl_backbone']} vs Epsilon {setting['epsilon_backbone']}, "
          f"{setting['image_size']} px, batch {setting['batch_size']}, tokens {out['tokens']}")
    print(markdown_table(["step", "min (ms)", "median (ms)", "images/s (min)"], rows))
    print(f"SDL step / Epsilon step: {r['sdl']['min_ms'] / r['epsilon']['min_ms']:.2f}x; "
          f"SDL / Epsilon on cached tokens: {r['sdl']['min_ms'] / r['epsilon_cached']['min_ms']:.1f}x; "
          f"Epsilon recomputing / cached: {r['epsilon']['min_ms'] / r['epsilon_cached']['min_ms']:.1f}x "
          f"(backbone forward {r['backbone']['min_ms'] / r['epsilon']['min_ms']:.0%} of the Epsilon step)")
    print(f"trainable parameters: SDL {out['trainable']['sdl']:,}, Epsilon {out['trainable']['epsilon']:,} "
          f"(+ {out['frozen']:,} frozen); Adam state: SDL {out['optimizer_mib']['sdl']:.1f} MiB, "
          f"Epsilon {out['optimizer_mib']['epsilon']:.1f} MiB")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), nargs="+", default=["embedded"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(header("Epsilon step vs SDL step (benchmarks/bench_epsilon.py)"))
    outputs = {}
    for name in args.setting:
        outputs[name] = measure(SETTINGS[name], args.repeats, args.warmup)
        report(name, SETTINGS[name], outputs[name])
    return outputs


if __name__ == "__main__":
    main(sys.argv[1:])
