"""Data-parallel training with ``torchrun`` (DDP): process group, rank roles, the re-launch,
on one machine or several.

The training stage stays ``python -m stages.train ...``. With ``train.<dataset>.nproc_per_node``
above 1 (or ``auto``: the number of visible GPUs), the stage starts itself again under
``python -m torch.distributed.run --standalone --nproc_per_node N -m stages.train ...`` (the
module form of ``torchrun``) and waits for it; inside, rank, world size and local rank come
from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``).

Several machines (``train.<dataset>.nnodes`` > 1): the same stage command runs on every
machine, and each starts ``torchrun --nnodes M --nproc_per_node N --rdzv_backend c10d
--rdzv_endpoint host:port --rdzv_id ID`` (:class:`Launch`, :func:`launch_for`). The endpoint
is a free port on the first machine (``train.<d>.rdzv_endpoint``, or ``$SDL_RDZV_ENDPOINT``
where only the job knows the host, as under Slurm); its torchrun hosts the rendezvous store
(``is_host`` from the machine's rank, ``$SDL_NODE_RANK`` or ``$SLURM_NODEID``, where given:
c10d assigns the ranks itself and takes no node rank). Global rank 0, the process that writes
the model, metrics and checkpoints, is whichever the rendezvous makes it, so the repository
(``--state``, ``models/``, ``metrics/``, ``mlflow/``) must be on a filesystem the machines
share. A torchrun started by hand (or by Slurm) around the stage command works as well: the
stage then only trains (``launched_by_torchrun``).

Roles: every rank trains on its shard of each global batch (``sdl.training.loop.EpochOrder``); rank 0
alone validates, picks the best model, writes checkpoints and logs to MLflow, while the other
ranks wait for it at the end of each epoch (a broadcast of rank 0's epoch record, which also
carries an error if rank 0 failed, so that every rank stops). The backend is NCCL on CUDA and
gloo on the CPU (the CPU path exists for tests and debugging).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sdl.config.training import TrainConfig
from sdl.safety.errors import InputError

log = logging.getLogger(__name__)

# Rank 0 validates (and may write a large checkpoint) while the others wait in a collective:
# the default NCCL timeout (10 min) would kill a run whose validation set is large.
DEFAULT_TIMEOUT = dt.timedelta(hours=2)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, value: Any = None) -> Any:
        """Rank 0's ``value`` on every rank (pickled; for small records, not tensors)."""
        if not self.enabled:
            return value
        holder = [value if self.is_main else None]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def all_reduce_mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In place: the mean of ``tensor`` over the ranks."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(self.world_size)
        return tensor


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun (or an equivalent launcher) started."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_context() -> DistContext:
    """Rank, world size and local rank from the torchrun environment (1 process without it)."""
    if not launched_by_torchrun():
        return DistContext()
    return DistContext(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
    )


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, context: DistContext) -> torch.device:
    """One GPU per process: ``cuda`` becomes ``cuda:<local rank>`` in a distributed run."""
    if device.type == "cuda" and context.enabled:
        return torch.device("cuda", context.local_rank)
    return device


@contextlib.contextmanager
def process_group(device: torch.device, timeout: dt.timedelta = DEFAULT_TIMEOUT) -> Iterator[DistContext]:
    """The process group of this run: the caller's if it made one, else one made from the
    torchrun environment; a 1-process context without torchrun.

    A group made here lives until the process exits (``atexit``), so that a second ``train``
    in the same process reuses it: destroying and re-making the default group against the
    same torchrun store would let a rank read the other's stale address from the first one.
    """
    if dist.is_available() and dist.is_initialized():
        yield DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
        return
    context = env_context()
    if not context.enabled:
        yield context
        return
    if device.type == "cuda":
        torch.cuda.set_device(context.local_rank)  # before NCCL's first collective
    dist.init_process_group(
        backend_for(device), rank=context.rank, world_size=context.world_size, timeout=timeout,
        device_id=torch.device("cuda", context.local_rank) if device.type == "cuda" else None,
    )
    atexit.register(_destroy)
    yield context


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_nproc(nproc_per_node: int | str, device: str = "auto") -> int:
    """``auto``: one process per visible GPU (1 without a GPU or with ``device: cpu``)."""
    if nproc_per_node == "auto":
        if device == "cpu" or str(device).startswith("cpu"):
            return 1
        return max(1, visible_gpus())
    if isinstance(nproc_per_node, bool) or not isinstance(nproc_per_node, int) or nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be an integer >= 1 or 'auto', got {nproc_per_node!r}")
    if nproc_per_node > 1 and device not in ("cpu",) and not str(device).startswith("cpu"):
        gpus = visible_gpus()
        if gpus and nproc_per_node > gpus:
            raise ValueError(f"nproc_per_node = {nproc_per_node} but only {gpus} GPUs are visible")
    return nproc_per_node


