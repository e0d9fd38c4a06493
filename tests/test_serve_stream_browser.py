"""The live stream page (/stream) in a real headless Chromium against `sdmtalk serve` with the
shipped model: the demo photo speaks the demo speech sent at real-time pace, and every
frame comes back over the WebSocket or is counted as dropped (a loaded machine drops frames
later than the stream's latency budget). Skips where test_serve_browser skips (no Chromium)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("selenium.webdriver", reason="selenium (serve extra) is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_serve_browser import CHROMIUM, DRIVER, server  # noqa: E402, F401 - skips without Chromium

DEMO_FRAMES = 336  # 13.43 s of demo speech at 25 frames/s


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", "--no-first-run",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-stream')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_stream_page_gets_every_frame_of_the_demo(server, browser, tmp_path):  # noqa: F811
    from sdmtalk.assets import demo_inputs

    photo, speech = demo_inputs(tmp_path)
    browser.get(server + "/stream")
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    browser.find_element(By.ID, "audio").send_keys(str(speech))
    browser.find_element(By.ID, "start").click()
    status = WebDriverWait(browser, 600, poll_frequency=0.5).until(
        lambda d: (text := d.find_element(By.ID, "status").text).startswith(("done:", "error")) and text
        or "error" in (d.find_element(By.ID, "status").get_attribute("class") or "") and text)
    assert status.startswith("done: "), status
    frames = int(re.search(r"done: (\d+) frames", status).group(1))
    dropped = int(re.search(r"(\d+) dropped", status).group(1))  # a loaded machine drops late frames
    back = int(re.search(r"(\d+) frames back", status).group(1))
    assert frames + dropped == DEMO_FRAMES and back == frames > 0, status
