"""Images from HTTP requests, refused with a status and one clear line when they are not acceptable:
415 not an image content type; 413 a body over the size limit (checked while it streams in, so a big
body is never held) or an image over the pixel limit (checked from the header, before decoding: a
decompression bomb never expands); 400 a body that is empty, not an image, or truncated."""

from __future__ import annotations

import io
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import torch
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request

from ..data.eval_transform import EvalTransform
from ..errors import ReslabError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]
MAX_FILES = 256


class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyLimit:
    """ASGI middleware: a request whose Content-Length, or whose streamed body, exceeds max_bytes gets 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> UploadError:
        return UploadError(413, f"the request body is over the limit of {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, 413, {"error": self._too_large().message})
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)


async def _send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    import json

    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_uploads(request: Request, many: bool) -> list[tuple[str, bytes]]:
    """(file name, bytes) of the images in a request: multipart file parts, or a raw image/* or
    application/octet-stream body (one image)."""
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=MAX_FILES)
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise UploadError(400, "the multipart request has no file part; send the image as a file")
        if len(files) > 1 and not many:
            raise UploadError(400, f"{len(files)} files sent to /predict; send several to /predict/batch")
        return [(upload.filename or "upload", await upload.read()) for upload in files]
    if kind.startswith("image/") or kind == "application/octet-stream":
        return [("upload", await request.body())]
    shown = repr(content_type) if content_type else "none"
    raise UploadError(415, f"content type {shown} is not an image; send image/* bytes or multipart/form-data")


def decode_upload(transform: EvalTransform, name: str, data: bytes, max_pixels: int) -> torch.Tensor:
    """uint8 (C, H, W) as the model reads images, or UploadError (400 undecodable, 413 too many pixels)."""
    if not data:
        raise UploadError(400, f"{name}: the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(413, f"{name}: the image has more pixels than Pillow allows") from None
    except Exception as exc:  # Pillow raises many types for bytes that are not an image
        raise UploadError(400, f"{name}: not an image Pillow can read ({type(exc).__name__})") from None
    if width * height > max_pixels:
        raise UploadError(413, f"{name}: {width}x{height} pixels is over the limit of {max_pixels}")
    try:
        return transform.read_bytes(data, name)
    except ReslabError as exc:  # truncated or damaged past its header
        raise UploadError(400, str(exc)) from None
