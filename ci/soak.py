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

from soak_report import KINDS, analyze, metric, parse_metrics, write_outputs

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
    env = dict(os.environ)
    pin = None
    if args.server_cpus:
        env["OMP_NUM_THREADS"] = str(len(args.server_cpus))  # the engine's threads: one per CPU it gets
        pin = lambda: os.sched_setaffinity(0, args.server_cpus)  # noqa: E731
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, preexec_fn=pin)
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


# ---------------------------------------------------------------- main (checks and outputs: soak_report.py)


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
    # The engine is CPU-bound and uses every core it is given; a client on the same cores at 10x
    # its capacity starves, falls behind its schedule, then sends the backlog in a burst (the run
    # of 2026-12-04 01:23: lag p99 32 s, 20,000 client sockets). Split the machine: the server
    # gets the first half of the CPUs (and as many engine threads), the client and its probe
    # process the rest; the capacity is measured under the same split, so 10x stays 10x.
    ap.add_argument("--server-cpus", default="auto",
                    help="CPUs for refengine serve, e.g. 0 or 0-3 (auto: the first half of this process's CPUs; "
                         "none: no pinning)")
    args = ap.parse_args()
    mine = sorted(os.sched_getaffinity(0))
    if args.server_cpus == "none" or (args.server_cpus == "auto" and len(mine) < 2):
        args.server_cpus, args.client_cpus = [], []
    else:
        if args.server_cpus == "auto":
            args.server_cpus = mine[:len(mine) // 2]
        else:
            try:
                cpus = set()
                for part in args.server_cpus.split(","):
                    lo, _, hi = part.partition("-")
                    cpus |= set(range(int(lo), int(hi or lo) + 1))
            except ValueError:
                ap.error(f"--server-cpus {args.server_cpus!r}: expected a list like 0 or 0-3,6")
            if not cpus <= set(mine) or cpus == set(mine):
                ap.error(f"--server-cpus {args.server_cpus!r}: must be a proper subset of this process's CPUs {mine}")
            args.server_cpus = sorted(cpus)
        args.client_cpus = [c for c in mine if c not in args.server_cpus]
        os.sched_setaffinity(0, args.client_cpus)  # before the probe process is forked: it inherits
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
