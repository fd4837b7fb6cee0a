#!/usr/bin/env python3
"""ci/engine_speed_history.py counts each gated figure's verdicts across published engine speed
runs, per hardware fingerprint (never merged), and says whether the verdict flips between runs.
Run on synthetic run folders: python3 test_engine_speed_history.py HISTORY_SCRIPT."""
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import unittest

HISTORY = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "ci", "engine_speed_history.py")
spec = importlib.util.spec_from_file_location("engine_speed_history", HISTORY)
history = importlib.util.module_from_spec(spec)
spec.loader.exec_module(history)

DECODE = "F32 batch-1 decode, fraction of triad bandwidth / bytes per token"
PREFILL = "F32 128-token prefill, fraction of FP32 FMA peak"
READ = "F32 batch-1 decode, fraction of read-only bandwidth"


def row(what, value, verdict, target=">= 0.80"):
    return {"what": what, "value": value, "target": "" if verdict == "RECORDED" else target, "verdict": verdict,
            "interval": None, "interval_text": "one measurement", "limit": "", "detail": ""}


def make_run(parent, stamp, fp, rows, started=None, commit="a" * 40, manifest=True):
    """A published run folder named as ci/bench-llama-1b.sh names it; started: manifest's started_at."""
    d = os.path.join(parent, f"llama-1b-engine-speed-{stamp}-{fp}")
    os.makedirs(d)
    if rows is not None:
        with open(os.path.join(d, "engine-speed.json"), "w") as f:
            json.dump({"folder": os.path.basename(d), "rows": rows}, f)
    if manifest:
        iso = started or f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"
        with open(os.path.join(d, "manifest.json"), "w") as f:
            json.dump({"started_at": iso, "build": {"commit": commit, "commit_dirty": False},
                       "hardware": {"fingerprint": fp}}, f)
    return d


