"""``mlgov worker``: the webhook delivery worker, run beside the server (any number of them).

It reads the server's settings (the same environment: database, data directory, secret key
file), does not migrate the database, and sends the pending deliveries until SIGINT or SIGTERM.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mlgov.cli import output as out
from mlgov.cli.serve import DataDir

Poll = Annotated[
    float, typer.Option(min=0.05, help="Seconds to wait between passes that found nothing.")
]
Once = Annotated[
    bool, typer.Option("--once", help="Run one pass, print how many were delivered, and exit.")
]


def worker(poll: Poll = 1.0, once: Once = False, data_dir: DataDir = None) -> None:
    """Deliver governance webhooks: signed, retried with backoff, until stopped (Ctrl-C or
    SIGTERM). Run the server once first (or `mlgov db upgrade`) to create the tables."""
    import logging
    import signal
    import threading

    from sqlalchemy import inspect

    from mlgov.config import Settings
    from mlgov.server import build_services
    from mlgov.webhooks.worker import WebhookWorker, exponential_backoff

    settings = Settings.from_env(data_dir)
    services = build_services(settings)
    try:
        if not inspect(services.db.engine).has_table("webhook_deliveries"):
            raise out.CliError(
                "the database has no webhook tables yet: run `mlgov db upgrade` (or start the "
                "server) first"
            )
        backoff = exponential_backoff(jitter=0.1)
        with WebhookWorker(services.db, services.webhooks.box, backoff=backoff) as runner:
            if once:
                delivered = runner.run_once()
                out.info(f"{delivered} deliver{'y' if delivered == 1 else 'ies'} delivered.")
                return
            if not logging.getLogger().handlers:
                logging.basicConfig(
                    level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
                )
            stop = threading.Event()

            def _stop(signum: int, _frame: object) -> None:
                stop.set()

            previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                out.success(f"Delivering webhooks (polling every {poll:g} s); Ctrl-C stops.")
                runner.run_forever(stop, poll_seconds=poll)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    finally:
        services.db.dispose()
