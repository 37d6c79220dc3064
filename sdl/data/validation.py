"""Data validation with Great Expectations 1.x: suites on the manifest, the vocabulary, the
split and the word vectors.

For the ``validate`` stage, suites run on pandas frames derived from the manifest and the tag table:
``manifest`` (ids unique and present, files present, tags per image within bounds),
``labels`` (every tag of every image is in the vocabulary), ``vocabulary`` (tags unique,
non-empty, roles known, images per tag and prevalence within bounds), ``images`` (a
sample, or all, of the image files decode) and, where the manifest records verified negatives,
``negatives`` (of the vocabulary, never also a positive of the same image). :func:`validate_split` (the ``split`` stage)
checks the published split sizes, and :func:`validate_vectors` (the ``embed`` stage) that
every tag has a finite unit vector. Each gives a JSON and a Markdown report a person can
read; the caller decides what a failure stops.

Each suite runs through a GX Checkpoint with the COMPLETE result format and the frame's id
column (``image_id``, ``tag``) as the unexpected index, so a failing expectation names the
very images or tags at fault; with a ``docs`` folder the Checkpoint also builds GX Data Docs
(HTML: every expectation, its result and the unexpected rows) there.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdl.config.params import ValidateParams
from sdl.data.images import ImageDecodeError, load_rgb
from sdl.data.manifest import has_negatives, resolve_paths
from sdl.safety.atomic import atomic_dir, atomic_write_text, write_json

log = logging.getLogger(__name__)


@dataclass
class ValidationReport:
    """Outcome of every expectation, as JSON-ready rows, plus the overall verdict."""

    success: bool
    rows: list[dict[str, Any]]
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "summary": self.summary, "expectations": self.rows}

    def to_markdown(self, title: str) -> str:
        """A readable report: verdict, counts, and each expectation with what was unexpected."""
        verdict = "PASSED" if self.success else "FAILED"
        lines = [f"# Validation of {title}: {verdict}", ""]
        lines += [f"- {key}: {value}" for key, value in self.summary.items()]
        lines += ["", "| suite | expectation | column | ok | unexpected | examples |", "|---|---|---|---|---|---|"]
        for row in self.rows:
            examples = ", ".join(map(str, row["examples"][:5])).replace("|", "\\|")
            lines.append(
                f"| {row['suite']} | {row['expectation']} | {row.get('column') or ''} | "
                f"{'yes' if row['success'] else '**NO**'} | {row['unexpected_count']} | {examples} |"
            )
        return "\n".join(lines) + "\n"


def tag_key(tag: object) -> str:
    """The word a tag stands for: case and runs of whitespace do not make another tag
    ("Polar  bear " is "polar bear"), since they get the same word vector."""
    return " ".join(str(tag).split()).lower()


def _decodable(ids: list[str], paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for image_id, path in zip(ids, paths, strict=True):
        try:
            load_rgb(path)
            rows.append({"image_id": image_id, "path": str(path), "decodable": True, "error": ""})
        except ImageDecodeError as error:
            rows.append({"image_id": image_id, "path": str(path), "decodable": False, "error": str(error)})
    return rows


def build_frames(
    manifest: pd.DataFrame, manifest_path: Path, tags: pd.DataFrame, bounds: ValidateParams
) -> dict[str, pd.DataFrame]:
    """The frames the suites run on, derived from the manifest and tag table."""
    paths = resolve_paths(manifest_path, manifest["path"])
    images = pd.DataFrame(
        {
            "image_id": manifest["image_id"],
            "num_tags": manifest["tags"].map(len).astype(int),
            "file_exists": [p.is_file() for p in paths],
        }
    )
    labels = pd.DataFrame(
        [{"row": r, "image_id": i, "tag": t}
         for r, (i, ts) in enumerate(zip(manifest["image_id"], manifest["tags"], strict=True)) for t in ts],
        columns=["row", "image_id", "tag"],
    )
    counts = Counter(labels["tag"])
    vocabulary = tags.assign(
        images=[counts.get(t, 0) for t in tags["tag"]],
        prevalence=[counts.get(t, 0) / max(len(manifest), 1) for t in tags["tag"]],
        tag_key=[tag_key(t) for t in tags["tag"]],
    )
    frames = {"manifest": images, "labels": labels, "vocabulary": vocabulary}
    if has_negatives(manifest):  # verified negatives (Open Images): optional
        frames["negatives"] = _negatives_frame(manifest)
    existing = [(i, p) for i, p, ok in zip(manifest["image_id"], paths, images["file_exists"], strict=True) if ok]
    if bounds.decode_sample and len(existing) > bounds.decode_sample:
        rng = np.random.default_rng(bounds.seed)
        existing = [existing[i] for i in sorted(rng.choice(len(existing), bounds.decode_sample, replace=False))]
    frames["images"] = pd.DataFrame(_decodable([str(i) for i, _ in existing], [p for _, p in existing]),
                                    columns=["image_id", "path", "decodable", "error"])
    return frames


def _negatives_frame(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per verified negative: the image, the tag, and whether the image also lists the
    tag as positive (a contradiction)."""
    rows = []
    for i, positive, negatives in zip(manifest["image_id"], manifest["tags"], manifest["negatives"], strict=True):
        positive = set(positive)
        rows += [{"image_id": i, "tag": t, "also_positive": t in positive} for t in negatives]
    return pd.DataFrame(rows, columns=["image_id", "tag", "also_positive"])


