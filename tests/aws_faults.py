"""An HTTP proxy in front of moto's server that makes SageMaker behave like AWS does on a bad day.

moto accepts every request and never fails; AWS throttles, refuses, runs out of quota or capacity,
and answers 5xx. The proxy forwards every request to moto unchanged, except that queued faults
answer an operation with a real AWS-shaped error response (JSON protocol: status, `__type`,
message), so botocore parses and raises exactly what it would against AWS. It also counts the
requests per operation (to check that nothing is retried behind the dispatcher's back).
"""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: dict[str, deque[tuple[int, str, str]]] = defaultdict(deque)
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.url = ""

    def fail(self, operation: str, status: int, code: str, message: str, times: int = 1) -> None:
        """Answer the next `times` calls of `operation` (e.g. "CreateProcessingJob") with an AWS error."""
        with self.lock:
            self.faults[operation].extend([(status, code, message)] * times)

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()

    def _next_fault(self, operation: str) -> tuple[int, str, str] | None:
        with self.lock:
            self.calls[operation] += 1
            queue = self.faults.get(operation)
            return queue.popleft() if queue else None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rpartition(".")[2]
                fault = proxy._next_fault(operation) if operation else None
                if fault is not None:
                    status, code, message = fault
                    payload = json.dumps({"__type": code, "message": message}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("x-amzn-RequestId", "fault-injected")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                response = httpx.request(
                    self.command, proxy.upstream + self.path, headers=headers, content=body, timeout=60
                )
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def do_PUT(self) -> None:
                self._forward()

            def do_DELETE(self) -> None:
                self._forward()

        return Handler


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), proxy.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
