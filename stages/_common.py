"""What every stage does first: parse its paths, set up logging, load and check params."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sdl.config import DatasetParams, check_params, dataset_params, load_params
from sdl.data.kinds import check_download_options


def parse_args(doc: str | None, paths: Sequence[str], argv: Sequence[str] | None) -> argparse.Namespace:
    """``--dataset`` and ``--params`` plus one required ``--<path>`` option per declared dep/out."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset name, a section of params.yaml")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error (or set SDL_VERBOSE=1)")
    for name in paths:
        parser.add_argument(f"--{name}", required=True)
    return parser.parse_args(argv)


def interactive() -> bool:
    """Progress bars only on a terminal; under CI or a log file the stages log lines instead."""
    return sys.stderr.isatty()


def setup_logging() -> None:
    """Readable log lines on stderr: time, logger, message."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    for noisy in ("alembic", "urllib3", "botocore", "great_expectations", "matplotlib", "PIL", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("sdl").setLevel(logging.INFO)  # the library's story of the run (sdl's CLI quiets it)


def load_dataset(params_path: str, dataset: str) -> DatasetParams:
    """Check every dataset's params, its kind's download options included (before any work
    starts), then return ``dataset``'s."""
    params = load_params(params_path)
    checked = {p.name: p for p in check_params(params)}
    if dataset not in checked:
        checked[dataset] = dataset_params(params, dataset)
    check_download_options(checked.values())
    return checked[dataset]

