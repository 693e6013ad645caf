"""The engine's exact batched path on the real models, in a child process that may crash.

llama.cpp picks CPU kernels by machine (AVX2, AVX-512, AMX), and its AMX path segfaulted on
the first decode. Run in-process, such a crash kills pytest with no report; here the engine
runs in a child, so a crash fails this test with the signal's name and the child's output.
The child drives everything real traffic uses: a unified KV cache, eight sequences over one
shared prefix with a suffix each, continuous batching of two concurrent jobs, and a third job
that reuses the first one's prefix from the prefix cache.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from edge_agent.engine.engine import Engine, EngineConfig
    from edge_agent.engine.types import JobDone, JobSpec, SamplingParams, SequenceDone
    from edge_agent.engine.types import SequenceSpec
    from edge_agent.prompts import expansion_messages, point_stops, point_suffix

    QUESTION = "How can I sleep better at night?"
    SKETCH = ["Keep a schedule", "Limit caffeine", "Dark bedroom", "No screens",
              "Exercise", "Light dinner", "Wind down", "See a doctor"]

    async def run(engine, points):
        prompt = engine.chat.render(expansion_messages(QUESTION, SKETCH))
        seqs = tuple(SequenceSpec(point_suffix(p, SKETCH[p]),
                                  SamplingParams(max_tokens=12, stop=point_stops(p, ["\\n"])))
                     for p in points)
        handle = engine.submit(JobSpec(prompt.text, seqs, add_special=prompt.add_special))
        done = {}
        async with handle:
            async for event in handle:
                if isinstance(event, SequenceDone):
                    done[event.seq] = event.text
                elif isinstance(event, JobDone):
                    return done
        raise SystemExit("job failed")

    async def main():
        engine = Engine(Path(sys.argv[1]), EngineConfig(
            n_ctx=2048, n_batch=128, max_sequences=12, threads=1, prefix_cache_slots=2))
        engine.start()  # includes the batched warm-up
        try:
            first, second = await asyncio.gather(run(engine, range(8)), run(engine, [0, 3]))
            third = await run(engine, range(4))
            load = engine.load()
        finally:
            engine.stop()
        print(json.dumps({"first": first, "second": second, "third": third,
                          "hits": load.prefix_cache_hits,
                          "reused": load.prefix_cache_reused_tokens}))

    asyncio.run(main())
    """
)


def _describe(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


@pytest.mark.parametrize(
    "model", ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q8_0"]
)
def test_batched_shared_prefix_decoding_runs_to_completion(model: str, tmp_path: Path) -> None:
    from pice.models.registry import resolve_model

    path = resolve_model(model, pull=False).path
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (
        f"the batched engine path {_describe(proc.returncode)} on {model}:\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(map(int, result["first"])) == list(range(8))
    assert sorted(map(int, result["second"])) == [0, 1]
    assert sorted(map(int, result["third"])) == list(range(4))
    texts = [*result["first"].values(), *result["second"].values(), *result["third"].values()]
    assert all(text.strip() for text in texts), texts
    # The third job found the shared expansion prompt in the prefix cache.
    assert result["hits"] >= 1
    assert result["reused"] > 50
