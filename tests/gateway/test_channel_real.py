"""An edge behind NAT with a real model: ``pice edge serve --dial`` runs the 0.5B and takes its
work over the channel it opened; the gateway is never told the edge's address.

The edge's HTTP server listens on loopback at a port only this test knows (it reads
``/v1/load`` there to watch the edge's own count of running sequences).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from pice_gateway.app import create_app
from pice_gateway.settings import GatewaySettings
from tests.gateway.fakes import serve
from tests.support.processes import ServerProcess, free_port, pice_argv, running

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]

MODEL = "qwen2.5-coder-0.5b-instruct"
TOKEN = "fleet-token-real"
QUESTION = "What are good ways to stay healthy?"


def model_server(tmp: Path, name: str, *extra: str) -> ServerProcess:
    port = free_port()
    argv = pice_argv("edge", "serve", "--model", MODEL, "--port", str(port), "--threads", "1")
    return ServerProcess([*argv, *extra], port, tmp / f"{name}.log")


def running_sequences(edge: ServerProcess) -> int:
    load = httpx.get(
        edge.base_url + "/v1/load", timeout=5, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    return int(load.json()["running_sequences"])


def test_a_real_edge_behind_nat_expands_the_points_and_is_cancelled_over_the_channel(
    tmp_path: Path,
) -> None:
    with running(model_server(tmp_path, "cloud"), timeout=180) as cloud:
        port = free_port()
        settings = GatewaySettings(
            cloud={"base_url": cloud.base_url + "/v1", "model": MODEL},
            edges=[],
            edge_client={"poll_interval": 0.25, "token": TOKEN},
            router={"enabled": False},
            progressive={"max_points": 3, "sketch_max_tokens": 64, "expansion_max_tokens": 24},
        )
        app = create_app(settings)
        with serve(app, port) as gateway_url:
            dial = ("--dial", gateway_url, "--name", "orin-nat", "--token", TOKEN)
            with running(model_server(tmp_path, "edge", *dial), timeout=180) as edge:
                deadline = time.monotonic() + 60
                while "orin-nat" not in app.state.gateway.edges:
                    assert time.monotonic() < deadline, "the edge never dialled in"
                    time.sleep(0.1)

                ask = {
                    "model": "pice-progressive",
                    "messages": [{"role": "user", "content": QUESTION}],
                }
                url = gateway_url + "/v1/chat/completions"
                body = httpx.post(url, json=ask, timeout=300).json()
                report = body["pice"]
                assert report["mode"] == "progressive"
                text = body["choices"][0]["message"]["content"]
                for n, point in enumerate(report["points"], start=1):
                    assert point["edge"] == "orin-nat", "the points were expanded over the channel"
                    assert point["tokens"] > 0
                    assert f"{n}. **{point['title']}**:" in text

                # A client leaving mid-stream frees the edge's sequences over the channel.
                caught = False
                with httpx.stream("POST", url, json={**ask, "stream": True}, timeout=300) as r:
                    for line in r.iter_lines():
                        if '"content"' in line and running_sequences(edge) > 0:
                            caught = True
                            break
                assert caught, "the stream was left while the edge was expanding"
                left = time.monotonic()
                while running_sequences(edge) > 0:
                    assert time.monotonic() - left < 5, "the edge kept decoding for a client gone"
                    time.sleep(0.05)
