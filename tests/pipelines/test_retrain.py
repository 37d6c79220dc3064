"""Issue 7 end to end, in a temp copy of the repository: a growing vocabulary is ranked before
any retraining; the retrain flow waits for its thresholds, then retrains through the gate;
it refuses to run beside another pipeline run; its deployment runs through the Prefect API."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from pipelines.lock import pipeline_lock
from tests.helpers.replicas import free_port
from tests.helpers.repo import copy_repository, pipeline_env, run_dvc
from tests.helpers.stages import kill_group

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_params: dict[str, Any]) -> Path:
    params = {**tiny_params, "retrain": {"embedded": {
        "schedule": "0 3 * * *", "timezone": "Europe/Paris", "min_new_tags": 3, "min_new_images": 40,
        "min_relative_growth": None,
    }}}
    root = copy_repository(tmp_path_factory.mktemp("retrain"), params)
    run_dvc(root, "repro")
    return root


def ran(output: str, stage: str) -> bool:
    return f"Running stage '{stage}@embedded'" in output


def retrain(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.retrain", "--dataset", "embedded", *args],
        cwd=root, env=pipeline_env(root), capture_output=True, text=True, timeout=900,
    )


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout[result.stdout.index("{") :])


def test_new_tags_are_embedded_and_ranked_without_retraining(repo: Path) -> None:
    with open(repo / "vocabularies/embedded.txt", "a", encoding="utf-8") as handle:
        handle.write("lion\ntiger = tiger | big cat\n")
    result = run_dvc(repo, "repro")
    output = result.stdout + result.stderr
    assert ran(output, "embed") and ran(output, "evaluate") and not ran(output, "train"), output
    assert "Running stage 'download" not in output
    evaluation = json.loads((repo / "metrics/embedded/eval.json").read_text())
    assert evaluation["vocabulary"]["extra_tags"] == 2 and evaluation["vocabulary"]["tags"] == 12
    registered = json.loads((repo / "metrics/embedded/registered.json").read_text())
    assert registered["version"] == 1 and "champion" in registered["aliases"]  # no new version

    image = next((repo / "data/embedded/raw/images").glob("*.png"))
    script = (
        "import mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri('sqlite:///{repo}/mlflow/mlflow.db')\n"
        # a trusted process opts in to the project's files (a served model reads none)
        f"m = mlflow.pyfunc.load_model('models:/sdl-embedded@champion', model_config={{'files_root': {str(repo)!r}}})\n"
        f"out = m.predict(pd.DataFrame({{'image': [{str(image)!r}]}}), params={{'top_k': 12, "
        f"'vocabulary': {str(repo / 'data/embedded/vocabulary.parquet')!r}}})\n"
        "print(dict(zip(out.loc[0, 'tags'], out.loc[0, 'scores'])))\n"
    )
    env = pipeline_env(repo)
    env.pop("PYTHONPATH")
    result = subprocess.run([sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    scores = eval(result.stdout.strip())  # noqa: S307 (our own printed dict)
    assert {"lion", "tiger"} <= set(scores) and len(scores) == 12


def test_retrain_waits_for_its_thresholds_then_retrains_through_the_gate(repo: Path) -> None:
    first = summary(retrain(repo))
    # the two tags added to the vocabulary file have no labels: ranked already, not a reason to retrain
    assert first["due"] is False and first["retrained"] is False and first["outcome"] == first["reason"]
    assert first["growth"]["new_tags"] == 0 and first["growth"]["new_vocabulary_tags"] == 2
    assert "new labelled tags 0 (threshold 3)" in first["reason"] and "vocabulary only" in first["reason"]
    assert retrain(repo).returncode == 0  # idempotent: still nothing due, nothing changed
    assert json.loads((repo / "metrics/embedded/registered.json").read_text())["version"] == 1

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["download"]["embedded"]["options"]["num_images"] = 200  # 50 more labelled images
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = summary(retrain(repo))
    assert second["due"] is True and second["retrained"] is True and second["outcome"] == "retrained"
    assert second["growth"]["new_images"] == 50 and "new labelled images 50 (threshold 40)" in second["reason"]
    registered = json.loads((repo / "metrics/embedded/registered.json").read_text())
    gate = registered["gate"]
    assert registered["version"] == 2 and gate["champion_version"] == 1
    won = gate["challenger_value"] > gate["champion_value"] + params["register"]["embedded"]["min_margin"]
    assert gate["promoted"] is won and ("champion" in registered["aliases"]) is won


def test_retrain_refuses_while_another_pipeline_run_holds_the_lock(repo: Path) -> None:
    with pipeline_lock(repo, "a test holding the lock"):
        result = retrain(repo)
    assert result.returncode != 0
    assert "another pipeline run holds" in result.stdout + result.stderr
    assert "a test holding the lock" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def prefect_server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A temporary Prefect server on 127.0.0.1 and the environment that points at it."""
    folder = tmp_path_factory.mktemp("prefect")
    port = free_port()
    env = {**pipeline_env(repo), "PREFECT_HOME": str(folder / "home")}
    log = folder / "server.log"
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: requests.get(f"{api}/health", timeout=2).ok, 120, log)
        yield {**env, "PREFECT_API_URL": api}
    finally:
        stop(server)


