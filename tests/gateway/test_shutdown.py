"""The gateway's shutdown closes its clients whatever happened to its background loops."""

from __future__ import annotations

import asyncio

import pytest

from pice.errors import UpstreamError
from pice_gateway.app import create_app
from pice_gateway.edges import EdgeRegistry
from pice_gateway.upstream import post_json
from tests.gateway.conftest import settings_for
from tests.gateway.fakes import CloudScript, fake_cloud, serve

pytestmark = pytest.mark.timeout(30)


async def test_a_background_loop_that_died_does_not_stop_the_shutdown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def dies(self: EdgeRegistry) -> None:
        raise RuntimeError("the poller died")

    monkeypatch.setattr(EdgeRegistry, "run_poller", dies)
    with serve(fake_cloud(CloudScript())) as cloud_url:
        app = create_app(settings_for(cloud_url, {}))
        async with app.router.lifespan_context(app):
            cloud = app.state.gateway.cloud
            await asyncio.sleep(0.05)  # the poller has died by now
            ask = {"model": "m", "messages": [{"role": "user", "content": "Hi?"}]}
            assert await post_json(cloud, "chat/completions", ask), "the cloud's client works"
        # Raised out of the lifespan before, and the cloud's connection pool left open.
        with pytest.raises(UpstreamError, match="ClientConnectionError"):
            await post_json(cloud, "chat/completions", {})
    assert "edge-load-poller had failed: RuntimeError('the poller died')" in caplog.text
