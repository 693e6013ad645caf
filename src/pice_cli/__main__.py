"""``python -m pice_cli``: the ``pice`` command with a given interpreter (see ``pice.command``)."""

import sys

from pice_cli.main import main

if __name__ == "__main__":
    sys.exit(main())
