"""``mlgov worker``: the background worker, run beside the server (any number of them).

It delivers governance webhooks and runs validation jobs (models are loaded only here, in a
sandboxed child process per job). It reads the server's settings (the same environment:
database, artifact store, data directory, secret key file), does not migrate the database, and
works until SIGINT or SIGTERM. Several workers share the work through the database: a delivery
or a job is claimed by one of them.
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
    bool,
    typer.Option(
        "--once",
        help="Run one pass (deliveries, then every queued validation job), report, and exit.",
    ),
]


def worker(poll: Poll = 1.0, once: Once = False, data_dir: DataDir = None) -> None:
    """Deliver governance webhooks (signed, retried with backoff) and run validation jobs, until
    stopped (Ctrl-C or SIGTERM). Run the server once first (or `mlgov db upgrade`) to create
    the tables."""
    import logging
    import signal
    import threading

    from sqlalchemy import inspect

    from mlgov.config import Settings
    from mlgov.server import build_services, validation_runner
    from mlgov.webhooks.worker import WebhookWorker, exponential_backoff

    settings = Settings.from_env(data_dir)
    services = build_services(settings)
    try:
        if not inspect(services.db.engine).has_table("validation_jobs"):
            raise out.CliError(
                "the database has no worker tables yet: run `mlgov db upgrade` (or start the "
                "server) first"
            )
        jobs = validation_runner(services)
        backoff = exponential_backoff(jitter=0.1)
        with WebhookWorker(services.db, services.webhooks.box, backoff=backoff) as runner:
            if once:
                delivered = runner.run_once()
                ran = 0
                while jobs.run_once():
                    ran += 1
                out.info(
                    f"{delivered} deliver{'y' if delivered == 1 else 'ies'} delivered; "
                    f"{ran} validation job{'' if ran == 1 else 's'} run."
                )
                return
            if not logging.getLogger().handlers:
                logging.basicConfig(
                    level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
                )
            stop = threading.Event()

            def _stop(signum: int, _frame: object) -> None:
                stop.set()

            previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
            # A daemon: stopping does not wait for a long job; its lease expires and another
            # worker runs it again.
            validating = threading.Thread(
                target=jobs.run_forever,
                args=(stop, poll),
                name="mlgov-validation-worker",
                daemon=True,
            )
            try:
                out.success(
                    f"Delivering webhooks and running validation jobs (polling every {poll:g} s); "
                    "Ctrl-C stops."
                )
                validating.start()
                runner.run_forever(stop, poll_seconds=poll)
            finally:
                stop.set()
                if validating.is_alive():
                    validating.join(timeout=10)
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    finally:
        services.db.dispose()
