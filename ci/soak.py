#!/usr/bin/env python3
"""Overload soak of `refengine serve` (issue #17): measure capacity, offer FACTOR x that as seeded
Poisson arrivals for DURATION seconds with a mix of streaming, non-streaming, n > 1, clients that
hang up mid-stream and slow readers, then drain with SIGTERM under load. Checks (each PASS/FAIL in
summary.md / summary.json; exit 1 if any fails): 429 + Retry-After once the queue is full, bounded
RSS without growth, no request without an outcome, /health and /metrics answering throughout,
drain within the deadline, /metrics counters equal to the client's counts.

Standard library only (asyncio, hand-written HTTP/1.1), so it runs on a bare Debian python3.
Run through ci/soak.sh, which finds the binaries and the hardware fingerprint.
"""
import argparse
import asyncio
import csv
import gc
import json
import multiprocessing
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time

# ---------------------------------------------------------------- HTTP/1.1 client


class Chunked:
    """Incremental decoder of Transfer-Encoding: chunked; feed() returns the body bytes so far."""

    def __init__(self):
        self.buf, self.size, self.done = b"", None, False

    def feed(self, data):
        self.buf += data
        out = b""
        while not self.done:
            if self.size is None:
                i = self.buf.find(b"\r\n")
                if i < 0:
                    break
                self.size = int(self.buf[:i].split(b";")[0], 16)
                self.buf = self.buf[i + 2:]
            if len(self.buf) < self.size + 2:
                break
            out += self.buf[:self.size]
            self.buf = self.buf[self.size + 2:]
            self.done = self.size == 0  # the trailer after the last chunk is empty here
            self.size = None
        return out


