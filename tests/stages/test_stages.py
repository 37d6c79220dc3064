"""Each stage's main() on a tiny embedded dataset in a temp folder, in DAG order."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from stages import download, embed, evaluate, register, split, train, validate
from tests.helpers.repo import REPO_ROOT


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, tiny_params: dict[str, Any]):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("stages")
    with open(root / "params.yaml", "w", encoding="utf-8") as handle:
        yaml.safe_dump(tiny_params, handle)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow/mlflow.db")
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # the tiny run lasts seconds
        patch.setenv("DVC_STAGE", "train@embedded")  # as DVC sets it for a stage command
        yield root


def run(module: Any, **paths: str) -> int:
    argv = ["--dataset", "embedded", "--params", "params.yaml"]
    for name, value in paths.items():
        argv += [f"--{name.replace('_', '-')}", value]
    return module.main(argv)


D = "data/embedded"


def test_download_writes_manifest_and_tags(workdir: Path) -> None:
    assert run(download, raw=f"{D}/raw", cache=f"{D}/images", manifest=f"{D}/manifest.parquet", tags=f"{D}/tags.csv",
               report="metrics/embedded/download.json") == 0
    assert json.loads(Path("metrics/embedded/download.json").read_text())["manifest"]["images"] == 150
    manifest = pq.read_table(f"{D}/manifest.parquet").to_pandas()
    assert len(manifest) == 150 and manifest["image_id"].is_unique
    assert all((Path(D) / p).is_file() for p in manifest["path"])  # relative to the manifest folder
    assert pd.read_csv(f"{D}/tags.csv")["tag"].tolist()[:2] == ["bear", "bird"]


def test_validate_passes_and_writes_reports(workdir: Path) -> None:
    assert run(validate, manifest=f"{D}/manifest.parquet", tags=f"{D}/tags.csv", report=f"{D}/validation",
               docs=f"{D}/data_docs") == 0
    report = json.loads(Path(f"{D}/validation/report.json").read_text())
    assert report["success"] and report["summary"]["decoded"] == 150
    assert "PASSED" in Path(f"{D}/validation/report.md").read_text()
    # the Checkpoints' Data Docs, a stage output: an index linking one validation page per suite
    index = Path(f"{D}/data_docs/index.html").read_text()
    pages = sorted(Path(f"{D}/data_docs/validations").glob("*/*/*/*.html"))
    assert {p.parts[-4] for p in pages} == {"manifest", "labels", "vocabulary", "images"}
    assert all(str(p.relative_to(f"{D}/data_docs")) in index for p in pages)


def test_split_writes_tag_and_image_splits(workdir: Path) -> None:
    assert run(split, manifest=f"{D}/manifest.parquet", tags=f"{D}/tags.csv", validation=f"{D}/validation", out=f"{D}/split") == 0
    assert json.loads(Path(f"{D}/split/report.json").read_text())["success"]
    tags = json.loads(Path(f"{D}/split/tags.json").read_text())
    assert tags["unseen"] == ["cat", "sheep", "zebra"] and len(tags["seen"]) == 7
    images = pd.read_parquet(f"{D}/split/images.parquet")
    manifest = pq.read_table(f"{D}/manifest.parquet").to_pandas().set_index("image_id")
    train_tags = manifest.loc[images.loc[images["subset"] == "train", "image_id"], "tags"]
    assert not any(set(t) & set(tags["unseen"]) for t in train_tags)  # train_seen_only
    assert set(images["subset"]) == {"train", "val", "test"}


EMBED = dict(split=f"{D}/split", vocabulary="vocabularies/embedded.txt", cache=f"{D}/wordvec_cache.parquet",
             out=f"{D}/wordvecs.parquet", serving=f"{D}/vocabulary.parquet", report=f"{D}/wordvecs_validation")
ANIMALS = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]


def test_embed_caches_unit_vectors_for_every_tag(workdir: Path) -> None:
    Path("vocabularies").mkdir(exist_ok=True)
    Path("vocabularies/embedded.txt").write_text("\n".join(ANIMALS) + "\n")
    assert run(embed, **EMBED) == 0
    vectors = pd.read_parquet(f"{D}/wordvecs.parquet")
    assert sorted(vectors["tag"]) == ANIMALS
    norms = np.linalg.norm(np.stack(vectors["vector"].to_numpy()), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5) and set(vectors["dim"]) == {50}
    serving = pd.read_parquet(f"{D}/vocabulary.parquet")
    assert serving["tag"].tolist()[:7] == json.loads(Path(f"{D}/split/tags.json").read_text())["seen"]
    assert serving["role"].tolist() == ["seen"] * 7 + ["unseen"] * 3
    before = Path(f"{D}/wordvec_cache.parquet").stat().st_mtime_ns
    assert run(embed, **EMBED) == 0
    assert Path(f"{D}/wordvec_cache.parquet").stat().st_mtime_ns == before  # nothing new: not rewritten


def test_train_writes_model_metrics_and_mlflow_run(workdir: Path) -> None:
    paths = dict(
        manifest=f"{D}/manifest.parquet", split=f"{D}/split", wordvecs=f"{D}/wordvecs.parquet",
        state=".state/embedded/train", model="models/embedded", metrics="metrics/embedded/train.json",
        history="metrics/embedded/train_history.csv",
    )
    assert run(train, **paths) == 0
    assert {"model.safetensors", "model.json", "tags.json", "run.json"} <= set(os.listdir("models/embedded"))
    metrics = json.loads(Path("metrics/embedded/train.json").read_text())["train"]
    assert metrics["epochs"] == 1 and np.isfinite(metrics["final_train_loss"])
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow/mlflow.db")
    record = json.loads(Path("models/embedded/run.json").read_text())
    logged = mlflow.get_run(record["run_id"])
    assert logged.data.params["train.backbone"] == "tf_efficientnet_lite0.in1k"
    assert {"dataset", "data_version", "vocabulary_hash"} <= set(logged.data.tags)
    # MLflow's own source tags, not a tag of ours (not a git repository here: "unknown")
    assert logged.data.tags["mlflow.source.git.commit"] == "unknown" and "git_commit" not in logged.data.tags
    assert logged.data.tags["mlflow.source.name"] == "stages/train.py"
    assert logged.data.tags["mlflow.project.entryPoint"] == "train@embedded"
    assert "epoch.val.gzsl.map" in logged.data.metrics
    assert any(k.startswith("system/cpu_utilization") for k in logged.data.metrics)  # system metrics
    # the trained network is a LoggedModel of the run, with the weights and the vocabulary
    network = mlflow.get_logged_model(record["model_id"])
    assert network.source_run_id == record["run_id"] and network.model_type == "sdl-network"
    assert str(network.status) in ("READY", "LoggedModelStatus.READY")
    files = {f.path for f in mlflow.MlflowClient().list_logged_model_artifacts(record["model_id"])}
    assert {"model.safetensors", "model.json", "vocabulary.parquet"} <= files
    assert [o.model_id for o in logged.outputs.model_outputs] == [record["model_id"]]


EVALUATE = dict(
    manifest=f"{D}/manifest.parquet", split=f"{D}/split", vocabulary=f"{D}/vocabulary.parquet",
    model="models/embedded", references=str(REPO_ROOT / "references/published.yaml"),
    metrics="metrics/embedded/eval.json", summary="metrics/embedded/summary.json",
    comparison="metrics/embedded/comparison.md", **{"per-tag": "metrics/embedded/per_tag_ap.csv"},
    curves="metrics/embedded/pr_at_k.csv", plots="metrics/embedded/plots",
)


def test_evaluate_writes_eval_json_and_plots(workdir: Path) -> None:
    assert run(evaluate, **EVALUATE) == 0
    result = json.loads(Path("metrics/embedded/eval.json").read_text())
    for setting in ("zsl", "gzsl"):
        assert {"map", "precision@1", "recall@1", "f1@1", "precision@2", "recall@2", "f1@2"} <= set(result[setting])
        assert 0.0 <= result[setting]["map"] <= 100.0
    assert set(result["chance"]) == {"zsl_map", "gzsl_map"}
    summary = json.loads(Path("metrics/embedded/summary.json").read_text())
    assert summary == {s: {k: result[s][k] for k in ("map", "f1@1", "f1@2")} for s in ("zsl", "gzsl")}
    assert "| ZSL | map |" in Path("metrics/embedded/comparison.md").read_text()
    per_tag = pd.read_csv("metrics/embedded/per_tag_ap.csv")
    assert set(per_tag.loc[per_tag["setting"] == "zsl", "tag"]) == {"cat", "sheep", "zebra"}
    curve = pd.read_csv("metrics/embedded/pr_at_k.csv")
    assert curve.loc[curve["setting"] == "zsl", "k"].tolist() == [1, 2, 3]
    assert {"per_tag_ap_unseen.png", "pr_at_k.png"} <= set(os.listdir("metrics/embedded/plots"))


def test_evaluation_is_linked_to_the_model_and_test_data_once_per_vocabulary(workdir: Path) -> None:
    """Each evaluation is its own record: the metrics name the LoggedModel and the test data
    (an mlflow.data dataset, its digest over manifest, split and vocabulary); a grown
    vocabulary is a second record on the model, the next step of the run, not an overwrite."""
    import pyarrow as pa

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow/mlflow.db")
    record = json.loads(Path("models/embedded/run.json").read_text())
    first = json.loads(Path("metrics/embedded/eval.json").read_text())
    served = pq.read_table(f"{D}/vocabulary.parquet")
    grown = pa.concat_tables([served, served.slice(0, 1).set_column(0, "tag", pa.array(["lion"]))
                              .set_column(served.schema.get_field_index("role"), "role", pa.array(["extra"]))])
    backup = Path(f"{D}/vocabulary.parquet").read_bytes()
    pq.write_table(grown, f"{D}/vocabulary.parquet")
    try:
        assert run(evaluate, **EVALUATE) == 0
    finally:
        Path(f"{D}/vocabulary.parquet").write_bytes(backup)
    second = json.loads(Path("metrics/embedded/eval.json").read_text())
    assert second["vocabulary"]["extra_tags"] == 1
    model = mlflow.get_logged_model(record["model_id"])
    maps = {m.dataset_digest: m.value for m in model.metrics if m.key == "gzsl.map"}
    assert len(maps) == 2 and set(maps.values()) == {first["gzsl"]["map"], second["gzsl"]["map"]}
    assert all(m.dataset_name == "embedded-test" for m in model.metrics)
    history = mlflow.MlflowClient().get_metric_history(record["run_id"], "gzsl.map")
    assert sorted(m.step for m in history) == [0, 1]
    inputs = mlflow.get_run(record["run_id"]).inputs
    assert {d.dataset.digest for d in inputs.dataset_inputs} == set(maps)
    assert record["model_id"] in {m.model_id for m in inputs.model_inputs}


def test_register_makes_first_version_champion_and_it_tags_images(workdir: Path) -> None:
    paths = dict(model="models/embedded", manifest=f"{D}/manifest.parquet", split=f"{D}/split",
                 vocabulary=f"{D}/vocabulary.parquet", metrics="metrics/embedded/eval.json",
                 out="metrics/embedded/registered.json")
    assert run(register, **paths) == 0
    first = json.loads(Path("metrics/embedded/registered.json").read_text())
    assert first["name"] == "sdl-embedded" and first["version"] == 1 and first["aliases"] == ["challenger", "champion"]
    assert run(register, **paths) == 0  # the same training run: no second version
    again = json.loads(Path("metrics/embedded/registered.json").read_text())
    assert again["version"] == 1 and again["gate"] == first["gate"]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow/mlflow.db")
    tagger = mlflow.pyfunc.load_model("models:/sdl-embedded@champion")
    image = next(Path(f"{D}/raw/images").glob("*.png")).read_bytes()  # a served model takes bytes, not paths
    out = tagger.predict(pd.DataFrame({"image": [image]}), params={"top_k": 3})
    assert len(out) == 1 and len(out.loc[0, "tags"]) == 3
    assert set(out.loc[0, "tags"]) <= {"bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"}


def test_train_converts_a_released_checkpoint_and_evaluate_scores_it(workdir: Path) -> None:
    """``train.<d>.released_checkpoint``: no training, the released layout becomes the model
    that evaluate scores (here a released-format file with a 50-d head for the GloVe tags)."""
    import timm
    import torch

    from sdl.models import load_model
    from tests.helpers.released import randomise_batchnorm, released_state_dict

    torch.manual_seed(8)
    reference = timm.create_model("tresnet_m", pretrained=False, num_classes=0)
    randomise_batchnorm(reference, seed=9)
    head = torch.randn(50 * 2, 2048) * 0.02
    torch.save({"model": released_state_dict(reference, head), "num_classes": 10}, "released.pth")
    params = yaml.safe_load(Path("params.yaml").read_text())
    original = dict(params["train"]["embedded"])
    params["train"]["embedded"].update(
        {"backbone": "tresnet_m.miil_in1k", "num_rows": 2, "image_size": 64, "released_checkpoint": "released.pth"}
    )
    Path("params.yaml").write_text(yaml.safe_dump(params))
    try:
        paths = dict(
            manifest=f"{D}/manifest.parquet", split=f"{D}/split", wordvecs=f"{D}/wordvecs.parquet",
            state=".state/embedded/released", model="models/released", metrics="metrics/embedded/released.json",
            history="metrics/embedded/released_history.csv",
        )
        assert run(train, **paths) == 0
        assert json.loads(Path("metrics/embedded/released.json").read_text())["train"]["epochs"] == 0
        saved = json.loads(Path("models/released/model.json").read_text())
        assert saved["released_checkpoint"]["file"] == "released.pth" and len(saved["released_checkpoint"]["sha256"]) == 64
        model = load_model("models/released")
        assert (model.config.backbone, model.config.num_rows, model.config.mean) == ("tresnet_m.miil_in1k", 2, (0.0,) * 3)
        assert torch.equal(model.embedding.weight.detach(), head)
        assert not Path(".state/embedded/released").exists()  # nothing trained, no checkpoint
        assert run(
            evaluate, manifest=f"{D}/manifest.parquet", split=f"{D}/split", vocabulary=f"{D}/vocabulary.parquet",
            model="models/released", references=str(REPO_ROOT / "references/published.yaml"),
            metrics="metrics/embedded/released_eval.json", summary="metrics/embedded/released_summary.json",
            comparison="metrics/embedded/released_comparison.md", per_tag="metrics/embedded/released_per_tag_ap.csv",
            curves="metrics/embedded/released_pr_at_k.csv", plots="metrics/embedded/released_plots",
        ) == 0
        assert 0.0 <= json.loads(Path("metrics/embedded/released_eval.json").read_text())["zsl"]["map"] <= 100.0
        params["train"]["embedded"].update({"num_rows": 3})
        Path("params.yaml").write_text(yaml.safe_dump(params))
        with pytest.raises(ValueError, match=r"num_rows is 3 but released.pth has M = 2"):
            run(train, **{**paths, "model": "models/released3"})
    finally:
        params["train"]["embedded"] = original
        Path("params.yaml").write_text(yaml.safe_dump(params))
