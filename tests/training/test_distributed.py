"""Data-parallel training (sdl.training.distributed, DDP in sdl.training.loop) on the CPU: gloo, 2 processes.

The equivalence test trains the same run twice: in this process with the global batch of 8,
and under ``torchrun`` with 2 processes of 4 images each (127.0.0.1, gloo), then compares the
losses and the weights. The SDL loss is a mean over the batch of per-image terms, the two
halves are the same size, and DDP averages the gradients, so the gradient is the full-batch
gradient; what would still differ is BatchNorm, whose statistics are per rank unless it is
synchronised, and PyTorch's SyncBatchNorm refuses CPU tensors. The test therefore uses timm's
``test_efficientnet_gn``: the project's test EfficientNet with GroupNorm (per image) in place of
BatchNorm, so the two runs compute the same function and differ only by float rounding (the
order of the sums). On CUDA, ``sdl.training.loop`` converts BatchNorm to SyncBatchNorm under DDP.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sdl.training import distributed
from sdl.training.loop import CHECKPOINT_FILE, EpochOrder, TrainConfig, TrainData, train
from tests.helpers.ddp import CONFIG, LOSS_RTOL, WORKER, ddp_data, free_port, max_weight_diff
from tests.helpers.gpu import needs_cuda
from tests.helpers.repo import REPO_ROOT

# Tolerances of the equivalence: float32 sums in another order, through 6 Adam steps.
WEIGHT_ATOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs on one torch thread (see tests/conftest.py)."""


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(("size", "batch", "world", "start_step"), [(24, 8, 2, 0), (24, 8, 2, 1), (30, 6, 3, 2), (16, 8, 4, 0)])
def test_epoch_order_shards_each_global_batch(size, batch, world, start_step):
    """The union over ranks of step s is the single-process batch of step s."""
    single = EpochOrder(size, seed=5)
    single.set_position(2, start_step * batch)
    reference = list(single)
    local = batch // world
    shards = []
    for rank in range(world):
        order = EpochOrder(size, seed=5, rank=rank, world_size=world)
        order.set_position(2, start_step * batch)
        shards.append(list(order))
        assert len(order) == len(shards[-1])
    for step in range(len(reference) // batch):
        union = sorted(i for shard in shards for i in shard[step * local : (step + 1) * local])
        assert union == sorted(reference[step * batch : (step + 1) * batch]), step
    assert sorted(i for shard in shards for i in shard) == sorted(reference)


def test_epoch_order_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        EpochOrder(10, seed=0, rank=2, world_size=2)


def test_resolve_nproc(monkeypatch):
    monkeypatch.setattr(distributed, "visible_gpus", lambda: 4)
    assert distributed.resolve_nproc("auto", "auto") == 4
    assert distributed.resolve_nproc("auto", "cpu") == 1
    assert distributed.resolve_nproc(2, "cpu") == 2  # gloo processes on the CPU
    assert distributed.resolve_nproc(1) == 1
    with pytest.raises(ValueError, match="only 4 GPUs"):
        distributed.resolve_nproc(8, "cuda")
    monkeypatch.setattr(distributed, "visible_gpus", lambda: 0)
    assert distributed.resolve_nproc("auto") == 1
    for bad in (0, -1, "two", True):
        with pytest.raises(ValueError, match="nproc_per_node"):
            distributed.resolve_nproc(bad)  # type: ignore[arg-type]


def test_train_config_nproc_per_node():
    from sdl.config.typed import ParamsError, from_mapping

    assert TrainConfig(nproc_per_node="auto").nproc_per_node == "auto"
    assert from_mapping(TrainConfig, {"nproc_per_node": "auto"}, "train.x").nproc_per_node == "auto"
    assert from_mapping(TrainConfig, {"nproc_per_node": 4}, "train.x").nproc_per_node == 4
    with pytest.raises(ParamsError, match="nproc_per_node"):
        from_mapping(TrainConfig, {"nproc_per_node": "every"}, "train.x")
    for bad in (0, "all"):
        with pytest.raises(ValueError, match="nproc_per_node"):
            TrainConfig(nproc_per_node=bad)  # type: ignore[arg-type]
    # how, not what: a checkpoint resumes under another number of processes
    base = TrainConfig().fingerprint()
    assert TrainConfig(nproc_per_node=8, persistent_workers=False, pin_memory=False, prefetch_factor=2).fingerprint() == base


def test_torchrun_command_and_env(monkeypatch):
    command = distributed.torchrun_command("stages.train", ["--dataset", "x"], 3)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in command and "--nproc_per_node=3" in command
    assert command[-4:] == ["-m", "stages.train", "--dataset", "x"]
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_torchrun() and distributed.env_context() == distributed.DistContext()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    context = distributed.env_context()
    assert distributed.launched_by_torchrun() and (context.rank, context.world_size, context.local_rank) == (3, 4, 1)
    assert context.enabled and not context.is_main
    assert distributed.rank_device(torch.device("cuda"), context) == torch.device("cuda", 1)
    assert distributed.rank_device(torch.device("cpu"), context) == torch.device("cpu")


def test_sync_batchnorm_conversion_keeps_checkpoint_keys():
    from sdl.models import create_model

    model = create_model("test_efficientnet", 2, 8, image_size=32)
    keys = list(model.state_dict())
    parameters = [id(p) for p in model.parameters()]
    converted = distributed.convert_sync_batchnorm(model)
    assert distributed.has_batchnorm(converted)
    assert all(not type(m).__name__.startswith("BatchNorm") for m in converted.modules())
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())
    assert list(converted.state_dict()) == keys  # saved models load into the plain network
    assert [id(p) for p in converted.parameters()] == parameters
    assert not distributed.has_batchnorm(create_model("test_efficientnet_gn", 2, 8, image_size=32))


