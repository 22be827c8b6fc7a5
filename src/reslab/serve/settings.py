"""What a server is allowed to do: its batching and the limits that keep bad uploads harmless."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ReslabError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32  # images run together at most
    max_wait_ms: float = 5.0  # how long the first image of a batch waits for company
    max_body_mb: float = 20.0  # a request body above this is refused (413) before it is read
    max_pixels: int = 40_000_000  # an image above this (width x height) is refused before decoding
    topk: int = 5

    def check(self) -> None:
        if not 1 <= self.max_batch <= 1024:
            raise ReslabError(f"max_batch must be 1 to 1024, got {self.max_batch}", params=("max_batch",))
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ReslabError(
                f"max_wait_ms must be 0 to 10000, got {self.max_wait_ms}", params=("max_wait_ms",)
            )
        if self.max_body_mb <= 0:
            raise ReslabError(
                f"max_body_mb must be positive, got {self.max_body_mb}", params=("max_body_mb",)
            )
        if self.max_pixels < 1:
            raise ReslabError(f"max_pixels must be positive, got {self.max_pixels}", params=("max_pixels",))
        if self.topk < 1:
            raise ReslabError(f"topk must be at least 1, got {self.topk}", params=("topk",))
        if not 0 <= self.port <= 65535:
            raise ReslabError(f"port must be 0 to 65535, got {self.port}", params=("port",))

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK
