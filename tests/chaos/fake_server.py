"""Fake upstreams in a process of their own, so a test can SIGKILL or SIGSTOP one mid-stream
and a soak can measure the gateway's process without the fakes in it.

    python -m tests.chaos.fake_server edge --port P --name victim --author edge --token-delay 0.3
    python -m tests.chaos.fake_server cloud --port P --cloud-token-delay 0.02

``edge`` serves one fake edge (:func:`tests.gateway.fakes.fake_edge`), ``cloud`` the fake cloud
(:func:`tests.gateway.fakes.fake_cloud`), each one process. Both answer ``GET /health``.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

from tests.gateway.fakes import CloudScript, EdgeScript, fake_cloud, fake_edge


def with_health(app: FastAPI) -> FastAPI:
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _edge_script(args: argparse.Namespace, name: str) -> EdgeScript:
    return EdgeScript(
        name,
        token_delay=args.token_delay,
        author=args.author,
        extra_words=args.extra_words,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["edge", "cloud"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="edge")
    parser.add_argument("--author", default=None, help="whose words the edges write")
    parser.add_argument("--token-delay", type=float, default=0.01, help="edge seconds per token")
    parser.add_argument("--extra-words", type=int, default=0, help="filler words per point")
    parser.add_argument("--cloud-token-delay", type=float, default=0.02)
    parser.add_argument("--cloud-answer-words", type=int, default=60)
    args = parser.parse_args(argv)
    if args.kind == "edge":
        app = with_health(fake_edge(_edge_script(args, args.name)))
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
        return 0
    answer = " ".join(f"word{n}" for n in range(args.cloud_answer_words))
    cloud = CloudScript(token_delay=args.cloud_token_delay, answer=answer)
    uvicorn.run(
        with_health(fake_cloud(cloud)), host="127.0.0.1", port=args.port, log_level="warning"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
