"""The docs are checked by tests where that is cheap: settings, audit actions, permissions."""

from __future__ import annotations

from pathlib import Path

from mlgov.audit.events import Action
from mlgov.config import SETTINGS_DOC
from mlgov.docgen import render_permissions

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_setting_is_documented():
    text = (DOCS / "operations.md").read_text()
    missing = [name for name in SETTINGS_DOC if f"`{name}`" not in text]
    assert not missing, f"settings missing from docs/operations.md: {missing}"


def test_every_audit_action_is_documented():
    text = (DOCS / "audit.md").read_text()
    missing = [a.value for a in Action if f"`{a.value}`" not in text]
    assert not missing, f"actions missing from docs/audit.md: {missing}"


def test_permissions_doc_is_generated_from_the_code():
    assert (DOCS / "permissions.md").read_text() == render_permissions(), (
        "docs/permissions.md is stale: run `.venv/bin/python -m mlgov.docgen`"
    )
