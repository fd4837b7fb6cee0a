#!/usr/bin/env python3
"""Checks the metric keys suites wrote against docs/contracts.md: the key rule (suite name
first, snake_case or shape-token segments) and the key index (every key listed).

Usage: ci/check_metric_contract.py [--contract docs/contracts.md] RUN_DIR...
Reads every <suite>.json of each run folder (metrics, params.not_measured, params.skip). Exits
1 naming each offending key and the file it came from; 2 when no suite result was found."""
import argparse, json, os, re, sys

SHAPE = r"[A-Z]+[0-9]+(?:_[A-Z]+[0-9]+)*"
SEGMENT = re.compile(r"^(?:[a-z0-9_]+|" + SHAPE + r")$")


def load_index(contract):
    text = open(contract, encoding="utf-8").read()
    at = text.find("## Key index")
    if at < 0:
        sys.exit(f"{contract}: no '## Key index' section")
    block = re.search(r"```\n(.*?)```", text[at:], re.S)
    if not block:
        sys.exit(f"{contract}: the Key index section has no code block")
    patterns = []
    for n, line in enumerate(block.group(1).splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        rx = ""
        for part in re.split(r"(<[a-z_]+(?:\.\.\.)?>)", line):
            if part.startswith("<") and part.endswith("...>"):
                rx += r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*"
            elif part.startswith("<"):
                rx += r"[A-Za-z0-9_]+"
            else:
                rx += re.escape(part)
        patterns.append((line, re.compile("^" + rx + "$")))
    return patterns


def rule_problem(suite, key):
    first = suite.replace("-", "_")
    if not key.startswith(first + "."):
        return f"does not start with the suite's name '{first}.'"
    for seg in key.split("."):
        if not SEGMENT.match(seg):
            return f"segment '{seg}' is neither snake_case nor a shape token"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contract", default=os.path.join(os.path.dirname(__file__), "..", "docs", "contracts.md"))
    ap.add_argument("--require-suites", default="", help="comma-separated suites that must be among the results")
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    patterns = load_index(a.contract)
    problems, checked, files, seen = [], 0, 0, set()
    for run in a.runs:
        for name in sorted(os.listdir(run)):
            path = os.path.join(run, name)
            if not name.endswith(".json") or name in ("manifest.json", "claims.json"):
                continue
            try:
                j = json.load(open(path, encoding="utf-8"))
            except (OSError, ValueError) as e:
                problems.append(f"{path}: unreadable: {e}")
                continue
            if not isinstance(j, dict) or "suite" not in j or "metrics" not in j:
                continue
            files += 1
            seen.add(j["suite"])
            params = j.get("params") or {}
            keys = [m["key"] for m in j["metrics"]]
            for section in ("not_measured", "skip"):
                if isinstance(params.get(section), dict):
                    keys += list(params[section])
            for k in keys:
                checked += 1
                why = rule_problem(j["suite"], k)
                if why:
                    problems.append(f"{path}: key '{k}' {why}")
                elif not any(rx.match(k) for _, rx in patterns):
                    problems.append(f"{path}: key '{k}' is not in the key index of {a.contract}")
    if files == 0:
        print("no suite result (<suite>.json) found under: " + " ".join(a.runs))
        return 2
    for s in filter(None, a.require_suites.split(",")):
        if s not in seen:
            problems.append(f"no {s}.json among the run folders given (suites seen: {', '.join(sorted(seen))})")
    for p in problems:
        print(p)
    print(f"{checked} keys in {files} suite results ({', '.join(sorted(seen))}): " + (f"{len(problems)} problem(s)" if problems else "all follow the rule and are listed"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
