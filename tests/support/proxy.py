"""A TCP proxy between two services that can lose or delay an answer on its way
back: the request reaches the callee and is carried out, the caller never hears
(or hears too late). What a retry after a lost answer must be safe against.

HTTP/1.1 on one connection is one request, then its answer: the bytes that come
back after a request whose first line starts with the armed prefix are that
request's answer.
"""

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from stack.processes import free_port


@dataclass
class _Armed:
    prefix: bytes  # e.g. b"POST /lists/"
    delay: float | None  # None: the answer is lost (the connection is closed)


class AnswerProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._armed: _Armed | None = None
        self._lock = threading.Lock()
        self.tripped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lose_next_answer(self, prefix: bytes) -> None:
        """The answer to the next request starting with ``prefix`` never arrives."""
        self._arm(_Armed(prefix, None))

    def delay_next_answer(self, prefix: bytes, seconds: float) -> None:
        """The answer to the next request starting with ``prefix`` waits ``seconds``."""
        self._arm(_Armed(prefix, seconds))

    def _arm(self, armed: _Armed) -> None:
        with self._lock:
            self._armed = armed
            self.tripped.clear()

    def _take(self, request: bytes) -> _Armed | None:
        with self._lock:
            armed = self._armed
            if armed is None or not request.startswith(armed.prefix):
                return None
            self._armed = None
            return armed

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port
        )
        pending: list[_Armed | None] = [None]  # what to do with the next answer

        async def requests() -> None:
            while data := await reader.read(65536):
                pending[0] = pending[0] or self._take(data)
                upstream_writer.write(data)
                await upstream_writer.drain()
            upstream_writer.close()

        async def answers() -> None:
            while data := await upstream_reader.read(65536):
                armed, pending[0] = pending[0], None
                if armed is not None:
                    self.tripped.set()
                    if armed.delay is None:
                        return  # lost: the caller's connection is closed below
                    await asyncio.sleep(armed.delay)
                writer.write(data)
                await writer.drain()

        with suppress(ConnectionError, OSError):
            tasks = [asyncio.create_task(requests()), asyncio.create_task(answers())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
        for stream in (writer, upstream_writer):
            stream.close()

    @contextmanager
    def running(self) -> Iterator["AnswerProxy"]:
        """Serve on ``self.port`` (in a thread of its own) until the block ends."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        stop = asyncio.Event()

        connections: set[asyncio.Task[None]] = set()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await self._connection(reader, writer)
            finally:
                connections.discard(task)

        async def serve() -> None:
            server = await asyncio.start_server(connection, "127.0.0.1", self.port)
            started.set()
            async with server:
                await stop.wait()
            for task in list(connections):
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        if not started.wait(timeout=10):
            raise RuntimeError("the proxy did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=10)
            loop.close()
