"""How one PICE process starts another: the ``pice`` command, run with this interpreter.

The supervisor (``pice up``), the edge batching benchmark and the tests start servers as
``pice edge serve …`` / ``pice gateway …`` children. They name the command, not the code behind
it: the command line is the contract between the processes, so a lower layer can start a server
without importing the CLI above it (see the layers in ``docs/architecture.md``).
"""

from __future__ import annotations

import sys

# The package that implements the ``pice`` console script (``[project.scripts]``).
CLI_MODULE = "pice_cli"


def pice_argv(*args: str) -> tuple[str, ...]:
    """``pice ARGS`` with this interpreter, so children run in the same environment."""
    return (sys.executable, "-m", CLI_MODULE, *args)
