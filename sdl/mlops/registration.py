"""Registering a trained model and gating it, what the ``register`` stage does.

The model (its training run) becomes a new version of ``sdl-<dataset>`` holding
``challenger``, then the promotion gate (``sdl.mlops.gate``) scores it against the champion on
the test split with the current vocabulary. A training run is registered once: a run already
registered *and* gated is left as it is (a grown vocabulary reruns this stage without a new
version), and a version whose gate did not finish (store down, champion lock busy) is gated.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sdl.config.params import DatasetParams
from sdl.eval.test_set import read_test_set
from sdl.mlops import gate, logged_models, registry, run_context, tracking
from sdl.safety.atomic import read_json, write_json

log = logging.getLogger(__name__)


def register_and_gate(
    dataset: str, params: DatasetParams, model: str | Path, manifest: str | Path, split: str | Path,
    vocabulary: str | Path, metrics: str | Path, out: str | Path,
) -> dict[str, Any]:
    """Register ``model`` (once) and run the gate (once per version); write and return
    ``registered.json``: the version, its aliases, the run and the gate's decision."""
    test = read_test_set(manifest, split, vocabulary, params.evaluate.protocol)
    tracked = logged_models.resolve(
        model, dataset, logged_models.vocabulary_of(test.tags.all_tags, test.dataset_vectors, test.tags.unseen)
    )
    name, run_id = params.model_name, tracked.run_id
    existing = registry.version_of_run(name, run_id)
    allowed = run_context.promotion_allowed(params.register.promote)
    # a version that won but was not allowed to move champion (an experiment) is gated again
    # once promotion is allowed (`dvc exp apply`, then register.<d>.promote: true)
    held_back = existing is not None and existing.tags.get("gate.decision") == "won_not_promoted" and allowed[0]
    if existing is not None and "gate.decision" in existing.tags and not held_back:
        previous = read_json(out) if Path(out).exists() else {}
        record = {**previous, "name": name, "version": existing.version, "aliases": existing.aliases, "run_id": run_id}
        write_json(out, record)
        log.info("%s: run %s is already %s version %d (%s): nothing to register",
                 dataset, run_id, name, existing.version, existing.aliases or "no alias")
        return record
    if existing is None:
        version = _register(params, model, tracked, test, read_json(metrics))
    else:  # registered by an earlier run whose gate did not finish (store down, lock busy), or held back
        version = existing.version
        log.info("%s: run %s is already %s version %d, %s: running the gate", dataset, run_id, name, version,
                 "held back from promotion before" if held_back else "without a gate decision")
    evaluate = params.evaluate
    data = gate.GateData(
        paths=test.paths, targets=test.targets, tags=test.tags, vectors=test.dataset_vectors, ks=list(evaluate.ks),
        protocol=evaluate.protocol, batch_size=evaluate.batch_size, num_workers=evaluate.num_workers,
        device=evaluate.device, image_sets=test.image_sets,
    )
    decision = gate.run_gate(name, version, data, params.register.primary_metric, params.register.min_margin,
                             wait_seconds=params.register.lock_wait_seconds, allowed=allowed)
    aliases = registry.version_aliases(name, version)
    tracking.set_run_tags(run_id, {
        "registered.version": str(version), "gate.decision": decision.label,
        "gate.reason": decision.reason[:500], **run_context.experiment_tags(),
    })
    record = {"name": name, "version": version, "aliases": aliases, "run_id": run_id, "gate": decision.as_dict()}
    write_json(out, record)
    log.info("%s: %s version %d, aliases %s; gate: %s", dataset, name, version, aliases or "none", decision.reason)
    return record


def _register(params: DatasetParams, model: str | Path, tracked: logged_models.TrackedModel, test: Any,
              evaluation: dict[str, Any]) -> int:
    """A new version of the model: the network packaged as the pyfunc tagger with the served
    vocabulary (a LoggedModel of the training run, tagged with the network's model id), tagged
    with its lineage, its test mAPs and vocabulary size."""
    lineage = read_json(Path(model) / "tags.json")
    version_tags = {k: str(v) for k, v in lineage.items() if k not in ("seen", "unseen")}
    version_tags.update({f"{s}.map": f"{evaluation[s]['map']:.4f}" for s in ("zsl", "gzsl")})
    vocabulary = test.vocabulary
    version_tags["serving_vocabulary_size"] = str(len(vocabulary))
    version_tags[logged_models.NETWORK_MODEL_TAG] = tracked.model_id
    version_tags.update(run_context.experiment_tags())
    return registry.register_version(
        tracked.run_id, params.model_name, model, vocabulary["tag"].tolist(), test.vectors,
        vocabulary.loc[vocabulary["unseen"], "tag"].tolist(),
        example_image=test.paths[0] if test.paths else None, version_tags=version_tags,
        wordvec_source=params.embed.source, wordvec_source_name=str(vocabulary["source"].iloc[0]),
        model_tags={logged_models.NETWORK_MODEL_TAG: tracked.model_id, **run_context.experiment_tags()},
    )
