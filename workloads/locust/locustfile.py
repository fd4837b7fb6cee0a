"""Locust load for claimbench: the chat workload's request mix against an OpenAI-compatible server.

Used by `claimbench run --suite load --driver locust`, which starts `refengine serve` (or takes
--sut http://HOST:PORT) and runs Locust headless with this file; also usable by hand:

    CB_LOCUST_WORKLOAD=workloads/chat.json CB_LOCUST_SEED=1 \\
    /usr/bin/locust -f workloads/locust/locustfile.py --headless -u 4 -r 4 -t 30s \\
        --host http://127.0.0.1:8000 --csv out/locust --csv-full-history --only-summary

Each Locust user loops (closed loop, no think time unless CB_LOCUST_WAIT_S is set): it draws a
prompt length and an output length from the workload's distributions, POSTs /v1/completions the
way the native load generator does (harness/src/load_sut_http.cpp: prompt as token ids, "stream":
true, "ignore_eos": true, "temperature": 0, usage in the last event) and reads the server-sent
events to "data: [DONE]". Two entries appear in Locust's statistics:

    POST /v1/completions   end-to-end time (request sent -> "data: [DONE]"); failures counted here
    TTFT /v1/completions   time to the first event carrying a token (a custom request type)

Locust's "Aggregated" row adds the two together, so read the POST row for request figures.

Environment (all optional; only claimbench's driver or the person running this sets them):
    CB_LOCUST_WORKLOAD        workload JSON (workloads/README.md: "prompt_tokens" and
                              "output_tokens" distributions, "quick" merge patch); unset: DEFAULT_MIX
    CB_LOCUST_QUICK           1: apply the workload's "quick" patch first (as `--quick` does)
    CB_LOCUST_SEED            integer seed of the length and prompt draws (default 1); user k
                              draws from random.Random(seed * 1000003 + k), k in start order
    CB_LOCUST_MAX_TOKENS_CAP  > 0: clip every drawn output length to this
    CB_LOCUST_MODEL           "model" of each request (default: the first id of GET /v1/models,
                              else "default", as the native generator does)
    CB_LOCUST_PROMPT          "ids" (default: token ids drawn uniformly from 0..255, the native
                              generator's HTTP prompts) or "text" (lower-case ASCII words, one
                              byte per token for refengine's byte tokenizer)
    CB_LOCUST_WAIT_S          think time between a user's requests, seconds (default 0)

The draws follow the same distributions as the native generator but come from Python's random, so
the individual requests differ from its plan. Standard library and Locust only.
"""
import csv
import gc
import itertools
import json
import math
import os
import random
import sys
import time
import urllib.request

from locust import HttpUser, constant, events, task
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV, StatsCSVFileWriter

# Without a workload file: workloads/chat.json's distributions (kept in step by hand).
DEFAULT_MIX = {"name": "chat (built-in default)",
               "prompt_tokens": {"dist": "lognormal", "median": 96, "sigma": 0.6, "min": 8, "max": 1024},
               "output_tokens": {"dist": "uniform", "min": 16, "max": 128}}

