"""The verdicts and files of ci/soak.py's overload soak: the checks (each PASS / FAIL with its
detail), the figures, and OUT/summary.md, summary.json, rss.csv, probes.csv, timeline.csv,
requests.csv. Also the Prometheus text helpers both halves use. Standard library only."""
import csv
import json
import os
import resource
import sys
import time

# The request kinds of the mix, and the outcomes that are an end with a reason.
KINDS = ("stream", "nonstream", "n", "disconnect", "slow")
GOOD_END = {"ok", "hung_up", "failed"}  # completed, hung up by our client, or failed with an error event


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


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


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
          f"Server: `{' '.join(res['server_command'])}`"
          + (f" on CPUs {args.server_cpus} (OMP_NUM_THREADS={len(args.server_cpus)}), client and probes on CPUs {args.client_cpus}"
             if args.server_cpus else " (no CPU split)") + ".", "",
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
