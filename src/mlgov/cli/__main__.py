"""``python -m mlgov.cli``: the same as the ``mlgov`` command."""

from mlgov.cli.main import main

main()
