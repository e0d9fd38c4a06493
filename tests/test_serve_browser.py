"""The web page in a real headless Chromium: upload the demo photo and speech, press
Generate, wait for a playable video of the speech's length; on the "Dub a video" tab, upload
a short face video and new speech, press Dub, wait for the dubbed video and its notes. Needs Debian's chromium and
chromium-driver (.ci/run installs them); skips, saying why, only where they are missing.
SDMTALK_SERVE_SCREENSHOT=path also saves the screenshot there (README's docs/img/serve.png)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytest.importorskip("gradio", reason="the serve extra is not installed: pip install -e '.[serve]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (serve extra) is not installed")
if not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()):
    pytest.skip("no headless Chromium here: apt-get install chromium chromium-driver (.ci/run does)",
                allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SPEECH_SECONDS = 13.43  # sdmtalk/assets/demo_speech.wav


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`sdmtalk serve` as a user starts it, on a free local port."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("serve") / "server.log", "w+")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sdmtalk", "serve", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _wait_until_up(url, proc, log, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"sdmtalk serve exited with {proc.returncode}: {log.read()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/api/health", timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"sdmtalk serve did not answer on {url} within {timeout} s")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1250",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(300)
    try:
        yield driver
    finally:
        driver.quit()


def _upload(wait, selector: str, path) -> None:
    """Send a file to the page's upload field once it is there: the page redraws its inputs
    after each upload, so on a loaded machine the next field may not exist yet."""
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))[0].send_keys(str(path))


def test_page_makes_a_playable_video_of_the_demo(server, browser, tmp_path):
    from sdmtalk.assets import demo_inputs

    photo, speech = demo_inputs(tmp_path)
    browser.get(server + "/")
    wait = WebDriverWait(browser, 300)
    _upload(wait, "#photo input[type=file]", photo)
    _upload(wait, "#audio input[type=file]", speech)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img"))  # both uploads shown
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#audio audio, #audio canvas, #audio .waveform-container"))
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    duration = WebDriverWait(browser, 600, poll_frequency=0.5).until(_video_duration)
    assert abs(duration - SPEECH_SECONDS) < 0.2, f"video is {duration:.2f} s, the speech {SPEECH_SECONDS} s"
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    shot = tmp_path / "serve.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("SDMTALK_SERVE_SCREENSHOT"):
        shutil.copy(shot, os.environ["SDMTALK_SERVE_SCREENSHOT"])


def test_page_shows_a_bad_input_as_the_cli_line_without_a_trace(server, browser, tmp_path):
    from sdmtalk.assets import demo_inputs

    photo, _ = demo_inputs(tmp_path)
    browser.get(server + "/")
    wait = WebDriverWait(browser, 300)
    _upload(wait, "#photo input[type=file]", photo)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img"))
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    expected = "no speech: upload or record an audio file, or type text to speak"
    wait.until(lambda d: expected in d.find_element(By.TAG_NAME, "body").text)
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text


def test_dub_tab_dubs_a_video_and_shows_its_notes(server, browser, tmp_path):
    import soundfile as sf

    from sdmtalk import SAMPLE_RATE
    from sdmtalk.assets import demo_inputs
    from sdmtalk.pipeline import TalkingFacePipeline

    photo, speech = demo_inputs(tmp_path)
    wav, rate = sf.read(speech, dtype="float32")
    sf.write(tmp_path / "own.wav", wav[: 2 * rate], rate)  # the video: 2 s of the demo face talking
    TalkingFacePipeline(motion="linear", quiet=True, threads=1).generate(photo, tmp_path / "own.wav",
                                                                        tmp_path / "face.mp4")
    sf.write(tmp_path / "new.wav", wav[3 * rate: 4 * rate], rate)  # the new speech: 1 s
    assert rate == SAMPLE_RATE
    browser.get(server + "/")
    wait = WebDriverWait(browser, 300)
    wait.until(lambda d: d.find_elements(By.XPATH, "//button[@role='tab'][contains(., 'Dub a video')]"))[0].click()
    _upload(wait, "#dub_video input[type=file]", tmp_path / "face.mp4")
    _upload(wait, "#dub_audio input[type=file]", tmp_path / "new.wav")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#dub_video video"))  # both uploads shown
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR,
                                         "#dub_audio audio, #dub_audio canvas, #dub_audio .waveform-container"))
    browser.find_element(By.CSS_SELECTOR, "#dub_button").click()
    duration = WebDriverWait(browser, 600, poll_frequency=0.5).until(lambda d: _video_duration(d, "#dub_output"))
    assert abs(duration - 1.0) < 0.1, f"the dubbed video is {duration:.2f} s, the new speech 1.0 s"
    notes = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#dub_notes textarea").get_attribute("value"))
    assert "the video (2.0 s) was cut to the audio's 1.0 s" in notes and "Traceback" not in notes


def _video_duration(driver, where: str = "#video"):
    """The video element's duration once it has a source the browser can play, else False."""
    return driver.execute_script(
        "const v = document.querySelector(arguments[0] + ' video');"
        "return v && v.currentSrc && v.readyState >= 1 && isFinite(v.duration) ? v.duration : false;", where)