def _suites(vocab: list[str], bounds: ValidateParams) -> dict[str, list[Any]]:
    import great_expectations as gx

    e = gx.expectations
    return {
        "manifest": [
            e.ExpectColumnValuesToNotBeNull(column="image_id"),
            e.ExpectColumnValuesToBeUnique(column="image_id"),
            e.ExpectColumnValuesToBeInSet(column="file_exists", value_set=[True]),
            e.ExpectColumnValuesToBeBetween(
                column="num_tags", min_value=bounds.min_tags_per_image, max_value=bounds.max_tags_per_image
            ),
            e.ExpectTableRowCountToBeBetween(min_value=1),
        ],
        "labels": [
            e.ExpectColumnValuesToBeInSet(column="tag", value_set=vocab),
            # a tag listed twice for one image is a data error (counted once by the targets)
            # (per manifest row: a repeated image id is the manifest suite's finding)
            e.ExpectCompoundColumnsToBeUnique(column_list=["row", "image_id", "tag"]),
        ],
        "vocabulary": [
            e.ExpectColumnValuesToNotBeNull(column="tag"),
            e.ExpectColumnValuesToBeUnique(column="tag"),
            # tags differing only by case or surrounding spaces are the same word vector
            e.ExpectColumnValuesToBeUnique(column="tag_key"),
            e.ExpectColumnValueLengthsToBeBetween(column="tag_key", min_value=1),
            e.ExpectColumnValuesToBeInSet(column="role", value_set=["seen", "unseen", ""]),
            e.ExpectColumnValuesToBeBetween(column="images", min_value=bounds.min_images_per_tag),
            e.ExpectColumnValuesToBeBetween(column="prevalence", max_value=bounds.max_tag_prevalence),
            e.ExpectTableRowCountToBeBetween(min_value=2),
        ],
        "images": [e.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True])],
        # verified negatives (only where the manifest has them): tags of the vocabulary, and
        # never a tag the same image lists as positive
        "negatives": [
            e.ExpectColumnValuesToBeInSet(column="tag", value_set=vocab),
            e.ExpectColumnValuesToBeInSet(column="also_positive", value_set=[False]),
        ],
    }


# Which column names a row in each frame (GX's unexpected index), and a column whose text
# explains a failure better than the failing value (the decoder's error).
ID_COLUMNS = {"manifest": ["image_id"], "labels": ["image_id"], "vocabulary": ["tag"], "images": ["image_id", "error"],
              "tag_split": ["tag"], "split_sizes": ["role"], "image_split": ["image_id"],
              "train_images": ["image_id"], "wordvecs": ["tag"], "negatives": ["image_id"]}
DETAIL_COLUMNS = {"images": "error"}
DATA_DOCS_SITE = "sdl"