# Words for text prompts: lower-case ASCII, so the byte length is the token count for refengine.
WORDS = ("the a of to and in that is was for on with as by at from this it be are or an not but "
         "which have one all were when we there can been has more if will no out so what up time "
         "about than into only some could them see other then now look come its over think also "
         "back after use two how our work first well way even new want because any these give day "
         "most us model token cache batch serve load latency request answer queue kernel memory").split()


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (how the workload's "quick" variant applies)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def check_dist(spec, where):
    """A length distribution as workloads/README.md defines it; ValueError naming the field."""
    def integer(key, lo):
        v = spec.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError("%s.%s: expected an integer >= %d, got %r" % (where, key, lo, v))
        return v

    def number(key, lo):
        v = spec.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo:
            raise ValueError("%s.%s: expected a number >= %g, got %r" % (where, key, lo, v))
        return float(v)

    if not isinstance(spec, dict):
        raise ValueError("%s: expected an object with \"dist\", got %r" % (where, spec))
    dist = spec.get("dist")
    if dist == "fixed":
        return {"dist": dist, "value": integer("value", 1)}
    if dist == "uniform":
        lo = integer("min", 1)
        return {"dist": dist, "min": lo, "max": integer("max", lo)}
    if dist == "lognormal":
        lo = integer("min", 1)
        return {"dist": dist, "median": number("median", 1), "sigma": number("sigma", 0), "min": lo,
                "max": integer("max", lo)}
    raise ValueError("%s.dist: unknown %r (expected fixed, uniform, lognormal)" % (where, dist))


def draw(rng, d):
    """One length: fixed; uniform integers in [min, max]; log-normal rounded, clipped to [min, max]."""
    if d["dist"] == "fixed":
        return d["value"]
    if d["dist"] == "uniform":
        return rng.randint(d["min"], d["max"])
    x = rng.lognormvariate(math.log(d["median"]), d["sigma"])
    return min(max(int(math.floor(x + 0.5)), d["min"]), d["max"])


def load_mix(path, quick):
    """The request mix of a workload file: its prompt and output length distributions.

    Other fields (arrival process, rates, SLOs, engine settings) belong to the native generator and
    are ignored: Locust users run closed loop.
    """
    with open(path) as f:
        spec = json.load(f)
    if quick and isinstance(spec.get("quick"), dict):
        spec = merge_patch(spec, spec["quick"])
    for key in ("prompt_tokens", "output_tokens"):
        if key not in spec:
            raise ValueError("%s: missing \"%s\" (a trace-driven workload has no length distributions)" % (path, key))
    return {"name": spec.get("name", os.path.basename(path)) + (" (quick)" if quick else ""),
            "prompt_tokens": check_dist(spec["prompt_tokens"], "%s: prompt_tokens" % path),
            "output_tokens": check_dist(spec["output_tokens"], "%s: output_tokens" % path)}


def _env_int(name, default):
    text = os.environ.get(name, "")
    try:
        return int(text) if text else default
    except ValueError:
        raise ValueError("environment %s=%r: not an integer" % (name, text))


WORKLOAD = os.environ.get("CB_LOCUST_WORKLOAD", "")
QUICK = _env_int("CB_LOCUST_QUICK", 0) == 1
MIX = load_mix(WORKLOAD, QUICK) if WORKLOAD else DEFAULT_MIX
SEED = _env_int("CB_LOCUST_SEED", 1)
MAX_TOKENS_CAP = _env_int("CB_LOCUST_MAX_TOKENS_CAP", 0)
MODEL = os.environ.get("CB_LOCUST_MODEL", "")
PROMPT_FORM = os.environ.get("CB_LOCUST_PROMPT", "ids")
if PROMPT_FORM not in ("text", "ids"):
    raise ValueError("environment CB_LOCUST_PROMPT=%r: expected ids or text" % PROMPT_FORM)
WAIT_S = float(os.environ.get("CB_LOCUST_WAIT_S", "0") or 0)
# A server started with --api-key wants "Authorization: Bearer KEY" (the variable OpenAI clients read).
API_KEY = os.environ.get("OPENAI_API_KEY", "")
HEADERS = {"Authorization": "Bearer " + API_KEY} if API_KEY else {}
_user_index = itertools.count()
_environment = None


@events.init.add_listener
def _on_init(environment, **_kwargs):
    global _environment
    _environment = environment
    # The per-second history of each entry needs Locust's response-time cache (locust issue #2220).
    environment.stats.use_response_times_cache = True


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs):
    """Before any user starts, outside every timed request: the model name, then one log line."""
    global MODEL
    if not MODEL:
        MODEL = "default"
        try:
            models = urllib.request.Request(environment.host.rstrip("/") + "/v1/models", headers=HEADERS)
            with urllib.request.urlopen(models, timeout=10) as r:
                data = json.load(r).get("data") or []
                if data and isinstance(data[0].get("id"), str):
                    MODEL = data[0]["id"]
        except (OSError, ValueError, AttributeError):
            pass  # as the native generator: a server without /v1/models gets "default"
    print("claimbench locustfile: mix %s, prompt_tokens %s, output_tokens %s, cap %d, seed %d, prompt %s, model %s"
          % (MIX["name"], json.dumps(MIX["prompt_tokens"]), json.dumps(MIX["output_tokens"]), MAX_TOKENS_CAP, SEED,
             PROMPT_FORM, MODEL), flush=True)


