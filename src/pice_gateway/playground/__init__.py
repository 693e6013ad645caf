"""The playground: one static page (``GET /playground``) where a person asks a question and
watches PICE answer it, next to the cloud answering alone.

The page is a client of the public API and nothing else: it posts to ``/v1/chat/completions``
with ``fetch`` (model ``pice`` with ``"pice": {"events": true}``, and the cloud model at the same
moment) and reads the two SSE streams itself. So it needs no endpoint of its own, and the API
key, when keys are set, is typed into the page and sent by the browser, never kept by the server.

``page.html`` holds its HTML, CSS and script (no build step, nothing fetched from elsewhere);
the gateway writes the model names into it once, when the app is built, and serves it with a
Content-Security-Policy that allows that script and style (by hash) and connections to this
origin only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from pice.security import is_loopback
from pice_gateway.settings import GatewaySettings

PATH = "/playground"
# Where the gateway writes the page's settings (a JSON object) into its script.
_CONFIG_SLOT = "/*PICE_CONFIG*/null"
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def enabled(settings: GatewaySettings) -> bool:
    """Whether the page is served: as set, or (unset) only on a loopback ``host``."""
    choice = settings.playground.enabled
    return is_loopback(settings.host) if choice is None else choice


def render_page(settings: GatewaySettings) -> str:
    """The page with this gateway's model names and whether it wants an API key."""
    config = {
        "auto": settings.models.auto,
        "cloud": settings.models.cloud,
        "keys": bool(settings.api_keys),
    }
    # "<" escaped: a model name holding "</script>" must not end the script.
    data = json.dumps(config).replace("<", "\\u003c")
    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    if page.count(_CONFIG_SLOT) != 1:
        raise RuntimeError("the playground page has no single config slot")
    return page.replace(_CONFIG_SLOT, data)


def content_security_policy(page: str) -> str:
    """Nothing but the page's own inline script and style, and requests to its own origin."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(page):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(hashes['script'])}",
            f"style-src {' '.join(hashes['style'])}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def build_router(settings: GatewaySettings) -> APIRouter:
    """``GET /playground`` (no route at all when the page is not :func:`enabled`)."""
    router = APIRouter()
    if not enabled(settings):
        return router
    page = render_page(settings)
    headers = {
        "Content-Security-Policy": content_security_policy(page),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }

    @router.get(PATH, include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    return router
