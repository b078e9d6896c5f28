#!/usr/bin/env python3
"""Screenshots of the study's rating page at desktop and phone sizes (docs/study/*.png).

    python scripts/study_screenshots.py STUDY_FOLDER docs/study

Serves STUDY_FOLDER with a throw-away database, consents in headless Chromium (Debian's chromium
and chromium-driver), puts the magnifier on a spot of the original (mouse on the desktop, a touch
on the phone) and saves each page as a 256-colour PNG.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from imgcomp.study.app import create_app
from imgcomp.study.pilot import LocalServer

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")
SIZES = {"desktop": (1280, 720, False), "phone": (390, 700, True)}


def shoot(url: str, name: str, width: int, height: int, phone: bool, profile: Path, out: Path) -> Path:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    if phone:
        options.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "touch": True}})
    else:
        options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(url + "/")
        driver.find_element("id", "consent").click()
        driver.find_element("id", "start").click()
        driver.find_element("id", "trial")
        driver.execute_script("return Promise.all(Array.from(document.images).map(i => i.decode()))")
        x, y = driver.execute_script(
            "const r = document.querySelector('#panel-reference .frame').getBoundingClientRect();"
            "return [r.left + r.width * 0.42, r.top + r.height * 0.45];")
        if phone:
            driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
            driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        else:
            driver.execute_cdp_cmd("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    path = out / f"{name}.png"
    image.save(path, optimize=True)
    return path


def main() -> None:
    study, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(study, f"sqlite:///{Path(tmp) / 'votes.sqlite'}")
        with LocalServer(app) as server:
            for name, (width, height, phone) in SIZES.items():
                path = shoot(server.url, name, width, height, phone, Path(tmp) / name, out)
                print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
