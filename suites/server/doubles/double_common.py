"""Shared parts of the vendor test doubles (suites/server/doubles/*_double.py).

Each double is a small stand-in for one OpenAI-compatible server, reproducing what the harness
depends on: /v1/models, the version endpoint, the streamed /v1/completions format (chunks,
finish reasons, usage behaviour), 400/422 bodies in the server's shape, and its Prometheus series
on /metrics. Generation is simulated: at most MAX_RUNNING requests run at once (the rest wait, so
queue depth and KV usage move with load), each token takes PER_TOKEN_S, and without the server's
fixed-length extension (ignore_eos / min_tokens, where it has one) a request stops early at a
random "EOS", so a wrong profile shows up as short requests. Randomness is seeded per request.

Stdlib only. Binds 127.0.0.1 port 0 (or --port) and prints "listening on http://127.0.0.1:PORT".
"""
import argparse
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Engine:
    """Slots, queue, KV tokens and counters of the simulated server."""

    def __init__(self, max_running=16, per_token_s=0.003, kv_capacity_tokens=4096):
        self.max_running = max_running
        self.per_token_s = per_token_s
        self.kv_capacity = kv_capacity_tokens
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(max_running)
        self.running = 0
        self.waiting = 0
        self.kv_tokens = 0
        self.prompt_total = 0
        self.generated_total = 0
        self.requests_total = 0
        self.busy_s = 0.0
        self.seq = 0

    def next_seed(self):
        with self.lock:
            self.seq += 1
            return self.seq

    def generate(self, prompt_len, max_tokens, stop_early_p, rng, emit):
        """Runs one request: waits for a slot, then calls emit(i, last, reason) per token."""
        with self.lock:
            self.waiting += 1
        self.slots.acquire()
        with self.lock:
            self.waiting -= 1
            self.running += 1
            self.kv_tokens += prompt_len
            self.prompt_total += prompt_len
        produced = 0
        reason = "length"
        try:
            for i in range(max_tokens):
                t0 = time.monotonic()
                time.sleep(self.per_token_s)
                eos = stop_early_p(i) and i + 1 < max_tokens
                last = eos or i + 1 == max_tokens
                if eos:
                    reason = "eos"
                with self.lock:
                    self.kv_tokens += 1
                    self.generated_total += 1
                    self.busy_s += (time.monotonic() - t0) / max(1, self.running)
                produced += 1
                emit(i, last, reason if last else None)
                if last:
                    break
        finally:
            with self.lock:
                self.running -= 1
                self.kv_tokens -= prompt_len + produced
                self.requests_total += 1
            self.slots.release()
        return produced, reason


class Vendor:
    """What differs between servers; subclasses override."""

    name = "generic"
    model_id = "double/model"
    owned_by = "openai"
    server_header = None
    accepts_token_ids = True
    ignore_eos = False      # honours "ignore_eos": true
    min_tokens = False      # honours "min_tokens"
    usage = "stream_options"  # "never" | "stream_options" | "always"
    finish_length = "length"
    finish_eos = "stop"
    eos_prob = 0.05
    done_marker = True
    prompt_logprobs = False  # echo + logprobs (+ max_tokens 0) give the prompt's log-probabilities

    def __init__(self, engine):
        self.engine = engine
        self.created = int(time.time())

    # --- shapes -------------------------------------------------------------------------------
    def error_body(self, status, message, etype):
        return {"error": {"message": message, "type": etype, "param": None, "code": status}}

    def token_ids_rejection(self):
        return 400, self.error_body(400, "prompt must be a string", "invalid_request_error")

    def models(self):
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": self.created, "owned_by": self.owned_by}]}

    def extra_get(self):
        """path -> (status, json body)."""
        return {}

    def chunk(self, rid, text, finish):
        return {"id": rid, "object": "text_completion", "created": self.created, "model": self.model_id,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}

    def echo_rejection(self):
        return 400, self.error_body(400, "echo is not supported", "invalid_request_error")

    @staticmethod
    def prompt_pieces(prompt):
        """The double's 'tokens' of a prompt: one per UTF-8 byte of text, or the ids as given."""
        if isinstance(prompt, list):
            return [f"<{t}>" for t in prompt]
        return [bytes([b]).decode("latin-1") for b in prompt.encode()]

    @staticmethod
    def piece_logprob(i, piece):
        """A deterministic stand-in for a model's log-probability (no model here)."""
        return -0.25 - (sum(piece.encode("utf-8", "replace")) + i) % 13 / 4.0

    def logprobs_obj(self, pieces, first_null, top_n):
        lps = [None if (first_null and i == 0) else self.piece_logprob(i, p) for i, p in enumerate(pieces)]
        offsets, off = [], 0
        for p in pieces:
            offsets.append(off)
            off += len(p)
        top = [None if lp is None else ({p: lp} if top_n > 0 else {}) for p, lp in zip(pieces, lps)]
        return {"tokens": pieces, "token_logprobs": lps, "top_logprobs": top, "text_offset": offsets}

    def usage_obj(self, prompt, completion):
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def metrics_text(self):
        return ""

    # --- helpers for metrics ------------------------------------------------------------------
    @staticmethod
    def series(name, kind, help_, value, labels=""):
        return f"# HELP {name} {help_}\n# TYPE {name} {kind}\n{name}{labels} {value}\n"


def rid_of(engine):
    return f"cmpl-{random.Random(engine.next_seed()).getrandbits(48):012x}"


