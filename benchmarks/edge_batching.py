"""Edge batching benchmark (see docs/benchmarks-edge.md); the same as ``pice edge bench``.

python benchmarks/edge_batching.py --threads 2 --out edge.json --png edge.png
"""

from __future__ import annotations

import sys

from edge_agent.bench import main

if __name__ == "__main__":
    sys.exit(main())
