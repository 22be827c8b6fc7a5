"""The screenshot of `reslab serve`'s page in the README: a small ResNet trained for a minute on a
Fashion-MNIST folder, served on 127.0.0.1, a test image chosen in headless Chromium, the page saved as PNG.

    python benchmarks/serve_page_screenshot.py [--out docs/images/serve-page.png] [--work runs/serve-page]

The folder and the trained run are kept under --work and reused by the next call.

Needs Debian's dataset-fashion-mnist, chromium and chromium-driver, and the `serve` and test extras.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import reslab
from reslab.classifier import load_classifier
from reslab.serve.app import create_app
from reslab.serve.runner import start_in_thread

WRITER = Path(__file__).parent / "write_fashion_folder.py"


def screenshot(url: str, image: Path, out: Path) -> str:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,640"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(url + "/")
        driver.find_element(By.ID, "file").send_keys(str(image))
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return document.body.dataset.answered") == "1"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
        return driver.find_element(By.ID, "top-class").text
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/serve-page.png"))
    parser.add_argument("--image-index", type=int, default=7, help="which test image of class Sneaker")
    parser.add_argument("--work", type=Path, default=Path("runs/serve-page"))
    args = parser.parse_args()
    folder, run_dir = args.work / "fmnist56", args.work / "run"
    if not (run_dir / "best.pt").is_file():
        subprocess.run([sys.executable, str(WRITER), "--out", str(folder), "--size", "56",
                        "--train-per-class", "100", "--test-per-class", "20"], check=True)  # fmt: skip
        run = reslab.train(model="resnet20", data=f"folder:{folder}", epochs=10, out=run_dir, quiet=True)
        print(f"resnet20 trained: test accuracy {run.test['accuracy']:.3f}")
    image = sorted((folder / "test" / "Sneaker").glob("*.jpg"))[args.image_index]
    running = start_in_thread(create_app(load_classifier(run_dir, device="cpu")))
    try:
        shown = screenshot(running.url, image, args.out)
    finally:
        running.stop()
    offline = reslab.predict(run_dir, [image], device="cpu")[0]["top"][0]["class"]
    print(f"page shows {shown!r} for {image.name}; offline predict says {offline!r} -> {args.out}")


if __name__ == "__main__":
    main()
