"""The lifecycle commands of ``mlgov`` (promote, approve, reject, transitions, policies,
evidence, history, webhooks, worker), driven with Typer's CliRunner against a real server
(uvicorn on 127.0.0.1 in a thread) on SQLite and, with ``MLGOV_TEST_DATABASE_URL``,
PostgreSQL. Each person runs commands with their own token (``MLGOV_URL``/``MLGOV_TOKEN``)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
import typer
from typer.testing import CliRunner, Result

from mlgov.cli.main import app
from mlgov.config import Settings
from mlgov.webhooks.worker import verify_signature
from test_cli import json_lines, write_json
from test_client import Live
from test_client_lifecycle import (
    LOANS,
    Team,
    add_version,
    make_team,
    receiver,
    register_limited,
    serve_live,
    to_production,
    to_staging,
)


class Shell(Protocol):
    def __call__(self, user: str, *args: object, code: int = 0, **env: str | None) -> Result: ...


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with serve_live(settings) as server:
        yield server


@pytest.fixture
def team(live: Live) -> Iterator[Team]:
    with make_team(live) as crew:
        yield crew


@pytest.fixture
def mlgov(live: Live, team: Team, tmp_path: Path) -> Shell:
    """``mlgov(user, *args)`` runs ``mlgov ARGS`` as ``user`` and checks the exit code (0
    unless ``code`` says otherwise)."""

    def invoke(user: str, *args: object, code: int = 0, **env: str | None) -> Result:
        result = CliRunner().invoke(
            app,
            [str(a) for a in args],
            env={
                "MLGOV_CONFIG": str(tmp_path / "no-config.json"),
                "MLGOV_URL": live.url,
                "MLGOV_TOKEN": team.tokens[user],
                "MLGOV_DATA_DIR": None,
                "MLGOV_DATABASE_URL": None,
                "COLUMNS": "250",
                **env,
            },
        )
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    return invoke


def rows(text: str, pattern: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(pattern, line)]


# ------------------------------------------------------------------ staging and evidence


def test_promote_to_staging_waits_for_evidence(mlgov: Shell, team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path)
    team.admin.create_dataset("loans", "data", reason="holdout data")
    team.admin.create_dataset_version("loans", reason="snapshot", **LOANS)

    promoted = mlgov("dana", "promote", "credit", "1", "--to", "staging", "--reason", "ready")
    text = promoted.stdout
    assert "Transition request #1: credit version 1, development → staging" in text
    assert "pending: 2 requirements unmet" in text
    assert "requirements for staging (the limited policy, version 1)" in text
    assert re.search(r"✘\s+evidence\.performance\s+no performance evidence recorded", text)
    # The registration's scan (#1) could not examine an artifact of format "other".
    assert re.search(r"✘\s+evidence\.security_scan\s+the latest security_scan evidence \(#1\) "
                     r"failed", text)  # fmt: skip

    # refused: a data scientist records no evidence; usage errors exit 2
    refused = mlgov("dana", "evidence", "add", "credit", "1", "--kind", "performance",
                    "--passed", "--reason", "my numbers", code=1)  # fmt: skip
    assert "Forbidden (403)" in refused.stderr and refused.stdout == ""
    no_verdict = mlgov("val", "evidence", "add", "credit", "1", "--kind", "performance",
                       "--reason", "r", code=2)  # fmt: skip
    assert "--passed or --failed" in no_verdict.stderr
    bad_dataset = mlgov("val", "evidence", "add", "credit", "1", "--kind", "performance",
                        "--passed", "--dataset", "loans", "--reason", "r", code=2)  # fmt: skip
    assert "NAME@VERSION" in bad_dataset.stderr

    report = tmp_path / "holdout-report.bin"
    report.write_bytes(bytes(range(256)) * 40)
    digest = hashlib.sha256(report.read_bytes()).hexdigest()
    added = mlgov(
        "val", "evidence", "add", "credit", "1", "--kind", "performance", "--passed",
        "--results", write_json(tmp_path / "results.json", {"auc": 0.83}),
        "--checks", write_json(tmp_path / "checks.json",
                               [{"name": "auc", "passed": True, "value": 0.83, "threshold": 0.75}]),
        "--summary", "AUC above the bar", "--suite", "holdout@2", "--dataset", "loans@1",
        "--attach", report, "--reason", "holdout evaluation",
    )  # fmt: skip
    assert "Recorded performance evidence #2 on credit version 1: passed" in added.stdout
    assert re.search(rf"holdout-report\.bin\s+application/octet-stream\s+10\.0 KiB\s+{digest}",
                     added.stdout)  # fmt: skip

    shown = mlgov("dana", "transitions", "show", "1").stdout
    assert "pending" in shown and "requested" in shown and "by dana" in shown
    assert re.search(r"✔\s+evidence\.performance\s+performance evidence #2 passed", shown)
    assert re.search(r"✘\s+evidence\.security_scan", shown)

    mlgov("val", "evidence", "add", "credit", "1", "--kind", "security_scan", "--passed",
          "--summary", "no findings", "--reason", "scan clean")  # fmt: skip
    applied = json.loads(mlgov("dana", "transitions", "show", "1", "--json").stdout)
    assert applied["status"] == "applied" and applied["closed_by"] == "val"
    assert team.ds.get_version("credit", 1)["stage"] == "staging"

    listed = mlgov("ada", "evidence", "list", "credit", "1").stdout
    assert re.search(r"2\s+performance\s+yes\s+AUC above the bar\s+holdout@2\s+loans@1\s+"
                     r"holdout-report\.bin\s+api\s+val", listed)  # fmt: skip
    assert re.search(r"1\s+security_scan\s+no\s+", listed)  # the scan at registration
    assert re.search(r"3\s+security_scan\s+yes\s+no findings", listed)
    scans = json_lines(mlgov("ada", "evidence", "list", "credit", "1", "--kind",
                             "security_scan", "--json").stdout)  # fmt: skip
    assert [(e["id"], e["source"]) for e in scans] == [(1, "scan"), (3, "api")]

    dest = tmp_path / "copy.bin"
    saved = mlgov("ada", "evidence", "download", "credit", "1", "2", "holdout-report.bin",
                  "--out", dest)  # fmt: skip
    assert "sha256 verified" in saved.stdout and dest.read_bytes() == report.read_bytes()
    missing = mlgov("ada", "evidence", "download", "credit", "1", "2", "nope.bin",
                    "--out", dest, code=1)  # fmt: skip
    assert "Not found (404)" in missing.stderr and dest.read_bytes() == report.read_bytes()


# ---------------------------------------------------------- production, approvals, history


def test_promote_to_production_approve_and_history(mlgov: Shell, team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path)
    to_staging(team, "credit", 1)
    staged_at = datetime.now(UTC)

    refused = mlgov("dana", "promote", "credit", "1", "--to", "production", "--reason", "r",
                    code=1)  # fmt: skip
    assert "Forbidden (403)" in refused.stderr
    promoted = mlgov("mia", "promote", "credit", "1", "--to", "production", "--reason", "go live")
    assert "pending: 4 requirements unmet" in promoted.stdout
    for unmet in (
        r"✘\s+evidence\.robustness\s+no robustness evidence recorded",
        r"✘\s+documentation\.model\.description\s+the model's description is missing",
        r"✘\s+documentation\.model\.intended_use",
        r"✘\s+approvals\.0\s+needs 1 more: 0 of 1 approval from approver",
        r"✔\s+evidence\.performance",
    ):
        assert re.search(unmet, promoted.stdout), unmet

    mlgov("val", "evidence", "add", "credit", "1", "--kind", "robustness", "--passed",
          "--reason", "perturbation tests")  # fmt: skip

    inbox = mlgov("ada", "transitions", "--status", "pending").stdout
    (row,) = rows(inbox, r"^\s*2\s")
    assert re.search(r"2\s+credit\s+1\s+staging → production\s+pending\s+3\s+mia", row)
    assert rows(inbox, r"^\s*1\s") == []  # applied: not in the inbox

    not_a_decider = mlgov("mia", "approve", "2", "--comment", "mine", code=1)
    assert "Forbidden (403)" in not_a_decider.stderr
    approved = mlgov("ada", "approve", "2", "--comment", "evidence reviewed")
    assert "pending: 2 requirements unmet" in approved.stdout
    assert "still unmet for production (the limited policy, version 1)" in approved.stdout
    assert re.search(r"✘\s+documentation\.model\.description", approved.stdout)
    assert "approvals.0" not in approved.stdout and "✔" not in approved.stdout
    assert team.ds.get_version("credit", 1)["stage"] == "staging"

    # the model card, filled in through the SDK, completes the request
    team.ds.update_model("credit", "model card", description="Scores loans",
                         intended_use="consumer loans")  # fmt: skip
    assert team.ds.get_version("credit", 1)["stage"] == "production"
    late = mlgov("bo", "approve", "2", "--comment", "late", code=1)
    assert "Conflict (409)" in late.stderr and "transition request #2 is applied" in late.stderr

    shown = mlgov("ada", "transitions", "show", "2").stdout
    assert re.search(r"applied\s", shown) and "closed" in shown and "by dana" in shown
    assert re.search(r"approve\s+ada\s+approver\s+evidence reviewed", shown)

    now = mlgov("dana", "history", "credit").stdout
    assert re.search(r"production\s+version 1", now) and re.search(r"at\s+now", now)
    assert re.search(r"1\s+staging\s+production\s+dana\s+#2\s+go live", now)
    assert re.search(r"1\s+\(registered\)\s+development\s+dana", now)
    then = mlgov("dana", "history", "credit", "--at", staged_at.isoformat()).stdout
    assert re.search(r"production\s+none", then)
    assert re.search(r"stages at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", then)
    assert re.search(r"^\s*1\s+staging\s", then, re.MULTILINE)
    assert "go live" not in then
    as_json = json.loads(mlgov("dana", "history", "credit", "--json").stdout)
    assert as_json["production"] == 1 and len(as_json["changes"]) == 3
    bad = mlgov("dana", "history", "credit", "--at", "yesterday", code=2)
    assert "ISO 8601" in bad.stderr


def test_self_approval_is_refused_in_red(mlgov: Shell, team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path, description="d",
                     intended_use="loans")  # fmt: skip
    to_staging(team, "credit", 1)
    team.validator.add_evidence("credit", 1, "robustness", True, reason="checked")
    mlgov("bo", "promote", "credit", "1", "--to", "production", "--reason", "go live")

    refused = mlgov("bo", "approve", "2", "--comment", "fine by me", code=1, FORCE_COLOR="1")
    assert "\x1b[1;31mError: Forbidden (403)" in refused.stderr
    assert "separation of duties: bo requested this transition and cannot approve it" in (
        refused.stderr
    )
    assert refused.stdout == ""
    assert team.admin.get_transition(2)["decisions"] == []
    approved = mlgov("ada", "approve", "2", "--reason", "reviewed")  # --reason is an alias
    assert "applied" in approved.stdout


# ------------------------------------------------------------------------ reject, cancel


def test_reject_cancel_and_listing(mlgov: Shell, team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path)
    mlgov("dana", "promote", "credit", "1", "--to", "staging", "--reason", "try")
    rejected = mlgov("val", "reject", "1", "--comment", "no test report yet")
    assert "rejected by val: no test report yet" in rejected.stdout
    again = mlgov("val", "reject", "1", "--comment", "twice", code=1)
    assert "Conflict (409)" in again.stderr and "is rejected" in again.stderr

    mlgov("dana", "promote", "credit", "1", "--to", "staging", "--reason", "second try")
    still = mlgov("ada", "approve", "2", "--comment", "ok", code=1)
    assert "needs no approvals" in still.stderr
    not_yours = mlgov("mia", "transitions", "cancel", "2", "--reason", "r", code=1)
    assert "only the requester (dana) may cancel request #2" in not_yours.stderr
    cancelled = mlgov("dana", "transitions", "cancel", "2", "--reason", "wrong version")
    assert "cancelled: wrong version" in cancelled.stdout

    pending = mlgov("dana", "promote", "credit", "1", "--to", "staging", "--reason", "third")
    assert "pending: 2 requirements unmet" in pending.stdout
    table = mlgov("dana", "transitions").stdout
    assert [int(r.split()[0]) for r in rows(table, r"^\s*\d+\s+credit")] == [3, 2, 1]
    assert re.search(r"2\s+credit\s+1\s+development → staging\s+cancelled\s+dana", table)
    assert re.search(r"3\s+credit\s+1\s+development → staging\s+pending\s+2\s+dana", table)
    listed = json_lines(mlgov("dana", "transitions", "--status", "rejected", "--json").stdout)
    assert [t["id"] for t in listed] == [1]
    assert (
        "first 1 shown" in mlgov("dana", "transitions", "--model", "credit", "--limit", "1").stdout
    )
    assert "(none)" in mlgov("dana", "transitions", "--model", "nope").stdout
    assert mlgov("dana", "transitions", "--status", "stuck", code=2).exit_code == 2


def test_promote_usage_errors_and_rollback(mlgov: Shell, team: Team, tmp_path: Path):
    register_limited(team.admin, team.ds, "credit", tmp_path, description="d",
                     intended_use="loans")  # fmt: skip
    for args in (
        ["credit", "--reason", "r"],
        ["credit", "1", "--reason", "r"],
        ["credit", "1", "--rollback", "--reason", "r"],
        ["credit", "--rollback", "--to", "staging", "--reason", "r"],
        ["credit", "1", "--to", "staging"],
    ):
        assert mlgov("mia", "promote", *args, code=2).exit_code == 2
    nothing = mlgov("mia", "promote", "credit", "--rollback", "--reason", "r", code=1)
    assert "Nothing to roll back" in nothing.stderr
    assert "no archived version that was in production" in nothing.stderr

    to_staging(team, "credit", 1)
    to_production(team, "credit", 1)
    add_version(team.ds, "credit", tmp_path)
    to_staging(team, "credit", 2)
    to_production(team, "credit", 2)
    back = mlgov("mia", "promote", "credit", "--rollback", "--reason", "v2 misbehaves")
    assert "credit version 1, archived → production (rollback)" in back.stdout
    assert "pending: 1 requirement unmet" in back.stdout
    assert "requirements for rollback (the limited policy, version 1)" in back.stdout
    request = re.search(r"Transition request #(\d+)", back.stdout)
    assert request is not None
    approved = mlgov("ada", "approve", request.group(1), "--comment", "roll back")
    assert "applied: version 1 is in production now" in approved.stdout
    assert re.search(r"production\s+version 1", mlgov("dana", "history", "credit").stdout)


# ------------------------------------------------------------------------------ policies


def test_policies_commands(mlgov: Shell, team: Team, tmp_path: Path):
    listed = mlgov("dana", "policies", "list").stdout
    assert [r.split()[0] for r in rows(listed, r"^\s*(high|limited|minimal|unacceptable)\s")] == [
        "high", "limited", "minimal", "unacceptable"]  # fmt: skip
    assert re.search(r"limited\s+1\s+1\s+[0-9a-f]{12}\s+system", listed)

    original = team.admin.get_policy("limited")["document"]
    shown = mlgov("dana", "policies", "show", "limited")
    assert shown.stdout == original  # the YAML alone on stdout: it can be edited and set
    assert "the limited policy, version 1 of 1" in shown.stderr

    relaxed = tmp_path / "limited.yaml"
    relaxed.write_text(original.replace("evidence: [performance, security_scan]",
                                        "evidence: [performance]"))  # fmt: skip
    refused = mlgov("bo", "policies", "set", "limited", relaxed, "--reason", "r", code=1)
    assert "Forbidden (403)" in refused.stderr
    published = mlgov("admin", "policies", "set", "limited", relaxed, "--reason", "scans later")
    assert re.search(r"Published the limited policy version 2 \(sha256 [0-9a-f]{64}\)",
                     published.stdout)  # fmt: skip
    assert mlgov("dana", "policies", "show", "limited").stdout == relaxed.read_text()
    assert mlgov("dana", "policies", "show", "limited", "--version", "1").stdout == original
    as_json = json.loads(mlgov("dana", "policies", "show", "limited", "--json").stdout)
    assert as_json["version"] == 2 and as_json["versions"] == [1, 2]
    assert re.search(r"limited\s+2\s+1, 2\s", mlgov("dana", "policies", "list").stdout)

    same = mlgov("admin", "policies", "set", "limited", relaxed, "--reason", "again", code=1)
    assert "Conflict (409)" in same.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("policy: limited\nstages: [oops\n")
    invalid = mlgov("admin", "policies", "set", "limited", broken, "--reason", "r", code=1)
    assert "Invalid input (422)" in invalid.stderr and "field: document" in invalid.stderr
    missing = mlgov("admin", "policies", "set", "limited", tmp_path / "nope.yaml",
                    "--reason", "r", code=2)  # fmt: skip
    assert "nope.yaml" in missing.stderr
    assert mlgov("dana", "policies", "show", "extreme", code=2).exit_code == 2
    gone = mlgov("dana", "policies", "show", "limited", "--version", "7", code=1)
    assert "Not found (404)" in gone.stderr


# ------------------------------------------------------------------ webhooks and worker


def test_webhooks_and_the_worker(mlgov: Shell, team: Team, live: Live, tmp_path: Path):
    # Registered before the subscription: its scan's evidence.added is for nobody.
    register_limited(team.admin, team.ds, "credit", tmp_path)
    with receiver() as inbox:
        refused = mlgov("bo", "webhooks", "create", "feed", inbox.url, "--event",
                        "evidence.added", "--reason", "r", code=1)  # fmt: skip
        assert "Forbidden (403)" in refused.stderr
        unknown = mlgov("admin", "webhooks", "create", "feed", inbox.url, "--event", "nope",
                        "--reason", "r", code=2)  # fmt: skip
        assert "nope" in unknown.stderr
        created = mlgov("admin", "webhooks", "create", "feed", inbox.url, "--event",
                        "evidence.added", "--event", "transition.applied", "--description",
                        "governance feed", "--reason", "notify the risk office")  # fmt: skip
        assert f"Created webhook feed → {inbox.url}" in created.stdout
        assert "webhook signing secret — shown once, store it now" in created.stdout
        assert "cannot be shown again" in created.stderr
        secret = re.search(r"whsec_[A-Za-z0-9_-]{20,}", created.stdout)
        assert secret is not None

        listed = mlgov("admin", "webhooks", "list").stdout
        assert re.search(r"feed\s+http://127\.0\.0\.1:\d+/hooks/mlgov\s+evidence\.added, "
                         r"transition\.applied\s+yes\s+admin", listed)  # fmt: skip
        assert secret.group() not in listed

        team.validator.add_evidence("credit", 1, "performance", True, reason="checked")
        pending = mlgov("admin", "webhooks", "deliveries", "feed").stdout
        assert re.search(r"1\s+evidence\.added\s+pending\s+0", pending)

        worker = mlgov("admin", "worker", "--once", "--data-dir", live.settings.data_dir,
                       MLGOV_DATABASE_URL=live.settings.database_url)  # fmt: skip
        assert "1 delivery delivered; 0 validation jobs run." in worker.stdout
        ((headers, body),) = inbox.received
        assert headers["x-mlgov-event"] == "evidence.added"
        assert verify_signature(
            secret.group(), headers["x-mlgov-timestamp"], body, headers["x-mlgov-signature"]
        )
        assert json.loads(body)["data"]["model"] == "credit"

    delivered = mlgov("admin", "webhooks", "deliveries", "feed", "--status", "delivered").stdout
    assert re.search(r"1\s+evidence\.added\s+delivered\s+1\s+204", delivered)
    (record,) = json_lines(mlgov("admin", "webhooks", "deliveries", "feed", "--json").stdout)
    assert record["attempt_log"][0]["status_code"] == 204
    idle = mlgov("admin", "worker", "--once", "--data-dir", live.settings.data_dir,
                 MLGOV_DATABASE_URL=live.settings.database_url)  # fmt: skip
    assert "0 deliveries delivered; 0 validation jobs run." in idle.stdout

    removed = mlgov("admin", "webhooks", "delete", "feed", "--reason", "office moved")
    assert "Removed webhook feed (its delivery history is kept)." in removed.stdout
    (hook,) = json_lines(mlgov("admin", "webhooks", "list", "--json").stdout)
    assert hook["active"] is False and hook["disabled_at"]
    twice = mlgov("admin", "webhooks", "delete", "feed", "--reason", "again", code=1)
    assert "Conflict (409)" in twice.stderr and "removed already" in twice.stderr
    not_reader = mlgov("dana", "webhooks", "list", code=1)
    assert "Forbidden (403)" in not_reader.stderr


# ------------------------------------------------------------------------------ reasons


def test_every_lifecycle_change_requires_a_reason():
    """Like test_cli's check, for the lifecycle's changing commands (approve and reject call
    it --comment, with --reason as an alias)."""
    root = typer.main.get_command(app)

    def command(path: str) -> Any:
        found = root
        for name in path.split():
            found = found.commands[name]  # type: ignore[attr-defined]
        return found

    for path in ("promote", "transitions cancel", "policies set", "evidence add",
                 "webhooks create", "webhooks delete"):  # fmt: skip
        (reason,) = [p for p in command(path).params if p.name == "reason"]
        assert reason.required and reason.opts == ["--reason"], path
    for path in ("approve", "reject"):
        (comment,) = [p for p in command(path).params if p.name == "comment"]
        assert comment.required and comment.opts == ["--comment", "--reason"], path


@pytest.mark.parametrize(
    "args",
    [
        ["promote", "m", "1", "--to", "staging"],
        ["promote", "m", "--rollback"],
        ["approve", "1"],
        ["reject", "1"],
        ["transitions", "cancel", "1"],
        ["policies", "set", "limited", "{file}"],
        ["evidence", "add", "m", "1", "--kind", "performance", "--passed"],
        ["webhooks", "create", "w", "https://x.example", "--event", "evidence.added"],
        ["webhooks", "delete", "w"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_missing_reason_is_a_usage_error(tmp_path: Path, args: list[str]):
    policy = tmp_path / "policy.yaml"
    policy.write_text("policy: limited\n")
    result = CliRunner().invoke(
        app,
        [a.format(file=policy) for a in args],
        env={"MLGOV_URL": "http://127.0.0.1:9", "MLGOV_TOKEN": "mlgov_x"},
    )
    assert result.exit_code == 2
    assert re.search(r"Missing option '--(reason|comment)'", result.stderr), result.stderr