def _example(entry: dict[str, Any], column: str | None, ids: list[str], detail: str | None) -> str:
    """One failing row of GX's COMPLETE result as text: its id, and the failing value or detail."""
    name = ", ".join(str(entry[c]) for c in ids if c in entry and c != detail)
    if detail and detail in entry:
        return f"{name}: {entry[detail]}"
    values = [entry[k] for k in entry if k not in ids and k != detail]
    shown = [v for v in values if not isinstance(v, bool | np.bool_)] if column not in ids else []
    if not shown:
        return name
    text = ", ".join(f"{v:g}" if isinstance(v, float | np.floating) else str(_plain(v)) for v in shown)
    return f"{name} ({text})" if name else text


def _context(docs: Path | None):  # type: ignore[no-untyped-def]
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs is not None:
        context.add_data_docs_site(site_name=DATA_DOCS_SITE, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return context


def run_suites(frames: dict[str, pd.DataFrame], suites: dict[str, list[Any]], docs: str | Path | None = None,
               ) -> list[dict[str, Any]]:
    """Run each suite on its frame through a GX Checkpoint (COMPLETE results, the frame's id
    column as unexpected index; Data Docs into ``docs`` when given); one row per expectation."""
    import great_expectations as gx

    context = _context(Path(docs).resolve() if docs is not None else None)
    source = context.data_sources.add_pandas("sdl")
    rows: list[dict[str, Any]] = []
    for name, expectations in suites.items():
        frame = frames.get(name)
        if frame is None:
            continue  # an optional frame (negatives) the manifest has no column for
        if frame.empty and name in ("images", "negatives"):
            continue  # nothing to decode (the manifest suite reports missing files) or no negative
        batch_definition = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
        )
        ids = [c for c in ID_COLUMNS.get(name, []) if c in frame.columns]
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"sdl-{name}", validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs", site_names=[DATA_DOCS_SITE])] if docs else [],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ids,
                           "return_unexpected_index_query": False},
        ))
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        for result in outcome.run_results.values():
            rows += [_row(name, item, ids) for item in result.results]
    return rows


