"""The ``sdl`` command: tag images, retrieve images for a tag, manage registered models.

    sdl tag IMAGE... [--model URI] [--tags FILE] [--top-k K] [--json]
    sdl retrieve TAG --images DIR [--model URI] [--top N] [--json]
    sdl models list --dataset NAME [--name MODEL] [--json]
    sdl models promote --dataset NAME --version V [--reason TEXT]
    sdl models rollback --dataset NAME [--reason TEXT]
    sdl serve [--model URI] [--host 127.0.0.1] [--port 5001] [--vocabulary PARQUET]

The model defaults to ``models:/sdl-embedded@champion``; the registry is the one of
``MLFLOW_TRACKING_URI`` (or ``--tracking-uri``), else the project's ``sqlite:///mlflow/mlflow.db``
relative to the working directory. ``--tags FILE`` is a vocabulary (one tag per line): tags of
the model's registered vocabulary keep their vectors, new ones are embedded with the
word-vector source the model was registered with.

Exit status: 0 all went well; 1 some images or tags could not be used (each named on stderr,
the others are still processed and reported); 2 nothing could be done (no model, no usable
tag, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdl.safety.errors import UserError, run_command

DEFAULT_MODEL = "models:/sdl-embedded@champion"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
BATCH = 64


class CliError(UserError):
    """A fatal error: printed as ``sdl: error: ...``, exit status 2."""


def _error(message: str) -> None:
    print(f"sdl: error: {message}", file=sys.stderr)


def _quiet() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("mlflow", "alembic", "urllib3", "sdl.mlops.registry"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("sdl").setLevel(logging.INFO if os.environ.get("SDL_VERBOSE") else logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _check_store(model_uri: str | None = None) -> None:
    from sdl.mlops import tracking

    store = tracking.default_store_path()
    if (model_uri is None or model_uri.startswith("models:/")) and tracking.uses_local_store() and not store.is_file():
        raise CliError(
            f"no MLflow store at {store}: run from the project root or set MLFLOW_TRACKING_URI (or --tracking-uri)"
        )


def load_tagger(uri: str):  # type: ignore[no-untyped-def]
    """The pyfunc at ``uri`` and the SDL tagger inside it."""
    from sdl.mlops.pyfunc import load_pyfunc

    _check_store(uri)
    try:
        model = load_pyfunc(uri)
    except Exception as error:  # MlflowException, OSError: name what failed
        raise CliError(f"cannot load model {uri}: {error}") from None
    return model, model.unwrap_python_model()


def _vocabulary(tagger: Any, tags: Sequence[str] | None, errors: list[dict[str, str]]) -> tuple[list[str], Any]:
    import numpy as np

    if tags is None:
        return list(tagger.tags), np.asarray(tagger.vectors)
    kept, vectors, missing = tagger.vocabulary(tags)
    for tag, why in missing.items():
        _error(f"tag {tag!r} has no word vector: {why}")
        errors.append({"tag": tag, "error": why})
    if not kept:
        raise CliError("none of the tags has a word vector")
    return kept, vectors


def _readable(paths: Sequence[str], errors: list[dict[str, str]]) -> list[str]:
    from sdl.data.images import ImageDecodeError, load_rgb

    good = []
    for path in paths:
        try:
            if Path(path).is_dir():
                raise ImageDecodeError(f"{path}: is a directory")
            load_rgb(path)
        except ImageDecodeError as error:
            _error(str(error))
            errors.append({"image": path, "error": str(error)})
            continue
        good.append(path)
    return good


def _predict(model: Any, paths: Sequence[str], tags: Sequence[str], vectors: Any, top_k: int):  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    params = {"top_k": int(top_k), "tags": list(tags), "vectors": np.asarray(vectors, np.float64).ravel().tolist()}
    frames = []
    for start in range(0, len(paths), BATCH):
        # the bytes, not the paths: the tagger reads no files unless told to (see sdl.mlops.serving_inputs)
        chunk = [Path(p).read_bytes() for p in paths[start : start + BATCH]]
        frames.append(model.predict(pd.DataFrame({"image": chunk}), params=params))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["tags", "scores", "unseen"])


def _tag_file_vocabulary(tagger: Any, path: str, errors: list[dict[str, str]]) -> tuple[list[str], Any]:
    """Tags of a vocabulary file (sdl/text/vocabulary.py format): a tag's vector is the normalised
    mean of its forms' vectors (registered ones as registered, new ones from the model's
    word-vector source); tags with a form that has no vector are reported and left out."""
    from sdl.text.vocabulary import Vocabulary, read_vocabulary_file, tag_vectors

    try:
        entries = read_vocabulary_file(path)
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read the tag file: {error}") from None
    if not Path(path).is_file() or not entries:
        raise CliError(f"{path}: no tags")
    texts = list(dict.fromkeys(t for e in entries for t in e.texts))
    kept, vectors = _vocabulary(tagger, texts, errors)
    found = dict(zip(kept, vectors, strict=True))
    usable = [e for e in entries if all(t in found for t in e.texts)]
    if not usable:
        raise CliError("none of the tags has a word vector")
    return [e.tag for e in usable], tag_vectors(Vocabulary(usable, ["extra"] * len(usable)), found)


def cmd_tag(args: argparse.Namespace) -> int:
    errors: list[dict[str, str]] = []
    model, tagger = load_tagger(args.model)
    if args.vocabulary:  # a project's current vocabulary (data/<dataset>/vocabulary.parquet)
        try:
            tags, vectors, _ = tagger.live_vocabulary(args.vocabulary)
        except (OSError, ValueError, KeyError) as error:
            raise CliError(f"cannot read the vocabulary {args.vocabulary}: {error}") from None
    elif args.tags:
        tags, vectors = _tag_file_vocabulary(tagger, args.tags, errors)
    else:
        tags, vectors = _vocabulary(tagger, None, errors)
    images = _readable(args.images, errors)
    out = _predict(model, images, tags, vectors, args.top_k)
    results = [
        {"image": path, "tags": [{"tag": t, "score": float(s), "unseen": bool(u)}
                                 for t, s, u in zip(row.tags, row.scores, row.unseen, strict=True)]}
        for path, row in zip(images, out.itertuples(index=False), strict=True)
    ]
    if args.json:
        print(json.dumps({"model": args.model, "results": results, "errors": errors}, indent=2))
    else:
        for result in results:
            ranked = ", ".join(f"{t['tag']}{'*' if t['unseen'] else ''} {t['score']:.3f}" for t in result["tags"])
            print(f"{result['image']}\t{ranked}")
        if results and any(t["unseen"] for r in results for t in r["tags"]):
            print("(* a tag the model never saw in training)", file=sys.stderr)
    return 1 if errors else 0


def cmd_retrieve(args: argparse.Namespace) -> int:
    folder = Path(args.images)
    if not folder.is_dir():
        raise CliError(f"{folder}: not a directory")
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CliError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    errors: list[dict[str, str]] = []
    model, tagger = load_tagger(args.model)
    kept, vectors, missing = tagger.vocabulary([args.tag])
    if missing:
        _error(f"tag {args.tag!r} has no word vector: {missing[args.tag]}")
        return 1
    images = _readable(files, errors)
    out = _predict(model, images, kept, vectors, 1)
    scores = [float(row.scores[0]) for row in out.itertuples(index=False)]
    ranked = sorted(zip(images, scores, strict=True), key=lambda item: -item[1])
    if args.top > 0:
        ranked = ranked[: args.top]
    seen = set(tagger.tags) - {t for t, u in zip(tagger.tags, tagger.unseen, strict=True) if u}
    kind = "seen in training" if args.tag in seen else (
        "unseen in training" if args.tag in set(tagger.tags) else "new: embedded with the model's word-vector source"
    )
    if args.json:
        print(json.dumps({
            "model": args.model, "tag": args.tag, "kind": kind,
            "results": [{"rank": i + 1, "image": p, "score": s} for i, (p, s) in enumerate(ranked)],
            "errors": errors,
        }, indent=2))
    else:
        print(f"# {args.tag!r} ({kind}): {len(ranked)} of {len(images)} images, best first", file=sys.stderr)
        for rank, (path, score) in enumerate(ranked, start=1):
            print(f"{rank}\t{score:.4f}\t{path}")
    return 1 if errors else 0


def _model_name(args: argparse.Namespace) -> str:
    return args.name or f"sdl-{args.dataset}"


def cmd_models_list(args: argparse.Namespace) -> int:
    from sdl.mlops import registry, tracking

    _check_store()
    name = _model_name(args)
    versions = registry.list_versions(name)
    if not versions:
        raise CliError(f"no registered versions of {name}")
    history = registry.champion_history(name)
    if args.json:
        print(json.dumps({
            "name": name, "versions": [v.__dict__ for v in versions], "champion_history": history,
        }, indent=2, default=str))
        return 0
    metrics = {k for v in versions for k in v.metrics}
    primary = {tracking.metric_name(v.tags["gate.primary_metric"]) for v in versions if "gate.primary_metric" in v.tags}
    shown = [m for m in ("zsl.map", "gzsl.map", *sorted(primary)) if m in metrics]
    shown = list(dict.fromkeys(shown))
    header = ["version", "aliases", "status", "registered (UTC)", *shown, "gate", "commit", "model", "backbone"]
    rows = []
    for v in versions:
        gate = v.tags.get("gate.decision", "-")
        if v.tags.get("gate.challenger_value") and v.tags.get("gate.primary_metric"):
            gate += f" ({v.tags['gate.primary_metric']} {v.tags['gate.challenger_value']})"
        rows.append([
            str(v.version), ",".join(v.aliases) or "-", v.status, v.created,
            *[f"{v.metrics[m]:.2f}" if m in v.metrics else "-" for m in shown],
            gate, (v.commit or "-")[:12], v.tags.get("model_family", "sdl"), v.tags.get("backbone", "-"),
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"{name}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if history:
        print("champion history (oldest first):")
        for entry in history:
            print(f"  {entry['time']}  {entry['action']:<8} v{entry['previous'] or '-'} -> v{entry['version']}"
                  f"  by {entry.get('user', '?')}: {entry.get('reason', '')}")
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    from sdl.mlops import registry

    _check_store()
    name = _model_name(args)
    reason = args.reason or "promoted by hand"
    try:
        previous = registry.promote(name, args.version, reason, action="promote", wait_seconds=args.wait)
    except (registry.RegistrationError, registry.ChampionBusy) as error:
        raise CliError(str(error)) from None
    if previous == args.version:
        print(f"{name}: version {args.version} already is champion; nothing changed")
    else:
        print(f"{name}: champion v{previous if previous is not None else '-'} -> v{args.version} ({reason})")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    from sdl.mlops import registry

    _check_store()
    name = _model_name(args)
    try:
        current, target = registry.rollback(name, args.reason or "", wait_seconds=args.wait)
    except (registry.RegistrationError, registry.ChampionBusy) as error:
        raise CliError(str(error)) from None
    print(f"{name}: champion rolled back v{current if current is not None else '-'} -> v{target}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``mlflow models serve`` on the model, with the safe settings: loopback unless told,
    no server files readable by requests, the request caps, the venv's uvicorn on PATH."""
    from sdl.mlops import tracking
    from sdl.mlops.serving_inputs import DEFAULT_LIMITS

    _check_store(args.model)
    limits = {**DEFAULT_LIMITS, "files_root": "", "max_images": args.max_images,
              "max_image_bytes": args.max_image_mb << 20, "max_pixels": args.max_megapixels * 1_000_000}
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.tracking_uri(),
           "MLFLOW_PYFUNC_INFERENCE_CONFIG": json.dumps(limits),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("SDL_FILES_ROOT", None)  # a served model reads no server files
    if args.vocabulary:
        if not Path(args.vocabulary).is_file():
            raise CliError(f"{args.vocabulary}: no such vocabulary file (e.g. data/embedded/vocabulary.parquet)")
        env["SDL_VOCABULARY"] = str(Path(args.vocabulary).resolve())
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", args.model,
               "--env-manager", "local", "-h", args.host, "-p", str(args.port), "-w", str(args.workers)]
    print(f"serving {args.model} on http://{args.host}:{args.port}/invocations "
          f"(at most {args.max_images} images of {args.max_image_mb} MB a request)", file=sys.stderr)
    os.execve(command[0], command, env)  # the server replaces this process: signals reach it directly
    return 0  # pragma: no cover


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdl", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow/mlflow.db)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error (or set SDL_VERBOSE=1)")
    commands = parser.add_subparsers(dest="command", required=True)

    tag = commands.add_parser("tag", help="top-k tags of images")
    tag.add_argument("images", nargs="+", metavar="IMAGE")
    tag.add_argument("--model", default=DEFAULT_MODEL, help=f"model URI (default {DEFAULT_MODEL})")
    tag.add_argument("--tags", metavar="FILE",
                     help="vocabulary file: one tag per line, 'tag = form | form' for word forms (default: the model's)")
    tag.add_argument("--vocabulary", metavar="PARQUET", help="a project's current vocabulary, e.g. data/embedded/vocabulary.parquet")
    tag.add_argument("--top-k", type=int, default=5, metavar="K")
    tag.add_argument("--json", action="store_true", help="print JSON")
    tag.set_defaults(func=cmd_tag)

    retrieve = commands.add_parser("retrieve", help="rank the images of a folder for a tag (seen, unseen or new)")
    retrieve.add_argument("tag", metavar="TAG")
    retrieve.add_argument("--images", required=True, metavar="DIR")
    retrieve.add_argument("--model", default=DEFAULT_MODEL, help=f"model URI (default {DEFAULT_MODEL})")
    retrieve.add_argument("--top", type=int, default=10, metavar="N", help="show the best N (0: all)")
    retrieve.add_argument("--json", action="store_true", help="print JSON")
    retrieve.set_defaults(func=cmd_retrieve)

    serve = commands.add_parser("serve", help="serve a model over HTTP (mlflow models serve, with safe settings)")
    serve.add_argument("--model", default=DEFAULT_MODEL, help=f"model URI (default {DEFAULT_MODEL})")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=5001)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--vocabulary", metavar="PARQUET", help="serve this vocabulary (re-read when it changes)")
    serve.add_argument("--max-images", type=int, default=64, help="images per request (default 64)")
    serve.add_argument("--max-image-mb", type=int, default=16, help="bytes per image, in MiB (default 16)")
    serve.add_argument("--max-megapixels", type=int, default=40, help="decoded pixels per image (default 40 M)")
    serve.set_defaults(func=cmd_serve)

    models = commands.add_parser("models", help="registered models: list, promote, rollback")
    actions = models.add_subparsers(dest="action", required=True)
    for action, helptext, func in (
        ("list", "versions with their metrics, aliases and champion history", cmd_models_list),
        ("promote", "make a version champion (by hand)", cmd_models_promote),
        ("rollback", "give champion back to the previous champion", cmd_models_rollback),
    ):
        sub = actions.add_parser(action, help=helptext)
        sub.add_argument("--dataset", required=True)
        sub.add_argument("--name", help="registered model name (default sdl-<dataset>)")
        if action == "promote":
            sub.add_argument("--version", type=int, required=True)
        if action in ("promote", "rollback"):
            sub.add_argument("--reason", default="", help="why (recorded in the champion history)")
            sub.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                             help="wait this long for a champion change under way (a promotion gate) (default 60)")
        if action == "list":
            sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    _quiet()
    if getattr(args, "top_k", 1) < 1:
        parser.error("--top-k must be >= 1")
    return run_command(lambda: args.func(args), "sdl", argv)


if __name__ == "__main__":
    raise SystemExit(main())