@dataclass(frozen=True)
class Launch:
    """How torchrun starts the training processes of this machine: ``nproc_per_node`` of
    them, on one machine (``--standalone``) or as one of ``nnodes`` meeting at the c10d
    rendezvous ``rdzv_endpoint`` under the job id ``rdzv_id``. ``node_rank`` (None: unknown)
    decides only which torchrun hosts the rendezvous store: node 0's."""

    nproc_per_node: int
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    rdzv_id: str = "sdl-train"
    node_rank: int | None = None

    @property
    def processes(self) -> int:
        """Processes of the whole job, all machines together."""
        return self.nproc_per_node * self.nnodes


def launch_for(config: TrainConfig, environ: Mapping[str, str] | None = None) -> Launch:
    """The launch ``config`` asks for on this machine: ``nproc_per_node`` and ``nnodes`` from
    params, the endpoint from params or ``$SDL_RDZV_ENDPOINT``, the job id from params,
    ``$SDL_RDZV_ID`` or ``$SLURM_JOB_ID``, the machine's rank from ``$SDL_NODE_RANK`` or
    ``$SLURM_NODEID``."""
    env = os.environ if environ is None else environ
    nproc = resolve_nproc(config.nproc_per_node, config.device)
    if config.nnodes == 1:
        return Launch(nproc)
    endpoint = config.rdzv_endpoint or env.get("SDL_RDZV_ENDPOINT")
    if not endpoint:
        raise InputError(
            f"train.nnodes is {config.nnodes}: the machines need a rendezvous endpoint, host:port of a free port on the "
            "first machine: set train.<dataset>.rdzv_endpoint, or SDL_RDZV_ENDPOINT in the job's environment"
        )
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"SDL_RDZV_ENDPOINT must be host:port, got {endpoint!r}")
    rdzv_id = config.rdzv_id or env.get("SDL_RDZV_ID") or env.get("SLURM_JOB_ID") or "sdl-train"
    rank_text = env.get("SDL_NODE_RANK", env.get("SLURM_NODEID"))
    node_rank = None
    if rank_text is not None:
        if not rank_text.isdigit() or int(rank_text) >= config.nnodes:
            raise InputError(f"SDL_NODE_RANK (or SLURM_NODEID) must be 0..{config.nnodes - 1}, got {rank_text!r}")
        node_rank = int(rank_text)
    return Launch(nproc, config.nnodes, endpoint, rdzv_id, node_rank)


def torchrun_command(module: str, argv: Sequence[str], launch: Launch | int) -> list[str]:
    """``python -m torch.distributed.run <launch> -m <module> <argv>``: ``--standalone
    --nproc_per_node N`` on one machine, the c10d rendezvous arguments on several."""
    if isinstance(launch, int):
        launch = Launch(launch)
    if launch.nnodes == 1 and launch.rdzv_endpoint is None:
        where = ["--standalone"]
    else:
        where = [f"--nnodes={launch.nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={launch.rdzv_endpoint}",
                 f"--rdzv_id={launch.rdzv_id}"]
        if launch.node_rank is not None:  # else torchrun guesses from the endpoint's host name
            where.append(f"--rdzv_conf=is_host={'true' if launch.node_rank == 0 else 'false'}")
    return [
        sys.executable, "-m", "torch.distributed.run", *where, f"--nproc_per_node={launch.nproc_per_node}",
        "-m", module, *argv,
    ]


def relaunch(module: str, argv: Sequence[str], launch: Launch | int) -> int:
    """Run ``module`` under torchrun as ``launch`` says; return its exit status.

    SIGTERM and SIGINT are passed on to torchrun, which stops its workers.
    """
    launch = Launch(launch) if isinstance(launch, int) else launch
    command = torchrun_command(module, argv, launch)
    if launch.nnodes > 1:
        node = "?" if launch.node_rank is None else launch.node_rank
        log.info("launching %d processes on this machine (node %s of %d, %d in all; rendezvous %s, job %s): %s",
                 launch.nproc_per_node, node, launch.nnodes, launch.processes, launch.rdzv_endpoint, launch.rdzv_id,
                 " ".join(command))
    else:
        log.info("launching %d processes: %s", launch.nproc_per_node, " ".join(command))
    child = subprocess.Popen(command)  # our own interpreter and module

    def forward(signum: int, _frame: Any) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def has_batchnorm(model: nn.Module, trainable_only: bool = False) -> bool:
    """Whether the model has a BatchNorm layer (with ``trainable_only``: one that trains; a frozen
    backbone's BatchNorm stays in eval mode)."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        and (not trainable_only or any(p.requires_grad for p in m.parameters()))
        for m in model.modules()
    )


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """BatchNorm layers (timm's BatchNormAct2d included) to their synchronised form.

    With it every rank normalises with the statistics of the global batch, so N processes with
    B / N images each compute what one process with B images does. State-dict keys are kept,
    so checkpoints and saved models load into the plain model. PyTorch's SyncBatchNorm runs on
    GPUs only (it raises on CPU tensors), so the CPU (gloo) path keeps per-rank statistics.
    """
    from sdl._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from timm.layers import convert_sync_batchnorm as timm_convert

    return timm_convert(model)
