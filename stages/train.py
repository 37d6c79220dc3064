"""Stage `train`: train the model on the seen tags; log the run to MLflow.

    python -m stages.train --dataset embedded --manifest data/embedded/manifest.parquet \
        --split data/embedded/split --wordvecs data/embedded/wordvecs.parquet \
        --state .state/embedded/train --model models/embedded --metrics metrics/embedded/train.json \
        --history metrics/embedded/train_history.csv

With ``train.<dataset>.nproc_per_node`` above 1 (or ``auto`` with several GPUs visible) the
stage re-launches itself under ``python -m torch.distributed.run --standalone
--nproc_per_node N -m stages.train <same arguments>`` and returns its exit status; inside,
every rank trains, and rank 0 alone logs to MLflow and writes the model and metrics
(``sdl.training.distributed``). With ``train.<dataset>.nnodes`` above 1 the same command runs
on every machine and joins torchrun's c10d rendezvous (README, "Training on several GPUs /
machines").
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sdl.mlops.training_run import train_tracked
from sdl.safety.errors import run_command
from sdl.training import distributed
from stages._common import interactive, load_dataset, parse_args, setup_logging

PATHS = ["manifest", "split", "wordvecs", "state", "model", "metrics", "history"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, PATHS, argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    launch = distributed.launch_for(params.train)
    if launch.processes > 1 and not distributed.launched_by_torchrun():
        return distributed.relaunch("stages.train", list(sys.argv[1:] if argv is None else argv), launch)
    train_tracked(args.dataset, params, **{name: getattr(args, name) for name in PATHS}, progress=interactive())
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(main, "train"))
