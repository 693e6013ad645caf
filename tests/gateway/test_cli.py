"""``pice gateway``: its flags, and the command serving from a YAML config."""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
import yaml

from pice_gateway import cli
from tests.gateway.fakes import CloudScript, EdgeScript, fake_cloud, fake_edge, serve
from tests.support.processes import ServerProcess, free_port, pice_argv, running


def test_gateway_subcommand_parses_its_flags() -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["gateway", "--config", "c.yaml", "--host", "0.0.0.0", "--port", "9"])
    assert args.config == Path("c.yaml")
    assert (args.host, args.port) == ("0.0.0.0", 9)
    assert args.handler is cli.run
    defaults = parser.parse_args(["gateway"])
    assert (defaults.config, defaults.host, defaults.port) == (None, None, None)


def test_pice_gateway_serves_from_a_yaml_config(tmp_path: Path) -> None:
    with serve(fake_cloud(CloudScript())) as cloud, serve(fake_edge(EdgeScript("e1"))) as edge:
        port = free_port()
        config = tmp_path / "gateway.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "cloud": {"base_url": cloud + "/v1"},
                    "edges": [{"name": "e1", "url": edge}],
                    "router": {"enabled": False},  # no encoder files in the fast tier
                }
            )
        )
        argv = pice_argv("gateway", "--config", str(config), "--port", str(port))
        with running(ServerProcess(argv, port, tmp_path / "gateway.log"), timeout=60) as gateway:
            response = httpx.post(
                gateway.base_url + "/v1/chat/completions",
                json={"model": "pice", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("1. **Alpha point**:")
