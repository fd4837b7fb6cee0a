#!/usr/bin/python3
"""A tiny stand-in for `refengine serve`, for the Locust driver's tests (standard library only).

It speaks just enough of the OpenAI completions API: POST /v1/completions with "stream": true
answers with server-sent events, one per output token, then "data: [DONE]"; without "stream" it
answers one JSON object. It binds 127.0.0.1 on the given port (0 = any free port) and prints the
same line refengine prints once it listens:

    refengine serve: listening on http://127.0.0.1:PORT

SIGTERM stops it with exit code 0 (as refengine's drain does).

Options:
  --port N            port to bind (default 0)
  --token-delay-ms F  pause before each streamed token (default 2)
  --fail-every N      answer every Nth request with HTTP 500 (default 0 = never); deterministic,
                      so tests can count Locust's failures exactly
  --max-tokens-cap N  never stream more than N tokens per request (default 16), keeps tests fast
"""
import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server
    counter_lock = threading.Lock()
    counter = 0

    def log_message(self, fmt, *args):  # quiet: the tests read stdout for the listening line only
        pass

    def _send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path in ("/health", "/v1/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
        else:
            self._send_json(404, {"error": {"message": "not found: " + self.path}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/v1/completions":
            self._send_json(404, {"error": {"message": "not found: " + self.path}})
            return
        try:
            req = json.loads(raw)
        except ValueError as e:
            self._send_json(400, {"error": {"message": "bad JSON: %s" % e}})
            return
        with Handler.counter_lock:
            Handler.counter += 1
            n = Handler.counter
        if self.server.fail_every and n % self.server.fail_every == 0:
            self._send_json(500, {"error": {"message": "planted failure (every %d requests)" % self.server.fail_every}})
            return
        prompt = req.get("prompt", "")
        if not isinstance(prompt, (str, list)) or len(prompt) == 0:
            self._send_json(400, {"error": {"message": "field 'prompt': missing or empty"}})
            return
        max_tokens = min(int(req.get("max_tokens", 16)), self.server.max_tokens_cap)
        if not req.get("stream"):
            self._send_json(200, {"object": "text_completion",
                                  "choices": [{"index": 0, "text": "x" * max_tokens, "finish_reason": "length"}],
                                  "usage": {"prompt_tokens": len(prompt), "completion_tokens": max_tokens}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(text):
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        for i in range(max_tokens):
            time.sleep(self.server.token_delay_s)
            finish = "length" if i == max_tokens - 1 else None
            event = {"object": "text_completion", "choices": [{"index": 0, "text": "x", "finish_reason": finish}]}
            chunk("data: %s\n\n" % json.dumps(event))
        chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token-delay-ms", type=float, default=2.0)
    ap.add_argument("--fail-every", type=int, default=0)
    ap.add_argument("--max-tokens-cap", type=int, default=16)
    args = ap.parse_args()
    # socketserver listens with a backlog of 5: a burst of 16 users connecting at once overflows it
    # and a dropped SYN becomes a failed request. refengine serve listens with 4096.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.token_delay_s = args.token_delay_ms / 1000.0
    server.fail_every = args.fail_every
    server.max_tokens_cap = args.max_tokens_cap

    def on_term(signum, frame):
        # shutdown() waits for serve_forever to return, so it must run off the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("refengine serve: listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
