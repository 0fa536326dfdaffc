"""The ``mlgov`` command line, driven with Typer's CliRunner against a real server (uvicorn on
127.0.0.1 in a thread, see test_client.py), with its config file in tmp_path."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import uvicorn
from typer.testing import CliRunner, Result

from mlgov import __version__
from mlgov.cli.main import app
from mlgov.tlog.note import Checkpoint, Signer, Verifier, open_note
from test_client import ADMIN_TOKEN, Live, run_live_server

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
SIGNATURE = {"inputs": [{"name": "age", "type": "integer"}, {"name": "income", "type": "double"}]}

Run = Callable[..., Result]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with run_live_server(tmp_path_factory.mktemp("cli") / "data") as server:
        yield server


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "mlgov-config" / "config.json"


@pytest.fixture
def run(config_file: Path) -> Run:
    """Invoke ``mlgov ARGS`` with a private config file and no credentials in the env."""
    env: dict[str, str | None] = {
        "MLGOV_CONFIG": str(config_file),
        "MLGOV_URL": None,
        "MLGOV_TOKEN": None,
        "MLGOV_DATA_DIR": None,
        "MLGOV_DATABASE_URL": None,
        "MLGOV_ARTIFACTS_URL": None,
        "MLGOV_BOOTSTRAP_ADMIN_TOKEN": None,
        "COLUMNS": "200",
    }

    def invoke(*args: object, input: str | None = None, **extra_env: str | None) -> Result:
        return CliRunner().invoke(
            app, [str(a) for a in args], input=input, env={**env, **extra_env}
        )

    return invoke


@pytest.fixture
def mlgov(live: Live, run: Run) -> Run:
    """Like ``run``, logged in as the admin; fails the test on a non-zero exit unless told."""
    assert run("login", "--url", live.url, "--token", ADMIN_TOKEN).exit_code == 0

    def invoke(*args: object, input: str | None = None, code: int = 0) -> Result:
        result = run(*args, input=input)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    return invoke


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


# -------------------------------------------------------------------------------- login


def test_login_saves_a_private_config_and_logout_removes_it(
    live: Live, run: Run, config_file: Path
):
    result = run("login", "--url", live.url + "/", input=f"{ADMIN_TOKEN}\n")
    assert result.exit_code == 0, result.stderr
    assert "Logged in to" in result.stdout and "as admin" in result.stdout
    assert ADMIN_TOKEN not in result.stdout  # the prompt hides it
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_file.parent.stat().st_mode) == 0o700
    assert json.loads(config_file.read_text()) == {"url": live.url, "token": ADMIN_TOKEN}

    who = run("whoami")
    assert who.exit_code == 0 and "admin" in who.stdout and live.url in who.stdout
    assert json.loads(run("whoami", "--json").stdout)["roles"] == ["admin"]

    assert run("logout").exit_code == 0 and not config_file.exists()
    after = run("whoami")
    assert after.exit_code == 1 and "not logged in" in after.stderr


def test_login_with_a_bad_token_saves_nothing(live: Live, run: Run, config_file: Path):
    result = run("login", "--url", live.url, "--token", "mlgov_wrong")
    assert result.exit_code == 1
    assert "Unauthenticated (401)" in result.stderr and "unknown token" in result.stderr
    assert not config_file.exists()
    empty = run("login", "--url", live.url, "--token", " ")
    assert empty.exit_code == 2 and "the token is empty" in empty.stderr


def test_login_with_a_password(live: Live, run: Run, mlgov: Run, config_file: Path):
    password = "correct horse battery staple"
    mlgov("users", "create", "lee", "--role", "viewer", "--password-prompt", "--reason", "hire",
          input=f"{password}\n{password}\n")  # fmt: skip
    config_file.unlink()
    result = run("login", "--url", live.url, "--user", "lee", input=f"{password}\n")
    assert result.exit_code == 0, result.stderr
    assert "as lee (viewer)" in result.stdout and password not in result.stdout
    saved = json.loads(config_file.read_text())
    assert saved["url"] == live.url and saved["token"].startswith("mlgov_")
    wrong = run("login", "--url", live.url, "--user", "lee", input="not the password\n")
    assert wrong.exit_code == 1 and "unknown user or wrong password" in wrong.stderr


def test_environment_overrides_the_config_file(live: Live, run: Run):
    result = run("whoami", "--json", MLGOV_URL=live.url, MLGOV_TOKEN=ADMIN_TOKEN)
    assert result.exit_code == 0 and json.loads(result.stdout)["name"] == "admin"


def test_unreachable_server_is_reported(run: Run):
    result = run("whoami", MLGOV_URL="http://127.0.0.1:9", MLGOV_TOKEN="mlgov_x")
    assert result.exit_code == 1 and "cannot reach http://127.0.0.1:9" in result.stderr


# ------------------------------------------------------------------------------- models


def test_models_commands(mlgov: Run):
    created = mlgov(
        "models", "create", "fraud", "--owner-team", "payments", "--risk-tier", "high",
        "--description", "Flags [card] fraud", "--out-of-scope", "loans",
        "--out-of-scope", "insurance", "--tag", "cards", "--tag", "eu", "--reason", "new model",
    )  # fmt: skip
    assert "Registered model fraud" in created.stdout
    mlgov("models", "create", "churn", "--owner-team", "crm", "--risk-tier", "minimal",
          "--reason", "new model")  # fmt: skip

    table = mlgov("models", "list").stdout
    assert re.search(r"churn\s+crm\s+minimal", table)
    assert re.search(r"fraud\s+payments\s+high", table) and "cards, eu" in table
    rows = json_lines(mlgov("models", "list", "--json", "--risk-tier", "high").stdout)
    assert [m["name"] for m in rows] == ["fraud"]
    assert "churn" not in mlgov("models", "list", "--tag", "cards").stdout
    limited = mlgov("models", "list", "--limit", "1").stdout
    assert "churn" in limited and "fraud" not in limited and "first 1 shown" in limited

    shown = mlgov("models", "show", "fraud").stdout
    assert "Flags [card] fraud" in shown and "loans, insurance" in shown
    assert json.loads(mlgov("models", "show", "fraud", "--json").stdout)["tags"] == ["cards", "eu"]

    updated = mlgov("models", "update", "fraud", "--intended-use", "card payments",
                    "--tag", "pci", "--reason", "scope clarified")  # fmt: skip
    assert "Updated model fraud: intended_use, tags" in updated.stdout
    model = json.loads(mlgov("models", "show", "fraud", "--json").stdout)
    assert model["intended_use"] == "card payments" and model["tags"] == ["pci"]


def test_problem_is_shown_in_red_on_stderr_with_exit_1(mlgov: Run, run: Run):
    missing = mlgov("models", "show", "no-such-model", code=1)
    assert (
        "Not found (404)" in missing.stderr and "no model named 'no-such-model'" in missing.stderr
    )
    assert missing.stdout == ""
    invalid = mlgov("models", "create", "x", "--owner-team", "t", "--risk-tier", "extreme",
                    "--reason", "r", code=1)  # fmt: skip
    assert "Invalid input (422)" in invalid.stderr and "field: risk_tier" in invalid.stderr
    red = run("models", "show", "no-such-model", FORCE_COLOR="1")
    assert red.exit_code == 1 and "\x1b[1;31mError: Not found (404)" in red.stderr
    blank = mlgov("models", "create", "y", "--owner-team", "t", "--risk-tier", "high",
                  "--reason", " ", code=1)  # fmt: skip
    assert "field: reason" in blank.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["models", "create", "m", "--owner-team", "t", "--risk-tier", "high"],
        ["models", "update", "m", "--description", "d"],
        ["versions", "create", "m", "{artifact}", "--format", "other", "--signature", "{sig}"],
        ["datasets", "create", "d", "--owner-team", "t"],
        ["datasets", "version-create", "d", "--from-file", "{artifact}", "--schema", "{sig}"],
        ["users", "create", "u", "--role", "viewer"],
        ["users", "grant", "u", "viewer"],
        ["users", "revoke", "u", "viewer"],
        ["users", "disable", "u"],
        ["users", "enable", "u"],
        ["tokens", "create", "--name", "n"],
        ["tokens", "revoke", "tok_0123456789abcdef"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_changing_commands_require_a_reason(run: Run, tmp_path: Path, args: list[str]):
    artifact = tmp_path / "a.bin"
    artifact.write_bytes(b"x")
    sig = write_json(tmp_path / "sig.json", SIGNATURE)
    argv = [a.format(artifact=artifact, sig=sig) for a in args]
    result = run(*argv, MLGOV_URL="http://127.0.0.1:9", MLGOV_TOKEN="mlgov_x")
    assert result.exit_code == 2 and "Missing option '--reason'" in result.stderr


def test_every_changing_command_has_a_required_reason():
    def walk(group: Any, path: str) -> Iterator[tuple[str, Any]]:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from walk(command, f"{path} {name}")
            else:
                yield f"{path} {name}", command

    root = typer.main.get_command(app)
    reasons = {
        path: next((p for p in command.params if p.name == "reason"), None)
        for path, command in walk(root, "mlgov")
    }
    changing = {p for p in reasons if p.split()[-1] in {"create", "update", "version-create",
                "grant", "revoke", "disable", "enable"}}  # fmt: skip
    assert len(changing) == 13
    for path in changing:
        assert reasons[path] is not None and reasons[path].required, path


# ----------------------------------------------------------------------------- versions


def test_versions_commands(mlgov: Run, tmp_path: Path):
    mlgov("models", "create", "scorer", "--owner-team", "risk", "--risk-tier", "limited",
          "--reason", "new")  # fmt: skip
    mlgov("datasets", "create", "applications", "--owner-team", "data", "--reason", "new")
    mlgov("datasets", "version-create", "applications", "--content-sha256", "d" * 64,
          "--uri", "s3://lake/applications", "--row-count", "10",
          "--schema", write_json(tmp_path / "schema.json", [{"name": "age", "type": "int"}]),
          "--reason", "snapshot")  # fmt: skip
    artifact = tmp_path / "scorer.skops"
    artifact.write_bytes(bytes(range(256)) * 1000)
    created = mlgov(
        "versions", "create", "scorer", artifact, "--format", "other",
        "--signature", write_json(tmp_path / "sig.json", SIGNATURE),
        "--metrics", write_json(tmp_path / "metrics.json", {"auc": 0.9}),
        "--hyperparameters", write_json(tmp_path / "hp.json", {"depth": 4}),
        "--algorithm", "gbm", "--code-repo", "https://git.example/scorer",
        "--code-commit", "deadbeef", "--changelog", "first", "--dataset", "applications@1",
        "--dataset", "applications@1:validation", "--environment-auto", "--reason", "first fit",
    )  # fmt: skip
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert "Registered scorer version 1" in created.stdout and digest in created.stdout
    assert "upload scorer.skops" in created.stderr  # the progress bar

    table = mlgov("versions", "list", "scorer").stdout
    assert re.search(rf"1\s+development\s+other\s+{digest[:12]}\s+250\.0 KiB\s+admin", table)
    assert json_lines(mlgov("versions", "list", "scorer", "--json").stdout)[0]["version"] == 1
    shown = mlgov("versions", "show", "scorer", "1").stdout
    assert "https://git.example/scorer@deadbeef" in shown and "income" in shown
    assert "validation" in shown and "training" in shown
    version = json.loads(mlgov("versions", "show", "scorer", "1", "--json").stdout)
    assert version["metrics"] == {"auc": 0.9} and version["hyperparameters"] == {"depth": 4}
    assert "httpx" in version["environment"]["packages"] and version["environment"]["python"]

    dest = tmp_path / "downloaded.skops"
    downloaded = mlgov("versions", "download", "scorer", "1", "--out", dest)
    assert "sha256 verified" in downloaded.stdout and dest.read_bytes() == artifact.read_bytes()

    bad = mlgov("versions", "create", "scorer", artifact, "--format", "other",
                "--signature", tmp_path / "sig.json", "--dataset", "applications",
                "--reason", "r", code=2)  # fmt: skip
    assert "NAME@VERSION" in bad.stderr


# ----------------------------------------------------------------------------- datasets


def test_datasets_commands(mlgov: Run, tmp_path: Path):
    mlgov("datasets", "create", "claims", "--owner-team", "insurance", "--description",
          "Motor claims", "--reason", "new source")  # fmt: skip
    assert re.search(r"claims\s+insurance\s+Motor claims", mlgov("datasets", "list").stdout)
    assert json_lines(mlgov("datasets", "list", "--json", "--q", "claims").stdout)[0]["name"] == (
        "claims"
    )
    assert "Motor claims" in mlgov("datasets", "show", "claims").stdout

    data = tmp_path / "claims.csv"
    with data.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["amount", "region"])
        writer.writerows([[i * 10, "north"] for i in range(25)])
    schema = write_json(tmp_path / "schema.json", [{"name": "amount", "type": "double"}])
    sheet = write_json(
        tmp_path / "sheet.json",
        {"motivation": "pricing", "personal_data": {"present": False}},
    )
    created = mlgov("datasets", "version-create", "claims", "--from-file", data, "--schema",
                    schema, "--datasheet", sheet, "--reason", "Q1 extract")  # fmt: skip
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert f"Registered claims version 1 (sha256 {digest}, 25 rows)" in created.stdout

    versions = mlgov("datasets", "versions", "claims").stdout
    assert re.search(rf"1\s+{digest[:12]}\s+25\s+file://", versions)
    (row,) = json_lines(mlgov("datasets", "versions", "claims", "--json").stdout)
    assert row["uri"] == data.resolve().as_uri() and row["datasheet"]["motivation"] == "pricing"
    shown = mlgov("datasets", "version-show", "claims", "1").stdout
    assert "datasheet: motivation" in shown and "amount" in shown

    mismatch = mlgov("datasets", "version-create", "claims", "--from-file", data,
                     "--content-sha256", "0" * 64, "--schema", schema,
                     "--reason", "r", code=2)  # fmt: skip
    assert "--content-sha256" in mismatch.stderr


# ------------------------------------------------------------------------ users, tokens


def test_users_commands(mlgov: Run, live: Live):
    created = mlgov("users", "create", "erin", "--role", "validator", "--role", "approver",
                    "--password-prompt", "--reason", "joins validation",
                    input="a long enough password\na long enough password\n")  # fmt: skip
    assert "Created user erin (approver, validator)" in created.stdout
    robot = mlgov("users", "create", "retrain-job", "--service-account", "--role",
                  "data_scientist", "--reason", "nightly retraining", "--json")  # fmt: skip
    assert json.loads(robot.stdout)["kind"] == "service_account"

    assert re.search(r"erin\s+user\s+approver, validator\s+no", mlgov("users", "list").stdout)
    names = [u["name"] for u in json_lines(mlgov("users", "list", "--json").stdout)]
    assert {"admin", "erin", "retrain-job"} <= set(names)
    assert "approver, validator" in mlgov("users", "show", "erin").stdout

    assert (
        "roles: approver, auditor, validator"
        in mlgov("users", "grant", "erin", "auditor", "--reason", "audit duty").stdout
    )
    mlgov("users", "revoke", "erin", "auditor", "--reason", "audit duty over")
    assert json.loads(mlgov("users", "show", "erin", "--json").stdout)["roles"] == [
        "approver",
        "validator",
    ]
    mlgov("users", "disable", "erin", "--reason", "on leave")
    assert json.loads(mlgov("users", "show", "erin", "--json").stdout)["disabled"] is True
    mlgov("users", "enable", "erin", "--reason", "back")
    bad_role = mlgov("users", "grant", "erin", "superuser", "--reason", "r", code=2)
    assert "superuser" in bad_role.stderr


def test_tokens_commands(mlgov: Run, run: Run, live: Live):
    mlgov("users", "create", "ci", "--service-account", "--role", "viewer", "--reason", "CI")
    issued = mlgov("tokens", "create", "--user", "ci", "--name", "pipeline",
                   "--expires-in-days", "30", "--reason", "CI pipeline")  # fmt: skip
    assert "shown once, store it now" in issued.stdout
    secret = re.search(r"mlgov_[A-Za-z0-9_-]{20,}", issued.stdout)
    assert secret is not None
    who = run("whoami", "--json", MLGOV_URL=live.url, MLGOV_TOKEN=secret.group())
    assert json.loads(who.stdout)["name"] == "ci"

    (token,) = json_lines(mlgov("tokens", "list", "--user", "ci", "--json").stdout)
    assert token["name"] == "pipeline" and token["expires_at"] and "token" not in token
    assert secret.group() not in mlgov("tokens", "list", "--user", "ci").stdout
    assert re.search(
        rf"{token['id']}\s+pipeline\s+admin", mlgov("tokens", "list", "--user", "ci").stdout
    )
    own = json.loads(
        mlgov("tokens", "create", "--name", "laptop", "--reason", "mine", "--json").stdout
    )
    assert own["user"] == "admin" and own["token"].startswith("mlgov_")
    assert "laptop" in mlgov("tokens", "list").stdout

    revoked = mlgov("tokens", "revoke", token["id"], "--reason", "pipeline retired")
    assert f"Revoked token {token['id']} (pipeline) of ci" in revoked.stdout
    again = mlgov("tokens", "revoke", token["id"], "--reason", "twice", code=1)
    assert "Conflict (409)" in again.stderr


# -------------------------------------------------------------------------------- audit


def test_audit_events_command(mlgov: Run):
    for name in ("audit-a", "audit-b", "audit-c"):
        mlgov("models", "create", name, "--owner-team", "t", "--risk-tier", "minimal",
              "--reason", f"register {name}")  # fmt: skip
    table = mlgov("audit", "events", "--target", "model/audit-b").stdout
    assert re.search(r"admin\s+model\.create\s+model/audit-b\s+register audit-b", table)
    events = json_lines(
        mlgov("audit", "events", "--action", "model.create", "--json", "--limit", "1000").stdout
    )
    targets = [e["target"] for e in events]
    assert targets[-3:] == ["model/audit-a", "model/audit-b", "model/audit-c"]
    assert len(json_lines(mlgov("audit", "events", "--json", "--limit", "2").stdout)) == 2
    assert "first 2 shown" in mlgov("audit", "events", "--limit", "2").stdout
    assert json_lines(mlgov("audit", "events", "--json", "--since", "2999-01-01").stdout) == []
    assert mlgov("audit", "events", "--since", "yesterday", code=2).exit_code == 2
    assert mlgov("audit", "events", "--action", "nope", code=2).exit_code == 2


# ------------------------------------------------------------------------------- server


def test_serve_prints_the_admin_token_only_on_the_first_start(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    data = tmp_path / "served"
    first = run("serve", "--port", "8123", "--data-dir", data)
    assert first.exit_code == 0, first.stderr
    assert "http://127.0.0.1:8123" in first.stdout
    assert "admin token — shown once, store it now" in first.stdout
    assert re.search(r"mlgov_[A-Za-z0-9_-]{20,}", first.stdout)
    assert calls == [{"host": "127.0.0.1", "port": 8123, "log_level": "info"}]
    second = run("serve", "--host", "0.0.0.0", "--data-dir", data)
    assert second.exit_code == 0 and "shown once" not in second.stdout
    assert "mlgov_" not in second.stdout and calls[-1]["host"] == "0.0.0.0"

    current = run("db", "current", "--data-dir", data)
    assert current.exit_code == 0 and re.search(r"revision \w+", current.stdout)
    fresh = tmp_path / "fresh"
    missing = run("db", "current", "--data-dir", fresh)
    assert missing.exit_code == 1 and "no data directory" in missing.stderr
    upgraded = run("db", "upgrade", "--data-dir", fresh)
    assert upgraded.exit_code == 0 and "is at revision" in upgraded.stdout
    assert (
        current.stdout.split("revision ")[1]
        == run("db", "current", "--data-dir", fresh).stdout.split("revision ")[1]
    )


def test_demo_help(run: Run):
    result = run("demo", "--help")
    assert result.exit_code == 0 and "--data-dir" in result.stdout


def test_version(run: Run):
    assert run("--version").stdout.strip() == f"mlgov {__version__}"


# --------------------------------------------------------------------------------- docs


def test_every_command_is_in_docs_cli_md():
    def paths(group: Any, prefix: str) -> Iterator[str]:
        for name, command in group.commands.items():
            yield f"{prefix} {name}"
            if hasattr(command, "commands"):
                yield from paths(command, f"{prefix} {name}")

    documented = DOCS.read_text()
    missing = [p for p in paths(typer.main.get_command(app), "mlgov") if f"`{p}" not in documented]
    assert not missing, f"docs/cli.md does not document: {missing}"


# -- mlgov audit: proofs, export, offline verification ------------------------------------


def _key_file(mlgov: Run, tmp_path: Path) -> Path:
    key = mlgov("audit", "public-key").stdout.strip()
    path = tmp_path / "audit-key.txt"
    path.write_text(key + "\n")
    return path


def _some_changes(mlgov: Run, prefix: str, count: int = 3) -> None:
    for i in range(count):
        mlgov(
            "models",
            "create",
            f"{prefix}-{i}",
            "--owner-team",
            "risk",
            "--risk-tier",
            "minimal",
            "--reason",
            "cli test",
        )


def test_public_key_matches_the_servers_key_file(mlgov, live: Live, tmp_path):
    printed = mlgov("audit", "public-key").stdout.strip()
    local = mlgov("audit", "public-key", "--key-file", live.settings.signing_key_path)
    assert local.stdout.strip() == printed
    assert Verifier.from_string(printed).name == live.server.services.audit.signer.name
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    result = mlgov("audit", "public-key", "--key-file", bad, code=1)
    assert "bad.key" in result.stderr


def test_checkpoint_prove_and_consistency(mlgov, tmp_path):
    key_file = _key_file(mlgov, tmp_path)
    _some_changes(mlgov, "cp")
    note = mlgov("audit", "checkpoint", "--create", "--note").stdout
    opened = open_note(note, [Verifier.from_string(key_file.read_text().strip())])
    size = Checkpoint.parse(opened.text).size
    kept = tmp_path / "kept.txt"
    kept.write_text(note)

    shown = mlgov("audit", "checkpoint").stdout
    assert f"{size}" in shown and "root hash" in shown

    proved = mlgov("audit", "prove", size - 1, "--public-key", key_file).stdout
    assert f"event {size - 1} is in the log" in proved and "model.create" in proved

    _some_changes(mlgov, "cq", 2)
    mlgov("audit", "checkpoint", "--create")
    extended = mlgov("audit", "consistency", kept, "--public-key", key_file).stdout
    assert f"extends the one of {size}" in extended

    stranger = Signer.generate("stranger").verifier().key_string()
    failed = mlgov("audit", "prove", 0, "--public-key", stranger, code=1)
    assert "verification FAILED" in failed.stderr


def test_export_and_verify_offline_then_a_tampered_copy(mlgov, tmp_path):
    key_file = _key_file(mlgov, tmp_path)
    _some_changes(mlgov, "ex")
    export = tmp_path / "audit.jsonl"
    mlgov("audit", "export", "--out", export)
    lines = export.read_bytes().splitlines()
    entries = [line for line in lines if line.startswith(b'{"leaf_hash"')]

    ok = mlgov("audit", "verify", export, "--public-key", key_file)
    assert f"verified {len(entries):,} entries" in ok.stdout
    assert "signed tree head: size" in ok.stdout

    # change the reason of entry 2 in the file
    target = next(i for i, line in enumerate(lines) if b'"seq":2,' in line)
    lines[target] = lines[target].replace(b'"reason":"', b'"reason":"not ', 1)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"\n".join(lines) + b"\n")
    bad = mlgov("audit", "verify", tampered, "--public-key", key_file, code=1)
    assert "verification FAILED at entry 2" in bad.stderr

    # a wrong key, a missing key, a missing file
    stranger = Signer.generate("stranger").verifier().key_string()
    assert "FAILED" in mlgov("audit", "verify", export, "--public-key", stranger, code=1).stderr
    assert "--public-key is required" in mlgov("audit", "verify", export, code=1).stderr
    missing = mlgov("audit", "verify", tmp_path / "nope.jsonl", "--public-key", key_file, code=1)
    assert "nope.jsonl" in missing.stderr


def test_verify_against_the_live_server(mlgov, live: Live, tmp_path):
    key_file = _key_file(mlgov, tmp_path)
    _some_changes(mlgov, "lv", 2)
    ok = mlgov("audit", "verify", "--server", live.url, "--public-key", key_file)
    assert "verified" in ok.stdout and "signed tree head" in ok.stdout
    both = mlgov("audit", "verify", tmp_path / "x", "--server", live.url, code=1)
    assert "one of them" in both.stderr


def test_export_events_json_carries_leaf_hashes(mlgov):
    events = [json.loads(line) for line in mlgov("audit", "events", "--json").stdout.splitlines()]
    assert events and all(len(e["leaf_hash"]) == 64 for e in events)
