"""Secure by default: exposure check, keys as secrets, per-key rate limits, CORS.

The app runs in process (``httpx.ASGITransport``); only ``/v1/models`` and probes are called,
which need no upstream, so no lifespan runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pice.errors import InsecureBindError
from pice.security import is_loopback
from pice_gateway.app import create_app
from pice_gateway.settings import GatewaySettings, load_settings

KEY_A = "key-a-0123456789"
KEY_B = "key-b-9876543210"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def settings(**fields: Any) -> GatewaySettings:
    fields.setdefault("router", {"enabled": False})
    return GatewaySettings(**fields)


# -- exposure -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("gateway.example.com", False),
    ],
)
def test_loopback_is_recognised(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5"])
def test_gateway_refuses_a_non_loopback_host_without_keys(host: str) -> None:
    with pytest.raises(InsecureBindError, match=f"{host}:8000 without authentication"):
        create_app(settings(host=host))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_needs_no_keys(host: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        create_app(settings(host=host))
    assert "SECURITY" not in caplog.text


def test_keys_allow_a_public_host() -> None:
    create_app(settings(host="0.0.0.0", api_keys=[KEY_A]))


def test_blank_keys_do_not_count_as_keys() -> None:
    with pytest.raises(InsecureBindError):
        create_app(settings(host="0.0.0.0", api_keys=["", "   "]))


@pytest.mark.parametrize("how", ["setting", "env"])
def test_the_opt_out_starts_and_warns_naming_the_address(
    how: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "env":
        monkeypatch.setenv("PICE_ALLOW_INSECURE", "1")
        configured = settings(host="0.0.0.0", port=8123)
    else:
        configured = settings(host="0.0.0.0", port=8123, allow_insecure=True)
    with caplog.at_level(logging.WARNING):
        create_app(configured)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("SECURITY" in r.getMessage() and "0.0.0.0:8123" in r.getMessage() for r in warnings)


def test_pice_gateway_cli_refuses_and_exits_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pice_cli.main import main

    config = tmp_path / "g.yaml"
    config.write_text("router: {enabled: false}\n")
    with caplog.at_level(logging.ERROR):
        assert main(["gateway", "--config", str(config), "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "Refusing to start the gateway on 0.0.0.0:1" in caplog.text


def test_an_edge_off_this_machine_without_a_token_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    edges = [
        {"name": "near", "url": "http://127.0.0.1:8101"},
        {"name": "far", "url": "http://10.0.0.21:8101"},
        {"name": "keyed", "url": "http://10.0.0.22:8101", "token": "t"},
    ]
    with caplog.at_level(logging.WARNING):
        create_app(settings(edges=edges))
    warned = [r.getMessage() for r in caplog.records if "has no token" in r.getMessage()]
    assert len(warned) == 1
    assert "far" in warned[0]


# -- keys as secrets ------------------------------------------------------------------------


def test_keys_and_tokens_come_from_files(tmp_path: Path) -> None:
    keys = tmp_path / "api_keys"
    keys.write_text(f"# client keys\n{KEY_A}\n\n  {KEY_B}  \n")
    cloud = tmp_path / "cloud"
    cloud.write_text("cloud-secret\n")
    edge = tmp_path / "edge"
    edge.write_text("edge-secret\n")
    shared = tmp_path / "shared"
    shared.write_text("shared-secret\n")
    config = tmp_path / "g.yaml"
    config.write_text(
        f"api_keys_file: {keys}\n"
        f"cloud: {{api_key_file: {cloud}}}\n"
        f"edge_client: {{token_file: {shared}}}\n"
        "edges:\n"
        f"  - {{name: a, url: 'http://a', token_file: {edge}}}\n"
        "  - {name: b, url: 'http://b'}\n"
    )
    loaded = load_settings(config)
    assert [k.get_secret_value() for k in loaded.api_keys] == [KEY_A, KEY_B]
    assert loaded.cloud.api_key is not None
    assert loaded.cloud.api_key.get_secret_value() == "cloud-secret"
    tokens = {e.name: e.token.get_secret_value() if e.token else None for e in loaded.edges}
    assert tokens == {"a": "edge-secret", "b": "shared-secret"}


def test_keys_and_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICE_API_KEYS", f'["{KEY_A}"]')
    monkeypatch.setenv("PICE_CLOUD__API_KEY", "cloud-secret")
    monkeypatch.setenv("PICE_EDGE_CLIENT__TOKEN", "edge-secret")
    loaded = load_settings()
    assert [k.get_secret_value() for k in loaded.api_keys] == [KEY_A]
    assert loaded.cloud.api_key is not None
    assert loaded.cloud.api_key.get_secret_value() == "cloud-secret"
    assert [e.token.get_secret_value() for e in loaded.edges if e.token] == ["edge-secret"]


def test_an_empty_keys_variable_is_unset_and_the_refusal_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PICE_API_KEYS", "")
    with pytest.raises(InsecureBindError):
        create_app(settings(host="0.0.0.0"))


def test_an_unreadable_or_empty_key_file_is_named_without_content(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read secret file"):
        GatewaySettings(api_keys_file=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match="holds no key"):
        GatewaySettings(api_keys_file=empty)


def test_secrets_never_show_in_reprs_dumps_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    configured = settings(
        host="0.0.0.0",
        api_keys=[KEY_A],
        cloud={"api_key": "cloud-secret"},
        edges=[{"name": "e", "url": "http://10.0.0.1:1", "token": "edge-secret"}],
    )
    shown = [
        repr(configured),
        str(configured),
        configured.model_dump_json(),
        str(configured.model_dump()),
    ]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings: %s", configured)
        create_app(configured)
    shown.append(caplog.text)
    for text in shown:
        for secret in (KEY_A, "cloud-secret", "edge-secret"):
            assert secret not in text


# -- authentication -------------------------------------------------------------------------


async def test_a_wrong_key_is_401_and_never_echoed() -> None:
    async with client(create_app(settings(api_keys=[KEY_A]))) as http:
        missing = await http.get("/v1/models")
        wrong = await http.get("/v1/models", headers=auth("guess-" + KEY_A))
        right = await http.get("/v1/models", headers=auth(KEY_A))
        health = await http.get("/health")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    assert KEY_A not in wrong.text
    assert right.status_code == 200
    assert health.status_code == 200


# -- rate limits ----------------------------------------------------------------------------


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_do_not() -> None:
    app = create_app(settings(api_keys=[KEY_A, KEY_B], rate_limit={"requests_per_minute": 3}))
    async with client(app) as http:
        first = [(await http.get("/v1/models", headers=auth(KEY_A))).status_code for _ in range(3)]
        limited = await http.get("/v1/models", headers=auth(KEY_A))
        other = await http.get("/v1/models", headers=auth(KEY_B))
    assert first == [200, 200, 200]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    error = limited.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "rate_limit_error",
        "rate_limit_exceeded",
        None,
    )
    assert "3 requests per minute" in error["message"]
    assert KEY_A not in limited.text
    assert other.status_code == 200


async def test_a_wrong_key_is_refused_before_it_is_counted() -> None:
    app = create_app(settings(api_keys=[KEY_A], rate_limit={"requests_per_minute": 1}))
    async with client(app) as http:
        for _ in range(3):
            assert (await http.get("/v1/models", headers=auth("nope"))).status_code == 401
        assert (await http.get("/v1/models", headers=auth(KEY_A))).status_code == 200


async def test_rate_limits_are_off_by_default() -> None:
    assert GatewaySettings().rate_limit.requests_per_minute is None
    async with client(create_app(settings(api_keys=[KEY_A]))) as http:
        codes = {(await http.get("/v1/models", headers=auth(KEY_A))).status_code for _ in range(50)}
    assert codes == {200}


async def test_without_keys_the_client_address_is_the_bucket() -> None:
    app = create_app(settings(rate_limit={"requests_per_minute": 1}))
    async with client(app) as http:
        assert (await http.get("/v1/models")).status_code == 200
        assert (await http.get("/v1/models")).status_code == 429


# -- CORS -----------------------------------------------------------------------------------


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_cors_is_off_by_default() -> None:
    async with client(create_app(settings(api_keys=[KEY_A]))) as http:
        answer = await http.options("/v1/chat/completions", headers=preflight("https://a.example"))
        simple = await http.get(
            "/v1/models", headers={**auth(KEY_A), "Origin": "https://a.example"}
        )
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_allows_listed_origins_and_denies_others() -> None:
    app = create_app(settings(api_keys=[KEY_A], cors={"allow_origins": ["https://a.example"]}))
    async with client(app) as http:
        allowed = await http.options("/v1/chat/completions", headers=preflight("https://a.example"))
        denied = await http.options("/v1/chat/completions", headers=preflight("https://evil.test"))
        simple = await http.get(
            "/v1/models", headers={**auth(KEY_A), "Origin": "https://a.example"}
        )
        refused = await http.get("/v1/models", headers={"Origin": "https://a.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://a.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers
    assert simple.headers["access-control-allow-origin"] == "https://a.example"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    # An error still carries the header, so the browser lets the page read the 401.
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "https://a.example"


def test_an_upstream_429_keeps_its_retry_after() -> None:
    from pice.errors import RateLimitError
    from pice_gateway.upstream import error_from_status

    body = b'{"error": {"message": "slow down", "code": "rate_limit_exceeded"}}'
    err = error_from_status("cloud", 429, body, httpx.Headers({"retry-after": "7"}))
    assert isinstance(err, RateLimitError)
    assert err.headers() == {"Retry-After": "7"}
    assert err.to_body()["error"]["type"] == "rate_limit_error"
