#!/usr/bin/env python3
"""Would a second run give the same verdict? The engine speed figures across published
ci/bench-llama-1b.sh runs (results/published/llama-1b-engine-speed-*/engine-speed.json, written by
ci/engine_speed_summary.py): per gated figure, how often it was PASS / INCONCLUSIVE / FAIL, the
spread of its values, and whether its verdict flips between runs.

A figure is identified by its "what" text and the form of its "limit" text (numbers left out): the
summary script reworded figures over time, and kept one wording while the limit's method changed
(batch-1 decode: one triad window, then the best pass between the steps, then each step against the
pass before it), so either change makes another figure (its runs a separate row, the limit shown
where one wording has several). The batch-16 figure's regime (memory- or compute-bound, which the
run's own limits decide) is counted, not split on. Runs of different hardware fingerprints are never
merged: one table per fingerprint, the most recently run fingerprint first."""
import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED = os.path.join(ROOT, "results", "published")
PREFIX = "llama-1b-engine-speed-"
NAME = re.compile(PREFIX + r"(\d{8}T\d{6}Z)-([0-9A-Za-z]+)$")
GATED = ("PASS", "INCONCLUSIVE", "FAIL")


class InputError(Exception):
    """Bad input the user must fix: printed as one line, exit 2."""


def parse_when(text):
    """A UTC time from YYYYMMDD, YYYYMMDDTHHMMSSZ or ISO YYYY-MM-DDTHH:MM:SS[.fff](Z|+00:00)."""
    for fmt in ("%Y%m%d", "%Y%m%dT%H%M%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    t = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)  # ValueError if bad
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


def stamp(t):
    return t.strftime("%Y%m%dT%H%M%SZ")


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:  # its message carries the line and column
        raise InputError(f"{path}: malformed JSON: {e}")
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}")


def read_run(d):
    """One run: its rows plus what the manifest says (the folder name where the manifest lacks it)."""
    es_path = os.path.join(d, "engine-speed.json")
    data = read_json(es_path)
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "what" in r for r in rows):
        raise InputError(f"{es_path}: no \"rows\" list of figures with a \"what\"")
    m_path = os.path.join(d, "manifest.json")
    m = read_json(m_path) if os.path.exists(m_path) else {}
    folder = os.path.basename(os.path.normpath(d))
    named = NAME.match(folder)
    started = m.get("started_at") or (named.group(1) if named else None)
    try:
        when = parse_when(started) if started else None
    except ValueError:
        when = None
    if when is None:
        raise InputError(f"{d}: no started_at in manifest.json and no timestamp in the folder name")
    build = m.get("build", {})
    commit = (build.get("commit") or "unknown")[:7] + ("-dirty" if build.get("commit_dirty") else "")
    fp = m.get("hardware", {}).get("fingerprint") or (named.group(2) if named else "unknown")
    return {"folder": folder, "started": when, "stamp": stamp(when), "fingerprint": fp, "commit": commit, "rows": rows}


def find_folders(paths):
    """Run folders: a named run folder is taken as is; any other folder is scanned for run folders."""
    found = []
    for p in paths:
        if not os.path.isdir(p):
            raise InputError(f"{p}: no such folder")
        base = os.path.basename(os.path.normpath(p))
        if base.startswith(PREFIX) or os.path.exists(os.path.join(p, "manifest.json")):
            if not os.path.exists(os.path.join(p, "engine-speed.json")):
                raise InputError(f"{p}: no engine-speed.json (run ci/engine_speed_summary.py on it)")
            found.append(p)
            continue
        for name in sorted(os.listdir(p)):
            d = os.path.join(p, name)
            if name.startswith(PREFIX) and os.path.isdir(d):
                if os.path.exists(os.path.join(d, "engine-speed.json")):
                    found.append(d)
                else:  # old runs predate the summary: skip, but say so
                    print(f"skipped {d}: no engine-speed.json", file=sys.stderr)
    seen, out = set(), []
    for d in found:  # the same folder named twice (or named and scanned) counts once
        if os.path.realpath(d) not in seen:
            seen.add(os.path.realpath(d))
            out.append(d)
    return out


def load_runs(paths, since=None, last=None):
    """Runs oldest first; since: a datetime (kept at or after it); last: keep the newest N after that."""
    runs = sorted((read_run(d) for d in find_folders(paths or [PUBLISHED])), key=lambda r: (r["started"], r["folder"]))
    if since is not None:
        runs = [r for r in runs if r["started"] >= since]
    return runs[-last:] if last else runs


REGIME = re.compile(r" \((memory|compute)-bound\)")


def figure_key(row):
    """(what without the regime, the limit text with its numbers left out): one figure measured one way."""
    return REGIME.sub("", row["what"]), re.sub(r"\d+(\.\d+)?", "…", row.get("limit") or "")


