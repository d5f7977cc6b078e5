"""A byte relay between a listening socket and a target, one thread per direction.

tests/test_privacy.py serves the app inside a network namespace and drives it from a
browser outside: a Unix socket (a file, visible in both) carries the HTTP and websocket
bytes across, so the browser's own background traffic stays out of what is watched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _serve(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # closed
        try:
            upstream = connect()
        except OSError:
            client.close()
            continue
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def start(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    """Relay every connection `listener` accepts to a new `connect()`; close the listener
    to stop."""
    listener.listen(64)
    threading.Thread(target=_serve, args=(listener, connect), daemon=True).start()


def unix_to_tcp(path: str, port: int) -> socket.socket:
    """Listen on the Unix socket `path`, relay to 127.0.0.1:`port`."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    start(listener, lambda: socket.create_connection(("127.0.0.1", port)))
    return listener


def tcp_to_unix(path: str) -> tuple[socket.socket, int]:
    """Listen on a free loopback port, relay to the Unix socket `path`; returns the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))

    def connect() -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(path)
        return upstream

    start(listener, connect)
    return listener, int(listener.getsockname()[1])
