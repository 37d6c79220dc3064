"""The embedded pipeline end to end with `dvc repro`, then the no-op `dvc repro`, timed.

    python benchmarks/bench_pipeline.py [--keep] [--workdir DIR]

Copies the project as a fresh clone would have it (``tests/conftest.py`` ``copy_repository``:
tracked and untracked-not-ignored files, its own git repo, no pipeline outputs, no DVC lock)
with the repository's own ``params.yaml`` (the full embedded run, not the test's shrunken one)
to a temporary folder, runs ``dvc repro`` there, then ``dvc repro`` once more (nothing to do).
Prints both wall times, and per stage the time from its "Running stage" line to the next
stage's (or to the end): the stage's command plus DVC's hashing and caching of its outputs.
Output lines are time-stamped as they arrive (``PYTHONUNBUFFERED=1`` for DVC and the stages).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common

from tests.helpers.repo import VENV_BIN, copy_repository, pipeline_env

STAGE_LINE = re.compile(r"Running stage '([^']+)'")


def run_timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, list[tuple[float, str]], int]:
    """Run ``command``, time-stamping each output line; return (seconds, [(t, line)], exit code)."""
    start = time.perf_counter()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as process, open(log, "w", encoding="utf-8") as handle:
        assert process.stdout is not None
        for line in process.stdout:
            stamp = time.perf_counter() - start
            lines.append((stamp, line.rstrip("\n")))
            handle.write(f"{stamp:8.2f} {line}")
        code = process.wait()
    return time.perf_counter() - start, lines, code


def stage_times(lines: list[tuple[float, str]], total: float) -> list[tuple[str, float]]:
    """Seconds from each "Running stage" line to the next one (the last one: to the end)."""
    starts = [(stamp, match.group(1)) for stamp, line in lines if (match := STAGE_LINE.search(line))]
    ends = [stamp for stamp, _ in starts[1:]] + [total]
    return [(name, end - stamp) for (stamp, name), end in zip(starts, ends, strict=True)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="copy the project here (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the copy (and its logs) afterwards")
    parser.add_argument("--params", default=str(bench_common.REPO_ROOT / "params.yaml"))
    args = parser.parse_args(argv)

    print(bench_common.header("Pipeline end to end (benchmarks/bench_pipeline.py)"))
    dvc_version = subprocess.run([str(VENV_BIN / "dvc"), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"dvc {dvc_version}; load average before: {bench_common.load_average()}", flush=True)
    params = yaml.safe_load(Path(args.params).read_text(encoding="utf-8"))
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        copy_repository(root, params)
        env = {**pipeline_env(root), "PYTHONUNBUFFERED": "1"}
        dvc = str(VENV_BIN / "dvc")
        full, lines, code = run_timed([dvc, "repro"], root, env, root / "repro.log")
        if code != 0:
            print("\n".join(line for _, line in lines[-60:]))
            raise SystemExit(f"dvc repro failed ({code}); log: {root / 'repro.log'}")
        load_after_full = bench_common.load_average()
        noop, noop_lines, code = run_timed([dvc, "repro"], root, env, root / "repro-noop.log")
        if code != 0:
            raise SystemExit(f"no-op dvc repro failed ({code}); log: {root / 'repro-noop.log'}")
        reran = [name for _, line in noop_lines if (m := STAGE_LINE.search(line)) for name in [m.group(1)]]
        stages = stage_times(lines, full)
        print(f"\ndatasets: {params['datasets']}; load average after the full run: {load_after_full}\n")
        print(bench_common.markdown_table(
            ["run / stage", "wall time (s)"],
            [["`dvc repro` (fresh copy, everything)", f"{full:.1f}"],
             *[[f"  {name}", f"{seconds:.1f}"] for name, seconds in stages],
             ["`dvc repro` again (no-op)", f"{noop:.1f}"]],
        ))
        print(f"\nno-op run re-ran: {reran or 'nothing'}")
        return {"full": full, "noop": noop, "stages": stages, "reran": reran}
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    main()