def trigger(env: dict[str, str], root: Path, deployment: str) -> dict[str, Any]:
    """Run a deployment through the Prefect API and wait for it; its final state and schedules."""
    script = (
        "import asyncio, json\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.deployments import run_deployment\n"
        "async def main():\n"
        "    async with get_client() as client:\n"
        f"        deployment = await client.read_deployment_by_name({deployment!r})\n"
        f"    run = await run_deployment({deployment!r}, timeout=600, poll_interval=2)\n"
        "    crons = [s.schedule.cron for s in deployment.schedules]\n"
        "    zones = [s.schedule.timezone for s in deployment.schedules]\n"
        "    limit = deployment.global_concurrency_limit\n"
        "    print(json.dumps({'state': run.state.type.value, 'crons': crons, 'zones': zones,\n"
        "                      'limit': limit.limit if limit else None,\n"
        "                      'collisions': str(deployment.concurrency_options.collision_strategy.value)\n"
        "                      if deployment.concurrency_options else None}))\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=700)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def deployment_exists(env: dict[str, str], deployment: str) -> bool:
    inspect = [str(BIN / "prefect"), "deployment", "inspect", deployment]
    return subprocess.run(inspect, env=env, capture_output=True).returncode == 0


def test_a_served_deployment_runs_through_the_prefect_api(repo: Path, prefect_server: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    served = subprocess.Popen(
        [sys.executable, "-m", "pipelines.retrain", "serve", "--dataset", "embedded"], cwd=repo, env=prefect_server,
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
    )
    try:
        wait_for(lambda: deployment_exists(prefect_server, "retrain/retrain-embedded"), 180, log)
        answer = trigger(prefect_server, repo, "retrain/retrain-embedded")
        assert answer == {"state": "COMPLETED", "crons": ["0 3 * * *"], "zones": ["Europe/Paris"], "limit": 1,
                          "collisions": "ENQUEUE"}, log.read_text()[-3000:]
        text = log.read_text()
        assert "nothing is due" in text or "retraining is due" in text, text[-3000:]
    finally:
        stop(served)


def test_a_worker_runs_the_deployed_flow(repo: Path, prefect_server: dict[str, str], tmp_path: Path) -> None:
    prefect = str(BIN / "prefect")
    subprocess.run([prefect, "work-pool", "create", "sdl-test", "--type", "process"], env=prefect_server, check=True,
                   capture_output=True)
    deployed = subprocess.run(
        [sys.executable, "-m", "pipelines.retrain", "deploy", "--dataset", "embedded", "--pool", "sdl-test"],
        cwd=repo, env=prefect_server, capture_output=True, text=True, timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [prefect, "worker", "start", "--pool", "sdl-test"], cwd=repo, env=prefect_server,
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
    )
    try:
        answer = trigger(prefect_server, repo, "retrain/retrain-embedded")
        assert answer["state"] == "COMPLETED", log.read_text()[-3000:]
        assert answer["zones"] == ["Europe/Paris"] and answer["limit"] == 1, answer
    finally:
        stop(worker)


ARTIFACTS_AND_RUNS = (
    "import asyncio, json, sys\n"
    "from prefect.client.orchestration import get_client\n"
    "from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, DeploymentFilter, "
    "DeploymentFilterName\n"
    "async def main():\n"
    "    async with get_client() as client:\n"
    "        keys = sys.argv[1].split(',')\n"
    "        found = await client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))\n"
    "        runs = await client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[sys.argv[2]])))\n"
    "        print(json.dumps({'artifacts': {a.key: {'type': a.type, 'data': str(a.data)} for a in found},\n"
    "                          'runs': [{'state': r.state.type.value if r.state else None,\n"
    "                                    'by': r.created_by.type if r.created_by else None,\n"
    "                                    'parameters': r.parameters} for r in runs]}))\n"
    "asyncio.run(main())\n"
)
KEYS = ("embedded-validation", "embedded-expectations", "embedded-evaluation", "embedded-metrics", "embedded-gate",
        "embedded-gate-scores", "embedded-mlflow-run")


def artifacts_and_runs(env: dict[str, str], root: Path) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", ARTIFACTS_AND_RUNS, ",".join(KEYS), "retrain-embedded"], cwd=root,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_rebuild_publishes_artifacts_and_a_new_vocabulary_triggers_retraining(
    repo: Path, prefect_server: dict[str, str], tmp_path: Path
) -> None:
    """Against a real Prefect server: the rebuild flow leaves the validation report, the
    evaluation against the paper, the gate's decision and a link to the MLflow run as
    artifacts; its embed changes the vocabulary, the event it emits makes the automation of
    the served retraining deployment start a run, which the serving process runs."""
    log = tmp_path / "serve.log"
    served = subprocess.Popen(
        [sys.executable, "-m", "pipelines.retrain", "serve", "--dataset", "embedded"], cwd=repo, env=prefect_server,
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
    )
    try:
        wait_for(lambda: deployment_exists(prefect_server, "retrain/retrain-embedded"), 180, log)
        before = len(artifacts_and_runs(prefect_server, repo)["runs"])
        with open(repo / "vocabularies/embedded.txt", "a", encoding="utf-8") as handle:
            handle.write("leopard\n")
        rebuilt = subprocess.run([sys.executable, "-m", "pipelines.rebuild", "--dataset", "embedded"], cwd=repo,
                                 env=prefect_server, capture_output=True, text=True, timeout=900)
        assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
        assert "event sdl.vocabulary.changed emitted" in rebuilt.stdout + rebuilt.stderr
        found = artifacts_and_runs(prefect_server, repo)
        artifacts = found["artifacts"]
        assert set(artifacts) == set(KEYS), sorted(artifacts)
        assert artifacts["embedded-validation"]["type"] == "markdown" and "PASSED" in artifacts["embedded-validation"]["data"]
        assert artifacts["embedded-evaluation"]["type"] == "markdown" and "| ZSL | map |" in artifacts["embedded-evaluation"]["data"]
        assert artifacts["embedded-metrics"]["type"] == "table" and artifacts["embedded-gate-scores"]["type"] == "table"
        registered = json.loads((repo / "metrics/embedded/registered.json").read_text())
        assert "Promotion gate of sdl-embedded" in artifacts["embedded-gate"]["data"]
        link = artifacts["embedded-mlflow-run"]
        # (Prefect keeps a link artifact as Markdown: "[text](url)")
        assert "(http://127.0.0.1:5000/#/experiments/" in link["data"] and f"/runs/{registered['run_id']})" in link["data"]

        def triggered() -> bool:
            runs = artifacts_and_runs(prefect_server, repo)["runs"][: None]
            done = [r for r in runs if r["by"] == "AUTOMATION" and r["state"] == "COMPLETED"]
            return len(runs) > before and bool(done)

        wait_for(triggered, 300, log)
        runs = artifacts_and_runs(prefect_server, repo)["runs"]
        assert any(r["by"] == "AUTOMATION" and r["parameters"] == {"dataset": "embedded"} for r in runs), runs
    finally:
        stop(served)


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        kill_group(process, signal.SIGTERM, grace=30)


def wait_for(condition: Any, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out; log:\n{log.read_text()[-3000:] if log.exists() else ''}")
