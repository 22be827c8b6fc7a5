"""The HTTP application: endpoints over one ImageClassifier.

GET  /            the web page (static/index.html)
GET  /health      {"status": "ok"}
GET  /metadata    model, classes, input transform, precision, batching
GET  /metrics     Prometheus text: requests by endpoint and status, latency and batch-size histograms
POST /predict     one image (multipart file part, or raw image/* bytes) -> {"top": [...]}
POST /predict/batch   several multipart file parts -> {"results": [{"filename", "top", "error"}]}
POST /explain     one image -> {"top": [...], "explained": {...}, "layer", "heatmap_png": base64 PNG}

Images are decoded in the thread pool and classified by the DynamicBatcher on the classifier's fast
path (the rows are what `reslab predict` gives for the same file). Grad-CAM runs on a private fp32
copy of the model, one request at a time, so its hooks never see a batch of other requests.
"""

from __future__ import annotations

import base64
import copy
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..classifier import ImageClassifier
from ..explain import gradcam, layer_name
from ..heatmap import overlay, png_bytes
from .batcher import DynamicBatcher
from .metrics import ServerMetrics
from .settings import ServeSettings
from .uploads import BodyLimit, UploadError, decode_upload, read_uploads


class _Service:
    """What the endpoints share: the classifier, its batcher, the metrics and the Grad-CAM model."""

    def __init__(self, classifier: ImageClassifier, settings: ServeSettings) -> None:
        self.classifier = classifier
        self.settings = settings
        self.metrics = ServerMetrics()
        classifier.prepare(settings.max_batch)
        self.batcher = DynamicBatcher(
            classifier.probabilities, settings.max_batch, settings.max_wait_ms, self.metrics.observe_batch
        )
        self.explain_model = copy.deepcopy(classifier.model).float().eval()
        self.explain_lock = threading.Lock()

    async def image(self, name: str, data: bytes) -> torch.Tensor:
        transform, limit = self.classifier.transform, self.settings.max_pixels
        return await run_in_threadpool(decode_upload, transform, name, data, limit)

    async def top(self, pixels: torch.Tensor, topk: int) -> list[dict[str, Any]]:
        probs = await self.batcher.submit(pixels)
        return self.classifier.top(probs[None], topk)[0]

    def heatmap(self, pixels: torch.Tensor, target: int) -> bytes:
        with self.explain_lock:
            x = self.classifier.normalised(pixels[None]).float()
            cam = gradcam(self.explain_model, x, target, layer="layer4").cpu()
        return png_bytes(overlay(pixels, cam[0]))


def _topk(request: Request, settings: ServeSettings) -> int:
    text = request.query_params.get("topk")
    if text is None:
        return settings.topk
    if not text.isdigit() or int(text) < 1:
        raise UploadError(400, f"topk must be a positive integer, got {text!r}")
    return int(text)


def create_app(classifier: ImageClassifier, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application serving `classifier` (run it with uvicorn; see reslab.serve.runner)."""
    settings = settings or ServeSettings()
    settings.check()
    service = _Service(classifier, settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.batcher.start()
        yield
        await service.batcher.stop()

    app = FastAPI(title="reslab serve", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    _add_errors_and_metrics(app, service.metrics)
    _add_routes(app, service)
    return app


def _add_errors_and_metrics(app: FastAPI, metrics: ServerMetrics) -> None:
    @app.exception_handler(UploadError)
    async def refused(_request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.middleware("http")
    async def measured(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # the model (or a bug) failed this request only
            response = JSONResponse(
                {"error": f"the model failed on this request: {type(exc).__name__}: {exc}"}, 500
            )
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        metrics.observe_request(endpoint, response.status_code, time.perf_counter() - start)
        return response


def _add_routes(app: FastAPI, service: _Service) -> None:
    page = resources.files("reslab.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        s = service.settings
        batching = {"max_batch": s.max_batch, "max_wait_ms": s.max_wait_ms}
        limits = {"max_body_bytes": s.max_body_bytes, "max_pixels": s.max_pixels}
        return {**service.classifier.metadata(), "batching": batching, "limits": limits}

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = service.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        topk = _topk(request, service.settings)
        ((name, data),) = await read_uploads(request, many=False)
        return {"top": await service.top(await service.image(name, data), topk)}

    @app.post("/predict/batch")
    async def predict_batch(request: Request) -> dict[str, Any]:
        import asyncio

        topk = _topk(request, service.settings)
        uploads = await read_uploads(request, many=True)
        results = await asyncio.gather(*(_one(service, name, data, topk) for name, data in uploads))
        return {"results": list(results)}

    @app.post("/explain")
    async def explain(request: Request) -> dict[str, Any]:
        topk = _topk(request, service.settings)
        ((name, data),) = await read_uploads(request, many=False)
        pixels = await service.image(name, data)
        top = await service.top(pixels, topk)
        png = await run_in_threadpool(service.heatmap, pixels, top[0]["index"])
        layer = layer_name(service.explain_model, "layer4")
        return {
            "top": top,
            "explained": top[0],
            "layer": layer,
            "heatmap_png": base64.b64encode(png).decode(),
        }


async def _one(service: _Service, name: str, data: bytes, topk: int) -> dict[str, Any]:
    """A batch item: a bad image is an error entry, not a failed request."""
    try:
        return {
            "filename": name,
            "top": await service.top(await service.image(name, data), topk),
            "error": None,
        }
    except UploadError as exc:
        return {"filename": name, "top": [], "error": exc.message}
