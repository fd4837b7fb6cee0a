#!/usr/bin/env python3
"""Test double of SGLang's OpenAI-compatible server (see double_common.py): token-id prompts,
ignore_eos and min_tokens, usage only with stream_options.include_usage, owned_by "sglang",
Server: uvicorn, errors {"object": "error", "message", "type", "param", "code"}, sglang:* series on
/metrics (the real server exposes them with --enable-metrics; token_usage is a 0..1 fraction)."""
import sys

from double_common import Vendor, serve


class SglangDouble(Vendor):
    name = "sglang"
    model_id = "double/sglang-model"
    owned_by = "sglang"
    server_header = "uvicorn"
    accepts_token_ids = True
    ignore_eos = True
    min_tokens = True
    usage = "stream_options"
    prompt_logprobs = True
    finish_length, finish_eos = "length", "stop"

    def error_body(self, status, message, etype):
        return {"object": "error", "message": message, "type": "BadRequestError" if status == 400 else etype, "param": None, "code": status}

    def extra_get(self):
        return {"/get_model_info": (200, {"model_path": self.model_id, "is_generation": True}), "/health": (200, {})}

    def metrics_text(self):
        e = self.engine
        lab = '{model_name="%s",engine_type="unified",tp_rank="0",pp_rank="0"}' % self.model_id
        with e.lock:
            return (self.series("sglang:num_running_reqs", "gauge", "The number of running requests.", e.running, lab)
                    + self.series("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.", e.waiting, lab)
                    + self.series("sglang:token_usage", "gauge", "The token usage.", min(1.0, e.kv_tokens / e.kv_capacity), lab)
                    + self.series("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.", float(e.prompt_total), lab)
                    + self.series("sglang:generation_tokens_total", "counter", "Number of generation tokens processed.",
                                  float(e.generated_total), lab))


if __name__ == "__main__":
    sys.exit(serve(SglangDouble))
