"""`reslab serve` over real HTTP on an ephemeral loopback port: answers equal `reslab.predict`, requests
that arrive together are batched, every bad input is a clear 4xx and the server keeps serving."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys

import httpx
import pytest
from PIL import Image

import reslab
from reslab.classifier import load_classifier
from reslab.cli import main

pytest.importorskip("fastapi")
from reslab.serve.app import create_app  # noqa: E402
from reslab.serve.runner import start_in_thread  # noqa: E402
from reslab.serve.settings import ServeSettings  # noqa: E402

MAX_BODY_MB = 0.05  # 52 KB: a test can go over it cheaply
MAX_PIXELS = 10_000


@pytest.fixture(scope="module")
def served(digits_run):
    classifier = load_classifier(digits_run, device="cpu")
    settings = ServeSettings(max_batch=8, max_wait_ms=50, max_body_mb=MAX_BODY_MB, max_pixels=MAX_PIXELS)
    app = create_app(classifier, settings)
    running = start_in_thread(app)
    with httpx.Client(base_url=running.url, timeout=30) as client:
        yield client, app
    running.stop()


def _png(path) -> bytes:
    return path.read_bytes()


def test_health_metadata_and_page(served):
    client, _ = served
    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    assert meta["model"] == "resnet8" and meta["classes"] == [str(i) for i in range(10)]
    assert meta["input"] == {"rule": "fit", "in_chans": 1, "size": [8, 8], "resize_size": None}
    assert meta["batching"] == {"max_batch": 8, "max_wait_ms": 50}
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html") and 'id="file"' in page.text


def test_predict_answers_what_offline_predict_answers(served, digits_run, digit_folder):
    client, _ = served
    paths = digit_folder[1][:4]
    offline = reslab.predict(digits_run, paths, device="cpu")
    for path, expected in zip(paths, offline, strict=True):
        multipart = client.post("/predict", files={"file": (path.name, _png(path), "image/png")})
        raw = client.post("/predict", content=_png(path), headers={"content-type": "image/png"})
        assert multipart.status_code == raw.status_code == 200
        assert multipart.json()["top"] == raw.json()["top"] == expected["top"]
    batch = client.post(
        "/predict/batch?topk=2", files=[("files", (p.name, _png(p), "image/png")) for p in paths]
    )
    assert [r["top"] for r in batch.json()["results"]] == [e["top"][:2] for e in offline]


def test_requests_that_arrive_together_share_a_batch(served, digits_run, digit_folder):
    client, _ = served
    paths = digit_folder[1] * 2  # 40 requests
    expected = {r["path"]: r["top"] for r in reslab.predict(digits_run, digit_folder[1], device="cpu")}

    async def send_all():
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as async_client:
            return await asyncio.gather(
                *(async_client.post("/predict", files={"file": (p.name, _png(p))}) for p in paths)
            )

    before = _metric(client, "reslab_batch_size_count")
    responses = asyncio.run(send_all())
    assert [r.json()["top"] for r in responses] == [expected[str(p)] for p in paths]  # none lost or mixed up
    batches = _metric(client, "reslab_batch_size_count") - before
    assert 40 / 8 <= batches < 40  # at most max_batch per batch, and some batches held several


def _metric(client, name: str, labels: str = "") -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{name}{re.escape(labels)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _truncated_png(path) -> bytes:
    data = _png(path)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("kind", "status", "words"),
    [
        ("not an image", 400, "not an image Pillow can read"),
        ("truncated", 400, "cannot decode image"),
        ("too many pixels", 413, f"200x100 pixels is over the limit of {MAX_PIXELS}"),
        ("body too big", 413, "the request body is over the limit"),
        ("wrong content type", 415, "content type 'text/plain' is not an image"),
        ("no file part", 400, "has no file part"),
        ("empty", 400, "the image is empty"),
        ("two files to /predict", 400, "send several to /predict/batch"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_the_server_goes_on(served, digit_folder, kind, status, words):
    client, _ = served
    good = digit_folder[1][0]
    big = io.BytesIO()
    Image.new("L", (200, 100)).save(big, format="PNG")
    requests = {
        "not an image": {"files": {"file": ("a.png", b"hello, world", "image/png")}},
        "truncated": {"files": {"file": ("t.png", _truncated_png(good), "image/png")}},
        "too many pixels": {"content": big.getvalue(), "headers": {"content-type": "image/png"}},
        "body too big": {"content": b"\0" * 60_000, "headers": {"content-type": "image/png"}},
        "wrong content type": {"content": _png(good), "headers": {"content-type": "text/plain"}},
        "no file part": {
            "content": b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nno image\r\n--b--\r\n',
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },
        "empty": {"content": b"", "headers": {"content-type": "image/png"}},
        "two files to /predict": {"files": [("f", ("a.png", _png(good))), ("f", ("b.png", _png(good)))]},
    }
    response = client.post("/predict", **requests[kind])
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert client.post("/predict", files={"file": ("ok.png", _png(good))}).status_code == 200
    assert f'endpoint="/predict",status="{status}"' in client.get("/metrics").text


def test_a_batch_reports_a_bad_image_in_its_entry(served, digit_folder):
    client, _ = served
    good = digit_folder[1][0]
    files = [("files", ("ok.png", _png(good))), ("files", ("bad.png", b"nope"))]
    results = client.post("/predict/batch", files=files).json()["results"]
    assert results[0]["error"] is None and len(results[0]["top"]) == 5
    assert results[1]["top"] == [] and "not an image" in results[1]["error"]


def test_a_model_failure_is_a_500_for_that_request_only(served, digit_folder):
    client, app = served
    batcher = app.state.service.batcher
    working = batcher.run_batch

    def broken(_batch):
        raise RuntimeError("out of memory (simulated)")

    good = {"files": {"file": ("ok.png", _png(digit_folder[1][0]))}}
    batcher.run_batch = broken
    try:
        failed = client.post("/predict", **good)
    finally:
        batcher.run_batch = working
    assert failed.status_code == 500 and "out of memory (simulated)" in failed.json()["error"]
    assert client.post("/predict", **good).status_code == 200


def test_explain_returns_the_top_classes_and_a_heatmap(served, digits_run, digit_folder):
    import base64

    client, _ = served
    path = digit_folder[1][1]
    answer = client.post("/explain", files={"file": (path.name, _png(path))}).json()
    assert answer["top"] == reslab.predict(digits_run, [path], device="cpu")[0]["top"]
    assert answer["layer"] == "layer3"  # a CIFAR-style net: its last stage
    with Image.open(io.BytesIO(base64.b64decode(answer["heatmap_png"]))) as heatmap:
        assert heatmap.format == "PNG" and min(heatmap.size) >= 224


def test_the_serve_command_listens_on_loopback_and_answers(digits_run, digit_folder):
    command = [sys.executable, "-m", "reslab", "serve", str(digits_run), "--port", "0", "--device", "cpu"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        assert url, line
        path = digit_folder[1][2]
        with httpx.Client(base_url=url.group(1), timeout=30) as client:
            response = client.post("/predict", files={"file": (path.name, _png(path))})
        assert response.json()["top"] == reslab.predict(digits_run, [path], device="cpu")[0]["top"]
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--max-batch", "0"], "--max-batch must be 1 to 1024"),
        (["--max-wait-ms", "-1"], "--max-wait-ms must be 0 to 10000"),
        (["--port", "70000"], "--port must be 0 to 65535"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(digits_run, capsys, extra, words):
    assert main(["serve", str(digits_run), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