def make_handler(vendor):
    engine = vendor.engine

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def version_string(self):
            return vendor.server_header or ""

        def send_response(self, code, message=None):
            # BaseHTTPRequestHandler always sends Server and Date; a server without a Server
            # header gets none.
            self.log_request(code)
            self.send_response_only(code, message)
            if vendor.server_header:
                self.send_header("Server", vendor.server_header)
            self.send_header("Date", self.date_time_string())

        def send_json(self, status, obj, ctype="application/json"):
            data = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/v1/models":
                return self.send_json(200, vendor.models())
            if path == "/metrics":
                return self.send_json(200, vendor.metrics_text(), "text/plain; version=0.0.4")
            extra = vendor.extra_get()
            if path in extra:
                status, body = extra[path]
                return self.send_json(status, body)
            self.send_json(404, vendor.error_body(404, f"no route {path}", "not_found"))

        def write_chunk(self, data):
            b = data.encode()
            self.wfile.write(f"{len(b):x}\r\n".encode() + b + b"\r\n")
            self.wfile.flush()

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n)
            if self.path.split("?")[0] != "/v1/completions":
                return self.send_json(404, vendor.error_body(404, f"no route {self.path}", "not_found"))
            try:
                req = json.loads(raw)
            except ValueError as e:
                return self.send_json(400, vendor.error_body(400, f"body is not JSON: {e}", "invalid_request_error"))
            prompt = req.get("prompt")
            if isinstance(prompt, list) and prompt and all(isinstance(x, int) for x in prompt):
                if not vendor.accepts_token_ids:
                    status, body = vendor.token_ids_rejection()
                    return self.send_json(status, body)
                prompt_len = len(prompt)
            elif isinstance(prompt, str) and prompt:
                prompt_len = max(1, len(prompt.encode()))
            else:
                return self.send_json(400, vendor.error_body(400, "prompt must be a non-empty string or list of token ids", "invalid_request_error"))
            echo = req.get("echo") is True
            logprobs = req.get("logprobs")
            if (echo or logprobs is not None) and not vendor.prompt_logprobs:
                status, body = vendor.echo_rejection()
                return self.send_json(status, body)
            if echo and req.get("stream"):
                return self.send_json(400, vendor.error_body(400, "echo is not supported with stream", "invalid_request_error"))
            max_tokens = req.get("max_tokens", 16)
            if echo and max_tokens == 0:  # the prompt's log-probabilities alone (lm-evaluation-harness' request)
                pieces = vendor.prompt_pieces(prompt)
                body = vendor.chunk(rid_of(engine), "".join(pieces) if isinstance(prompt, str) else "", vendor.finish_length)
                body["choices"][0]["logprobs"] = vendor.logprobs_obj(pieces, True, int(logprobs or 0))
                body["usage"] = vendor.usage_obj(prompt_len, 0)
                return self.send_json(200, body)
            if not isinstance(max_tokens, int) or max_tokens < 1:
                return self.send_json(400, vendor.error_body(400, f"max_tokens must be a positive integer, got {max_tokens!r}", "invalid_request_error"))
            ignore_eos = vendor.ignore_eos and req.get("ignore_eos") is True
            min_tokens = req.get("min_tokens", 0) if vendor.min_tokens and isinstance(req.get("min_tokens"), int) else 0
            want_usage = vendor.usage == "always" or (vendor.usage == "stream_options" and
                                                      (req.get("stream_options") or {}).get("include_usage") is True)
            rng = random.Random(engine.next_seed())
            stop_early = (lambda i: False) if ignore_eos else (lambda i: i + 1 >= min_tokens and rng.random() < vendor.eos_prob)
            rid = f"cmpl-{rng.getrandbits(48):012x}"
            if not req.get("stream"):
                text = []
                produced, reason = engine.generate(prompt_len, max_tokens, stop_early, rng, lambda i, last, r: text.append("t"))
                body = vendor.chunk(rid, "".join(text), vendor.finish_length if reason == "length" else vendor.finish_eos)
                body["usage"] = vendor.usage_obj(prompt_len, produced)
                return self.send_json(200, body)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def emit(i, last, reason):
                finish = None
                if last:
                    finish = vendor.finish_length if reason == "length" else vendor.finish_eos
                c = vendor.chunk(rid, f" w{i}", finish)
                if last and want_usage and vendor.usage == "always":
                    c["usage"] = vendor.usage_obj(prompt_len, i + 1)
                self.write_chunk("data: " + json.dumps(c) + "\n\n")

            try:
                produced, _ = engine.generate(prompt_len, max_tokens, stop_early, rng, emit)
                if want_usage and vendor.usage == "stream_options":
                    u = vendor.chunk(rid, "", None)
                    u["choices"] = []
                    u["usage"] = vendor.usage_obj(prompt_len, produced)
                    self.write_chunk("data: " + json.dumps(u) + "\n\n")
                if vendor.done_marker:
                    self.write_chunk("data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler


def serve(vendor_cls, argv=None):
    ap = argparse.ArgumentParser(description=vendor_cls.__doc__)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-running", type=int, default=16)
    ap.add_argument("--per-token-ms", type=float, default=3.0)
    a = ap.parse_args(argv)
    engine = Engine(a.max_running, a.per_token_ms / 1000.0)
    vendor = vendor_cls(engine)
    ThreadingHTTPServer.request_queue_size = 256
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(vendor))
    srv.daemon_threads = True
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0
