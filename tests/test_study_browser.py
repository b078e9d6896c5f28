"""The study app in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``)
driven by Selenium does a whole rating run: instructions and consent, trials answered with the
keyboard and the buttons while using the magnifier (mouse and touch), resume after a reload and
after closing the tab, a refused second vote, then the analysis reads the votes.

Skipped only when no browser is installed and ``IMGCOMP_REQUIRE_BROWSER`` is unset (CI sets it,
so there it fails instead)."""

from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image

from synthetic_images import smooth_image

CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage")


def _browser() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def _need(what: str) -> None:
    if os.environ.get("IMGCOMP_REQUIRE_BROWSER"):
        pytest.fail(f"IMGCOMP_REQUIRE_BROWSER is set but {what}")
    pytest.skip(what)


@pytest.fixture
def driver(tmp_path):
    found = _browser()
    if found is None:
        _need("no chromium + chromedriver installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1280,900")
    browser = webdriver.Chrome(options=options, service=Service(executable_path=found[1]))
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()


@pytest.fixture
def served(tmp_path):
    from imgcomp.study.app import create_app
    from imgcomp.study.create import create_study
    from imgcomp.study.pilot import LocalServer

    images = tmp_path / "photos"
    images.mkdir()
    for seed in (1, 2):
        Image.fromarray(smooth_image(96, 128, seed=seed, noise=12)).save(images / f"p{seed}.png")
    create_study(images, ["jpeg420", "webp"], tmp_path / "study", rates=[1.0, 2.0], attention_checks=1)
    app = create_app(tmp_path / "study")
    with LocalServer(app) as server:
        yield server.url, app


def _lenses(browser) -> list[dict]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('.lens')).map(l => ({hidden: l.hidden,"
        " left: l.style.left, top: l.style.top, pos: l.style.backgroundPosition,"
        " size: l.style.backgroundSize, image: l.style.backgroundImage}));")


def _assert_synchronised(browser) -> list[dict]:
    lenses = _lenses(browser)
    assert len(lenses) == 3 and not any(lens["hidden"] for lens in lenses), lenses
    for key in ("left", "top", "pos", "size"):
        assert len({lens[key] for lens in lenses}) == 1, (key, lenses)
    assert len({lens["image"] for lens in lenses}) == 3  # each lens magnifies its own image
    return lenses


def _screen(browser) -> str | None:
    return browser.execute_script(
        "const e = document.getElementById('progress-text');"
        "return e ? e.textContent : (document.getElementById('done') ? 'done' : null);")


def _wait_for_screen(browser, text: str) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,)).until(lambda b: _screen(b) == text)


def test_a_whole_rating_run_in_chromium(driver, served):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    from imgcomp.study import db
    from imgcomp.study.analyze import analyze_votes

    url, app = served
    total = 4 + 1  # 2 images x 2 rates x 1 codec pair, 1 attention check
    driver.get(url + "/")
    assert "closer to the original" in driver.find_element("tag name", "h1").text
    assert f"{total}" in driver.find_element("tag name", "main").text
    driver.find_element("id", "start").click()  # consent not ticked: the form does not submit
    assert driver.current_url == url + "/" and db.rater_count(app.state.engine) == 0
    driver.find_element("id", "consent").click()
    driver.find_element("id", "start").click()
    _wait_for_screen(driver, f"Screen 1 of {total}")
    assert driver.current_url == url + "/rate"

    # screen 1: the mouse over the original shows the same spot of all three; '+' zooms; key ←
    driver.execute_script("return Promise.all(Array.from(document.images).map(i => i.decode()))")
    reference = driver.find_element("css selector", "#panel-reference .frame")
    assert all(lens["hidden"] for lens in _lenses(driver))
    ActionChains(driver).move_to_element_with_offset(reference, 10, -5).perform()
    before = _assert_synchronised(driver)
    ActionChains(driver).send_keys("+").perform()
    assert driver.find_element("id", "zoom").text == "3"
    after = _assert_synchronised(driver)
    assert after[0]["size"] != before[0]["size"]
    ActionChains(driver).move_to_element(driver.find_element("css selector", "#panel-left .frame")).perform()
    _assert_synchronised(driver)
    token_1 = driver.find_element("id", "trial").get_attribute("data-token")
    ActionChains(driver).send_keys(Keys.ARROW_LEFT).perform()
    _wait_for_screen(driver, f"Screen 2 of {total}")

    # screen 2: a finger on the right image moves all three lenses; key →
    driver.execute_script("return Promise.all(Array.from(document.images).map(i => i.decode()))")
    box = driver.execute_script("const r = document.querySelector('#panel-right .frame').getBoundingClientRect();"
                                "return [r.left + r.width * 0.3, r.top + r.height * 0.6];")
    touch = {"x": box[0], "y": box[1]}
    driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [touch]})
    driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": box[0] + 8, "y": box[1] - 4}]})
    driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    lenses = _assert_synchronised(driver)
    assert lenses[0]["left"] not in ("", "0px")
    ActionChains(driver).send_keys(Keys.ARROW_RIGHT).perform()
    _wait_for_screen(driver, f"Screen 3 of {total}")

    # screen 3: the button; then a reload and a new tab resume at screen 4 with the same trial
    driver.find_element("id", "choose-right").click()
    _wait_for_screen(driver, f"Screen 4 of {total}")
    token_4 = driver.find_element("id", "trial").get_attribute("data-token")
    driver.refresh()
    _wait_for_screen(driver, f"Screen 4 of {total}")
    assert driver.find_element("id", "trial").get_attribute("data-token") == token_4
    old = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.switch_to.window(old)
    driver.close()
    driver.switch_to.window(driver.window_handles[0])
    driver.get(url + "/")
    _wait_for_screen(driver, f"Screen 4 of {total}")
    assert driver.find_element("id", "trial").get_attribute("data-token") == token_4

    # a second vote for screen 1, sent from the page, is refused
    status = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/vote', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({token: arguments[0], choice: 'right'})}).then(r => done(r.status));", token_1)
    assert status == 409

    for screen in range(4, total + 1):
        ActionChains(driver).send_keys(Keys.ARROW_LEFT).perform()
        _wait_for_screen(driver, f"Screen {screen + 1} of {total}" if screen < total else "done")
    assert f"{total} of {total}" in driver.find_element("id", "done").text

    rows = db.answered_trials(app.state.engine)
    assert [r["choice"] for r in rows] == ["left", "right", "right", "left", "left"]
    assert rows[0]["magnifier"] is True and rows[0]["response_ms"] > 0
    assert sum(r["kind"] == "attention" for r in rows) == 1
    result = analyze_votes(app.state.study, rows, bootstrap=20)
    assert result["raters"]["total"] == 1
    assert result["votes"]["counted"] + result["votes"]["excluded"] == 4
