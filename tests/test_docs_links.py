"""Every relative link in the README and ``docs/`` reaches a file, and its ``#anchor`` a heading
of that file (GitHub's heading slugs), so a renamed section cannot strand a reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of ``page``'s headings; a repeated heading gets ``-1``, ``-2``…"""
    seen: dict[str, int] = {}
    found = set()
    for match in _HEADING.finditer(_FENCE.sub("", page.read_text())):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_slugs_follow_githubs_rule() -> None:
    assert slug("The ensemble on identical sketches (2026-12-02)") == (
        "the-ensemble-on-identical-sketches-2026-12-02"
    )
    assert slug("CPU kernels, and why llama.cpp's AMX path is off") == (
        "cpu-kernels-and-why-llamacpps-amx-path-is-off"
    )
    assert slug("Ensemble of edge candidates: k = 3 vs one candidate") == (
        "ensemble-of-edge-candidates-k--3-vs-one-candidate"
    )


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_reach_their_file_and_heading(page: Path) -> None:
    broken = []
    for match in _LINK.finditer(_FENCE.sub("", page.read_text())):
        link = match.group(1)
        if re.match(r"^[a-z]+:", link):  # http:, https:, mailto:
            continue
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{link}: no such heading in {target.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)
