"""``mlgov serve``, ``mlgov db`` and ``mlgov demo``: commands that run the server side in
process (the heavy imports happen inside the commands, so client commands start fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlgov import __version__
from mlgov.cli import output as out

db_app = typer.Typer(help="The database schema (Alembic migrations).", no_args_is_help=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        help="Data directory: SQLite database, local artifacts, keys "
        "(default: $MLGOV_DATA_DIR or ./data).",
        show_default=False,
    ),
]
Host = Annotated[str, typer.Option(help="Interface to listen on.")]
Port = Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")]


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _safe_db_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def serve(host: Host = "127.0.0.1", port: Port = 8000, data_dir: DataDir = None) -> None:
    """Run the server (migrates the database; the first start prints the admin token once)."""
    import uvicorn

    from mlgov.config import Settings
    from mlgov.server import build_server, freeze_startup_objects

    settings = Settings.from_env(data_dir)
    server = build_server(settings)
    url = _url(host, port)
    out.info(f"mlgov {__version__}: data in {settings.data_dir}")
    out.success(f"Serving at {url}  (API docs at {url}/docs)")
    if server.bootstrap_token is not None:
        out.secret_box(
            "admin token — shown once, store it now",
            server.bootstrap_token,
            hint=f"mlgov login --url {url}",
        )
    freeze_startup_objects()
    uvicorn.run(server.app, host=host, port=port, log_level="info")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Migrate the database schema to the latest revision."""
    from mlgov import migrate
    from mlgov.config import Settings
    from mlgov.db import Database

    settings = Settings.from_env(data_dir)
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        migrate.upgrade(db)
        revision = migrate.current(db)
    finally:
        db.dispose()
    out.success(f"{_safe_db_url(settings.database_url)} is at revision {revision}.")


@db_app.command("current")
def db_current(data_dir: DataDir = None) -> None:
    """Show the database's schema revision."""
    from mlgov import migrate
    from mlgov.config import Settings
    from mlgov.db import Database

    settings = Settings.from_env(data_dir)
    if settings.database_url.startswith("sqlite") and not settings.data_dir.is_dir():
        raise out.CliError(f"no data directory at {settings.data_dir}")
    db = Database(settings.database_url)
    try:
        revision = migrate.current(db)
    finally:
        db.dispose()
    shown = revision or "none (empty database: run mlgov db upgrade)"
    out.info(f"{_safe_db_url(settings.database_url)}: revision {shown}")


DemoDir = Annotated[Path, typer.Option(help="Where the demo keeps its data.")]


def demo(
    data_dir: DemoDir = Path(".mlgov-demo"),
    host: Host = "127.0.0.1",
    port: Port = 8000,
) -> None:
    """Start a server filled with example models, datasets and users, to explore."""
    from mlgov.demo import main as run_demo

    run_demo(data_dir=data_dir, host=host, port=port)
