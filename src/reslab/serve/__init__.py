"""`reslab serve`: a classifier behind HTTP (FastAPI + uvicorn), with dynamic batching, Prometheus metrics
and a web page that shows the top classes and the Grad-CAM map of a dropped image.

Needs the `serve` extra (pip install 'reslab[serve]'): fastapi, uvicorn, python-multipart, prometheus_client.
"""

from .settings import ServeSettings

__all__ = ["ServeSettings"]
