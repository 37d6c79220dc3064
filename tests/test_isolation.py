"""The core library runs anywhere torch runs: importing all of `sdl` pulls in no orchestration."""

from __future__ import annotations

import subprocess
import sys


def test_sdl_imports_no_prefect_or_dvc() -> None:
    script = (
        "import pkgutil, importlib, sys, sdl\n"
        "for m in pkgutil.walk_packages(sdl.__path__, 'sdl.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('prefect', 'dvc'))\n"
        "print(len([n for n in sys.modules if n.startswith('sdl.')]), bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    imported = int(result.stdout.split()[0])
    assert imported >= 15  # the walk really imported the library's modules
