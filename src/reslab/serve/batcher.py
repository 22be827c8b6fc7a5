"""Dynamic batching: images that arrive together run through the model as one batch.

Requests put their decoded image on a queue and await a future. One task takes the first waiting
image, gathers more until `max_batch` or until `max_wait_ms` have passed, and runs the batch in a
worker thread (off the event loop, which keeps accepting requests meanwhile; those form the next
batch). A failing batch fails only the requests in it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch


class DynamicBatcher:
    def __init__(
        self,
        run_batch: Callable[[torch.Tensor], torch.Tensor],
        max_batch: int,
        max_wait_ms: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.on_batch = on_batch
        self._queue: asyncio.Queue[tuple[torch.Tensor, asyncio.Future[torch.Tensor]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reslab-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, pixels: torch.Tensor) -> torch.Tensor:
        """The model's output row for one image (its batch's row)."""
        assert self._queue is not None, "start() the batcher first"
        future: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().create_future()
        await self._queue.put((pixels, future))
        return await future

    async def _gather(self) -> list[tuple[torch.Tensor, asyncio.Future[torch.Tensor]]]:
        assert self._queue is not None
        items = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(items) < self.max_batch:
            if not self._queue.empty():
                items.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                break
        return items

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            waiting = [(pixels, future) for pixels, future in items if not future.done()]  # done: client gone
            if not waiting:
                continue
            batch = torch.stack([pixels for pixels, _ in waiting])
            try:
                outputs = await loop.run_in_executor(self._executor, self.run_batch, batch)
            except Exception as exc:  # the model failed on this batch: its requests get the error
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(waiting))
            for row, (_, future) in zip(outputs, waiting, strict=True):
                if not future.done():
                    future.set_result(row)
