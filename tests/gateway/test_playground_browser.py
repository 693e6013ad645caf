"""The playground in a real headless browser: Debian's Chromium, driven by Selenium.

A real gateway (uvicorn) in front of the fake cloud and two fake edges; the browser loads
``/playground``, types a key and a question, clicks, and the page must show what the API did:
the route, the sketch, one lane per point coloured by its edge, the merged answer (the same
text the API answers), and both answers' timings. The screenshot is kept in the test's
temporary folder; ``PICE_PLAYGROUND_SCREENSHOT=path.png`` copies it there. (The README's is of
real models, taken with ``scripts/playground_screenshot.py``.)

Skipped, with the reason, where Chromium or its driver is not installed (``.ci/run`` installs
both). Selenium is given the driver's path, so its Selenium Manager never tries a download.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import fake_stack, openai_client
from tests.gateway.fakes import OUTLINE, CloudScript, EdgeScript, point_words

pytest.importorskip("selenium", reason="needs selenium (the dev extra)")

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import chromium, full_page_png, installed

pytestmark = pytest.mark.skipif(
    not installed(),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)

KEY = "sk-playground-test"
QUESTION = "How can I stay healthy?"
CLOUD_ANSWER = "The cloud alone answers this in one go."
TIMING = re.compile(r"\d+ ms|\d+\.\d\d s")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path / "profile") as driver:
        yield driver


def text_of(driver: WebDriver, css: str) -> str:
    """An element's whole text as the page wrote it (``.text`` would trim and re-space it)."""
    return str(driver.find_element(By.CSS_SELECTOR, css).get_property("textContent"))


def test_the_playground_shows_pice_at_work(browser: WebDriver, tmp_path: Path) -> None:
    # Both edges run one model (they write the same words), so the answer does not depend on
    # which edge got which point and the API's own answer can be compared with the page's.
    edges = [
        EdgeScript("orin-a", token_delay=0.04, author="qwen"),
        EdgeScript("orin-b", token_delay=0.04, author="qwen"),
    ]
    cloud = CloudScript(answer=CLOUD_ANSWER, token_delay=0.02)
    with fake_stack(cloud, edges, api_keys=[KEY]) as url:
        browser.get(url.removesuffix("/v1") + "/playground")
        browser.find_element(By.ID, "key").send_keys(KEY)
        browser.find_element(By.ID, "question").send_keys(QUESTION)
        browser.find_element(By.ID, "ask").click()
        WebDriverWait(browser, 60).until(
            lambda d: d.find_element(By.ID, "status").get_attribute("class") in ("done", "error")
        )
        assert text_of(browser, "#status") == "done"
        shot = tmp_path / "playground.png"
        shot.write_bytes(full_page_png(browser))
        api_answer = (
            openai_client(url, KEY)
            .chat.completions.create(
                model="pice", messages=[{"role": "user", "content": QUESTION}], max_tokens=400
            )
            .choices[0]
            .message.content
        )
    if target := os.environ.get("PICE_PLAYGROUND_SCREENSHOT"):
        shutil.copyfile(shot, target)
    assert shot.read_bytes().startswith(b"\x89PNG")

    route = text_of(browser, "#route")
    assert "progressive" in route
    assert "reason: outline" in route
    assert text_of(browser, "#sketch") == OUTLINE

    lanes = browser.find_elements(By.CSS_SELECTOR, "#lanes .lane")
    assert len(lanes) == 3
    colours: dict[str, set[str]] = {}
    titles = ["Alpha point", "Beta point", "Gamma point"]
    for n, (lane, title) in enumerate(zip(lanes, titles, strict=True)):
        assert lane.get_attribute("data-point") == str(n)
        assert "done" in str(lane.get_attribute("class"))
        source = str(lane.get_attribute("data-source"))
        lane_text = lane.find_element(By.CSS_SELECTOR, ".lane-title").get_property("textContent")
        assert lane_text == f"{n + 1}. {title}"
        assert lane.find_element(By.CSS_SELECTOR, ".lane-source").text == source
        body = lane.find_element(By.CSS_SELECTOR, ".lane-body").get_property("textContent")
        assert body == "".join(point_words(n, "qwen"))
        colours.setdefault(source, set()).add(lane.value_of_css_property("border-left-color"))
    assert set(colours) == {"orin-a", "orin-b"}, "the default placement used both edges"
    assert all(len(shades) == 1 for shades in colours.values()), "one colour per edge"
    assert colours["orin-a"] != colours["orin-b"], "edges are told apart by colour"

    answer = text_of(browser, "#answer")
    assert answer == api_answer
    assert answer == "".join(
        f"{n + 1}. **{title}**: {''.join(point_words(n, 'qwen'))}\n"
        for n, title in enumerate(titles)
    )
    assert text_of(browser, "#cloud-answer") == CLOUD_ANSWER
    for cell in ("pice-ttft", "pice-total", "cloud-ttft", "cloud-total"):
        assert TIMING.fullmatch(text_of(browser, f"#{cell}")), cell
    for cell in ("ratio-ttft", "ratio-total"):
        assert re.fullmatch(r"×\d+\.\d\d", text_of(browser, f"#{cell}")), cell
