"""`reslab serve`: a checkpoint or pretrained weights behind HTTP, with a web page."""

from __future__ import annotations

import argparse

from ..errors import ReslabError
from .int8_options import add_calibration_argument
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="an HTTP service (and a web page) that classifies and explains images",
        description="Serve CHECKPOINT_OR_WEIGHTS_NAME (as for `reslab predict`) over HTTP: POST /predict, "
        "POST /predict/batch, POST /explain, GET /health, /metadata, /metrics (Prometheus) and / (a page "
        "to drop an image on). Requests that arrive together run as one batch (up to --max-batch, the "
        "first waiting at most --max-wait-ms). It listens on 127.0.0.1 only unless --host says otherwise: "
        "any other address lets every machine that can reach it use the model, unauthenticated.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_WEIGHTS_NAME")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--max-batch", type=int, default=32, help="images per model batch at most (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="wait for a batch to fill (default 5)")
    p.add_argument("--max-body-mb", type=float, default=20.0, help="largest request body (default 20 MB)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image, width x height")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16", "int8"))
    add_calibration_argument(p)
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    try:
        from ..serve.app import create_app
        from ..serve.runner import bind, serve_forever, url_of
    except ImportError as exc:
        raise ReslabError(
            f"reslab serve needs its extra ({exc.name} is missing): pip install 'reslab[serve]'"
        ) from None
    from ..classifier import load_classifier
    from ..serve.settings import ServeSettings

    settings = ServeSettings(
        args.host, args.port, args.max_batch, args.max_wait_ms, args.max_body_mb, args.max_pixels, args.topk
    )
    settings.check()
    classifier = load_classifier(args.checkpoint, device=args.device, precision=args.precision)
    classifier.calibration = args.calibration
    app = create_app(classifier, settings)
    sock = bind(settings.host, settings.port)
    err = console(stderr=True)
    if not settings.is_loopback:
        err.print(
            f"warning: listening on {settings.host}: anyone who can reach this address can use the model "
            "(no authentication, no TLS)",
            highlight=False,
        )
    err.print(
        f"serving {classifier.name} ({classifier.precision.name}) on {url_of(sock)}  "
        f"max batch {settings.max_batch}, max wait {settings.max_wait_ms:g} ms; Ctrl-C stops",
        highlight=False,
    )
    serve_forever(app, sock)
    return 0
