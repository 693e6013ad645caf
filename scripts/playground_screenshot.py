"""Ask a running gateway's playground one question in headless Chromium and save the page.

    python scripts/playground_screenshot.py http://127.0.0.1:8000 docs/img/playground.png \\
        "What are the most effective ways to deal with stress?"

Against `make run` / `pice up` (real models) this is how the README's screenshot is made; it
prints what the page showed. Needs Debian's chromium and chromium-driver, and selenium.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import chromium, full_page_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gateway", help="the gateway's base URL (no /v1)")
    parser.add_argument("out", type=Path, help="where the PNG goes")
    parser.add_argument("question")
    parser.add_argument("--key", default="", help="an API key, when the gateway wants one")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for answers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as profile, chromium(Path(profile)) as driver:
        driver.get(args.gateway.rstrip("/") + "/playground")
        if args.key:
            driver.find_element(By.ID, "key").send_keys(args.key)
        driver.find_element(By.ID, "question").send_keys(args.question)
        driver.find_element(By.ID, "ask").click()
        WebDriverWait(driver, args.wait, poll_frequency=1).until(
            lambda d: d.find_element(By.ID, "status").get_attribute("class") in ("done", "error")
        )
        for element in ("status", "route", "pice-ttft", "pice-total", "cloud-ttft", "cloud-total"):
            print(f"{element}: {driver.find_element(By.ID, element).text}")
        for lane in driver.find_elements(By.CSS_SELECTOR, "#lanes .lane"):
            print(f"lane on {lane.get_attribute('data-source')}: {lane.text.splitlines()[0]}")
        args.out.write_bytes(full_page_png(driver))


if __name__ == "__main__":
    main()
