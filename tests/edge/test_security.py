"""The edge agent is secure by default: a token off loopback, the token a secret, checked."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_agent.api.app import create_app
from edge_agent.settings import EdgeSettings, load_settings
from pice.errors import InsecureBindError
from tests.edge.test_backend_seam import AUTH, TOKEN, serve, until_ready
from tests.support.fake_engine import FakeBackend


def test_a_non_loopback_host_without_a_token_is_refused() -> None:
    with pytest.raises(InsecureBindError, match=r"edge agent on 0\.0\.0\.0:8101"):
        create_app(EdgeSettings(host="0.0.0.0"))
    with pytest.raises(InsecureBindError):
        create_app(EdgeSettings(host="0.0.0.0", api_token="  "))


def test_loopback_or_a_token_is_enough(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        create_app(EdgeSettings(host="127.0.0.1"))
        create_app(EdgeSettings(host="0.0.0.0", api_token="t"))
    assert "SECURITY" not in caplog.text


@pytest.mark.parametrize("variable", ["PICE_EDGE_ALLOW_INSECURE", "PICE_ALLOW_INSECURE", None])
def test_the_opt_out_starts_and_warns_naming_the_address(
    variable: str | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if variable is None:
        settings = load_settings(None, host="0.0.0.0", port=9101, allow_insecure=True)
    else:
        monkeypatch.setenv(variable, "true")
        settings = EdgeSettings(host="0.0.0.0", port=9101)
    with caplog.at_level(logging.WARNING):
        create_app(settings)
    assert "SECURITY: the edge agent listens on 0.0.0.0:9101 WITHOUT authentication" in caplog.text


def test_the_token_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text("from-file\n")
    from_file = EdgeSettings(api_token_file=path)
    assert from_file.api_token is not None
    assert from_file.api_token.get_secret_value() == "from-file"
    monkeypatch.setenv("PICE_EDGE_API_TOKEN", "from-env")
    from_env = EdgeSettings()
    assert from_env.api_token is not None
    assert from_env.api_token.get_secret_value() == "from-env"
    for shown in (repr(from_env), str(from_env), from_env.model_dump_json()):
        assert "from-env" not in shown


def test_the_cli_refuses_and_exits_2(caplog: pytest.LogCaptureFixture) -> None:
    from pice_cli.main import main

    with caplog.at_level(logging.ERROR):
        assert main(["edge", "serve", "--model", "x.gguf", "--host", "0.0.0.0"]) == 2
    assert "Refusing to start the edge agent on 0.0.0.0:8101" in caplog.text


async def test_missing_and_wrong_tokens_are_401() -> None:
    fake = FakeBackend()
    fake.may_start.set()
    async with serve(fake) as client:
        await until_ready(client)
        missing = await client.get("/v1/load")
        wrong = await client.get("/v1/load", headers={"Authorization": "Bearer " + TOKEN + "x"})
        right = await client.get("/v1/load", headers=AUTH)
        expand = await client.post("/v1/expand", json={"question": "q", "sketch": ["a"]})
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "missing_api_key")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_api_key")
    assert TOKEN not in wrong.text
    assert right.status_code == 200
    assert expand.status_code == 401
    assert fake.jobs == []
