"""A stand-in streaming LLM server whose token times follow known laws, for the gate's tests.

Runs as its own process (``python tests/integration/stream_server.py``), binds 127.0.0.1 on
a free port and prints ``listening on http://127.0.0.1:PORT`` once it accepts connections.
Stdlib only (``http.server``, HTTP/1.1 keep-alive, chunked transfer as real servers send).

Endpoints (POST, a JSON body):

- ``*/chat/completions`` and ``*/completions``: OpenAI-style SSE chunks (``delta.content``
  or ``text``), ``usage`` in a last chunk when ``stream_options.include_usage``, then
  ``data: [DONE]``. Any prefix routes the same, so tasks can have distinct names.
- ``*/events``: plain SSE, one ``data: {"n": k}`` event per chunk of ``k`` tokens, no [DONE].
- ``/health``: 200 at once.

The body says how to answer (as a task's ``extra_body`` would):

- ``max_tokens`` (16): tokens generated; ``ttft_ms`` (100): the wait before the first
  content chunk; ``itl_ms`` (20): the wait per token after it; ``law``: ``fixed`` (the
  default) or ``exp`` (each wait exponential with that mean, from ``--seed``).
- ``per_chunk`` (1): tokens per chunk, so a chunk of ``k`` comes ``k * itl_ms`` after the
  last; ``usage`` reports the true count.
- ``role_first`` (true): a role-only chunk (``delta: {role, content: ""}``) at once, as
  OpenAI sends; ``keepalive`` (false): ``: ping`` comments at once and between chunks.
- ``stream`` false, or ``json_answer`` true: one ``application/json`` body instead.
- ``fault``: ``no_done`` (no ``[DONE]``), ``bad_json`` (a chunk that is not JSON),
  ``cut`` (the connection closes mid-way), ``error_event`` (an ``{"error": ...}`` chunk),
  ``usage_low`` (usage below the chunks that came).

Every chunk is flushed as its own HTTP chunk, so a client sees it when it is sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()


class Laws:
    """The waits, drawn under a lock from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def wait_s(self, mean_ms: float, law: str) -> float:
        if law == "fixed" or mean_ms <= 0:
            return mean_ms / 1000.0
        with self.lock:
            return self.rng.expovariate(1000.0 / mean_ms)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    laws: Laws

    def log_message(self, *args: Any) -> None:  # quiet: tests read samples, not logs
        pass

    def do_GET(self) -> None:
        self._plain(200, b"ok")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._plain(400, b"bad json")
            return
        if self.path.endswith("/events"):
            self._stream(body, "events")
        elif self.path.endswith("/chat/completions"):
            self._stream(body, "chat")
        elif self.path.endswith("/completions"):
            self._stream(body, "completions")
        else:
            self._plain(404, b"not found")

    def _plain(self, status: int, text: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def _stream(self, body: dict[str, Any], api: str) -> None:
        if api != "events" and (not body.get("stream") or body.get("json_answer")):
            # not asked to stream (or told not to): one JSON body, as OpenAI answers then
            text = json.dumps({"choices": [{"index": 0, "text": "x"}], "usage": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            Answer(self, body, api).send()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Answer:
    """One streamed answer, as the request body describes it."""

    def __init__(self, handler: Handler, body: dict[str, Any], api: str) -> None:
        self.h, self.body, self.api = handler, body, api
        self.tokens = int(body.get("max_tokens", 16))
        self.per_chunk = int(body.get("per_chunk", 1))
        self.law = str(body.get("law", "fixed"))
        self.fault = str(body.get("fault", ""))
        self.keepalive = bool(body.get("keepalive", False))
        self.usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def send(self) -> None:
        if self.keepalive:
            self.h.chunk(": ping\n\n")
        if self.api == "chat" and self.body.get("role_first", True):
            self.data({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        time.sleep(self.h.laws.wait_s(float(self.body.get("ttft_ms", 100)), self.law))
        sent = 0
        while sent < self.tokens:
            k = min(self.per_chunk, self.tokens - sent)
            if sent:
                self.gap(k)
            if self.fault_at(sent):
                return
            self.data(self.content("x" * k, sent))
            sent += k
        self.finish(sent)

    def gap(self, k: int) -> None:
        itl = float(self.body.get("itl_ms", 20))
        if self.keepalive:
            self.h.chunk(": ping\n\n")
        time.sleep(sum(self.h.laws.wait_s(itl, self.law) for _ in range(k)))

    def fault_at(self, sent: int) -> bool:
        """Break the stream half-way as ``fault`` says; True when the answer ends here."""
        if sent != self.tokens // 2 or self.fault not in ("bad_json", "cut", "error_event"):
            return False
        if self.fault == "bad_json":
            self.h.chunk('data: {"choices": [\n\n')
            return False
        if self.fault == "error_event":
            self.data({"error": {"message": "KV cache exhausted", "code": 500}})
            self.h.chunk("data: [DONE]\n\n")
            self.h.end()
            return True
        self.h.close_connection = True  # cut: no last HTTP chunk, the socket closes
        return True

    def content(self, text: str, index: int) -> dict[str, Any]:
        if self.api == "events":
            return {"n": len(text)}
        if self.api == "chat":
            return {"choices": [{"index": 0, "delta": {"content": text}}]}
        return {"choices": [{"index": 0, "text": text}]}

    def finish(self, sent: int) -> None:
        if self.api != "events":
            choice = {"index": 0, "finish_reason": "length"}
            self.data({"choices": [{**choice, **({"delta": {}} if self.api == "chat" else {})}]})
            if self.usage:
                tokens = sent // self.per_chunk - 1 if self.fault == "usage_low" else sent
                self.data({"choices": [], "usage": {"completion_tokens": tokens}})
            if self.fault != "no_done":
                self.h.chunk("data: [DONE]\n\n")
        self.h.end()

    def data(self, obj: dict[str, Any]) -> None:
        self.h.chunk(f"data: {json.dumps(obj)}\n\n")


def serve(args: argparse.Namespace) -> None:
    Handler.laws = Laws(args.seed)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


@contextlib.contextmanager
def running(*cli_args: str, timeout_s: float = 10.0) -> Iterator[str]:
    """Start the server in a subprocess, yield its base URL, always stop it."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *cli_args], stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    timer = threading.Timer(timeout_s, proc.kill)  # readline() has no timeout of its own
    try:
        timer.start()
        assert proc.stdout is not None
        line = proc.stdout.readline()
        timer.cancel()
        if not line.startswith("listening on "):
            raise RuntimeError(f"stream server did not start (exit {proc.poll()}): {line!r}")
        yield line.split()[-1]
    finally:
        timer.cancel()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: a free one)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the exponential waits")
    serve(parser.parse_args())
