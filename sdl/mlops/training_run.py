"""A tracked training run, what the ``train`` stage does: train (``sdl.training``), log the
run to MLflow with its lineage, and write the model folder, the history and the final metrics.

With ``train.<dataset>.released_checkpoint`` set the stage trains nothing: it converts the
released SDL checkpoint (``sdl.models.released``) into the model folder, as a run of its own,
so that ``evaluate`` and ``register`` score the released model on this pipeline's data.

The lineage (data version, split version, vocabulary, image counts, commit, backbone) is what
the registry later records on the model version and what retraining compares against.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from sdl.config.params import DatasetParams
from sdl.mlops import logged_models, run_context, tracking
from sdl.models import save_model
from sdl.models.released import load_released_checkpoint
from sdl.safety.atomic import atomic_dir, atomic_write_text, file_digest, file_md5, write_json
from sdl.text.vocabulary import vocabulary_hash
from sdl.training import distributed
from sdl.training.inputs import TrainingInputs, read_training_inputs
from sdl.training.loop import train

log = logging.getLogger(__name__)


def training_lineage(dataset: str, params: DatasetParams, inputs: TrainingInputs, manifest_path: Path,
                     split_dir: Path) -> dict[str, str]:
    """Where a model comes from, as the run's and the model version's tags."""
    config = params.train
    return {
        "dataset": dataset,
        "data_version": file_md5(manifest_path),
        "split_version": file_md5(split_dir / "images.parquet"),
        "vocabulary_hash": vocabulary_hash(inputs.tags.all_tags),
        "vocabulary_size": str(len(inputs.tags.all_tags)),
        "labelled_images": str(len(inputs.manifest)),
        "train_images": str(len(inputs.data.train_paths)),
        run_context.COMMIT_TAG: run_context.git_state()[0],
        "model_family": config.model,
        "backbone": config.backbone,
        "num_rows": str(config.num_rows),
        "reg_lambda": str(config.loss_kwargs.get("reg_lambda", "")),
    }


def train_tracked(
    dataset: str, params: DatasetParams, manifest: str | Path, split: str | Path, wordvecs: str | Path,
    state: str | Path, model: str | Path, metrics: str | Path, history: str | Path, progress: bool = False,
) -> dict[str, Any]:
    """Train ``dataset``'s model and write its outputs; return the final metrics. Under torchrun
    a rank other than 0 trains its shard only (rank 0 logs and writes)."""
    config = params.train
    inputs = read_training_inputs(manifest, split, wordvecs, params.evaluate.protocol)
    if config.released_checkpoint:
        return convert_released(dataset, params, inputs, Path(manifest), Path(split), model, metrics, history)
    if not distributed.env_context().is_main:
        train(config, inputs.data, state, progress=False)
        return {}
    lineage = training_lineage(dataset, params, inputs, Path(manifest), Path(split))
    data = inputs.data
    run_params = {
        "train": dataclasses.asdict(config), "split": dataclasses.asdict(params.split),
        "embed": dataclasses.asdict(params.embed), "download": dataclasses.asdict(params.download),
        "images": {"train": len(data.train_paths), "val": len(data.val_paths)},
        "tags": {"seen": len(inputs.tags.seen), "unseen": len(inputs.tags.unseen)},
    }
    run_id = tracking.start_run(dataset, f"{dataset}-train", {**lineage, **run_context.run_tags("stages.train")},
                                run_params)
    log.info("MLflow run %s (%s); %d train / %d val images", run_id, tracking.redact(tracking.tracking_uri()),
             len(data.train_paths), len(data.val_paths))
    try:
        with tracking.system_metrics(run_id):
            result = train(
                config, data, state, progress=progress,
                on_epoch_end=lambda epoch, values: tracking.log_metrics(run_id, {"epoch": values}, step=epoch),
            )
    except BaseException:
        tracking.set_run_status(run_id, "FAILED")
        raise
    with atomic_dir(model) as model_dir:  # the old model or the new one, never a mix
        shutil.copytree(result.best_dir, model_dir, dirs_exist_ok=True)
        write_json(model_dir / "tags.json", {"seen": inputs.tags.seen, "unseen": inputs.tags.unseen, **lineage})
        vocabulary = logged_models.vocabulary_of(inputs.tags.all_tags, data.all_vectors, inputs.tags.unseen)
        model_id = logged_models.log_network(run_id, dataset, model_dir, vocabulary)
        tracking.write_run_file(model_dir, run_id, dataset, model_id)
    frame = pd.DataFrame(result.history)
    atomic_write_text(history, frame.to_csv(index=False))
    final = {
        "best_epoch": result.best_epoch, f"best_{config.best_metric}": result.best_value,
        "epochs": config.epochs, "train_images": len(data.train_paths),
        "final_train_loss": float(frame["train_loss"].iloc[-1]),
        "images_per_second": float(frame["images_per_second"].mean()),
    }
    tracking.record_metrics(metrics, {"train": final}, run_id)
    tracking.set_run_status(run_id, "FINISHED")
    log.info("%s: best %s = %.2f at epoch %d", dataset, config.best_metric, result.best_value, result.best_epoch)
    return final


def convert_released(
    dataset: str, params: DatasetParams, inputs: TrainingInputs, manifest_path: Path, split_dir: Path,
    model: str | Path, metrics: str | Path, history: str | Path,
) -> dict[str, Any]:
    """The released checkpoint of ``train.<dataset>.released_checkpoint`` as the stage's model,
    logged as a run (lineage plus the file's name and SHA-256); nothing is trained."""
    config = params.train
    path = Path(str(config.released_checkpoint))
    dim = int(inputs.data.seen_vectors.shape[1])
    converted = load_released_checkpoint(path, backbone=config.backbone, wordvec_dim=dim, image_size=config.image_size)
    if converted.config.num_rows != config.num_rows:
        raise ValueError(f"train.{dataset}.num_rows is {config.num_rows} but {path} has M = "
                         f"{converted.config.num_rows}: set num_rows to match the checkpoint")
    digest = file_digest(path, "sha256")
    lineage = {**training_lineage(dataset, params, inputs, manifest_path, split_dir),
               "train_images": "0", "released_checkpoint": path.name, "released_sha256": digest}
    run_params = {"train": dataclasses.asdict(config), "embed": dataclasses.asdict(params.embed),
                  "tags": {"seen": len(inputs.tags.seen), "unseen": len(inputs.tags.unseen)}}
    run_id = tracking.start_run(dataset, f"{dataset}-released", lineage, run_params)
    with atomic_dir(model) as model_dir:
        save_model(converted, model_dir, extra={"released_checkpoint": {"file": path.name, "sha256": digest}})
        write_json(model_dir / "tags.json", {"seen": inputs.tags.seen, "unseen": inputs.tags.unseen, **lineage})
        tracking.write_run_file(model_dir, run_id, dataset)
    atomic_write_text(history, pd.DataFrame(columns=["epoch", "val.gzsl.map"]).to_csv(index=False))
    final = {"epochs": 0, "train_images": 0, "num_rows": converted.config.num_rows}
    tracking.record_metrics(metrics, {"train": final}, run_id)
    tracking.set_run_status(run_id, "FINISHED")
    log.info("%s: released checkpoint %s (sha256 %s) converted, not trained", dataset, path.name, digest[:12])
    return final
