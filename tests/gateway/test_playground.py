"""The playground page: when it is served, and what is served (the browser test drives it)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from pice_gateway.app import create_app
from pice_gateway.playground import content_security_policy, enabled, render_page
from pice_gateway.settings import GatewaySettings


def settings(**fields: Any) -> GatewaySettings:
    return GatewaySettings(router={"enabled": False}, edges=[], **fields)


@pytest.mark.parametrize(
    ("host", "setting", "served"),
    [
        ("127.0.0.1", None, True),
        ("localhost", None, True),
        ("::1", None, True),
        ("0.0.0.0", None, False),
        ("10.0.0.5", None, False),
        ("0.0.0.0", True, True),
        ("127.0.0.1", False, False),
    ],
)
def test_served_on_loopback_unless_a_setting_says_otherwise(
    host: str, setting: bool | None, served: bool
) -> None:
    chosen = settings(host=host, playground={"enabled": setting}, allow_insecure=True)
    assert enabled(chosen) is served


async def get(app_settings: GatewaySettings, path: str) -> httpx.Response:
    app = create_app(app_settings, router=lambda _: None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        return await http.get(path)


async def test_the_page_is_served_with_a_policy_that_allows_only_itself() -> None:
    response = await get(settings(models={"auto": "my-auto", "cloud": "my-cloud"}), "/playground")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '{"auto": "my-auto", "cloud": "my-cloud", "keys": false}' in page
    policy = response.headers["content-security-policy"]
    assert policy == content_security_policy(page)
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", policy)
    # Self-contained: nothing is loaded from anywhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page


async def test_off_the_loopback_the_page_is_not_there() -> None:
    exposed = settings(host="0.0.0.0", api_keys=["k"])
    assert (await get(exposed, "/playground")).status_code == 404
    opened = settings(host="0.0.0.0", api_keys=["k"], playground={"enabled": True})
    response = await get(opened, "/playground")
    assert response.status_code == 200
    # The page asks for the key (it is never in the page); the API still wants it.
    assert '"keys": true' in response.text
    assert '"k"' not in response.text


def test_a_model_name_cannot_end_the_script() -> None:
    page = render_page(settings(models={"auto": "</script><b>x"}))
    assert "</script><b>" not in page
    assert "\\u003c/script>\\u003cb>x" in page