@events.quit.add_listener
def _write_final_stats(exit_code=0, **_kwargs):
    """Writes PREFIX_stats_final.csv: the stats after the last request, in PREFIX_stats.csv's format.

    Locust 2.12 rewrites PREFIX_stats.csv once a second and not at exit, so that file misses up to a
    second of requests (locust issues #1806, #2299). This snapshot is taken by Locust's own StatsCSV
    writer after the users have stopped, so it matches the summary Locust prints. Locust also
    flushes PREFIX_stats_history.csv only every 10 s and not at exit, so the rows of the last
    seconds would be lost: its writer (not reachable through the environment in headless mode) is
    found and flushed here.
    """
    options = getattr(_environment, "parsed_options", None)
    prefix = getattr(options, "csv_prefix", None)
    if not prefix:
        return
    with open(prefix + "_stats_final.csv", "w", newline="") as f:
        StatsCSV(_environment, PERCENTILES_TO_REPORT).requests_csv(csv.writer(f))
    for obj in gc.get_objects():
        if isinstance(obj, StatsCSVFileWriter):
            obj.requests_flush()
            obj.stats_history_flush()
            obj.failures_flush()
    # The quit event is the last step of Locust's shutdown before sys.exit, and that exit sometimes
    # hangs in interpreter teardown (seen ~1 run in 10 against a streaming endpoint, after every
    # result was written). Everything is flushed here: leave now, with Locust's exit code.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


def make_prompt(rng, n):
    """A prompt of n tokens: n token ids in 0..255 (ids), or n bytes of words (text)."""
    if PROMPT_FORM == "ids":
        return [rng.randrange(256) for _ in range(n)]
    words = []
    size = 0
    while size < n:
        w = rng.choice(WORDS)
        words.append(w)
        size += len(w) + 1
    return " ".join(words)[:n]


class ChatUser(HttpUser):
    wait_time = constant(WAIT_S)

    def on_start(self):
        self.rng = random.Random(SEED * 1000003 + next(_user_index))

    @task
    def completion(self):
        n_prompt = draw(self.rng, MIX["prompt_tokens"])
        n_out = draw(self.rng, MIX["output_tokens"])
        if MAX_TOKENS_CAP > 0:
            n_out = min(n_out, MAX_TOKENS_CAP)
        body = {"model": MODEL, "prompt": make_prompt(self.rng, n_prompt), "max_tokens": n_out, "stream": True,
                "temperature": 0, "ignore_eos": True, "stream_options": {"include_usage": True}}
        t0 = time.perf_counter()
        # catch_response: Locust would otherwise time only up to the response headers of a stream;
        # the recorded time is set to the full stream below.
        with self.client.post("/v1/completions", json=body, headers=HEADERS, stream=True, catch_response=True,
                              name="/v1/completions", timeout=(10, 600)) as resp:
            if resp.status_code != 200:
                resp.failure("HTTP %s: %s" % (resp.status_code, (resp.text or "")[:200]))
                return
            ttft_ms = None
            size = 0
            done = False
            usage = None
            error = None
            try:
                lines = resp.iter_lines()
                for line in lines:
                    size += len(line) + 1
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    event = json.loads(data)
                    if "error" in event:
                        raise ValueError("server error event: %s" % str(event["error"])[:200])
                    if event.get("usage"):
                        usage = event["usage"]
                    # One event per token (its text may be empty: part of a UTF-8 character).
                    if ttft_ms is None and event.get("choices"):
                        ttft_ms = (time.perf_counter() - t0) * 1000
                if done:
                    # Read on to the end of the chunked body so urllib3 hands the connection back to
                    # the pool here, in this user's greenlet. Left suspended, the generator is closed
                    # later by the garbage collector in whatever greenlet runs then, and its release
                    # takes a gevent lock there: seen to deadlock Locust's stop (locust.log: "Exception
                    # ignored in: <generator object HTTPResponse.read_chunked>", users running on).
                    for _ in lines:
                        pass
            except Exception as e:  # a broken stream is this request's failure, not the user's end
                error = "stream: %s: %s" % (type(e).__name__, e)
            resp.request_meta["response_time"] = (time.perf_counter() - t0) * 1000
            resp.request_meta["response_length"] = size
            if error is None and not done:
                error = "stream ended without data: [DONE]"
            if error is None and ttft_ms is None:
                error = "stream carried no tokens"
            # The load assumes fixed output lengths (as the native generator's "short" errors).
            if error is None and usage and isinstance(usage.get("completion_tokens"), int) \
                    and usage["completion_tokens"] < n_out:
                error = "short: %d of %d tokens" % (usage["completion_tokens"], n_out)
            if error is not None:
                resp.failure(error)
                return
            events.request.fire(request_type="TTFT", name="/v1/completions", response_time=ttft_ms,
                                response_length=0, exception=None, context={})
