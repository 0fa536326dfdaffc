"""The validation commands of ``mlgov`` (suites, datasets upload-data, validate --wait,
validations, worker --once) and their SDK calls, against a real server (uvicorn on 127.0.0.1
in a thread) and a real validation worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import skops.io
from typer.testing import CliRunner, Result

from mlgov.cli.main import app
from mlgov.client import MlgovError
from mlgov.config import Settings
from mlgov.server import validation_runner
from test_client import Live
from test_client_lifecycle import Team, make_team, serve_live
from test_validation_api import SIGNATURE, credit_rows, fitted, to_csv

pytestmark = pytest.mark.slow  # validation jobs run in child processes

SUITE = """\
label: default
task: classification
checks:
  performance:
    metrics:
      roc_auc: {min: 0.6}
    bootstrap: {samples: 10}
"""


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with serve_live(settings) as server:
        yield server


@pytest.fixture
def team(live: Live) -> Iterator[Team]:
    with make_team(live) as crew:
        yield crew


@pytest.fixture
def worker(live: Live) -> Iterator[None]:
    """A validation worker polling beside the server, as `mlgov worker` runs it."""
    stop = threading.Event()
    runner = validation_runner(live.server.services, name="cli-test-worker")
    thread = threading.Thread(target=runner.run_forever, args=(stop, 0.1), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(30)


def mlgov(
    live: Live, team: Team, tmp_path: Path, user: str, *args: object, code: int = 0, **env: str
) -> Result:
    result = CliRunner().invoke(
        app,
        [str(a) for a in args],
        env={
            "MLGOV_CONFIG": str(tmp_path / "no-config.json"),
            "MLGOV_URL": live.url,
            "MLGOV_TOKEN": team.tokens[user],
            "COLUMNS": "250",
            **env,
        },
    )
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def prepare(team: Team, tmp_path: Path, live: Live) -> None:
    """A registered credit model (version 1 by dana) and a dataset version whose data is a
    CSV file the admin will upload (its URI names a file that does not exist)."""
    rows = credit_rows(600, 21)
    data = to_csv(rows)
    (tmp_path / "apps.csv").write_bytes(data)
    team.admin.create_model("credit", "risk", "limited", reason="new model")
    artifact = tmp_path / "credit.skops"
    artifact.write_bytes(skops.io.dumps(fitted(rows), compression=zipfile.ZIP_DEFLATED))
    team.ds.create_version("credit", artifact, format="skops", signature=SIGNATURE, reason="fit")
    team.admin.create_dataset("apps", "data", reason="new")
    team.admin.create_dataset_version(
        "apps",
        content_sha256=hashlib.sha256(data).hexdigest(),
        uri=(live.settings.data_dir / "not-here.csv").as_uri(),
        schema=[{"name": n, "type": "double"} for n in rows],
        row_count=600,
        reason="extract",
    )


def test_validate_wait_shows_the_outcome_and_the_report_downloads(
    live: Live, team: Team, tmp_path: Path, worker: None
) -> None:
    prepare(team, tmp_path, live)
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(SUITE)
    run = lambda user, *a, code=0: mlgov(live, team, tmp_path, user, *a, code=code)  # noqa: E731

    # The suite: a data scientist may not publish it, a validator may.
    run("dana", "suites", "publish", "std", suite_file, "--reason", "std", code=1)
    out = run("val", "suites", "publish", "std", suite_file, "--reason", "validation standard")
    assert "Published suite std version 1" in out.stdout
    assert "std" in run("val", "suites", "list").stdout
    assert run("val", "suites", "show", "std").stdout == SUITE

    # The data is uploaded; a file whose hash differs is refused.
    (tmp_path / "other.csv").write_bytes(b"income\n1\n")
    bad = run(
        "admin",
        "datasets",
        "upload-data",
        "apps",
        1,
        tmp_path / "other.csv",
        "--reason",
        "x",
        code=1,
    )
    assert "sha256" in bad.stderr
    run(
        "admin",
        "datasets",
        "upload-data",
        "apps",
        1,
        tmp_path / "apps.csv",
        "--reason",
        "for validation",
    )

    run(
        "val",
        "validate",
        "credit",
        1,
        "--suite",
        "std",
        "--dataset",
        "apps",
        "--reason",
        "x",
        code=2,
    )
    done = run(
        "val",
        "validate",
        "credit",
        1,
        "--suite",
        "std",
        "--dataset",
        "apps@1",
        "--reason",
        "pre-staging validation",
        "--wait",
        "--json",
    )
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["passed"] is True
    assert [o["kind"] for o in job["outcome"]] == ["performance"]

    listed = run("val", "validations", "--json").stdout.splitlines()
    assert [json.loads(line)["id"] for line in listed] == [job["id"]]
    shown = run("val", "validations", "show", job["id"]).stdout
    assert "succeeded" in shown and "performance" in shown
    saved = run("val", "validations", "report", job["id"], "--out", tmp_path).stdout
    assert "sha256 verified" in saved
    report = tmp_path / f"validation-{job['id']}.html"
    assert hashlib.sha256(report.read_bytes()).hexdigest() == job["report"]["sha256"]

    evidence = team.validator.list_evidence("credit", 1)
    assert {(e["kind"], e["source"]) for e in evidence} == {
        ("security_scan", "scan"),
        ("performance", "validation"),
    }


def test_a_failed_run_exits_1_with_its_error(
    live: Live, team: Team, tmp_path: Path, worker: None
) -> None:
    prepare(team, tmp_path, live)
    team.validator.publish_suite("std", SUITE, reason="std")
    # Never uploaded, and the file its URI names does not exist: the run fails.
    failed = mlgov(
        live,
        team,
        tmp_path,
        "val",
        "validate",
        "credit",
        1,
        "--suite",
        "std",
        "--dataset",
        "apps@1",
        "--reason",
        "x",
        "--wait",
        code=1,
    )
    assert "no such file" in failed.stderr
    [job] = team.validator.list_validations(status="failed")
    assert job["error"] and job["passed"] is None


def test_sdk_refusals_and_the_worker_command(live: Live, team: Team, tmp_path: Path) -> None:
    prepare(team, tmp_path, live)
    team.validator.publish_suite("std", SUITE, reason="std")
    team.admin.upload_dataset_data("apps", 1, tmp_path / "apps.csv", reason="for validation")
    with pytest.raises(MlgovError) as refused:
        team.ds.validate("credit", 1, "std", "apps@1", reason="my own model")
    assert refused.value.status == 403
    job = team.validator.validate("credit", 1, "std", ("apps", 1), reason="check")
    assert job["status"] == "queued"

    env = {
        "MLGOV_DATA_DIR": str(live.settings.data_dir),
        "MLGOV_DATABASE_URL": live.settings.database_url,
    }
    out = mlgov(live, team, tmp_path, "admin", "worker", "--once", **env)
    assert "1 validation job run" in out.stdout
    done = team.validator.wait_for_validation(job["id"], timeout=5)
    assert done["status"] == "succeeded" and done["worker"]