async def http(port, method, path, body=None, *, read_size=65536, pause=None, rcvbuf=None, on_event=None):
    """One request on its own connection (Connection: close). Returns (status, headers, body bytes,
    sse events, ended) where ended says the body arrived complete. on_event(events) returning
    False closes the socket there (a client hanging up). pause(): seconds to sleep between reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf:  # a small window, so that a slow reader's unread bytes back up into the server
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    writer = None
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + (body or b""))
        await writer.drain()
        raw = b""
        while b"\r\n\r\n" not in raw:
            d = await reader.read(read_size)
            if not d:
                raise ConnectionError("connection closed before the response head")
            raw += d
        head, rest = raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        events, body_out, sse_buf = [], b"", b""
        chunked = Chunked() if headers.get("transfer-encoding", "").lower() == "chunked" else None
        length = int(headers["content-length"]) if "content-length" in headers else None
        data = rest
        while True:
            if chunked:
                sse_buf += chunked.feed(data)
                while b"\n\n" in sse_buf:
                    ev, sse_buf = sse_buf.split(b"\n\n", 1)
                    for ln in ev.split(b"\n"):
                        if ln.startswith(b"data: "):
                            events.append(ln[6:].decode())
                    if on_event and events and on_event(events) is False:
                        return status, headers, body_out, events, False
                if chunked.done:
                    return status, headers, body_out, events, True
            else:
                body_out += data
                if length is not None and len(body_out) >= length:
                    return status, headers, body_out, events, True
            if pause:
                await asyncio.sleep(pause())
            data = await reader.read(read_size)
            if not data:
                return status, headers, body_out, events, length is None and not chunked
    finally:
        if writer:
            writer.close()
        else:
            sock.close()


# ---------------------------------------------------------------- the request mix

KINDS = ("stream", "nonstream", "n", "disconnect", "slow")


def parse_mix(text):
    mix = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if k not in KINDS:
            raise SystemExit(f"soak: --mix: unknown kind '{k}' (kinds: {', '.join(KINDS)})")
        mix[k] = float(v)
    total = sum(mix.values())
    if total <= 0:
        raise SystemExit("soak: --mix: proportions must add up to more than 0")
    return {k: v / total for k, v in mix.items()}


class Mix:
    """Draws request kinds and bodies from their own seeded generator (separate from arrivals)."""

    def __init__(self, args, prompts):
        self.rng = random.Random(f"{args.seed}-mix")
        self.args, self.prompts = args, prompts
        self.kinds, self.weights = zip(*parse_mix(args.mix).items())

    def draw(self):
        a, r = self.args, self.rng
        kind = r.choices(self.kinds, self.weights)[0]
        pi = r.randrange(len(self.prompts))
        req = {"prompt": self.prompts[pi], "max_tokens": r.randint(a.min_tokens, a.max_tokens),
               "temperature": 0.8, "seed": r.randrange(1 << 31),
               "ignore_eos": r.random() >= a.eos_fraction}
        n, stream = 1, kind in ("stream", "disconnect", "slow")
        if kind == "n":
            n, stream = r.randint(2, 4), r.random() < 0.5
            req["n"] = n
        if kind == "disconnect":  # long enough that the hang-up comes before the end
            req["max_tokens"], req["ignore_eos"] = a.max_tokens, True
        if stream:
            req["stream"], req["stream_options"] = True, {"include_usage": True}
        hang_after = r.randint(1, 3) if kind == "disconnect" else 0
        return {"kind": kind, "n": n, "stream": stream, "prompt": pi, "max_tokens": req["max_tokens"],
                "hang_after": hang_after, "body": json.dumps(req).encode()}


async def one_request(port, spec, rec, timeout, slow_rng):
    """Sends one completion and classifies its outcome into rec (never raises)."""
    kind = spec["kind"]
    kw = {}
    if kind == "slow":  # small reads with pauses, well under the server's 5 s write timeout
        kw = dict(read_size=256, rcvbuf=4096, pause=lambda: slow_rng.uniform(0.02, 0.1))
    if kind == "disconnect":
        kw["on_event"] = lambda evs: len(evs) < spec["hang_after"]
    rec["t_send"] = time.monotonic()
    if "lag_s" in rec:  # how late the open loop got it out: the client keeping up, or not
        rec["lag_s"] = rec["t_send"] - rec["t_sched"]
    try:
        status, headers, body, events, ended = await asyncio.wait_for(
            http(port, "POST", "/v1/completions", spec["body"], **kw), timeout)
    except asyncio.TimeoutError:
        rec.update(outcome="timeout", reason=f"no end within {timeout} s")
        return
    except (ConnectionError, OSError) as e:
        rec.update(outcome="conn_error", reason=f"{type(e).__name__}: {e}")
        return
    except Exception as e:  # a malformed response is a finding, not a crash of the soak
        rec.update(outcome="protocol_error", reason=f"{type(e).__name__}: {e}")
        return
    finally:
        rec["t_end"] = time.monotonic()
    rec["status"] = status
    if status != 200:
        rec["retry_after"] = headers.get("retry-after")
        try:
            err = json.loads(body)["error"]
            rec.update(outcome=f"http_{status}", reason=err.get("code") or err.get("message"))
        except Exception:
            rec.update(outcome=f"http_{status}", reason=None)  # no reason given: a finding
        return
    if kind == "disconnect" and not ended:
        rec.update(outcome="hung_up", events=len(events))
        return
    if not ended:
        rec.update(outcome="truncated", reason=f"connection ended after {len(events)} events without [DONE]")
        return
    try:
        if spec["stream"]:
            if not events or events[-1] != "[DONE]":
                raise ValueError("stream without [DONE]")
            objs = [json.loads(e) for e in events[:-1]]
            errs = [o for o in objs if "error" in o]
            if errs:  # a stream that fails must say why in an error event
                rec.update(outcome="failed", reason=errs[0]["error"].get("code"))
                return
            fin = {c["index"]: c["finish_reason"] for o in objs for c in o.get("choices", []) if c.get("finish_reason")}
            usage = [o["usage"] for o in objs if o.get("usage")]
            rec["events"] = len(objs)
        else:
            o = json.loads(body)
            fin = {c["index"]: c["finish_reason"] for c in o["choices"]}
            usage = [o["usage"]]
        if sorted(fin) != list(range(spec["n"])) or not set(fin.values()) <= {"stop", "length"}:
            raise ValueError(f"finish reasons {fin} for n={spec['n']}")
        if len(usage) != 1:
            raise ValueError("no usage")
        rec.update(outcome="ok", completion_tokens=usage[0]["completion_tokens"], prompt_tokens=usage[0]["prompt_tokens"])
    except Exception as e:
        rec.update(outcome="protocol_error", reason=f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------- server, probes, samplers


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                k, _, v = ln.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        out["cpu_s"] = (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out


def parse_metrics(text):
    """Prometheus text -> {(name, labels-string): value}."""
    m = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        key, _, val = ln.rpartition(" ")
        name, _, labels = key.partition("{")
        m[(name, labels.rstrip("}"))] = float(val)
    return m


def metric(m, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return m.get((name, want), 0.0)


PHASES = ("start", "capacity", "soak", "quiesce", "drain")


class Monitor:
    """Every second: RSS of the server from /proc, and one /health and one /metrics request. Runs
    in a process of its own, so that the load client's busy event loop does not delay the probes
    or inflate their latency; records go to JSON-lines files, read back by finish()."""

    def __init__(self, port, pid, timeout, out):
        ctx = multiprocessing.get_context("fork")
        self.port, self.pid, self.timeout = port, pid, timeout
        self.files = (os.path.join(out, ".rss.jsonl"), os.path.join(out, ".probes.jsonl"))
        self.phase_i, self.paused_v, self.stop_ev = ctx.Value("i", 0), ctx.Value("b", 0), ctx.Event()
        self.t0 = time.monotonic()  # CLOCK_MONOTONIC: the same clock in both processes
        self.rss, self.probes = [], []
        self.proc = ctx.Process(target=lambda: asyncio.run(self._run()), daemon=True)

    phase = property(lambda self: PHASES[self.phase_i.value], lambda self, v: setattr(self.phase_i, "value", PHASES.index(v)))
    paused = property(lambda self: bool(self.paused_v.value), lambda self, v: setattr(self.paused_v, "value", int(v)))

    def start(self):
        self.proc.start()

    def last_queue(self):
        """The queue length of the latest /metrics probe so far (read from the child's file)."""
        q = None
        with open(self.files[1]) as f:
            for ln in f:
                p = json.loads(ln)
                if p["path"] == "/metrics" and p.get("ok"):
                    q = p.get("queue")
        return q

    def finish(self):
        self.stop_ev.set()
        self.proc.join(30)
        for path, dst in zip(self.files, (self.rss, self.probes)):
            with open(path) as f:
                dst.extend(json.loads(ln) for ln in f)
            os.remove(path)
        self.probes.sort(key=lambda p: p["t"])

    async def probe(self, path, sink):
        t = time.monotonic()
        rec = {"t": round(t - self.t0, 3), "phase": self.phase, "path": path}
        try:
            status, _, body, _, ended = await asyncio.wait_for(http(self.port, "GET", path), self.timeout)
            rec.update(status=status, ok=status == 200 and ended)
            if path == "/metrics" and status == 200:
                m = parse_metrics(body.decode())
                rec.update(queue=metric(m, "refengine_queue_length"), in_flight=metric(m, "refengine_requests_in_flight"),
                           running=metric(m, "refengine_running_requests"))
        except Exception as e:
            rec.update(status=None, ok=False, error=f"{type(e).__name__}: {e}")
        rec["latency_s"] = round(time.monotonic() - t, 4)
        sink.write(json.dumps(rec) + "\n")
        sink.flush()

    async def _run(self):
        with open(self.files[0], "w") as rss, open(self.files[1], "w") as probes:
            pending = set()
            while not self.stop_ev.is_set():
                t = time.monotonic()
                s = proc_status(self.pid)
                if s:
                    rss.write(json.dumps(dict(t=round(t - self.t0, 3), phase=self.phase, **s)) + "\n")
                    rss.flush()
                if not self.paused:  # a slow probe does not hold up the next second's
                    pending |= {asyncio.ensure_future(self.probe(p, probes)) for p in ("/health", "/metrics")}
                    pending = {x for x in pending if not x.done()}
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
            if pending:
                await asyncio.wait(pending)


async def scrape(port, save=None):
    status, _, body, _, _ = await http(port, "GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    if save:
        with open(save, "wb") as f:
            f.write(body)
    return parse_metrics(body.decode())


# ---------------------------------------------------------------- phases


async def closed_loop(port, mix, seconds, concurrency, warmup, timeout, recs):
    """Capacity: `concurrency` clients, each sending its next request when the last ended;
    requests/s finished after `warmup`, any outcome (the mix's own throughput)."""
    t0 = time.monotonic()
    slow_rng = random.Random(f"{mix.args.seed}-slow-capacity")

    async def client(i):
        # Starts spread over the warm-up: clients started together finish together, and a window
        # short against a request's latency would then count one wave or none.
        await asyncio.sleep(warmup * i / concurrency)
        while time.monotonic() - t0 < seconds:
            spec = mix.draw()
            rec = {"phase": "capacity", "kind": spec["kind"], "n": spec["n"], "max_tokens": spec["max_tokens"], "prompt": spec["prompt"],
                   "t_sched": time.monotonic()}
            recs.append(rec)
            await one_request(port, spec, rec, timeout, slow_rng)

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    done = [r for r in recs if warmup <= r["t_end"] - t0 <= seconds]
    return len(done) / (seconds - warmup)


async def open_loop(port, mix, rate, seconds, timeout, seed_tag, phase, recs, tasks, until=None):
    """Poisson arrivals at `rate` req/s from their own seeded generator; never waits for answers.
    phase(): the label of a request sent now."""
    rng = random.Random(f"{mix.args.seed}-arrivals-{seed_tag}")
    slow_rng = random.Random(f"{mix.args.seed}-slow-{seed_tag}")
    t0 = time.monotonic()
    t_next, t_frozen = 0.0, 0.0
    while t_next < seconds and not (until and until()):
        if t_next - t_frozen >= 5:
            # The records of past requests live to the end: moved out of the collector's reach,
            # full collections do not rescan them (they stalled this loop 0.4-0.7 s, more as the
            # list grew, in a 300 s soak).
            gc.freeze()
            t_frozen = t_next
        delay = t0 + t_next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        spec = mix.draw()
        rec = {"phase": phase(), "kind": spec["kind"], "n": spec["n"], "max_tokens": spec["max_tokens"],
               "prompt": spec["prompt"], "t_sched": t0 + t_next, "lag_s": time.monotonic() - (t0 + t_next)}
        recs.append(rec)
        tasks.append(asyncio.ensure_future(one_request(port, spec, rec, timeout, slow_rng)))
        t_next += rng.expovariate(rate)
    return time.monotonic() - t0


def make_prompts(seed, count):
    rng = random.Random(f"{seed}-prompts")
    alphabet = "abcdefghijklmnopqrstuvwxyz     .,0123456789"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(4, 96))) for _ in range(count)]


