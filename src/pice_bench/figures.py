"""Figures drawn off-screen and written as PNG: the one place matplotlib is set up.

matplotlib comes with the ``bench`` extra and is imported only when a figure is drawn, so the
bench's other commands run without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")  # must precede pyplot's import
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def figure(
    path: Path, *, size: tuple[float, float] = (7.0, 4.5), dpi: int = 120, **subplots: Any
) -> Iterator[tuple[Any, Any]]:
    """A new figure and its axes (``subplots`` as ``plt.subplots`` takes them: ``nrows``,
    ``sharex``…); on leaving the block, laid out and written to ``path`` (its folder made).
    The figure is closed either way, so a long sweep does not keep hundreds open."""
    plt = pyplot()
    fig, axes = plt.subplots(figsize=size, **subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
