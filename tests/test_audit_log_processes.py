"""Two ``mlgov serve`` processes append to one PostgreSQL audit log at the same time: one
gap-free order, no duplicates, and the exported log verifies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlgov.audit.verify import verify_export
from mlgov.tlog.note import Signer, Verifier
from test_audit_trail import BOOTSTRAP_EVENTS
from test_client import ADMIN_TOKEN

pytestmark = pytest.mark.slow

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


@pytest.fixture
def two_servers(pg_database: str, tmp_path: Path) -> Iterator[list[str]]:
    from conftest import _reset_postgres

    _reset_postgres(pg_database)
    key = tmp_path / "shared.key"
    key.write_text(Signer.generate("bank.example").key_string() + "\n")
    key.chmod(0o600)
    procs, urls = [], []
    try:
        for n in range(2):
            port = _free_port()
            env = {
                **os.environ,
                "MLGOV_DATABASE_URL": pg_database,
                "MLGOV_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN,
                "MLGOV_SIGNING_KEY_FILE": str(key),
                "MLGOV_CHECKPOINT_EVERY": "25",
            }
            cmd = [str(Path(sys.executable).parent / "mlgov"), "serve", "--port", str(port)]
            cmd += ["--data-dir", str(tmp_path / f"data-{n}")]
            with open(tmp_path / f"server-{n}.log", "wb") as log:
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
            # the first one migrates and bootstraps; the second finds it done
            _wait_ready(urls[-1], procs[-1])
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def test_two_processes_extend_one_log(two_servers):
    writers, per_writer = 8, 15
    errors: list[str] = []
    start = threading.Barrier(writers)

    def work(w: int) -> None:
        url = two_servers[w % 2]
        with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as http:
            start.wait()
            for i in range(per_writer):
                body = {"name": f"p{w}-{i}", "owner_team": "t", "risk_tier": "minimal"}
                r = http.post("/api/v1/models", json={**body, "reason": f"load {w}/{i}"})
                if r.status_code != 201:
                    errors.append(f"{url} {body['name']}: {r.status_code} {r.text}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors

    with httpx.Client(base_url=two_servers[1], headers=HEADERS, timeout=60) as http:
        key = http.get("/api/v1/audit/public-key").json()["verifier_key"]
        size = http.post("/api/v1/audit/checkpoints").json()["tree_size"]
        lines = http.get("/api/v1/audit/export", params={"tree_size": size}).content.splitlines()
        events = http.get("/api/v1/audit/events", params={"limit": 1000}).json()["items"]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(len(events))), "gaps or duplicates"
    created = sorted(e["target"] for e in events if e["action"] == "model.create")
    assert created == sorted(f"model/p{w}-{i}" for w in range(writers) for i in range(per_writer))
    assert size == len(events) == BOOTSTRAP_EVENTS + writers * per_writer
    report = verify_export(lines, [Verifier.from_string(key)])
    assert report.entries == size and report.unsigned_tail == 0
    assert report.checkpoints >= size // 25  # both processes signed every 25 events
