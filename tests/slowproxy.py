"""A TCP proxy for the IMAP tests: a slow link, or one that goes silent on a given mail.

    proxy = SlowProxy(dc.port, rate=400_000).start()   # server -> client at 400 kB/s
    ... point the bridge at proxy.port ...
    proxy.stop()

``stall_on=b"..."``: once those bytes come from the server, nothing more is passed on to the
client on that connection (it stays open and silent), as a link that hangs in the middle
of one mail. ``on_client(data)``: called (in a worker thread) with each chunk the client
sends, before the server gets it: a test acts "between" two commands of the bridge. Runs
its own event loop in a thread of the test process.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time


class SlowProxy:
    def __init__(self, target_port: int, *, rate: float | None = None,
                 stall_on: bytes | None = None, chunk: int = 8192, on_client=None):
        self.target_port = target_port
        self.rate = rate  # bytes per second from server to client; None: as fast as it comes
        self.stall_on = stall_on
        self.chunk = chunk
        self.on_client = on_client  # called with each client -> server chunk before it is sent
        self.port = 0
        self.connections = 0
        self.stalls = 0
        self.sent_to_client = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> "SlowProxy":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self._shutdown)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        asyncio.get_running_loop().call_later(0.2, asyncio.get_running_loop().stop)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, sock=sock))
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cwriter.close()
            return
        self._writers.update((cwriter, swriter))

        async def up() -> None:
            while data := await creader.read(65536):
                if self.on_client is not None:
                    await asyncio.to_thread(self.on_client, data)
                swriter.write(data)
                await swriter.drain()
            swriter.close()

        async def down() -> None:
            tail = b""
            stalled = False
            start, sent = time.monotonic(), 0
            while data := await sreader.read(self.chunk):
                if stalled:
                    continue  # swallow: the client hears nothing more
                if self.stall_on is not None:
                    window = tail + data
                    at = window.find(self.stall_on)
                    if at >= 0:
                        data = window[len(tail):at] if at >= len(tail) else b""
                        stalled = True
                        self.stalls += 1
                    tail = window[-len(self.stall_on):]
                if self.rate:
                    sent += len(data)
                    ahead = start + sent / self.rate - time.monotonic()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                cwriter.write(data)
                self.sent_to_client += len(data)
                await cwriter.drain()
            cwriter.close()

        try:
            await asyncio.gather(up(), down(), return_exceptions=True)
        finally:
            self._writers.difference_update((cwriter, swriter))
            cwriter.close()
            swriter.close()