def figure_stats(what, seen):
    """seen: (run, row) pairs oldest first."""
    targets = [row.get("target") or "" for _, row in seen]
    verdicts = [row.get("verdict") or "?" for _, row in seen]
    gated = any(targets)  # gated in any run: its RECORDED runs (if any) show under "other"
    values = sorted(v for _, row in seen if isinstance(v := row.get("value"), (int, float)))
    run, row = seen[-1]
    # Per regime: which side of the ridge a run fell on is the machine's memory phase, not the
    # engine's, and the verdicts differ by side.
    regimes = [(m.group(1) + "-bound", r.get("verdict")) for _, r in seen if (m := REGIME.search(r["what"]))]
    by_regime = {g: {v: sum(1 for rg, vv in regimes if rg == g and vv == v) for v in GATED}
                 for g in dict.fromkeys(rg for rg, _ in regimes)}
    if regimes:
        what += " (" + ", ".join(f"{g} {sum(1 for rg, _ in regimes if rg == g)}" + (": " + "/".join(str(c[v]) for v in GATED) if any(targets) else "")
                                 for g, c in by_regime.items()) + ")"
    fig = {"what": what, "target": next((t for t in reversed(targets) if t), ""), "gated": gated, "runs": len(seen),
           "values": len(values), "min": values[0] if values else None,
           "median": statistics.median(values) if values else None, "max": values[-1] if values else None,
           "newest": {"value": row.get("value"), "verdict": row.get("verdict"), "run": run["stamp"]}}
    if by_regime:
        fig["by_regime"] = by_regime
    if gated:
        fig["counts"] = {v: verdicts.count(v) for v in GATED}
        fig["other"] = {v: verdicts.count(v) for v in sorted(set(verdicts) - set(GATED))}
        fig["flips"] = "yes" if sum(1 for v in GATED if fig["counts"][v]) > 1 else "no"
    else:
        fig["counts"], fig["other"], fig["flips"] = None, None, "-"
    return fig


def aggregate(runs):
    """One group per fingerprint (most recently run first), its figures in the newest run's order,
    then figures only older runs have, newest first."""
    by_fp = {}
    for r in runs:
        by_fp.setdefault(r["fingerprint"], []).append(r)
    groups = []
    for fp, rs in sorted(by_fp.items(), key=lambda kv: kv[1][-1]["started"], reverse=True):
        order, seen = [], {}
        for r in reversed(rs):
            for row in r["rows"]:
                key = figure_key(row)
                if key not in seen:
                    order.append(key)
                    seen[key] = []
                seen[key].insert(0, (r, row))  # keep oldest first
        methods = {}
        for what, limit in order:
            methods.setdefault(what, []).append(limit)
        label = lambda k: k[0] + (f" [limit: {k[1]}]" if len(methods[k[0]]) > 1 else "")
        commits = list(dict.fromkeys(r["commit"] for r in rs))
        groups.append({"fingerprint": fp, "runs": len(rs), "first": rs[0]["stamp"], "last": rs[-1]["stamp"],
                       "commits": commits, "folders": [r["folder"] for r in rs],
                       "figures": [figure_stats(label(k), seen[k]) for k in order]})
    return groups


def num(v):
    return "-" if v is None else f"{v:.3f}"


def cells(fig):
    """The table cells of one figure, as text."""
    c, n = fig["counts"], fig["newest"]
    other = ", ".join(f"{k} {v}" for k, v in fig["other"].items() if v) if fig["other"] else ""
    return [fig["what"], fig["target"], str(fig["runs"]), str(c["PASS"]) if c else "", str(c["INCONCLUSIVE"]) if c else "",
            str(c["FAIL"]) if c else "", other, num(fig["min"]), num(fig["median"]), num(fig["max"]),
            f"{num(n['value'])} {n['verdict']} @ {n['run']}", fig["flips"]]


HEAD = ["figure", "target", "runs", "PASS", "INCONC", "FAIL", "other", "min", "median", "max", "newest", "flips"]


def heading(g):
    return (f"fingerprint {g['fingerprint']}: {g['runs']} run(s), {g['first']} .. {g['last']}",
            f"commits ({len(g['commits'])}): {' '.join(g['commits'])}")


def render_text(groups):
    out = []
    for g in groups:
        table = [HEAD] + [cells(f) for f in g["figures"]]
        widths = [max(len(r[i]) for r in table) for i in range(len(HEAD))]
        right = set(range(2, 6)) | {7, 8, 9}  # counts and numbers right-aligned so digits line up
        out += list(heading(g)) + [""]
        for r in table:
            out.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        out.append("")
    return "\n".join(out)


def render_markdown(groups):
    esc = lambda s: s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    out = []
    for g in groups:
        h1, h2 = heading(g)
        out += [f"### {esc(h1)}", "", esc(h2), "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        out += ["| " + " | ".join(esc(c) for c in cells(f)) + " |" for f in g["figures"]]
        out.append("")
    return "\n".join(out)


def write_json(path, groups, args):
    """Written beside its final name, then renamed: a reader never sees half a file."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".engine-speed-history.", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"since": args.since and stamp(args.since), "last": args.last, "fingerprints": groups}, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None):
    def since_arg(text):
        try:
            return parse_when(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad UTC time {text!r}: use YYYYMMDD, YYYYMMDDTHHMMSSZ or YYYY-MM-DDTHH:MM:SSZ")

    def positive(text):
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
        return int(text)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="*", metavar="FOLDER",
                    help=f"a run folder, or a folder to scan for {PREFIX}* run folders (default: results/published)")
    ap.add_argument("--since", type=since_arg, metavar="TIME", help="keep runs started at or after this UTC time (e.g. 20261206T000000Z)")
    ap.add_argument("--last", type=positive, metavar="N", help="keep the newest N runs (after --since), all fingerprints together")
    ap.add_argument("--markdown", action="store_true", help="GitHub markdown tables instead of plain text")
    ap.add_argument("--json", metavar="PATH", help="also write the aggregates as JSON to PATH")
    args = ap.parse_args(argv)
    try:
        runs = load_runs(args.folders, args.since, args.last)
    except InputError as e:
        print(f"engine_speed_history.py: error: {e}", file=sys.stderr)
        return 2
    if not runs:
        print("engine_speed_history.py: no runs left after filtering"
              + (f" (--since {stamp(args.since)})" if args.since else ""), file=sys.stderr)
        return 1
    groups = aggregate(runs)
    if args.json:
        try:
            write_json(args.json, groups, args)
        except OSError as e:
            print(f"engine_speed_history.py: error: --json {args.json}: {e.strerror}", file=sys.stderr)
            return 2
    print(render_markdown(groups) if args.markdown else render_text(groups), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
