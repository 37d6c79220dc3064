"""Stage `train`: train the SDL model on the seen tags; log the run to MLflow.

    python -m stages.train --dataset embedded --manifest data/embedded/manifest.parquet \
        --split data/embedded/split --wordvecs data/embedded/wordvecs.parquet \
        --state .state/embedded/train --model models/embedded --metrics metrics/embedded/train.json \
        --history metrics/embedded/train_history.csv

With ``train.<dataset>.nproc_per_node`` above 1 (or ``auto`` with several GPUs visible) the
stage re-launches itself under ``python -m torch.distributed.run --standalone
--nproc_per_node N -m stages.train <same arguments>`` and returns its exit status; inside,
every rank trains, and rank 0 alone logs to MLflow and writes the model and metrics
(``sdl.distributed``).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sdl import distributed, tracking
from sdl.data.manifest import multi_hot, read_manifest, subset_rows
from sdl.data.split import read_split
from sdl.io import atomic_dir, atomic_write_text, file_md5, write_json
from sdl.train import TrainData, train
from sdl.vocabulary import vocabulary_hash
from sdl.wordvecs import read_cache
from stages._common import interactive, load_dataset, parse_args, setup_logging

log = logging.getLogger("stages.train")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, ["manifest", "split", "wordvecs", "state", "model", "metrics", "history"], argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    config = params.train
    nproc = distributed.resolve_nproc(config.nproc_per_node, config.device)
    if nproc > 1 and not distributed.launched_by_torchrun():
        return distributed.relaunch("stages.train", list(sys.argv[1:] if argv is None else argv), nproc)
    manifest = read_manifest(args.manifest)
    tags, image_split = read_split(args.split)
    vectors = read_cache(args.wordvecs, tags.all_tags)
    train_paths, train_tags = subset_rows(args.manifest, manifest, image_split, "train")
    val_paths, val_tags = subset_rows(args.manifest, manifest, image_split, "val")
    num_seen = len(tags.seen)
    data = TrainData(
        train_paths=train_paths, train_targets=multi_hot(train_tags, tags.seen), seen_vectors=vectors[:num_seen],
        val_paths=val_paths, val_targets=multi_hot(val_tags, tags.all_tags), all_vectors=vectors,
        seen_index=np.arange(num_seen), unseen_index=np.arange(num_seen, len(tags.all_tags)),
    )
    if not distributed.env_context().is_main:
        train(config, data, args.state, progress=False)  # its shard; rank 0 logs and writes
        return 0
    lineage = {
        "dataset": args.dataset,
        "data_version": file_md5(args.manifest),
        "split_version": file_md5(Path(args.split) / "images.parquet"),
        "vocabulary_hash": vocabulary_hash(tags.all_tags),
        "vocabulary_size": str(len(tags.all_tags)),
        "labelled_images": str(len(manifest)),
        "train_images": str(len(train_paths)),
        "git_commit": tracking.git_commit(),
        "backbone": config.backbone,
        "num_rows": str(config.num_rows),
        "reg_lambda": str(config.loss_kwargs.get("reg_lambda", "")),
    }
    run_params = {
        "train": dataclasses.asdict(config), "split": dataclasses.asdict(params.split),
        "embed": dataclasses.asdict(params.embed), "download": dataclasses.asdict(params.download),
        "images": {"train": len(train_paths), "val": len(val_paths)},
        "tags": {"seen": num_seen, "unseen": len(tags.unseen)},
    }
    run_id = tracking.start_run(args.dataset, f"{args.dataset}-train", lineage, run_params)
    log.info("MLflow run %s (%s); %d train / %d val images", run_id, tracking.redact(tracking.tracking_uri()), len(train_paths), len(val_paths))
    try:
        result = train(
            config, data, args.state, progress=interactive(),
            on_epoch_end=lambda epoch, metrics: tracking.log_metrics(run_id, {"epoch": metrics}, step=epoch),
        )
    except BaseException:
        tracking.set_run_status(run_id, "FAILED")
        raise
    with atomic_dir(args.model) as model_dir:  # the old model or the new one, never a mix
        shutil.copytree(result.best_dir, model_dir, dirs_exist_ok=True)
        write_json(model_dir / "tags.json", {"seen": tags.seen, "unseen": tags.unseen, **lineage})
        tracking.write_run_file(model_dir, run_id, args.dataset)
    history = pd.DataFrame(result.history)
    atomic_write_text(args.history, history.to_csv(index=False))
    final = {
        "best_epoch": result.best_epoch, f"best_{config.best_metric}": result.best_value,
        "epochs": config.epochs, "train_images": len(train_paths),
        "final_train_loss": float(history["train_loss"].iloc[-1]),
        "images_per_second": float(history["images_per_second"].mean()),
    }
    tracking.record_metrics(args.metrics, {"train": final}, run_id)
    tracking.set_run_status(run_id, "FINISHED")
    log.info("%s: best %s = %.2f at epoch %d", args.dataset, config.best_metric, result.best_value, result.best_epoch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
