"""Run moto's AWS fake in server mode on loopback, for tests and end-to-end runs.

Point ``AwsClient(region, endpoint_url=server.endpoint_url)`` at it. moto is a test
dependency: this module imports it only when a server is started, and the daemon itself
never imports this module. It must never bind anything but 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOOPBACK = "127.0.0.1"


class MotoServer:
    """A started ThreadedMotoServer; ``stop()`` shuts its thread down and closes its socket."""

    def __init__(self, server: Any, endpoint_url: str) -> None:
        self._server = server
        self.endpoint_url = endpoint_url
        self._stopped = False

    def stop(self) -> None:
        # A second shutdown() would wait forever for a serve loop that has already ended.
        if self._stopped:
            return
        self._stopped = True
        self._server.stop()


def start_moto_server() -> MotoServer:
    """Start moto on 127.0.0.1 on a port the kernel picks (no free-port race)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return MotoServer(server, f"http://{host}:{port}")


@contextmanager
def running_moto_server() -> Iterator[str]:
    """``with running_moto_server() as endpoint_url: ...``"""
    server = start_moto_server()
    try:
        yield server.endpoint_url
    finally:
        server.stop()
