#!/usr/bin/env python3
"""Test double of Hugging Face text-generation-inference's OpenAI route (see double_common.py):
/v1/completions takes text prompts only (token ids: 422 {"error", "error_type"}), no ignore_eos on
that route (requests stop at a random EOS: finish_reason "eos_token"; at max_tokens "length"), no
usage in the stream, GET /info with model_id and version, no Server header (axum sends none),
tgi_* series on /metrics (token counts from the histograms' _sum)."""
import sys

from double_common import Vendor, serve


class TgiDouble(Vendor):
    name = "tgi"
    model_id = "double/tgi-model"
    owned_by = "double/tgi-model"  # TGI answers owned_by with the model id
    server_header = None
    accepts_token_ids = False
    ignore_eos = False
    min_tokens = False
    usage = "never"
    finish_length, finish_eos = "length", "eos_token"
    eos_prob = 0.003  # the real server stops at the model's EOS: rare here, so most requests run to max_tokens

    def error_body(self, status, message, etype):
        return {"error": message, "error_type": "validation" if status in (400, 422) else etype}

    def token_ids_rejection(self):
        return 422, self.error_body(422, "Input validation error: `prompt` must be a string or a list of strings, not token ids", "validation")

    def extra_get(self):
        return {"/info": (200, {"model_id": self.model_id, "model_sha": None, "model_pipeline_tag": "text-generation",
                                "max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": 4,
                                "max_input_tokens": 4095, "max_total_tokens": 4096, "validation_workers": 2,
                                "max_client_batch_size": 4, "router": "text-generation-router", "version": "3.3.4+double",
                                "sha": None, "docker_label": None}),
                "/health": (200, {})}

    def chunk(self, rid, text, finish):
        c = super().chunk(rid, text, finish)
        c["id"] = ""
        c["system_fingerprint"] = "3.3.4+double-native"
        return c

    def metrics_text(self):
        e = self.engine
        with e.lock:
            return (self.series("tgi_queue_size", "gauge", "Current queue size", e.waiting)
                    + self.series("tgi_batch_current_size", "gauge", "Current batch size", e.running)
                    + self.series("tgi_batch_current_max_tokens", "gauge", "Maximum tokens for the current batch", e.kv_tokens)
                    + self.series("tgi_request_count", "counter", "Total number of requests", e.requests_total)
                    + "# TYPE tgi_request_input_length histogram\n"
                    + f"tgi_request_input_length_sum {float(e.prompt_total)}\ntgi_request_input_length_count {e.requests_total}\n"
                    + "# TYPE tgi_request_generated_tokens histogram\n"
                    + f"tgi_request_generated_tokens_sum {float(e.generated_total)}\ntgi_request_generated_tokens_count {e.requests_total}\n")


if __name__ == "__main__":
    sys.exit(serve(TgiDouble))
