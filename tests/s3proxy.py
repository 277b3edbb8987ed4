"""A loopback TCP proxy that tests can switch off: S3 going away and coming back.

    proxy = TcpProxy(upstream_port).start()      # http://127.0.0.1:{proxy.port} reaches upstream
    proxy.down()          # refuse new connections (ECONNREFUSED) and reset the open ones
    proxy.up()            # accept and forward again, on the same port
    proxy.cut_after(n)    # each new connection forwards n client bytes, then both sides are reset

Pure Python, one thread per direction of each connection: enough for a test's few requests.
"""

from __future__ import annotations

import select
import socket
import struct
import threading


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a crashed peer or a dropped link looks to the client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._cut: int | None = None
        self._stop = threading.Event()
        self._serving = threading.Event()
        self.connections = 0          # accepted while up
        self.cuts = 0                 # connections cut mid-stream
        # one socket keeps the port whatever the state: bound and not listening = refused
        self._sock = self._bind(0)
        self.port = self._sock.getsockname()[1]
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _bind(port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return s

    # ------------------------------------------------------------------ control

    def start(self) -> TcpProxy:
        self.up()
        return self

    def up(self) -> None:
        with self._lock:
            self._cut = None
            if self._serving.is_set() or self._stop.is_set():
                return
            self._sock.listen(64)
            self._serving.set()
            self._thread = threading.Thread(target=self._accept_loop, args=(self._sock,), daemon=True)
            self._thread.start()

    def down(self) -> None:
        """Refuse new connections and reset every open one (pooled keep-alive ones too)."""
        with self._lock:
            serving = self._serving.is_set()
            self._serving.clear()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            conns, self._conns = self._conns, set()
            for c in conns:
                _reset(c)
            if serving:
                # a socket cannot stop listening: close it and bind a fresh, non-listening
                # one to the same port, which the kernel answers with RST (ECONNREFUSED)
                self._sock.close()
                self._sock = self._bind(self.port)

    def cut_after(self, nbytes: int) -> None:
        """From now on, every new connection forwards `nbytes` bytes from the client, then
        both sides are reset (an upload cut off mid-body). `up()` ends it."""
        with self._lock:
            self._cut = nbytes

    def close(self) -> None:
        self._stop.set()
        self.down()
        self._sock.close()

    # ------------------------------------------------------------------ forwarding

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._serving.is_set() and not self._stop.is_set() and listener is self._sock:
            try:
                ready, _, _ = select.select([listener], [], [], 0.05)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                budget = self._cut
                self._conns.update((client, server))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, server, budget), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, budget: int | None) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if budget is not None and sent + len(data) >= budget:
                    dst.sendall(data[: budget - sent])
                    with self._lock:
                        self.cuts += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        with self._lock:
            self._conns.discard(src)
            self._conns.discard(dst)
        _reset(src)
        _reset(dst)
