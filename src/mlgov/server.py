"""Assembling a running server: settings -> database, store, services -> migrated, bootstrapped
application. Used by ``mlgov serve``, ``mlgov demo`` and the tests."""

from __future__ import annotations

import gc
import logging
import secrets
from dataclasses import dataclass

from fastapi import FastAPI

from mlgov import migrate
from mlgov.api.app import create_app
from mlgov.api.deps import Services
from mlgov.audit.trail import AuditTrail
from mlgov.config import Settings
from mlgov.context import system_context
from mlgov.db import Database
from mlgov.identity.service import IdentityService
from mlgov.lifecycle.service import LifecycleService
from mlgov.registry.service import RegistryService
from mlgov.secretbox import SecretBox
from mlgov.storage import open_store
from mlgov.tlog.note import load_or_create_signer
from mlgov.validation.runner import RunnerLimits, ValidationRunner
from mlgov.validation.service import ValidationService
from mlgov.webhooks.service import WebhookService

log = logging.getLogger("mlgov.server")


@dataclass
class Server:
    app: FastAPI
    services: Services
    #: The admin token created on this start (first start only), to be shown once.
    bootstrap_token: str | None


def build_services(settings: Settings) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    store = open_store(settings.artifacts_url, settings.data_dir)
    signer = load_or_create_signer(settings.signing_key_path, default_key_name())
    trail = AuditTrail(
        db,
        signer,
        settings.audit_origin or f"{signer.name}/audit",
        checkpoint_every=settings.checkpoint_every,
        checkpoint_interval=settings.checkpoint_interval,
    )
    webhooks = WebhookService(trail, SecretBox.load_or_create(settings.secret_key_path))
    registry = RegistryService(trail)
    lifecycle = LifecycleService(trail, store, notify=webhooks.enqueue)
    registry.on_model_change = lifecycle.on_model_change
    registry.on_version_scanned = lifecycle.record_scan
    return Services(
        settings=settings,
        db=db,
        store=store,
        identity=IdentityService(trail),
        registry=registry,
        lifecycle=lifecycle,
        webhooks=webhooks,
        validation=ValidationService(trail, store, lifecycle),
        audit=trail,
    )


def validation_runner(services: Services, name: str | None = None) -> ValidationRunner:
    """A validation worker over these services, with the settings' limits."""
    settings = services.settings
    return ValidationRunner(
        services.validation,
        services.store,
        settings.jobs_dir,
        dataset_roots=settings.readable_dataset_roots,
        limits=RunnerLimits(
            memory_mb=settings.job_memory_mb, timeout_seconds=float(settings.job_timeout)
        ),
        name=name,
    )


def default_key_name() -> str:
    """The name of a generated signing key: unique, so two installations' logs never share
    an origin by accident."""
    return f"mlgov-{secrets.token_hex(4)}"


def build_server(settings: Settings, *, migrate_schema: bool = True) -> Server:
    services = build_services(settings)
    if migrate_schema:
        migrate.upgrade(services.db)
    # The built-in policy packs first (one change, an event per pack), then the administrator.
    services.lifecycle.install_builtin_policies(system_context("bootstrap"))
    token = services.identity.bootstrap_admin(
        system_context("bootstrap"), settings.bootstrap_admin_token
    )
    return Server(app=create_app(services), services=services, bootstrap_token=token)


def freeze_startup_objects() -> None:
    """Before serving: move every object allocated at start-up (modules, the app, the ORM
    mappers) out of the cyclic garbage collector's reach. A full collection otherwise walks
    them all every few dozen requests, a 100+ ms pause that showed as the catalog's p95/p99
    (docs/benchmarks.md); after this it takes a few milliseconds."""
    gc.collect()
    gc.freeze()
