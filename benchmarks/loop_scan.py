"""Which recorded answers a passage-loop cut would stop, and where.

Reads every ``results.json`` under the given directories (``pice bench`` runs), takes each
distinct answer text once, streams it word by word through the gateway's own
:class:`pice_gateway.cloud_loops.LoopCut` and prints the answers it stops: the run, mode and
question, the words the answer had and the words the cut keeps, and how the answer ended
(``length``: it ran to its token budget). The last line counts the answers read, the cuts,
and the cuts of answers that did not run to their budget (each a possible false positive to
read by eye):

    python benchmarks/loop_scan.py benchmarks/results [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pice_gateway.cloud_loops import LoopCut


def kept_words(text: str) -> int | None:
    """Words the cut shows of ``text`` streamed a word at a time; ``None``: it never stops."""
    cut, shown = LoopCut(), []
    words = text.split(" ")
    for piece in [words[0]] + [" " + word for word in words[1:]]:
        part, stop = cut.feed(piece)
        shown.append(part)
        if stop:
            return len("".join(shown).split())
    return None


def scan(roots: list[Path]) -> dict[str, Any]:
    seen: set[str] = set()
    cuts: list[dict[str, Any]] = []
    for path in sorted(p for root in roots for p in root.rglob("results.json")):
        for request in json.loads(path.read_text()).get("requests", []):
            answer = request.get("answer") or {}
            text = answer.get("text") or ""
            if not text or text in seen:
                continue
            seen.add(text)
            kept = kept_words(text)
            if kept is not None:
                cuts.append(
                    {
                        "run": str(path.parent),
                        "mode": request.get("mode"),
                        "question": request.get("question_id"),
                        "words": len(text.split()),
                        "kept": kept,
                        "finish_reason": answer.get("finish_reason"),
                    }
                )
    return {"answers": len(seen), "cuts": cuts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="directories of pice bench runs")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    found = scan(args.roots)
    print("| run | mode | question | words | kept | kept % | finish |")
    print("|---|---|---|---|---|---|---|")
    for cut in found["cuts"]:
        share = 100 * cut["kept"] / cut["words"]
        print(
            f"| {cut['run']} | {cut['mode']} | {cut['question']} | {cut['words']} "
            f"| {cut['kept']} | {share:.0f} | {cut['finish_reason']} |"
        )
    unbudgeted = sum(cut["finish_reason"] != "length" for cut in found["cuts"])
    print(
        f"\n{found['answers']} distinct answers, {len(found['cuts'])} cut, "
        f"{unbudgeted} of those not at their token budget"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
