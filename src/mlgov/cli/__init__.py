"""The ``mlgov`` command line (Typer + Rich): ``mlgov.cli.main:app`` and its ``main()``.

Server commands (``serve``, ``db``, ``demo``) run in process; every other command is a thin
adapter over :class:`mlgov.Client`, with credentials from ``mlgov login`` (see
:mod:`mlgov.cli.config`). The reference of every command is docs/cli.md.
"""
