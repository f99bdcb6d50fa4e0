"""Runs the batch engines on threads of their own inside the Faust worker.

librdkafka's consume() blocks, and a batch is CPU work; on a thread they leave Faust's
event loop free for the web server. A runner that dies takes the worker down with it:
a worker that silently stopped consuming would be worse than one that restarts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from mode import Service

log = logging.getLogger(__name__)


class Runner(Protocol):
    name: str

    def run(self) -> None: ...

    def stop(self) -> None: ...


class RunnerThreads(Service):
    runners: Sequence[Runner] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._threads: list[threading.Thread] = []

    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()
        for runner in self.runners:
            thread = threading.Thread(
                target=self._run, args=(runner, loop), name=runner.name, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    async def on_stop(self) -> None:
        for runner in self.runners:
            runner.stop()
        loop = asyncio.get_running_loop()
        for thread in self._threads:
            await loop.run_in_executor(None, thread.join, 30)

    def _run(self, runner: Runner, loop: asyncio.AbstractEventLoop) -> None:
        try:
            runner.run()
        except BaseException as error:
            log.exception("agent %s failed; stopping the worker", runner.name)
            asyncio.run_coroutine_threadsafe(self.crash(error), loop)
