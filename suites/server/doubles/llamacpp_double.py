#!/usr/bin/env python3
"""Test double of llama.cpp's llama-server (see double_common.py): token-id prompts, ignore_eos
(no min_tokens), usage in the last chunk always, finish reasons stop / length, owned_by
"llamacpp", GET /props and /health, errors {"error": {"code", "message", "type"}}, llamacpp:*
series on /metrics (the real server exposes them with --metrics)."""
import sys

from double_common import Vendor, serve


class LlamacppDouble(Vendor):
    name = "llamacpp"
    model_id = "double/llamacpp-model.gguf"
    owned_by = "llamacpp"
    server_header = None
    accepts_token_ids = True
    ignore_eos = True
    min_tokens = False
    usage = "always"
    finish_length, finish_eos = "length", "stop"

    def error_body(self, status, message, etype):
        return {"error": {"code": status, "message": message, "type": "invalid_request_error" if status == 400 else etype}}

    def extra_get(self):
        return {"/props": (200, {"default_generation_settings": {"n_ctx": 4096, "params": {"ignore_eos": False}},
                                 "total_slots": self.engine.max_running, "model_path": self.model_id,
                                 "build_info": "b0000-double"}),
                "/health": (200, {"status": "ok"})}

    def chunk(self, rid, text, finish):
        c = super().chunk(rid, text, finish)
        c["system_fingerprint"] = "b0000-double"
        return c

    def metrics_text(self):
        e = self.engine
        with e.lock:
            return (self.series("llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.", float(e.prompt_total))
                    + self.series("llamacpp:tokens_predicted_total", "counter", "Number of generation tokens processed.",
                                  float(e.generated_total))
                    + self.series("llamacpp:kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.",
                                  min(1.0, e.kv_tokens / e.kv_capacity))
                    + self.series("llamacpp:kv_cache_tokens", "gauge", "KV-cache tokens.", e.kv_tokens)
                    + self.series("llamacpp:requests_processing", "gauge", "Number of requests processing.", e.running)
                    + self.series("llamacpp:requests_deferred", "gauge", "Number of requests deferred.", e.waiting))


if __name__ == "__main__":
    sys.exit(serve(LlamacppDouble))
