"""Whether the user has configured Prefect, read before Prefect is imported.

The flows start Prefect's temporary local server (with its state in the project's
``.state/prefect``) only when nothing says where Prefect lives: no ``PREFECT_HOME``, no
``PREFECT_API_URL`` in the environment, in the active profile (``profiles.toml`` of the Prefect
home, ``PREFECT_PROFILE`` choosing it) or in a ``prefect.toml`` / ``.env`` of the working
directory. A configured server or Prefect Cloud profile is then used as it is.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

API_KEY = "PREFECT_API_URL"


def _profile_sets_api(home: Path) -> bool:
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    settings = (profiles.get("profiles") or {}).get(active) or {}
    return bool(settings.get(API_KEY))


def _local_files_set_api(cwd: Path) -> bool:
    dotenv = cwd / ".env"
    if dotenv.is_file() and any(
        line.strip().startswith(f"{API_KEY}=") for line in dotenv.read_text(encoding="utf-8").splitlines()
    ):
        return True
    toml = cwd / "prefect.toml"
    if toml.is_file():
        try:
            settings = tomllib.loads(toml.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            return False
        return bool((settings.get("api") or {}).get("url"))
    return False


def user_configured(cwd: Path | None = None) -> bool:
    """True when the user has set a Prefect home or an API (see the module docstring)."""
    if os.environ.get("PREFECT_HOME") or os.environ.get(API_KEY):
        return True
    home = Path(os.path.expanduser("~/.prefect"))
    return _profile_sets_api(home) or _local_files_set_api(cwd or Path.cwd())
