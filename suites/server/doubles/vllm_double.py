#!/usr/bin/env python3
"""Test double of vLLM's OpenAI-compatible server (see double_common.py): token-id prompts,
ignore_eos and min_tokens, usage only with stream_options.include_usage, GET /version,
owned_by "vllm", Server: uvicorn, errors {"error": {"message", "type", "param", "code"}},
vllm:* series on /metrics (V1 names; kv_cache_usage_perc is a 0..1 fraction)."""
import sys

from double_common import Vendor, serve


class VllmDouble(Vendor):
    name = "vllm"
    model_id = "double/vllm-model"
    owned_by = "vllm"
    server_header = "uvicorn"
    accepts_token_ids = True
    ignore_eos = True
    min_tokens = True
    usage = "stream_options"
    prompt_logprobs = True
    finish_length, finish_eos = "length", "stop"

    def error_body(self, status, message, etype):
        return {"error": {"message": message, "type": "BadRequestError" if status == 400 else etype, "param": None, "code": status}}

    def extra_get(self):
        return {"/version": (200, {"version": "0.11.0+double"}), "/health": (200, {})}

    def chunk(self, rid, text, finish):
        c = super().chunk(rid, text, finish)
        c["choices"][0]["stop_reason"] = None
        return c

    def metrics_text(self):
        e = self.engine
        lab = '{engine="0",model_name="%s"}' % self.model_id
        with e.lock:
            return (self.series("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", e.running, lab)
                    + self.series("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", e.waiting, lab)
                    + self.series("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
                                  min(1.0, e.kv_tokens / e.kv_capacity), lab)
                    + self.series("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", float(e.prompt_total), lab)
                    + self.series("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
                                  float(e.generated_total), lab))


if __name__ == "__main__":
    sys.exit(serve(VllmDouble))
