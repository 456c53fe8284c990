"""A fault-injecting HTTP proxy in front of an S3-compatible server (loopback only).

Each request is, at random (seeded): answered ``503 SlowDown`` or ``500 InternalError`` (an S3
error document) without reaching the server, delayed, or forwarded as it is. ``error_rate=1``
fails every request. Counters tell the tests what was injected.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

ERRORS = [(503, "SlowDown", "Please reduce your request rate."),
          (500, "InternalError", "We encountered an internal error. Please try again.")]


class FaultyS3Proxy:
    """``FaultyS3Proxy(upstream).start()``; ``.url`` is the endpoint to give the clients."""

    def __init__(self, upstream: str, *, error_rate: float = 0.0, delay_rate: float = 0.0,
                 delay: float = 0.5, seed: int = 0):
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.error_rate = error_rate
        self.delay_rate = delay_rate
        self.delay = delay
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "errors": 0, "delayed": 0, "forwarded": 0}
        self.methods: dict[str, int] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline().strip():
                                pass
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self):
                body = self._body()
                fault = proxy._decide(self.command)
                if fault == "error":
                    status, code, message = proxy.random_error()
                    payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                               f"<Message>{message}</Message><RequestId>fault</RequestId></Error>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":  # a HEAD answer has no body (S3 sends none)
                        self.wfile.write(payload)
                    return
                if fault == "delay":
                    time.sleep(proxy.delay)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("transfer-encoding", "connection", "content-length")}
                headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _decide(self, method: str) -> str:
        with self.lock:
            self.counts["requests"] += 1
            self.methods[method] = self.methods.get(method, 0) + 1
            draw = self.random.random()
            if draw < self.error_rate:
                self.counts["errors"] += 1
                return "error"
            if draw < self.error_rate + self.delay_rate:
                self.counts["delayed"] += 1
                return "delay"
            self.counts["forwarded"] += 1
            return "forward"

    def random_error(self):
        with self.lock:
            return self.random.choice(ERRORS)

    def start(self) -> "FaultyS3Proxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
