"""An ablation: one mode's answers cut down to their numbered list, for judging again.

PICE's answer is its outline's points and nothing else; a cloud model answering the same
question usually wraps its list in an opening sentence and a closing paragraph. To see how
much of a judge's preference is that framing rather than the points, this writes a copy of a
``pice bench`` results file in which ``--mode``'s answers keep only the lines from the first
numbered item to the end of the last one (continuation lines and nested bullets of an item
are kept; prose after a blank line that does not continue the list is dropped). Answers with
no numbered item are left as they are. ``benchmarks/rejudge.py`` then judges the copy:

    python benchmarks/strip_framing.py benchmarks/results/quality-v2/results.json \\
        --mode cloud-only --out R/cloud-list-only/results.json
    python benchmarks/rejudge.py R/stock/results.json --baseline-results \\
        R/cloud-list-only/results.json --pair pice-progressive:cloud-only --judge-url ... --out ...
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

_ITEM = re.compile(r"^\s{0,3}(?:\*\*)?\d{1,2}[.)]\s")
_NESTED = re.compile(r"^(?:\s+\S|\s*[-*•+]\s)")


def list_only(text: str) -> str | None:
    """``text`` from its first numbered item to the end of its last, or ``None`` if it has
    no numbered item (nothing to cut)."""
    lines = text.split("\n")
    items = [i for i, line in enumerate(lines) if _ITEM.match(line)]
    if not items:
        return None
    end = items[-1]
    # The last item runs on over the lines of its paragraph, and over nested (indented or
    # bulleted) paragraphs after a blank line; the first plain paragraph after it is framing.
    j = end + 1
    while j < len(lines):
        if lines[j].strip():
            end = j
            j += 1
            continue
        k = j
        while k < len(lines) and not lines[k].strip():
            k += 1
        if k < len(lines) and _NESTED.match(lines[k]):
            j = k
            continue
        break
    return "\n".join(lines[items[0] : end + 1]).strip()


def strip(results: dict[str, Any], mode: str) -> tuple[dict[str, Any], dict[str, int]]:
    out = copy.deepcopy(results)
    counts = {"answers": 0, "cut": 0, "no_list": 0, "words_before": 0, "words_after": 0}
    for record in out["requests"]:
        if record["mode"] != mode or record["phase"] != "latency":
            continue
        text = record["answer"].get("text") or ""
        counts["answers"] += 1
        counts["words_before"] += len(text.split())
        cut = list_only(text)
        if cut is None:
            counts["no_list"] += 1
        elif cut != text.strip():
            counts["cut"] += 1
            record["answer"]["text"] = cut
        counts["words_after"] += len(record["answer"]["text"].split())
    out.setdefault("config", {})["framing_stripped"] = {"mode": mode, **counts}
    return out, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--mode", default="cloud-only")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    results, counts = strip(json.loads(args.results.read_text()), args.mode)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    n = counts["answers"]
    print(
        f"{args.mode}: {n} answers, {counts['cut']} cut, {counts['no_list']} without a list; "
        f"words {counts['words_before'] / max(n, 1):.0f} -> {counts['words_after'] / max(n, 1):.0f}"
        f" per answer; written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