def call(argv):
    """main(argv) -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = history.main(argv)
        except SystemExit as e:  # argparse's own errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


class History(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name
        self.three = [
            make_run(self.d, "20261205T100000Z", "fp1", [row(DECODE, 0.85, "PASS"), row(PREFILL, 0.70, "PASS", ">= 0.50"),
                                                           row(READ, 0.90, "RECORDED")], commit="1" * 40),
            make_run(self.d, "20261206T100000Z", "fp1", [row(DECODE, 0.90, "PASS"), row(PREFILL, 0.72, "PASS", ">= 0.50"),
                                                           row(READ, None, "RECORDED")], commit="2" * 40),
            make_run(self.d, "20261207T100000Z", "fp1", [row(PREFILL, 0.75, "PASS", ">= 0.50"), row(DECODE, 0.78, "INCONCLUSIVE"),
                                                           row(READ, 1.10, "RECORDED")], commit="2" * 40),
        ]

    def tearDown(self):
        self.tmp.cleanup()

    def figures(self, groups, fp="fp1"):
        g = [g for g in groups if g["fingerprint"] == fp]
        self.assertEqual(len(g), 1)
        return {f["what"]: f for f in g[0]["figures"]}, g[0]

    def test_counts_spread_and_flips_across_three_runs(self):
        figs, g = self.figures(history.aggregate(history.load_runs([self.d])))
        self.assertEqual((g["runs"], g["first"], g["last"]), (3, "20261205T100000Z", "20261207T100000Z"))
        self.assertEqual(g["commits"], ["1111111", "2222222"])
        dec = figs[DECODE]
        self.assertEqual(dec["counts"], {"PASS": 2, "INCONCLUSIVE": 1, "FAIL": 0})
        self.assertEqual(dec["flips"], "yes")
        self.assertEqual((dec["min"], dec["median"], dec["max"]), (0.78, 0.85, 0.90))
        self.assertEqual(dec["newest"], {"value": 0.78, "verdict": "INCONCLUSIVE", "run": "20261207T100000Z"})
        self.assertEqual(figs[PREFILL]["counts"], {"PASS": 3, "INCONCLUSIVE": 0, "FAIL": 0})
        self.assertEqual(figs[PREFILL]["flips"], "no")
        rec = figs[READ]
        self.assertIsNone(rec["counts"])
        self.assertEqual((rec["flips"], rec["runs"], rec["values"]), ("-", 3, 2))  # the null counted as a run, not a value
        self.assertEqual((rec["min"], rec["median"], rec["max"]), (0.90, 1.0, 1.10))
        self.assertEqual(list(figs), [PREFILL, DECODE, READ])  # the newest run's order
        text = history.render_text(history.aggregate(history.load_runs([self.d])))
        self.assertIn("fingerprint fp1: 3 run(s), 20261205T100000Z .. 20261207T100000Z", text)

    def test_text_columns_hold_the_figures(self):
        text = history.render_text(history.aggregate(history.load_runs([self.d])))
        dec = next(l for l in text.splitlines() if l.startswith(DECODE))[len(DECODE):].split()
        self.assertEqual(dec, [">=", "0.80", "3", "2", "1", "0", "0.780", "0.850", "0.900", "0.780", "INCONCLUSIVE", "@",
                               "20261207T100000Z", "yes"])
        rec = next(l for l in text.splitlines() if l.startswith(READ))[len(READ):].split()
        self.assertEqual(rec, ["3", "0.900", "1.000", "1.100", "1.100", "RECORDED", "@", "20261207T100000Z", "-"])

    def test_other_verdicts_and_older_only_figures(self):
        make_run(self.d, "20261208T100000Z", "fp1", [row(PREFILL, None, "MISSING", ">= 0.50")])
        figs, _ = self.figures(history.aggregate(history.load_runs([self.d])))
        self.assertEqual(figs[PREFILL]["other"], {"MISSING": 1})
        self.assertEqual(figs[PREFILL]["flips"], "no")  # MISSING is no verdict on the figure
        self.assertEqual(list(figs), [PREFILL, DECODE, READ])  # older-only figures after, newest first

    def test_a_changed_limit_method_is_another_figure_and_the_regime_is_counted(self):
        def lim(r, limit):
            r["limit"] = limit
            return r
        b16 = "F32 decode batch 16, fraction of roofline bound"
        make_run(self.d, "20261208T100000Z", "fp1", [lim(row(DECODE, 0.80, "INCONCLUSIVE"), "41.9 GB/s triad -> 10.1 tok/s"),
                                                     lim(row(b16 + " (memory-bound)", 0.70, "PASS", ">= 0.60"), "12.0 tok/s")])
        make_run(self.d, "20261209T100000Z", "fp1", [lim(row(DECODE, 0.95, "PASS"), "each step against the pass before it (passes 25.0-46.0 GB/s)"),
                                                     lim(row(b16 + " (compute-bound)", 0.55, "FAIL", ">= 0.60"), "13.5 tok/s")])
        make_run(self.d, "20261210T100000Z", "fp1", [lim(row(DECODE, 0.97, "PASS"), "each step against the pass before it (passes 30.1-50.2 GB/s)"),
                                                     lim(row(b16 + " (compute-bound)", 0.62, "PASS", ">= 0.60"), "14.0 tok/s")])
        figs, _ = self.figures(history.aggregate(history.load_runs([self.d])))
        # The same wording measured three ways (the setUp runs have an empty limit): three figures,
        # the newest method's only the two runs that used it, numbers in the limit not splitting it.
        new = figs[DECODE + " [limit: each step against the pass before it (passes …-… GB/s)]"]
        self.assertEqual((new["runs"], new["counts"]["PASS"], new["flips"]), (2, 2, "no"))
        old = figs[DECODE + " [limit: … GB/s triad -> … tok/s]"]
        self.assertEqual((old["runs"], old["counts"]["INCONCLUSIVE"]), (1, 1))
        self.assertEqual(figs[DECODE + " [limit: ]"]["runs"], 3)
        # One batch-16 figure whichever side of the ridge a run fell on, the regimes counted.
        b = figs[b16 + " (memory-bound 1: 1/0/0, compute-bound 2: 1/0/1)"]
        self.assertEqual((b["runs"], b["counts"], b["flips"]), (3, {"PASS": 2, "INCONCLUSIVE": 0, "FAIL": 1}, "yes"))
        self.assertEqual(b["by_regime"]["compute-bound"], {"PASS": 1, "INCONCLUSIVE": 0, "FAIL": 1})

    def test_fingerprints_are_never_merged(self):
        make_run(self.d, "20261206T120000Z", "fp2", [row(DECODE, 0.50, "FAIL")])
        groups = history.aggregate(history.load_runs([self.d]))
        self.assertEqual([g["fingerprint"] for g in groups], ["fp1", "fp2"])  # most recently run first
        figs1, _ = self.figures(groups, "fp1")
        figs2, g2 = self.figures(groups, "fp2")
        self.assertEqual(figs1[DECODE]["counts"]["FAIL"], 0)
        self.assertEqual(figs2[DECODE]["counts"], {"PASS": 0, "INCONCLUSIVE": 0, "FAIL": 1})
        self.assertEqual((g2["runs"], list(figs2)), (1, [DECODE]))
        rc, out, _ = call([self.d])
        self.assertEqual(rc, 0)
        self.assertIn("fingerprint fp1: 3 run(s)", out)
        self.assertIn("fingerprint fp2: 1 run(s), 20261206T120000Z .. 20261206T120000Z", out)

    def test_since_and_last(self):
        runs = history.load_runs([self.d], since=history.parse_when("20261206"))
        self.assertEqual([r["stamp"] for r in runs], ["20261206T100000Z", "20261207T100000Z"])
        runs = history.load_runs([self.d], since=history.parse_when("2026-12-06T10:00:01Z"))
        self.assertEqual([r["stamp"] for r in runs], ["20261207T100000Z"])
        runs = history.load_runs([self.d], last=2)
        self.assertEqual([r["stamp"] for r in runs], ["20261206T100000Z", "20261207T100000Z"])
        runs = history.load_runs([self.d], since=history.parse_when("20261205T000000Z"), last=1)
        self.assertEqual([r["stamp"] for r in runs], ["20261207T100000Z"])
        rc, out, _ = call([self.d, "--since", "20261206T000000Z"])
        self.assertIn("fingerprint fp1: 2 run(s), 20261206T100000Z .. 20261207T100000Z", out)
        rc, out, err = call([self.d, "--since", "20270101"])
        self.assertEqual(rc, 1)
        self.assertIn("no runs left after filtering", err)
        rc, _, err = call([self.d, "--since", "yesterday"])
        self.assertEqual(rc, 2)
        self.assertIn("--since", err)
        self.assertIn("'yesterday'", err)

    def test_runs_ordered_by_started_at_not_folder_name(self):
        # Named early, started last: the manifest's started_at wins.
        make_run(self.d, "20261201T000000Z", "fp1", [row(DECODE, 0.60, "FAIL")], started="2026-12-09T00:00:00Z")
        runs = history.load_runs([self.d])
        self.assertEqual(runs[-1]["stamp"], "20261209T000000Z")
        figs, g = self.figures(history.aggregate(runs))
        self.assertEqual(figs[DECODE]["newest"]["verdict"], "FAIL")
        self.assertEqual(g["last"], "20261209T000000Z")
        # No manifest: the folder name's timestamp and fingerprint.
        make_run(self.d, "20261210T000000Z", "fp1", [row(DECODE, 0.95, "PASS")], manifest=False)
        self.assertEqual(history.load_runs([self.d])[-1]["stamp"], "20261210T000000Z")

    def test_explicit_folder_without_summary_is_an_error(self):
        bare = make_run(self.d, "20261204T000000Z", "fp1", None)
        rc, _, err = call([bare])
        self.assertEqual(rc, 2)
        self.assertIn(bare, err)
        self.assertIn("engine-speed.json", err)
        rc, out, err = call([self.d])  # scanned: skipped, said once
        self.assertEqual(rc, 0)
        self.assertEqual(err.count("skipped"), 1)
        self.assertIn(bare, err)
        self.assertIn("3 run(s)", out)

    def test_malformed_json_names_the_file(self):
        broken = make_run(self.d, "20261204T000000Z", "fp1", [])
        with open(os.path.join(broken, "engine-speed.json"), "w") as f:
            f.write('{"rows": [\n  {"what": "x",}\n]}')
        rc, _, err = call([self.d])
        self.assertEqual(rc, 2)
        self.assertIn(os.path.join(broken, "engine-speed.json"), err)
        self.assertIn("line 2 column", err)

    def test_markdown_escapes_pipes(self):
        piped = "paged | contiguous attention"
        make_run(self.d, "20261208T000000Z", "fp1", [row(piped, 0.97, "PASS", ">= 0.95")])
        rc, out, _ = call([self.d, "--markdown"])
        self.assertEqual(rc, 0)
        line = next(l for l in out.splitlines() if "contiguous attention" in l)
        self.assertTrue(line.startswith("| paged \\| contiguous attention | >= 0.95 | 1 | 1 | 0 | 0 |  | 0.970 |"), line)
        self.assertEqual(line.replace("\\|", "").count("|"), len(history.HEAD) + 1)
        self.assertIn("| figure | target | runs | PASS | INCONC | FAIL |", out)

    def test_json_written_and_parseable(self):
        path = os.path.join(self.d, "history.json")
        rc, _, _ = call([self.d, "--since", "20261206", "--json", path])
        self.assertEqual(rc, 0)
        with open(path) as f:
            data = json.load(f)
        self.assertEqual(data["since"], "20261206T000000Z")
        (g,) = data["fingerprints"]
        self.assertEqual((g["fingerprint"], g["runs"]), ("fp1", 2))
        dec = next(f for f in g["figures"] if f["what"] == DECODE)
        self.assertEqual((dec["counts"]["PASS"], dec["counts"]["INCONCLUSIVE"], dec["flips"]), (1, 1, "yes"))
        self.assertEqual([n for n in os.listdir(self.d) if n.startswith(".engine-speed-history.")], [])  # no temp left


if __name__ == "__main__":
    unittest.main(verbosity=2)
