"""The ``mlgov`` command: every command group assembled, and the one place errors are shown.

API problems (:class:`mlgov.MlgovError`), CLI errors and file errors print in red on stderr and
exit with 1; usage errors exit with 2 (Click's rule). Tracebacks never show local variables
(they could hold a token).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mlgov import __version__
from mlgov.cli import audit, identity, lifecycle, registry, serve, validation, worker
from mlgov.cli import output as out
from mlgov.client import MlgovError


class _Root(TyperGroup):
    """Turns the errors every command may meet into a message and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MlgovError as exc:
            out.problem(exc)
        except out.CliError as exc:
            out.error(str(exc))
        except OSError as exc:
            out.error(str(exc))
        raise typer.Exit(1)


app = typer.Typer(
    cls=_Root,
    name="mlgov",
    help="mlgov: governance control plane for production machine-learning models.\n\n"
    "Log in once with `mlgov login --url URL`; every change needs --reason, which is recorded "
    "in the audit trail.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"mlgov {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Options of every command."""


app.command("serve")(serve.serve)
app.add_typer(serve.db_app, name="db")
app.command("demo")(serve.demo)
app.command("login")(identity.login)
app.command("logout")(identity.logout)
app.command("whoami")(identity.whoami)
app.add_typer(registry.models_app, name="models")
app.add_typer(registry.versions_app, name="versions")
app.add_typer(registry.datasets_app, name="datasets")
app.add_typer(identity.users_app, name="users")
app.add_typer(identity.tokens_app, name="tokens")
app.command("promote")(lifecycle.promote)
app.command("approve")(lifecycle.approve)
app.command("reject")(lifecycle.reject)
app.add_typer(lifecycle.transitions_app, name="transitions")
app.add_typer(lifecycle.policies_app, name="policies")
app.add_typer(lifecycle.evidence_app, name="evidence")
app.command("history")(lifecycle.history)
app.add_typer(lifecycle.webhooks_app, name="webhooks")
app.command("validate")(validation.validate)
app.add_typer(validation.validations_app, name="validations")
app.add_typer(validation.suites_app, name="suites")
registry.datasets_app.command("upload-data")(validation.datasets_upload_data)
app.command("worker")(worker.worker)
app.add_typer(audit.audit_app, name="audit")


def main() -> None:
    """Entry point of the ``mlgov`` console script."""
    app(prog_name="mlgov")