def _row(suite: str, item: Any, ids: list[str]) -> dict[str, Any]:
    config = item.expectation_config
    detail = item.result or {}
    column = config.kwargs.get("column")
    found = detail.get("unexpected_index_list") or []
    examples = list(dict.fromkeys(
        _example(e, column, ids, DETAIL_COLUMNS.get(suite)) if isinstance(e, dict) else str(e) for e in found
    ))
    if not examples and not item.success:
        examples = [str(_plain(x)) for x in (detail.get("unexpected_list") or [])]
    return {
        "suite": suite,
        "expectation": config.type,
        "column": column,
        "kwargs": {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id", "value_set")},
        "success": bool(item.success),
        "unexpected_count": int(detail.get("unexpected_count") or (0 if item.success else 1)),
        "observed_value": _plain(detail.get("observed_value")),
        "examples": [_plain(x) for x in examples[:20]],
    }


def validate_dataset(
    manifest: pd.DataFrame, manifest_path: Path, tags: pd.DataFrame, bounds: ValidateParams,
    docs: str | Path | None = None,
) -> ValidationReport:
    """Run all suites on a dataset (GX Data Docs into ``docs`` when given); the report says
    what failed and names the images or tags at fault."""
    frames = build_frames(manifest, manifest_path, tags, bounds)
    vocab = tags["tag"].tolist()
    if docs is None:
        rows = run_suites(frames, _suites(vocab, bounds))
    else:
        with atomic_dir(docs) as staging:  # the old Data Docs or the new ones, never a mix
            rows = run_suites(frames, _suites(vocab, bounds), staging)
    summary = {
        "images": len(manifest),
        "tags": len(tags),
        "labels": len(frames["labels"]),
        "missing_files": int((~frames["manifest"]["file_exists"]).sum()),
        "decoded": len(frames["images"]),
        **({"negatives": len(frames["negatives"])} if "negatives" in frames else {}),
        "undecodable": int((~frames["images"]["decodable"].astype(bool)).sum()),
    }
    return _report(rows, summary)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _report(rows: list[dict[str, Any]], summary: dict[str, Any]) -> ValidationReport:
    summary = {**summary, "failed_expectations": sum(not r["success"] for r in rows)}
    return ValidationReport(success=all(r["success"] for r in rows), rows=rows, summary=summary)


def validate_split(
    seen: list[str], unseen: list[str], images: pd.DataFrame, manifest: pd.DataFrame,
    expected_seen: int | None, expected_unseen: int | None, train_seen_only: bool,
) -> ValidationReport:
    """Suites on the split: the published seen/unseen sizes (e.g. 925/81 for NUS-WIDE), disjoint
    tag sets, non-empty train/test image sets, and no unseen tag in training where required."""
    import great_expectations as gx

    e = gx.expectations
    roles = pd.DataFrame({"tag": [*seen, *unseen], "role": ["seen"] * len(seen) + ["unseen"] * len(unseen)})
    sizes = pd.DataFrame({"role": ["seen", "unseen"], "tags": [len(seen), len(unseen)],
                          "expected": [expected_seen if expected_seen is not None else len(seen),
                                       expected_unseen if expected_unseen is not None else len(unseen)]})
    unseen_set = set(unseen)
    tags_of = manifest.set_index("image_id")["tags"]
    subsets = images.assign(shows_unseen=[any(t in unseen_set for t in tags_of[i]) for i in images["image_id"]])
    train = subsets[subsets["subset"] == "train"]
    frames = {"tag_split": roles, "split_sizes": sizes, "image_split": subsets, "train_images": train}
    suites = {
        "tag_split": [e.ExpectColumnValuesToBeUnique(column="tag")],
        "split_sizes": [e.ExpectColumnPairValuesToBeEqual(column_A="tags", column_B="expected")],
        "image_split": [
            e.ExpectColumnValuesToBeUnique(column="image_id"),
            e.ExpectColumnDistinctValuesToContainSet(column="subset", value_set=["train", "test"]),
        ],
        "train_images": [e.ExpectColumnValuesToBeInSet(column="shows_unseen", value_set=[False])] if train_seen_only else [],
    }
    rows = run_suites(frames, {k: v for k, v in suites.items() if v})
    counts = images["subset"].value_counts().to_dict()
    return _report(rows, {"seen": len(seen), "unseen": len(unseen), **{f"{k}_images": int(v) for k, v in counts.items()}})


def validate_vectors(tags: list[str], cached_tags: list[str], vectors: np.ndarray) -> ValidationReport:
    """Suites on the word vectors: every tag of the split has one, finite and of unit norm."""
    import great_expectations as gx

    e = gx.expectations
    frame = pd.DataFrame({
        "tag": cached_tags,
        "norm": np.linalg.norm(vectors, axis=1) if len(vectors) else [],
        "finite": np.isfinite(vectors).all(axis=1) if len(vectors) else [],
    })
    suites = {"wordvecs": [
        e.ExpectColumnDistinctValuesToContainSet(column="tag", value_set=list(tags)),
        e.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
        e.ExpectColumnValuesToBeBetween(column="norm", min_value=0.999, max_value=1.001),
    ]}
    rows = run_suites({"wordvecs": frame}, suites)
    missing = sorted(set(tags) - set(cached_tags))
    for row in rows:
        if row["expectation"] == "expect_column_distinct_values_to_contain_set" and missing:
            row["examples"] = missing[:20]
    return _report(rows, {"tags": len(tags), "vectors": len(cached_tags), "missing": len(missing),
                          "dim": int(vectors.shape[1]) if vectors.ndim == 2 else 0})


def write_report(folder: str | Path, report: ValidationReport, title: str) -> bool:
    """Save a validation report as report.json + report.md in ``folder``; print it if it failed."""
    folder = Path(folder)
    write_json(folder / "report.json", report.to_dict())
    markdown = report.to_markdown(title)
    atomic_write_text(folder / "report.md", markdown)
    if not report.success:
        print(markdown, file=sys.stderr)
        log.error("%s failed; report: %s", title, folder / "report.md")
    return report.success
