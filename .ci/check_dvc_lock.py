"""CI: the committed dvc.lock matches HEAD's code and params.

On a fresh clone every data output is missing, so ``dvc status`` reports those (ignored
here); any *dependency that is in git* (code, params.yaml, vocabularies, references) whose
hash differs from dvc.lock means the committed lock, metrics and README results were not made
by this commit's code: run ``make repro`` and commit dvc.lock with metrics/ and the README.

    .venv/bin/python .ci/check_dvc_lock.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tracked(path: str) -> bool:
    """Whether ``path`` (a file or a folder) holds files in git."""
    out = subprocess.run(["git", "ls-files", "--", path], cwd=ROOT, capture_output=True, text=True, check=True)
    return bool(out.stdout.strip())


def stale_deps(status: dict) -> list[str]:
    problems = []
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "always changed"
                problems.append(f"{stage}: {entry}")
                continue
            for path, change in entry.get("changed deps", {}).items():
                if isinstance(change, dict):  # params: {"train.embedded.lr": "modified"}
                    problems += [f"{stage}: {path}: {key} {what}" for key, what in change.items()]
                elif tracked(path):
                    problems.append(f"{stage}: {path} {change}")
    return problems


def main() -> int:
    dvc = Path(sys.executable).with_name("dvc")
    result = subprocess.run([str(dvc), "status", "--json"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"dvc status failed:\n{result.stdout}\n{result.stderr}", file=sys.stderr)
        return 1
    problems = stale_deps(json.loads(result.stdout or "{}"))
    if problems:
        print("dvc.lock does not match this commit (dependencies in git changed since it was written):", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        print("Run `make repro` and commit dvc.lock, metrics/ and the README results.", file=sys.stderr)
        return 1
    print("dvc.lock matches the code, params, vocabularies and references of this commit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
