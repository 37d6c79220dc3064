"""nvJPEG on the GPU against the CPU path: decode speed and pixel differences (GPU only).

    python benchmarks/gpu_decode_check.py [--images 2048] [--batch-size 192] [--json out.json]

The CPU data paths decode with PIL (libjpeg-turbo) and resize with PIL's bilinear filter
(``sdl.data.dataset.square_resize``). This measures what a GPU decode would change, with
``torchvision.io.decode_jpeg(list of encoded tensors, device="cuda")`` (batched nvJPEG) on the
generated photo-like JPEGs of ``bench_common.make_jpeg_cache`` (short side 256, quality 90):

- pixels, nvJPEG vs PIL at the file's size: largest difference, mean, share of values > 1 and
  > 2 apart (the JPEG decoder tolerance: IDCT and chroma upsampling differ between decoders);
  the same for torchvision's CPU decoder (``decode_jpeg`` on the CPU) vs PIL;
- pixels after the resize to ``--size`` (``torch.nn.functional.interpolate``, bilinear,
  antialias, on the GPU) vs PIL's decode + ``square_resize``;
- speed: images/s of batched nvJPEG decode, of decode + resize + normalisation (the inputs a
  step takes), and of PIL decode + resize on one CPU core for scale;
- that ``sdl.data.tensor_augment.Normalizer`` gives on CUDA the numbers it gives on the CPU
  (the decoded cache's batches are normalised on the GPU in training).

Without CUDA it prints that it needs a GPU and returns ``{"skipped": ...}`` (torchvision's C
ops, hence ``decode_jpeg``, do not load beside the project machines' CPU torch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common
import torch

from sdl.data.dataset import square_resize
from sdl.data.images import load_rgb
from sdl.data.tensor_augment import Normalizer

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def pixel_difference(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Largest and mean absolute difference of two uint8 arrays, and the shares > 1 and > 2 apart."""
    if reference.shape != other.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {other.shape}")
    diff = np.abs(reference.astype(np.int16) - other.astype(np.int16))
    return {"max": int(diff.max()), "mean": float(diff.mean()), "share_over_1": float((diff > 1).mean()),
            "share_over_2": float((diff > 2).mean())}


def pooled(differences: list[dict[str, float]]) -> dict[str, float]:
    """Over several images: the largest max, the mean of the means and shares."""
    return {"max": max(d["max"] for d in differences),
            **{k: float(np.mean([d[k] for d in differences])) for k in ("mean", "share_over_1", "share_over_2")}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=192)
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--size", type=int, default=224, help="training size")
    parser.add_argument("--compare", type=int, default=64, help="images compared pixel by pixel")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="default: $OUT/gpu_decode_check.json when $OUT is set")
    return parser.parse_args(argv)


def _timed(function: Any, repeats: int) -> float:
    """The fastest of ``repeats`` runs, in seconds, the GPU synchronised around each."""
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        begin = time.perf_counter()
        function()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - begin)
    return best


def check(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from sdl._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from torchvision.io import ImageReadMode, decode_jpeg

    paths = bench_common.make_jpeg_cache(folder, args.images, args.short_side)
    encoded = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    device = torch.device("cuda")
    resize = torch.nn.functional.interpolate

    def gpu_decode(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        return decode_jpeg(batch, mode=ImageReadMode.RGB, device=device)

    def to_training_size(images: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([resize(im.unsqueeze(0).float(), size=(args.size, args.size), mode="bilinear",
                                 antialias=True, align_corners=False) for im in images]).round_().clamp_(0, 255)

    decoded, cpu_decoded, resized = [], [], []
    for path, data in zip(paths[: args.compare], encoded[: args.compare], strict=True):
        pil = np.asarray(load_rgb(path))
        gpu = gpu_decode([data])[0].permute(1, 2, 0).cpu().numpy()
        decoded.append(pixel_difference(pil, gpu))
        cpu_decoded.append(pixel_difference(pil, decode_jpeg(data, mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()))
        pil_small = np.asarray(square_resize(load_rgb(path), args.size))
        gpu_small = to_training_size(gpu_decode([data]))[0].to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        resized.append(pixel_difference(pil_small, gpu_small))

    normalizer_gpu, normalizer_cpu = Normalizer(IMAGENET_MEAN, IMAGENET_STD, device), Normalizer(IMAGENET_MEAN, IMAGENET_STD)
    sample = torch.randint(0, 256, (8, 3, args.size, args.size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    normalise_equal = torch.equal(normalizer_gpu(sample.to(device)).cpu(), normalizer_cpu(sample))

    batches = [encoded[i : i + args.batch_size] for i in range(0, len(encoded) - args.batch_size + 1, args.batch_size)]
    gpu_decode(batches[0])  # warm-up: nvJPEG handles, kernels
    decode_s = _timed(lambda: [gpu_decode(b) for b in batches], args.repeats)
    full_s = _timed(lambda: [normalizer_gpu(to_training_size(gpu_decode(b))) for b in batches], args.repeats)
    count = sum(len(b) for b in batches)
    begin = time.process_time()
    for path in paths[:200]:
        square_resize(load_rgb(path), args.size)
    pil_rate = 200 / (time.process_time() - begin)
    return {
        "nvjpeg_vs_pil": pooled(decoded), "torchvision_cpu_vs_pil": pooled(cpu_decoded),
        "nvjpeg_resized_vs_pil_resized": pooled(resized), "normalizer_cuda_equals_cpu": normalise_equal,
        "nvjpeg_decode_images_per_second": count / decode_s,
        "nvjpeg_decode_resize_normalise_images_per_second": count / full_s,
        "pil_decode_resize_images_per_cpu_second": pil_rate,
        "images": len(paths), "mean_kib": float(np.mean([p.stat().st_size for p in paths])) / 1024,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    print(bench_common.header("nvJPEG decode on the GPU vs PIL (benchmarks/gpu_decode_check.py)"))
    if not torch.cuda.is_available():
        print("needs a CUDA GPU (torchvision.io.decode_jpeg(device='cuda')): skipped")
        return {"skipped": "no CUDA device"}
    with tempfile.TemporaryDirectory() as tmp:
        result = check(args, Path(tmp))
    rows = [[name, r["max"], f"{r['mean']:.3f}", f"{r['share_over_1']:.4f}", f"{r['share_over_2']:.4f}"]
            for name, r in result.items() if isinstance(r, dict)]
    print(bench_common.markdown_table(["pixels compared", "max |diff|", "mean |diff|", "share > 1", "share > 2"], rows))
    print(f"\n- nvJPEG batched decode: {result['nvjpeg_decode_images_per_second']:.0f} images/s "
          f"(batch {args.batch_size}, {result['images']} JPEGs, mean {result['mean_kib']:.1f} KiB)")
    print(f"- nvJPEG decode + resize to {args.size} + normalise: "
          f"{result['nvjpeg_decode_resize_normalise_images_per_second']:.0f} images/s")
    print(f"- PIL decode + resize on one CPU core: {result['pil_decode_resize_images_per_cpu_second']:.0f} images/s")
    print(f"- Normalizer on CUDA equals the CPU's: {result['normalizer_cuda_equals_cpu']}")
    payload = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "args": vars(args), **result}
    target = args.json or (str(Path(os.environ["OUT"]) / "gpu_decode_check.json") if os.environ.get("OUT") else None)
    if target:
        Path(target).write_text(json.dumps(payload, indent=2, default=str))
        print(f"\nwrote {target}")
    return payload


if __name__ == "__main__":
    main()
