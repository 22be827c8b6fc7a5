"""The web page in a real browser (headless Chromium from Debian, driven by Selenium): a chosen image's
top class, as the page shows it, is what `reslab predict` says; the Grad-CAM image is drawn."""

from __future__ import annotations

import shutil

import pytest

import reslab
from reslab.classifier import load_classifier

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from reslab.serve.app import create_app  # noqa: E402
from reslab.serve.runner import start_in_thread  # noqa: E402

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ANSWERED = "return Number(document.body.dataset.answered || 0)"  # the page counts its answers


@pytest.fixture(scope="module")
def browser():
    if not (BROWSER and DRIVER):
        pytest.skip("no chromium + chromedriver (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1000,800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


def test_the_page_shows_predicts_top_class_and_a_heatmap(browser, digits_run, digit_folder):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    running = start_in_thread(create_app(load_classifier(digits_run, device="cpu")))
    try:
        browser.get(running.url + "/")
        WebDriverWait(browser, 30).until(lambda d: "resnet8" in d.find_element(By.ID, "model").text)
        for answered, path in enumerate(digit_folder[1][:3], start=1):
            browser.find_element(By.ID, "file").send_keys(str(path))
            expected = reslab.predict(digits_run, [path], device="cpu")[0]["top"]
            WebDriverWait(browser, 30).until(lambda d, n=answered: d.execute_script(ANSWERED) == n)
            assert browser.find_element(By.ID, "top-class").text == expected[0]["class"]
            bars = browser.find_elements(By.CSS_SELECTOR, "#rows .row")
            assert len(bars) == 5 and bars[0].text.startswith(expected[0]["class"])
            image_width = browser.execute_script("return document.getElementById('heatmap').naturalWidth")
            assert image_width >= 224
    finally:
        running.stop()
