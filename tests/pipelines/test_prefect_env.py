"""A configured Prefect is the user's: the flows set the project's PREFECT_HOME (for a
temporary local server) only when no home, API, profile or local settings file says where
Prefect lives. The check runs before Prefect is imported, in a fresh process each time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.prefect_env import user_configured
from tests.helpers.repo import REPO_ROOT


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    return tmp_path


def test_nothing_configured(clean: Path) -> None:
    assert not user_configured(clean / "cwd")


def test_environment_home_or_api(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert user_configured(clean / "cwd")
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.setenv("PREFECT_HOME", str(clean / "mine"))
    assert user_configured(clean / "cwd")


def test_the_active_profile_sets_an_api(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = clean / "home" / ".prefect" / "profiles.toml"
    profiles.parent.mkdir()
    profiles.write_text('active = "work"\n[profiles.work]\nPREFECT_API_URL = "https://prefect.example/api"\n'
                        '[profiles.local]\nPREFECT_LOGGING_LEVEL = "DEBUG"\n')
    assert user_configured(clean / "cwd")
    monkeypatch.setenv("PREFECT_PROFILE", "local")  # a profile without an API: still the temporary server
    assert not user_configured(clean / "cwd")


def test_local_settings_files(clean: Path) -> None:
    (clean / "cwd" / "prefect.toml").write_text('[api]\nurl = "http://127.0.0.1:4200/api"\n')
    assert user_configured(clean / "cwd")
    (clean / "cwd" / "prefect.toml").unlink()
    (clean / "cwd" / ".env").write_text("PREFECT_API_URL=http://127.0.0.1:4200/api\n")
    assert user_configured(clean / "cwd")


def _home_seen_by_the_flow_module(env: dict[str, str]) -> str:
    script = "import os, pipelines.rebuild\nprint(os.environ.get('PREFECT_HOME', '-'))\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_the_flows_keep_a_users_setting_and_default_to_the_project(clean: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.update({"HOME": str(clean / "home"), "PYTHONPATH": str(REPO_ROOT)})
    assert _home_seen_by_the_flow_module(base) == str(REPO_ROOT / ".state" / "prefect")
    assert _home_seen_by_the_flow_module({**base, "PREFECT_API_URL": "http://127.0.0.1:1/api"}) == "-"
    assert _home_seen_by_the_flow_module({**base, "PREFECT_HOME": str(clean / "mine")}) == str(clean / "mine")
    assert "PREFECT_HOME" not in (REPO_ROOT / "Makefile").read_text().split("(no PREFECT_HOME here")[0]