def test_stage_relaunches_under_torchrun(monkeypatch, tmp_path):
    """nproc_per_node > 1: the stage runs itself under torchrun with the same arguments."""
    import yaml

    from stages import train as train_stage

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["train"]["embedded"].update({"nproc_per_node": 2, "device": "cpu"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(distributed, "relaunch", lambda module, argv, n: calls.append((module, argv, n)) or 7)
    argv = ["--dataset", "embedded", "--params", str(tmp_path / "params.yaml")]
    for name in ("manifest", "split", "wordvecs", "state", "model", "metrics", "history"):
        argv += [f"--{name}", str(tmp_path / name)]  # never read: the launcher returns first
    assert train_stage.main(argv) == 7
    assert calls == [("stages.train", argv, distributed.Launch(2))]
    # one process per machine on two machines: the stage launches too, with the rendezvous
    params["train"]["embedded"].update({"nproc_per_node": 1, "nnodes": 2, "rdzv_endpoint": "node0:29400"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    calls.clear()
    assert train_stage.main(argv) == 7
    assert calls == [("stages.train", argv, distributed.Launch(1, 2, "node0:29400", "4242", 1))]


def test_launch_from_params_and_environment():
    one = TrainConfig(nproc_per_node=2, device="cpu")
    assert distributed.launch_for(one, {}) == distributed.Launch(2)
    two = dataclasses.replace(one, nnodes=2)
    with pytest.raises(ValueError, match=r"rdzv_endpoint.*SDL_RDZV_ENDPOINT"):
        distributed.launch_for(two, {})
    env = {"SDL_RDZV_ENDPOINT": "10.0.0.1:29400", "SLURM_JOB_ID": "77", "SLURM_NODEID": "0"}
    assert distributed.launch_for(two, env) == distributed.Launch(2, 2, "10.0.0.1:29400", "77", 0)
    params_win = dataclasses.replace(two, rdzv_endpoint="head:1234", rdzv_id="run-a")
    assert distributed.launch_for(params_win, {**env, "SDL_NODE_RANK": "1"}) == distributed.Launch(2, 2, "head:1234", "run-a", 1)
    assert distributed.launch_for(params_win, {}).node_rank is None  # torchrun then guesses who hosts the store
    for bad in ({"SDL_RDZV_ENDPOINT": "no-port"}, {"SDL_RDZV_ENDPOINT": "h:1", "SDL_NODE_RANK": "2"}):
        with pytest.raises(ValueError, match="SDL_"):
            distributed.launch_for(two, bad)
    for bad_config in ({"nnodes": 0}, {"nnodes": True}, {"rdzv_endpoint": "host"}, {"rdzv_endpoint": "h:99999"}):
        with pytest.raises(ValueError, match=r"nnodes|rdzv_endpoint"):
            TrainConfig(**bad_config)  # type: ignore[arg-type]


def test_multi_node_torchrun_command():
    launch = distributed.Launch(4, 2, "node0:29400", "job-9", 1)
    command = distributed.torchrun_command("stages.train", ["--dataset", "x"], launch)
    assert "--standalone" not in command and command[-4:] == ["-m", "stages.train", "--dataset", "x"]
    assert {"--nnodes=2", "--nproc_per_node=4", "--rdzv_backend=c10d", "--rdzv_endpoint=node0:29400",
            "--rdzv_id=job-9", "--rdzv_conf=is_host=false"} <= set(command)
    host = distributed.torchrun_command("m", [], distributed.Launch(1, 2, "node0:29400", "j", 0))
    assert "--rdzv_conf=is_host=true" in host
    unknown = distributed.torchrun_command("m", [], distributed.Launch(1, 2, "node0:29400", "j", None))
    assert not any(arg.startswith("--rdzv_conf") for arg in unknown)


# --------------------------------------------------------------------------- DDP equivalence


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory):
    """A 1-process reference run, and the 2-process runs: from scratch, and resumed mid-epoch
    from a checkpoint that the 1-process run wrote."""
    import pickle

    import sdl.training.loop as train_module

    root = tmp_path_factory.mktemp("ddp")
    data = ddp_data(root / "images")

    written: dict[tuple[int, int], Path] = {}
    save = train_module.save_checkpoint

    def keep_copies(path: Path, state: dict) -> None:
        save(path, state)
        position = (state["epoch"], state["step_in_epoch"])
        written[position] = root / f"saved-{position[0]}-{position[1]}.pt"
        shutil.copy(path, written[position])

    patch = pytest.MonkeyPatch()
    patch.setattr(train_module, "save_checkpoint", keep_copies)
    try:
        reference = train(CONFIG, data, root / "single", progress=False)
    finally:
        patch.undo()
    mid_epoch = written[(1, 1)]  # epoch 2, after its first step
    (root / "resumed").mkdir()
    shutil.copy(mid_epoch, root / "resumed" / CHECKPOINT_FILE)

    spec = {
        "config": CONFIG, "data": data, "runs": {"fresh": str(root / "ddp"), "resumed": str(root / "resumed")},
        "callbacks": str(root / "callbacks.txt"), "results": str(root / "results-{rank}.json"),
    }
    (root / "spec.pkl").write_bytes(pickle.dumps(spec))
    (root / "worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(root / "worker.py"), str(root / "spec.pkl"),
    ]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    results = [json.loads((root / f"results-{rank}.json").read_text()) for rank in range(2)]
    return root, reference, results, done.stderr


def test_ddp_matches_one_process_with_the_global_batch(ddp_runs):
    root, reference, results, _ = ddp_runs
    fresh = results[0]["fresh"]
    assert fresh["resumed_from"] is None
    single_loss = [h["train_loss"] for h in reference.history]
    ddp_loss = [h["train_loss"] for h in fresh["history"]]
    assert np.allclose(ddp_loss, single_loss, rtol=LOSS_RTOL, atol=0), (ddp_loss, single_loss)
    diff = max_weight_diff(root / "ddp", root / "single")
    print(f"\nDDP (2 x 4 images) vs 1 process (8 images), 2 epochs x 3 steps: "
          f"max |loss diff| {max(abs(a - b) for a, b in zip(ddp_loss, single_loss, strict=True)):.2e}, max |weight diff| {diff:.2e}")
    assert diff < WEIGHT_ATOL
    state = torch.load(root / "ddp" / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (2, 0)
    assert (root / "ddp" / "best" / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def two_node_run(ddp_runs):
    """The reference run's settings on 2 "machines" x 1 process: two torchrun launchers, node
    ranks 0 and 1, as sdl.training.distributed starts them, meeting at a c10d rendezvous on
    127.0.0.1 (gloo)."""
    import pickle

    root, reference, _, _ = ddp_runs
    spec = {
        "config": CONFIG, "data": ddp_data(root / "node-images"), "runs": {"fresh": str(root / "nodes")},
        "callbacks": str(root / "node-callbacks.txt"), "results": str(root / "node-results-{rank}.json"),
    }
    (root / "node-spec.pkl").write_bytes(pickle.dumps(spec))
    (root / "ddp_worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(root)]), "OMP_NUM_THREADS": "1"}
    endpoint = f"127.0.0.1:{free_port()}"
    launchers = []
    for node_rank in (0, 1):
        launch = distributed.Launch(nproc_per_node=1, nnodes=2, rdzv_endpoint=endpoint, rdzv_id="two-nodes",
                                    node_rank=node_rank)
        command = distributed.torchrun_command("ddp_worker", [str(root / "node-spec.pkl")], launch)
        launchers.append(subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
    outputs = []
    try:
        for launcher in launchers:
            outputs.append(launcher.communicate(timeout=300))  # waits for the launcher to exit
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                launcher.kill()
    for launcher, (out, err) in zip(launchers, outputs, strict=True):
        assert launcher.returncode == 0, out[-3000:] + err[-5000:]
    results = [json.loads((root / f"node-results-{rank}.json").read_text()) for rank in range(2)]
    return root, reference, results


def test_two_nodes_match_one_process_with_the_global_batch(two_node_run):
    """2 machines x 1 process (4 images each) = 1 process with the global batch of 8."""
    root, reference, results = two_node_run
    fresh = results[0]["fresh"]
    single_loss = [h["train_loss"] for h in reference.history]
    node_loss = [h["train_loss"] for h in fresh["history"]]
    assert np.allclose(node_loss, single_loss, rtol=LOSS_RTOL, atol=0), (node_loss, single_loss)
    diff = max_weight_diff(root / "nodes", root / "single")
    print(f"\n2 nodes x 1 process (c10d on 127.0.0.1, gloo) vs 1 process (8 images), 2 epochs x 3 steps: "
          f"max |loss diff| {max(abs(a - b) for a, b in zip(node_loss, single_loss, strict=True)):.2e}, max |weight diff| {diff:.2e}")
    assert diff < WEIGHT_ATOL
    assert results[1] == results[0]
    lines = [line for line in (root / "node-callbacks.txt").read_text().split("\n") if line]
    assert lines == ["fresh 1 rank0", "fresh 2 rank0"]  # one rank of the two machines tracks the run


def test_ddp_resumes_mid_epoch_from_a_one_process_checkpoint(ddp_runs):
    root, reference, results, _ = ddp_runs
    resumed = results[0]["resumed"]
    assert resumed["resumed_from"] == 1
    assert len(resumed["history"]) == 2  # epoch 1 from the checkpoint, epoch 2 trained here
    # (its epoch-2 train_loss averages the 2 steps run after the resume, as in one process)
    assert resumed["history"][1]["lr"] == reference.history[1]["lr"]
    diff = max_weight_diff(root / "resumed", root / "single")
    print(f"\nDDP resumed mid-epoch from the 1-process checkpoint vs 1 process: max |weight diff| {diff:.2e}")
    assert diff < WEIGHT_ATOL


def test_only_rank_0_validates_and_calls_back(ddp_runs):
    root, _, results, _ = ddp_runs
    lines = (root / "callbacks.txt").read_text().split("\n")
    assert [line for line in lines if line] == ["fresh 1 rank0", "fresh 2 rank0", "resumed 2 rank0"]
    assert results[1] == results[0]  # rank 1 returns rank 0's history and best epoch


def test_persistent_loader_workers_train_the_same_weights(ddp_runs, tmp_path):
    """2 persistent workers (the epoch travels with each index) = the main process, bit for bit."""
    root, reference, _, _ = ddp_runs
    data = ddp_data(tmp_path / "images")  # the same images, drawn with the same seeds
    config = dataclasses.replace(CONFIG, num_workers=2, persistent_workers=True, checkpoint_every_steps=0)
    result = train(config, data, tmp_path / "workers", progress=False)
    assert [h["train_loss"] for h in result.history] == [h["train_loss"] for h in reference.history]
    assert max_weight_diff(tmp_path / "workers", root / "single") == 0.0


def test_ddp_rejects_a_batch_the_ranks_cannot_split(monkeypatch, tmp_path):
    class FakeGroup:
        def __enter__(self):
            return distributed.DistContext(0, 3, 0)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(distributed, "process_group", lambda device: FakeGroup())
    data = TrainData([Path("a"), Path("b")], np.zeros((2, 1)), np.zeros((1, 4)), [], np.zeros((0, 1)),
                     np.zeros((1, 4)), np.arange(1), np.arange(0))
    with pytest.raises(ValueError, match="not divisible"):
        train(dataclasses.replace(CONFIG, batch_size=8), data, tmp_path, progress=False)


# --------------------------------------------------------------------------- the stage


@pytest.mark.slow
def test_train_stage_under_torchrun_on_the_cpu(tmp_path_factory, tiny_params):
    """`dvc repro train@embedded` with train.embedded.nproc_per_node = 2: the stage command is
    unchanged and re-launches itself under torchrun (gloo); rank 0 alone writes the model, the
    metrics and one MLflow run."""
    import copy

    from tests.helpers.repo import copy_repository, run_dvc

    params = copy.deepcopy(tiny_params)
    params["train"]["embedded"].update({"nproc_per_node": 2, "device": "cpu"})
    root = copy_repository(tmp_path_factory.mktemp("repo"), params)
    result = run_dvc(root, "repro", "train@embedded")
    output = result.stdout + result.stderr
    assert "Running stage 'train@embedded'" in output
    assert "launching 2 processes" in output
    assert "BatchNorm statistics are per rank" in output  # tf_efficientnet_lite0 on the CPU
    assert {"model.safetensors", "model.json", "run.json"} <= set(os.listdir(root / "models/embedded"))
    metrics = json.loads((root / "metrics/embedded/train.json").read_text())["train"]
    assert metrics["epochs"] == 1 and np.isfinite(metrics["final_train_loss"])
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="attributes.run_name LIKE '%train%'")
    assert len(runs) == 1 and runs["status"].tolist() == ["FINISHED"]


# --------------------------------------------------------------------------- CUDA (device machine only)


@pytest.mark.gpu
@needs_cuda
def test_train_loop_on_cuda_runs_and_resumes(tmp_path):
    """The CUDA path of sdl.training.loop: bf16/fp16 autocast, fused Adam, pinned persistent workers,
    side-stream copies, the asynchronous loss read-out (progress bar on), checkpoint + resume."""
    import sdl.training.loop as train_module

    data = ddp_data(tmp_path / "images")
    config = dataclasses.replace(CONFIG, backbone="test_efficientnet", device="cuda", num_workers=2, epochs=2)
    reference = train(config, data, tmp_path / "full", progress=True)
    assert all(np.isfinite(h["train_loss"]) for h in reference.history)
    written: dict[tuple[int, int], Path] = {}
    save = train_module.save_checkpoint

    def keep(path: Path, state: dict) -> None:
        save(path, state)
        written[(state["epoch"], state["step_in_epoch"])] = path.with_name(f"saved-{state['epoch']}-{state['step_in_epoch']}.pt")
        shutil.copy(path, written[(state["epoch"], state["step_in_epoch"])])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "save_checkpoint", keep)
        train(config, data, tmp_path / "again", progress=False)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(written[(1, 1)], resumed_dir / CHECKPOINT_FILE)
    resumed = train(config, data, resumed_dir, progress=False)
    assert resumed.resumed_from == 1
    # GPU kernels (cuDNN autotuning, bf16) need not repeat bit for bit: close, not equal
    assert max_weight_diff(resumed_dir, tmp_path / "full") < 1e-2
