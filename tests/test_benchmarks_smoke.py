"""Smoke runs of the benchmark scripts (benchmarks/) at tiny sizes: they run and agree."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from tests.helpers.gpu import needs_cuda

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs on one torch thread (see tests/conftest.py)."""


def test_project_cost(capsys):
    rows = _load("project_cost").main(["--rate", "1000", "--usd-per-gpu-hour", "2", "--efficiency", "0.5"])
    nus = [r for r in rows if r["dataset"] == "NUS-WIDE"]
    assert [r["gpus"] for r in nus] == [1, 8]
    assert nus[0]["hours"] == pytest.approx(150_000 * 7 / 1000 / 3600)
    assert nus[1]["hours"] == pytest.approx(nus[0]["hours"] / 4)  # 8 GPUs at 50 % efficiency
    assert nus[1]["usd"] == pytest.approx(nus[1]["hours"] * 8 * 2)
    assert "| Open Images v4 | 9,011,219 | 7 | 8 |" in capsys.readouterr().out
    default = _load("project_cost").main([])
    assert default[0]["images_per_second"] == 3500.0
    assert "STATED H200 figure, not measured" in capsys.readouterr().out


def test_bench_evaluation_agrees_with_the_released_path():
    out = _load("bench_evaluation").main(["--images", "400", "--tags", "30", "--unseen", "5", "--repeats", "1",
                                          "--batch-size", "64", "--ks", "3"])
    assert out["score_diff"] < 1e-4
    assert out["ours"]["scores"] > 0 and out["released"]["total"] > 0


def test_bench_loader_runs(capsys):
    """Both data paths side by side (the JPEG path and the decoded uint8 cache), per core and per worker."""
    out = _load("bench_loader").main(["--workers", "0", "1", "--images", "16", "--batch-size", "8",
                                      "--cache-images", "16", "--skip-randaugment-off", "--embedded", "/nonexistent"])
    assert out["per_worker"] > 0
    paths = {name.split(":")[0] for name in out["per_core"]}
    assert paths == {"jpeg", "uint8_cache"} and all(v["cpu"] > 0 and v["wall"] > 0 for v in out["per_core"].values())
    assert all("RandAugment" in name for name in out["per_core"])  # --skip-randaugment-off: the paper's only
    assert set(out["workers_needed"]) == set(out["per_core"]) and out["facts"]["build_images_per_second"] > 0
    printed = capsys.readouterr().out
    assert "workers needed (per GPU)" in printed and "STATED" in printed and "img / CPU-s" in printed


def test_bench_pipeline_stage_times():
    module = _load("bench_pipeline")
    lines = [(0.5, "Running stage 'download@embedded':"), (1.0, "> python -m stages.download"),
             (3.0, "Running stage 'split@embedded':"), (4.0, "Updating lock file 'dvc.lock'"),
             (7.5, "Running stage 'train@embedded':")]
    assert module.stage_times(lines, 10.0) == [("download@embedded", 2.5), ("split@embedded", 4.5), ("train@embedded", 2.5)]


def test_gpu_train_bench_on_the_cpu_with_a_tiny_backbone(tmp_path):
    """The GPU script's CPU path, every measurement, with timm's test EfficientNet (seconds)."""
    out = tmp_path / "bench.json"
    payload = _load("gpu_train_bench").main([
        "--device", "cpu", "--steps", "1", "--warmup", "1", "--batch-size", "4", "--image-size", "64",
        "--backbone", "test_efficientnet", "--workers", "1", "--json", str(out),
    ])
    assert set(payload["results"]) == {"synthetic", "real", "real_cache"}
    assert set(payload["results"]["real"]) == {"loader", "sdl", "bce", "forward"}
    assert set(payload["results"]["real_cache"]) == {"loader", "sdl"}  # the decoded uint8 cache
    assert set(payload["results"]["synthetic"]) == {"sdl", "sdl_sized", "bce", "forward"}  # no Epsilon on the CPU
    assert {"sdl_over_bce_synthetic", "sdl_over_bce_real", "real_over_synthetic_sdl",
            "real_cache_over_synthetic_sdl"} <= set(payload["ratios"])
    assert payload["cache"]["decoded_images_per_second"] > 0
    assert json.loads(out.read_text())["results"]["synthetic"]["sdl"]["images_per_second"] > 0


@pytest.mark.slow
def test_gpu_train_bench_cpu_smoke_as_documented(tmp_path):
    """The documented smoke run: TResNet-M, `--device cpu --steps 2 --batch-size 4 --image-size 64` (~1.5 min)."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_train_bench.py"), "--device", "cpu", "--steps", "2", "--batch-size", "4",
         "--image-size", "64", "--json", str(tmp_path / "bench.json")],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SDL / BCE (synthetic)" in done.stdout and "real / synthetic (sdl)" in done.stdout
    assert "real_cache / synthetic (sdl)" in done.stdout
    assert json.loads((tmp_path / "bench.json").read_text())["args"]["backbone"] == "tresnet_m"


@pytest.mark.gpu
@needs_cuda
def test_gpu_train_bench_on_cuda(tmp_path):
    payload = _load("gpu_train_bench").main([
        "--device", "cuda", "--steps", "2", "--warmup", "1", "--batch-size", "8", "--image-size", "64",
        "--cache-images", "64", "--json", str(tmp_path / "bench.json"),
    ])
    assert payload["results"]["synthetic"]["sdl"]["images_per_second"] > 0


def test_bench_epsilon_times_every_step_on_the_same_batch(capsys):
    out = _load("bench_epsilon").main(["--setting", "tiny", "--repeats", "1", "--warmup", "0", "--threads", "1"])
    results = out["tiny"]["results"]
    assert set(results) == {"sdl", "epsilon", "epsilon_cached", "backbone"}
    assert all(r["min_ms"] > 0 for r in results.values())
    assert out["tiny"]["trainable"]["epsilon"] > 0 and out["tiny"]["frozen"] > 0
    assert "SDL step / Epsilon step" in capsys.readouterr().out


def test_gpu_decode_check_helpers_and_cpu_skip(capsys):
    module = _load("gpu_decode_check")
    a = np.array([[0, 10, 20, 255]], dtype=np.uint8)
    b = np.array([[1, 10, 23, 250]], dtype=np.uint8)
    assert module.pixel_difference(a, b) == {"max": 5, "mean": 9 / 4, "share_over_1": 0.5, "share_over_2": 0.5}
    assert module.pooled([module.pixel_difference(a, b), module.pixel_difference(a, a)])["max"] == 5
    with pytest.raises(ValueError, match="shapes differ"):
        module.pixel_difference(a, b[:, :2])
    if not torch.cuda.is_available():
        assert module.main(["--images", "8"]) == {"skipped": "no CUDA device"}
        assert "needs a CUDA GPU" in capsys.readouterr().out


@pytest.mark.gpu
@needs_cuda
def test_gpu_decode_check_on_cuda(tmp_path):
    out = _load("gpu_decode_check").main(["--images", "64", "--batch-size", "16", "--compare", "8", "--repeats", "1",
                                          "--json", str(tmp_path / "decode.json")])
    assert out["normalizer_cuda_equals_cpu"] is True
    assert out["nvjpeg_vs_pil"]["mean"] < 2.0 and out["nvjpeg_decode_images_per_second"] > 0