def start_server(args, out):
    cmd = [args.refengine, "serve", "--port", str(args.port), "--max-queue", str(args.max_queue)] + args.server_arg
    log = open(os.path.join(out, "refengine-serve.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    t_end = time.monotonic() + 120
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise SystemExit(f"soak: refengine serve exited with {proc.returncode} before listening; see {log.name}")
        with open(log.name) as f:
            for ln in f:
                if "listening on http://" in ln:
                    return proc, int(ln.rsplit(":", 1)[1]), cmd
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("soak: refengine serve did not print its listening line within 120 s")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


async def soak(args, proc, port, cmd, mon):
    prompts = make_prompts(args.seed, 32)
    mix = Mix(args, prompts)
    recs, tasks, res = [], [], {"server_command": cmd, "port": port}
    try:
        # Prompt token counts, asked of the server once (the /metrics prompt-token check uses them,
        # also for the requests whose client hung up before the usage chunk).
        ptoks = []
        for p in prompts:
            _, _, body, _, _ = await http(port, "POST", "/v1/completions", json.dumps({"prompt": p, "max_tokens": 1}).encode())
            ptoks.append(json.loads(body)["usage"]["prompt_tokens"])
        idle = proc_status(proc.pid)

        async def quiet_scrape(save):
            # The server counts a response after writing it: with the probes paused and 1.5 s of
            # quiet, every earlier response is in the scrape and none arrives during it.
            mon.paused = True
            await asyncio.sleep(1.5)
            m = await scrape(port, os.path.join(args.out, save))
            mon.paused = False
            return m

        mon.phase = "capacity"
        cap = await closed_loop(port, mix, args.capacity_seconds, args.capacity_concurrency, args.capacity_warmup,
                                args.request_timeout, recs)
        rate = args.factor * cap
        print(f"soak: capacity {cap:.1f} req/s (closed loop, {args.capacity_concurrency} clients); offering {rate:.1f} req/s "
              f"for {args.duration} s", flush=True)
        m0 = await quiet_scrape("metrics-before-soak.txt")
        t_base = time.monotonic() - mon.t0
        base = proc_status(proc.pid)

        mon.phase = "soak"
        t_soak0 = time.monotonic() - mon.t0
        sent_s = await open_loop(port, mix, rate, args.duration, args.request_timeout, "soak", lambda: "soak", recs, tasks)
        t_soak1 = time.monotonic() - mon.t0
        mon.phase = "quiesce"
        await asyncio.gather(*tasks)
        tasks.clear()
        t_final = time.monotonic() - mon.t0
        m1 = await quiet_scrape("metrics-after-soak.txt")
        after = proc_status(proc.pid)
        t_quiet = time.monotonic() - mon.t0

        # Drain: the same overload for drain_lead s (queue full), SIGTERM, arrivals go on a while.
        mon.phase = "drain"
        sig = {}

        def phase():
            return "after_sigterm" if sig else "drain"

        async def terminate():
            await asyncio.sleep(args.drain_lead)
            sig["t"] = time.monotonic()
            sig["in_flight"] = sum(1 for r in recs if r["phase"] == "drain" and "t_end" not in r)
            sig["waiting"] = mon.last_queue()
            proc.send_signal(signal.SIGTERM)
            while proc.poll() is None and time.monotonic() - sig["t"] < 3 * args.drain_deadline:
                await asyncio.sleep(0.01)
            if proc.poll() is None:
                proc.kill()
                sig["killed"] = True
            sig["exit_s"] = time.monotonic() - sig["t"]
            sig["rc"] = proc.wait()

        term = asyncio.ensure_future(terminate())
        await open_loop(port, mix, rate, args.drain_lead + args.drain_tail, args.request_timeout, "drain", phase, recs, tasks,
                        until=lambda: "rc" in sig)
        await term
        await asyncio.gather(*tasks)
        mon.finish()
        res.update(capacity_rps=cap, offered_rps=rate, t_soak=[t_soak0, t_soak1], t_quiet=t_quiet, sent_seconds=sent_s, t_base=t_base, t_final=t_final,
                   idle=idle, base=base, after=after, sigterm=sig, prompt_tokens=ptoks)
        return res, recs, mon, m0, m1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- checks and outputs

GOOD_END = {"ok", "hung_up", "failed"}  # completed, hung up by our client, or failed with an error event


def ended_with_reason(r):
    """An accepted or refused request that ended with an outcome the client can name."""
    o = r.get("outcome")
    return o in GOOD_END or (o or "").startswith("http_") and r.get("reason")


def analyze(args, res, recs, mon, m0, m1):
    checks, figs = [], {}

    def check(name, ok, detail):
        checks.append({"name": name, "verdict": "PASS" if ok else "FAIL", "detail": detail})

    soak = [r for r in recs if r["phase"] == "soak"]
    by = {}
    for r in soak:
        by.setdefault(r.get("outcome"), []).append(r)
    count = {k or "none": len(v) for k, v in by.items()}
    figs["soak_outcomes"] = count
    figs["soak_outcomes_by_kind"] = {k: {o: sum(1 for r in soak if r["kind"] == k and r.get("outcome") == o) for o in count}
                                     for k in KINDS}
    cap, rate = res["capacity_rps"], res["offered_rps"]
    ts0, ts1 = (t + mon.t0 for t in res["t_soak"])
    achieved = sum(1 for r in soak if ts0 <= r.get("t_send", 0) <= ts1) / args.duration  # really sent, not just due
    lags = [r["lag_s"] for r in soak]
    figs.update(capacity_rps=round(cap, 2), offered_rps=round(rate, 2), sent_rps=round(achieved, 2), requests_sent=len(soak),
                arrival_lag_p50_s=pct(lags, 0.5), arrival_lag_p99_s=pct(lags, 0.99), arrival_lag_max_s=max(lags, default=None))
    # What the server finished per second under the overload (accepted requests, any ending):
    # if it is well above the closed-loop capacity, the factor offered was smaller than it says.
    thr = sum(1 for r in soak if r.get("status") == 200 and ts0 <= r.get("t_end", 0) <= ts1) / args.duration
    figs.update(soak_throughput_rps=round(thr, 2), effective_factor=round(rate / thr, 2) if thr else None)
    # 1. The load was offered on time: otherwise nothing below says anything about overload.
    check("offered_rate", cap > 0 and achieved >= 0.9 * rate and (figs["arrival_lag_p99_s"] or 0) <= args.lag_bound,
          f"sent {achieved:.1f} req/s of {rate:.1f} asked ({args.factor:g} x capacity {cap:.1f} req/s); "
          f"send lag behind the Poisson schedule p99 {figs['arrival_lag_p99_s'] or 0:.3f} s (bound {args.lag_bound:g} s); the server finished {thr:.1f} req/s meanwhile: {figs['effective_factor']}x that was offered")

    # 2. 429 + Retry-After once the queue is full.
    r429 = by.get("http_429", [])
    bad_ra = [r for r in r429 if not (r.get("retry_after") or "").isdigit() or int(r["retry_after"]) < 1]
    bad_code = [r for r in r429 if r.get("reason") != "queue_full"]
    qmax = max((p.get("queue", 0) for p in mon.probes if p["phase"] == "soak" and p.get("ok") and p["path"] == "/metrics"),
               default=0)
    figs.update(rejected_429=len(r429), retry_after_values=sorted({r.get("retry_after") for r in r429}, key=str),
                queue_length_max=qmax, max_queue=args.max_queue)
    check("429_retry_after", len(r429) > 0 and not bad_ra and not bad_code and qmax >= args.max_queue,
          f"{len(r429)} x 429, {len(bad_ra)} without a valid Retry-After, {len(bad_code)} with a code other than queue_full; "
          f"queue length seen up to {qmax:g} of {args.max_queue}")

    # 3. Resident memory: absolute bound and no growth from the first half to the second.
    t0, t1 = res["t_soak"]
    mid = (t0 + t1) / 2
    first = [s["VmRSS"] for s in mon.rss if t0 <= s["t"] < mid]
    second = [s["VmRSS"] for s in mon.rss if mid <= s["t"] <= t1]
    hwm = max((s["VmHWM"] for s in mon.rss), default=0)
    p1, p2 = max(first, default=0), max(second, default=0)
    bound = res["idle"]["VmRSS"] + args.rss_headroom_mib * 1024
    figs.update(rss_idle_kib=res["idle"]["VmRSS"], rss_peak_first_half_kib=p1, rss_peak_second_half_kib=p2, vmhwm_kib=hwm,
                rss_bound_kib=bound, rss_after_quiesce_kib=res["after"]["VmRSS"])
    check("rss_bounded", 0 < hwm <= bound and len(first) > 0 and len(second) > 0,
          f"VmHWM {hwm / 1024:.1f} MiB <= bound {bound / 1024:.1f} MiB (idle {res['idle']['VmRSS'] / 1024:.1f} MiB + "
          f"{args.rss_headroom_mib} MiB)")
    check("rss_no_growth", 0 < p1 and p2 <= p1 * (1 + args.rss_growth) + 1024,
          f"peak RSS second half {p2 / 1024:.1f} MiB vs first half {p1 / 1024:.1f} MiB (allowed +{args.rss_growth:.0%} + 1 MiB)")

    # 4. Every request sent in the soak ended with an outcome and, if refused or failed, a reason.
    lost = [r for r in soak if not ended_with_reason(r)]
    e2e = [r["t_end"] - r["t_send"] for r in by.get("ok", [])]
    figs.update(ok_e2e_p50_s=pct(e2e, 0.5), ok_e2e_p99_s=pct(e2e, 0.99), ok_e2e_max_s=max(e2e, default=None),
                request_timeout_s=args.request_timeout)
    check("every_request_ends", len(soak) > 0 and not lost and len(by.get("ok", [])) > 0,
          f"{len(soak) - len(lost)} of {len(soak)} ended with an outcome ({', '.join(f'{k} {v}' for k, v in sorted(count.items()))}); "
          + (f"without one: {lost[0].get('outcome')} ({lost[0].get('reason')}) and {len(lost) - 1} more" if lost else
             f"slowest completed {figs['ok_e2e_max_s'] or 0:.2f} s of the {args.request_timeout:g} s client timeout"))

    # 5. /health and /metrics answered every second until SIGTERM, within the bound.
    pre = [p for p in mon.probes if p["phase"] in ("capacity", "soak", "quiesce")]
    figs["probes"] = {}
    for path in ("/health", "/metrics"):
        ps = [p for p in pre if p["path"] == path]
        bad = [p for p in ps if not p.get("ok")]
        lat = [p["latency_s"] for p in ps]
        figs["probes"][path] = {"count": len(ps), "failed": len(bad), "latency_p50_s": pct(lat, 0.5),
                                "latency_p99_s": pct(lat, 0.99), "latency_max_s": max(lat, default=None)}
        check(f"{path[1:]}_answers", len(ps) >= (t1 - t0) * 0.9 and not bad and max(lat, default=0) <= args.probe_bound,
              f"{len(ps)} probes, {len(bad)} failed, latency p99 {pct(lat, 0.99) or 0:.3f} s max {max(lat, default=0):.3f} s "
              f"(bound {args.probe_bound:g} s)")

    # 6. SIGTERM drains: exit 0 within the deadline, and what was in flight ended with a reason.
    sig = res["sigterm"]
    drain = [r for r in recs if r["phase"] == "drain"]
    late = [r for r in recs if r["phase"] == "after_sigterm"]
    inflight = [r for r in drain if r.get("t_end", 0) > sig.get("t", 0) and r.get("t_send", 0) < sig.get("t", 0)]
    infl_out = {}
    for r in inflight:
        infl_out[r.get("outcome") or "none"] = infl_out.get(r.get("outcome") or "none", 0) + 1
    lost_d = [r for r in inflight if not ended_with_reason(r)]
    late_out = {}
    for r in late:
        k = r.get("outcome") or "none"
        if k == "conn_error":
            k += ": " + (r.get("reason") or "").split(":")[0]
        late_out[k] = late_out.get(k, 0) + 1
    # After SIGTERM a new request gets 503 "draining" or, once the listener closes, is refused or
    # reset (connections still in the accept queue then); counted apart in after_sigterm_outcomes.
    late_bad = [r for r in late if not ((r.get("outcome") == "http_503" and r.get("reason") == "draining")
                                        or r.get("outcome") == "conn_error")]
    figs["drain"] = {"exit_s": round(sig.get("exit_s", -1), 3), "exit_code": sig.get("rc"), "killed": sig.get("killed", False),
                     "deadline_s": args.drain_deadline, "in_flight_at_sigterm": sig.get("in_flight"),
                     "queue_length_before_sigterm": sig.get("waiting"), "in_flight_outcomes": infl_out,
                     "sent_after_sigterm": len(late), "after_sigterm_outcomes": late_out,
                     "health_during_drain": sorted({str(p.get("status") or p.get("error", "")[:40]) for p in mon.probes
                                                    if p["phase"] == "drain" and p["path"] == "/health"})}
    check("sigterm_drain", sig.get("rc") == 0 and not sig.get("killed") and sig.get("exit_s", 1e9) <= args.drain_deadline
          and len(inflight) > 0 and not lost_d and not late_bad,
          f"exit {sig.get('rc')} after {sig.get('exit_s', -1):.2f} s (deadline {args.drain_deadline:g} s); {len(inflight)} in flight "
          f"at SIGTERM: {infl_out}; {len(late)} sent after it: {late_out}")

    # 7. /metrics counters (delta over the soak, both scrapes on a quiet server) = client counts.
    d = lambda name, **lb: metric(m1, name, **lb) - metric(m0, name, **lb)
    accepted = [r for r in soak if r.get("status") == 200]
    codes = {}
    for r in soak:
        if r.get("status"):
            codes[str(r["status"])] = codes.get(str(r["status"]), 0) + 1
    srv_codes = {lb.split('code="')[1].rstrip('"'): m1[(n, lb)] - m0.get((n, lb), 0)
                 for (n, lb) in m1 if n == "refengine_http_requests_total" and 'endpoint="/v1/completions"' in lb}
    srv_codes = {k: v for k, v in srv_codes.items() if v}
    samples = sum(r["n"] for r in accepted)
    ok_samples = sum(r["n"] for r in accepted if r.get("outcome") == "ok")
    hung_samples = sum(r["n"] for r in accepted if r.get("outcome") == "hung_up")
    fin = {lb.split('"')[1]: m1[(n, lb)] - m0.get((n, lb), 0) for (n, lb) in m1 if n == "refengine_completion_finish_total"}
    ok_tokens = sum(r.get("completion_tokens", 0) for r in accepted if r.get("outcome") == "ok")
    hung_max = sum(r["n"] * r.get("max_tokens", args.max_tokens) for r in accepted if r.get("outcome") == "hung_up")
    ptok = sum(res["prompt_tokens"][r["prompt"]] for r in accepted)
    gen = d("refengine_generation_tokens_total")
    comp = d("refengine_completions_total")
    eq = [
        ("HTTP responses by code on /v1/completions", srv_codes == {k: float(v) for k, v in codes.items()}, f"server {srv_codes} client {codes}"),
        ("completions_total = accepted (200)", comp == len(accepted), f"{comp:g} vs {len(accepted)}"),
        ("e2e histogram count = completions_total", d("refengine_e2e_request_latency_seconds_count") == comp,
         f"{d('refengine_e2e_request_latency_seconds_count'):g}"),
        ("finish reasons sum = samples of accepted requests", sum(fin.values()) == samples, f"{fin} vs {samples}"),
        ("stop + length >= samples completed by the client", fin.get("stop", 0) + fin.get("length", 0) >= ok_samples,
         f"{fin.get('stop', 0) + fin.get('length', 0):g} >= {ok_samples}"),
        ("abort <= samples of hung-up clients", fin.get("abort", 0) <= hung_samples, f"{fin.get('abort', 0):g} <= {hung_samples}"),
        ("no engine errors", fin.get("error", 0) == 0, f"{fin.get('error', 0):g}"),
        ("prompt_tokens_total = prompt tokens of accepted requests", d("refengine_prompt_tokens_total") == ptok,
         f"{d('refengine_prompt_tokens_total'):g} vs {ptok}"),
        ("generation_tokens_total within [completed usage, + hung-up max]", ok_tokens <= gen <= ok_tokens + hung_max,
         f"{ok_tokens} <= {gen:g} <= {ok_tokens + hung_max}"),
        ("/health 200s = probes answered", d("refengine_http_requests_total", endpoint="/health", code="200")
         == sum(1 for p in mon.probes if p["path"] == "/health" and p.get("status") == 200 and res["t_base"] <= p["t"] < res["t_final"]),
         "server vs client count between the two scrapes"),
    ]
    figs["metrics_delta"] = {"codes": srv_codes, "completions_total": comp, "finish": fin, "generation_tokens": gen,
                             "prompt_tokens": d("refengine_prompt_tokens_total"),
                             **{k: d("refengine_" + k) for k in ("engine_steps_total", "engine_preemptions_total",
                                                                 "engine_prefill_tokens_total", "engine_decode_tokens_total",
                                                                 "engine_busy_seconds_total")}}
    figs["client_counts"] = {"codes": codes, "accepted": len(accepted), "samples": samples, "ok_samples": ok_samples,
                             "hung_up_samples": hung_samples, "ok_completion_tokens": ok_tokens, "prompt_tokens": ptok}
    check("metrics_add_up", all(ok for _, ok, _ in eq), "; ".join(f"{n}: {'ok' if ok else 'MISMATCH'} ({x})" for n, ok, x in eq))

    # 8. Back to idle after the soak: nothing queued, running, in flight, no KV blocks or fds held.
    idle_g = {k: metric(m1, k) for k in ("refengine_queue_length", "refengine_requests_in_flight", "refengine_running_requests",
                                          "refengine_kv_blocks_used")}
    fds = (res["base"]["fds"], res["after"]["fds"])
    figs.update(idle_gauges_after_soak=idle_g, fds_before_after=fds, threads_before_after=(res["base"]["Threads"], res["after"]["Threads"]))
    check("idle_after_soak", not any(idle_g.values()) and fds[1] <= fds[0] + 4,
          f"gauges {idle_g}; open fds {fds[0]} before, {fds[1]} after (allowed +4: the probes' own sockets)")
    return checks, figs


def write_outputs(args, out, res, recs, mon, checks, figs):
    with open(os.path.join(out, "rss.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "phase", "vmrss_kib", "vmhwm_kib", "threads", "fds", "cpu_s"])
        for s in mon.rss:
            w.writerow([s["t"], s["phase"], s["VmRSS"], s["VmHWM"], s["Threads"], s["fds"], s["cpu_s"]])
    with open(os.path.join(out, "probes.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "phase", "path", "status", "ok", "latency_s", "queue_length", "in_flight", "running", "error"])
        for p in sorted(mon.probes, key=lambda p: (p["t"], p["path"])):
            w.writerow([p["t"], p["phase"], p["path"], p.get("status"), int(bool(p.get("ok"))), p["latency_s"], p.get("queue", ""),
                        p.get("in_flight", ""), p.get("running", ""), p.get("error", "")])
    # Per second of sending: what was sent and how each request ended (the raw per-request list
    # is in requests.csv, too large to publish for a full soak).
    outcomes = sorted({r.get("outcome") or "none" for r in recs})
    rows = {}
    for r in recs:
        key = (int(r["t_sched"] - mon.t0), r["phase"])
        row = rows.setdefault(key, {o: 0 for o in outcomes} | {"sent": 0})
        row["sent"] += 1
        row[r.get("outcome") or "none"] += 1
    with open(os.path.join(out, "timeline.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "phase", "sent"] + outcomes)
        for (t, ph), row in sorted(rows.items()):
            w.writerow([t, ph, row["sent"]] + [row[o] for o in outcomes])
    with open(os.path.join(out, "requests.csv"), "w", newline="") as f:
        cols = ["phase", "kind", "n", "max_tokens", "prompt", "t_sched", "t_send", "t_end", "lag_s", "status", "outcome", "reason",
                "retry_after", "events", "completion_tokens", "prompt_tokens"]
        w = csv.writer(f)
        w.writerow(cols)
        for r in recs:
            w.writerow([round(r[c] - mon.t0, 4) if c in ("t_sched", "t_send", "t_end") and c in r else
                        round(r[c], 4) if c == "lag_s" and c in r else r.get(c, "") for c in cols])

    params = {k: v for k, v in vars(args).items() if k not in ("out",)}
    ok = all(c["verdict"] == "PASS" for c in checks)
    summary = {"what": "refengine serve overload soak (issue #17)", "verdict": "PASS" if ok else "FAIL", "checks": checks,
               "figures": figs, "parameters": params, "server_command": res["server_command"], "commit": args.commit,
               "commit_dirty": args.dirty, "fingerprint": args.fingerprint, "started_at": args.started_at,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "client": {
                   "python": sys.version.split()[0], "cpu_s": round(resource.getrusage(resource.RUSAGE_SELF).ru_utime
                                                                     + resource.getrusage(resource.RUSAGE_SELF).ru_stime, 1)},
               "server_cpu_s": (mon.rss[-1]["cpu_s"] if mon.rss else None), "note": args.note}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)

    d = figs["drain"]
    md = [f"# refengine serve overload soak: {summary['verdict']}", "",
          f"Commit `{args.commit}`{' (dirty tree)' if args.dirty else ''}, machine `{args.fingerprint}`, {args.started_at}. "
          f"Server: `{' '.join(res['server_command'])}`.", "",
          f"Capacity {figs['capacity_rps']} req/s (closed loop, {args.capacity_concurrency} clients, {args.capacity_seconds:g} s); "
          f"offered {figs['offered_rps']} req/s ({args.factor:g}x) as seeded Poisson arrivals for {args.duration:g} s, "
          f"sent {figs['sent_rps']} req/s ({figs['requests_sent']} requests; seed {args.seed}; mix {args.mix}).", ""]
    if args.note:
        md += [args.note, ""]
    md += ["| check | verdict | detail |", "|---|---|---|"]
    md += [f"| {c['name']} | **{c['verdict']}** | {c['detail'].replace('|', '/')} |" for c in checks]
    md += ["", "| figure | value |", "|---|---|"]
    rows = [("outcomes of soak requests", figs["soak_outcomes"]),
            ("429s / Retry-After values", f"{figs['rejected_429']} / {figs['retry_after_values']}"),
            ("completed request latency p50 / p99 / max (s)", f"{figs['ok_e2e_p50_s'] or 0:.3f} / {figs['ok_e2e_p99_s'] or 0:.3f} / {figs['ok_e2e_max_s'] or 0:.3f}"),
            ("RSS idle / peak 1st half / peak 2nd half / VmHWM (MiB)",
             " / ".join(f"{figs[k] / 1024:.1f}" for k in ("rss_idle_kib", "rss_peak_first_half_kib", "rss_peak_second_half_kib", "vmhwm_kib"))),
            ("/health latency p99 / max (s)", f"{figs['probes']['/health']['latency_p99_s'] or 0:.3f} / {figs['probes']['/health']['latency_max_s'] or 0:.3f}"),
            ("/metrics latency p99 / max (s)", f"{figs['probes']['/metrics']['latency_p99_s'] or 0:.3f} / {figs['probes']['/metrics']['latency_max_s'] or 0:.3f}"),
            ("drain: exit code / time to exit (s) / in flight at SIGTERM", f"{d['exit_code']} / {d['exit_s']} / {d['in_flight_at_sigterm']} {d['in_flight_outcomes']}"),
            ("arrival lag p99 / max (s)", f"{figs['arrival_lag_p99_s'] or 0:.3f} / {figs['arrival_lag_max_s'] or 0:.3f}"),
            ("client / server CPU seconds", f"{summary['client']['cpu_s']} / {summary['server_cpu_s']}")]
    md += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]
    md += ["", "Files: `summary.json` (all figures, checks, parameters), `rss.csv` (server VmRSS/VmHWM/threads/fds each second), "
           "`probes.csv` (each /health and /metrics probe, with the queue gauges), `timeline.csv` (requests sent per second and "
           "their outcomes), `refengine-serve.log`.", ""]
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(md))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refengine", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=float, default=300, help="seconds of overload (issue: at least 300)")
    ap.add_argument("--factor", type=float, default=10, help="offered rate / measured capacity")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--port", type=int, default=0, help="0: a free port chosen by the server")
    ap.add_argument("--mix", default="stream=0.3,nonstream=0.25,n=0.15,disconnect=0.15,slow=0.15")
    # Long generations keep the capacity in requests/s low enough that one Python client on a
    # shared 2-vCPU machine can send 10x it on schedule (at ~1000 req/s it fell seconds behind).
    ap.add_argument("--min-tokens", type=int, default=128, help="max_tokens of a request: uniform in [min, max]")
    ap.add_argument("--max-tokens", type=int, default=384)
    ap.add_argument("--eos-fraction", type=float, default=0.2, help="requests that may stop at EOS (the rest ignore_eos)")
    ap.add_argument("--max-queue", type=int, default=256, help="refengine serve --max-queue (its default)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra refengine serve argument (repeatable)")
    ap.add_argument("--capacity-seconds", type=float, default=60)
    ap.add_argument("--capacity-warmup", type=float, default=20, help="not counted; client starts spread over it")
    ap.add_argument("--capacity-concurrency", type=int, default=0,
                    help="closed-loop clients when measuring capacity (0: --max-queue, the deepest queue without 429s, "
                         "where the queue-table policy runs its largest batches)")
    # A full queue (256) at the ~5-10 req/s this 2-vCPU machine completes under overload is 25-50 s
    # of waiting, plus up to 384 tokens of generation: 120 s is over twice that.
    ap.add_argument("--request-timeout", type=float, default=120, help="client-side limit per request (s)")
    ap.add_argument("--lag-bound", type=float, default=0.5, help="p99 of send time - scheduled arrival (s)")
    ap.add_argument("--probe-timeout", type=float, default=10)
    ap.add_argument("--probe-bound", type=float, default=1.0, help="max latency of /health and /metrics (s)")
    # The server's memory should not grow with the offered load past its admission limits: at most
    # 1024 HTTP threads hold a connection each, each with its buffers, SSE text and touched stack
    # (budget 256 KiB) over the idle RSS (model, KV pool, thread stacks already mapped).
    ap.add_argument("--rss-headroom-mib", type=int, default=256, help="absolute bound: idle RSS + this")
    # glibc arenas settle over the first minutes; a leak grows without end. 5% + 1 MiB of the
    # first half's peak is noise room (short runs: +1-4%).
    ap.add_argument("--rss-growth", type=float, default=0.05, help="allowed growth of the peak RSS, 2nd half over 1st")
    ap.add_argument("--drain-lead", type=float, default=5, help="seconds of overload before SIGTERM")
    ap.add_argument("--drain-tail", type=float, default=3, help="seconds of arrivals after SIGTERM")
    # The same full queue served out (25-50 s here, see --request-timeout) before Server::drain's
    # own 30 s allowance for writing the last streams to slow readers runs out.
    ap.add_argument("--drain-deadline", type=float, default=60, help="SIGTERM to exit (s)")
    ap.add_argument("--commit", default="")
    ap.add_argument("--dirty", action="store_true")
    ap.add_argument("--fingerprint", default="")
    ap.add_argument("--started-at", default=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    ap.add_argument("--note", default="", help="a line for summary.md (e.g. what else ran on the machine)")
    args = ap.parse_args()
    args.capacity_concurrency = args.capacity_concurrency or args.max_queue
    parse_mix(args.mix)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one socket per request in flight
    os.makedirs(args.out, exist_ok=True)
    proc, port, cmd = start_server(args, args.out)
    mon = Monitor(port, proc.pid, args.probe_timeout, args.out)
    mon.start()  # before any event loop exists in this process: the child starts its own
    res, recs, mon, m0, m1 = asyncio.run(soak(args, proc, port, cmd, mon))
    checks, figs = analyze(args, res, recs, mon, m0, m1)
    ok = write_outputs(args, args.out, res, recs, mon, checks, figs)
    for c in checks:
        print(f"{c['verdict']:4}  {c['name']:20} {c['detail']}")
    print(f"soak: {'PASS' if ok else 'FAIL'}; wrote {args.out}/summary.md")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
