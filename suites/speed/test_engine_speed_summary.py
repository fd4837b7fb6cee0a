#!/usr/bin/env python3
"""ci/engine_speed_summary.py judges a gated figure on the 95% interval of its repetitions, as
claimbench judges a claim: PASS only when the interval clears the target, FAIL only when it misses
it whole, INCONCLUSIVE when it straddles; a missing file is MISSING, never filled in. Run on
synthetic run folders (no engine): python3 test_engine_speed_summary.py SUMMARY_SCRIPT."""
import importlib.util
import json
import os
import sys
import tempfile
import unittest

SUMMARY = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "ci", "engine_speed_summary.py")
spec = importlib.util.spec_from_file_location("engine_speed_summary", SUMMARY)
summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summary)


def engine_json(decode_triad, prefill, batch16):
    """An engine-f32.json with the keys the summary reads; each figure's samples as given."""
    med = lambda s: sorted(s)[len(s) // 2]
    samples = lambda s: {"samples": s, "median": med(s), "best": max(s), "worst": min(s)}
    return {
        "decode": {"tokens_per_s": samples([10.0] * len(decode_triad)), "triad_fraction": samples(decode_triad),
                   "bw_fraction": samples(decode_triad), "triad_limit_tokens_per_s": 15.0, "bandwidth_limit_tokens_per_s": 15.0},
        "peaks": {"triad": {"value": 60.0}, "mem_read": {"value": 55.0}},
        "ratios": {"decode_triad_fraction": med(decode_triad), "decode_bw_fraction": med(decode_triad),
                   "prefill_peak_fraction": med(prefill)},
        "prefill": {"peak_gflops": 430.0, "gflops": samples([300.0]), "peak_fraction": samples(prefill)},
        "batched_decode": {"rows": [{"batch": 16, "bound": "memory", "bound_tokens_per_s": 200.0, "mfu": 0.5, "mbu": 0.5,
                                      "tokens_per_s": samples([100.0]), "roofline_fraction": med(batch16),
                                      "roofline_fraction_samples": batch16}]},
    }


def run(files):
    with tempfile.TemporaryDirectory() as d:
        for name, body in files.items():
            with open(os.path.join(d, name), "w") as f:
                json.dump(body, f)
        summary.main(d)
        with open(os.path.join(d, "engine-speed.json")) as f:
            rows = json.load(f)["rows"]
        with open(os.path.join(d, "engine-speed.md")) as f:
            return {r["what"]: r for r in rows}, f.read()


def find(rows, prefix):
    hits = [r for w, r in rows.items() if w.startswith(prefix)]
    assert len(hits) == 1, (prefix, list(rows))
    return hits[0]


class Verdicts(unittest.TestCase):
    def test_interval_matches_claim_stats(self):
        # mean 2, sd 1, n 3: 2 +/- 4.303 / sqrt(3) (claim_stats.cpp's table)
        lo, hi = summary.interval([1.0, 2.0, 3.0])
        self.assertAlmostEqual(lo, 2 - 4.303 / 3 ** 0.5, places=6)
        self.assertAlmostEqual(hi, 2 + 4.303 / 3 ** 0.5, places=6)
        self.assertIsNone(summary.interval([1.0, 2.0]))

    def test_clear_pass_fail_and_straddle(self):
        rows, md = run({"engine-f32.json": engine_json(decode_triad=[0.90, 0.91, 0.92, 0.90, 0.91],  # wholly >= 0.80
                                                       prefill=[0.30, 0.31, 0.29, 0.30, 0.30],       # wholly < 0.50
                                                       batch16=[0.48, 0.68, 0.55, 0.62, 0.58])})      # straddles 0.60
        dec = find(rows, "F32 batch-1 decode, fraction of triad")
        self.assertEqual(dec["verdict"], "PASS")
        self.assertGreater(dec["interval"][0], 0.8)
        self.assertEqual(find(rows, "F32 128-token prefill, fraction")["verdict"], "FAIL")
        b16 = find(rows, "F32 decode batch 16")
        self.assertEqual(b16["verdict"], "INCONCLUSIVE")
        self.assertLess(b16["interval"][0], 0.6)
        self.assertGreater(b16["interval"][1], 0.6)
        self.assertIn("| 95% interval |", md)
        self.assertIn("INCONCLUSIVE", md)

    def test_median_above_target_with_a_wide_interval_is_not_a_pass(self):
        # The published BF16 decode samples: median 0.81 >= 0.80, but the interval reaches 0.56.
        rows, _ = run({"engine-f32.json": engine_json([0.978, 0.81, 0.755], [0.7, 0.7, 0.7], [0.7, 0.7, 0.7])})
        dec = find(rows, "F32 batch-1 decode, fraction of triad")
        self.assertGreaterEqual(dec["value"], 0.8)
        self.assertEqual(dec["verdict"], "INCONCLUSIVE")

    def test_fewer_than_three_repetitions_keep_the_point_verdict_and_say_so(self):
        rows, _ = run({"engine-f32.json": engine_json([0.9, 0.9], [0.7, 0.7], [0.5, 0.5])})
        dec = find(rows, "F32 batch-1 decode, fraction of triad")
        self.assertEqual(dec["verdict"], "PASS")
        self.assertIsNone(dec["interval"])
        self.assertIn("fewer than 3", dec["interval_text"])
        self.assertEqual(find(rows, "F32 decode batch 16")["verdict"], "FAIL")

    def test_limit_paired_with_the_steps_is_named_and_the_mean_rate_recorded(self):
        e = engine_json([0.85, 0.86, 0.84], [0.7, 0.7, 0.7], [0.7, 0.7, 0.7])
        e["decode"].update({"bytes_per_token": 4.4e9, "triad_gbs_per_repetition": [56.0, 57.0, 55.0],
                            "triad_mean_gbs_per_repetition": [50.0, 52.0, 48.0],
                            "triad_mean_fraction": {"samples": [0.95, 0.97, 1.01], "median": 0.97}})
        rows, _ = run({"engine-f32.json": e})
        dec = find(rows, "F32 batch-1 decode, fraction of triad")
        self.assertEqual(dec["verdict"], "PASS")
        self.assertIn("best triad pass between the steps, median 56.0 GB/s", dec["limit"])
        mean = find(rows, "F32 batch-1 decode, fraction of the mean triad rate")
        self.assertEqual(mean["verdict"], "RECORDED")  # never gated
        self.assertAlmostEqual(mean["value"], 0.97)

    def test_decode_is_judged_step_by_step_and_the_best_pass_recorded(self):
        # The best pass reads 0.78-0.82 (INCONCLUSIVE were it gated); each step against the pass
        # right before it 0.90-0.93: the paired figure is the gated one, the envelope recorded.
        e = engine_json([0.78, 0.80, 0.82], [0.7, 0.7, 0.7], [0.7, 0.7, 0.7])
        e["decode"].update({"bytes_per_token": 4.4e9, "triad_gbs_per_repetition": [70.0, 72.0, 71.0],
                            "triad_mean_gbs_per_repetition": [60.0, 61.0, 62.0],
                            "triad_mean_fraction": {"samples": [0.91, 0.92, 0.93], "median": 0.92},
                            "step_seconds_per_repetition": [[0.08, 0.08]] * 3,
                            "triad_pass_gbs_per_repetition": [[58.0, 71.5], [60.0, 62.0], [59.0, 61.0]],
                            "triad_paired_fraction": {"samples": [0.90, 0.93, 0.92], "median": 0.92}})
        e["ratios"]["decode_triad_paired_fraction"] = 0.92
        rows, md = run({"engine-f32.json": e})
        dec = find(rows, "F32 batch-1 decode, fraction of triad")
        self.assertEqual(dec["verdict"], "PASS")
        self.assertAlmostEqual(dec["value"], 0.92)
        self.assertIn("each step against the triad pass right before it (passes 58.0-71.5 GB/s)", dec["limit"])
        self.assertIn("median of its 2 steps", dec["detail"])
        best = find(rows, "F32 batch-1 decode, fraction of the best triad pass")
        self.assertEqual(best["verdict"], "RECORDED")
        self.assertAlmostEqual(best["value"], 0.80)
        # Paired steps below the target fail as the envelope would.
        e["decode"]["triad_paired_fraction"] = {"samples": [0.70, 0.72, 0.71], "median": 0.71}
        e["ratios"]["decode_triad_paired_fraction"] = 0.71
        rows, _ = run({"engine-f32.json": e})
        self.assertEqual(find(rows, "F32 batch-1 decode, fraction of triad")["verdict"], "FAIL")
        # The planted row follows the gated figure.
        planted = json.loads(json.dumps(e))
        planted["ratios"]["decode_triad_paired_fraction"] = 0.36
        rows, _ = run({"engine-f32.json": e, "engine-planted-matmul-twice.json": planted})
        r = find(rows, "planted defect matmul-twice: F32 batch-1 decode")
        self.assertAlmostEqual(r["value"], 0.36 / 0.71)
        self.assertEqual(r["verdict"], "PASS")

    def test_planted_defect_rows_cover_decode_prefill_and_batch_16(self):
        clean = engine_json([0.9, 0.9, 0.9], [0.7, 0.7, 0.7], [0.70, 0.70, 0.70])
        planted = engine_json([0.5, 0.5], [0.36, 0.36], [0.63, 0.63])  # batch 16 barely moved: the defect not seen there
        rows, _ = run({"engine-f32.json": clean, "engine-planted-matmul-twice.json": planted})
        self.assertEqual(find(rows, "planted defect matmul-twice: F32 batch-1 decode")["verdict"], "PASS")
        self.assertEqual(find(rows, "planted defect matmul-twice: F32 128-token prefill")["verdict"], "PASS")
        b16 = find(rows, "planted defect matmul-twice: F32 decode batch 16")
        self.assertAlmostEqual(b16["value"], 0.9)
        self.assertEqual(b16["verdict"], "FAIL")

    def test_paged_target_is_on_the_engine_placement_and_the_worst_case_is_recorded(self):
        m = lambda key, samples, **params: {"key": key, "value": sorted(samples)[len(samples) // 2], "samples": samples,
                                            "params": params}
        kernels = {"metrics": [m("kernels.attention.paged_vs_contiguous.ctx4096.engine_placement", [0.97, 0.98, 0.99, 0.98, 0.975],
                                 mean_run_blocks=128.0),
                               m("kernels.attention.paged_vs_contiguous.ctx4096", [0.81, 0.82, 0.83, 0.82, 0.82])]}
        rows, md = run({"kernels.json": kernels})
        placed = find(rows, "paged / contiguous attention throughput, 8 sequences at 4K context, the engine's block placement")
        self.assertEqual(placed["verdict"], "PASS")
        self.assertIn("runs of 128 blocks", md)
        self.assertEqual(find(rows, "paged (shuffled blocks: worst case)")["verdict"], "RECORDED")
        kernels["metrics"].append({"key": "kernels.attention.engine_placement.prefix_cache.mean_run_blocks", "value": 1.05,
                                   "samples": [], "params": {"jumps_per_sequence": 243.1, "evictions": 9380,
                                                             "prefix_hits": 4144, "prefix_queries": 4377}})
        pc = find(run({"kernels.json": kernels})[0], "the engine's placement with the prefix cache on")
        self.assertEqual((pc["verdict"], pc["value"]), ("RECORDED", 1.05))
        self.assertIn("128 with it off", pc["limit"])
        self.assertIn("243 jumps a sequence", pc["detail"])
        kernels["metrics"][0]["samples"] = [0.80, 0.81, 0.82]  # scattered (kv-scatter): below 0.95 whole
        rows, _ = run({"kernels.json": kernels})
        self.assertEqual(find(rows, "paged / contiguous attention throughput")["verdict"], "FAIL")

    def test_paged_target_comes_from_the_pairs_own_run_where_there_is_one(self):
        m = lambda key, samples: {"key": key, "value": sorted(samples)[len(samples) // 2], "samples": samples,
                                  "params": {"mean_run_blocks": 128.0}}
        placed = "kernels.attention.paged_vs_contiguous.ctx4096.engine_placement"
        quick = {"metrics": [m(placed, [0.886, 0.953, 0.959, 0.965, 0.973]),
                             m("kernels.attention.paged_vs_contiguous.ctx4096", [0.82, 0.82, 0.82])]}
        own = {"metrics": [m(placed, [0.975, 0.961, 0.971, 0.936, 0.991, 0.969, 0.97, 1.01, 0.976, 0.992, 0.975, 1.016,
                                      0.961, 0.998, 0.903])]}
        planted = {"metrics": [{"key": placed, "value": 0.80, "samples": [0.8] * 3, "params": {"mean_run_blocks": 1.0}}]}
        find_placed = lambda rows: find(rows, "paged / contiguous attention throughput, 8 sequences at 4K context, the engine")
        self.assertEqual(find_placed(run({"kernels.json": quick})[0])["verdict"], "INCONCLUSIVE")  # 5 repetitions
        rows, _ = run({"kernels.json": quick, "kernels-paged-pair.json": own, "kernels-planted-kv-scatter.json": planted})
        r = find_placed(rows)
        self.assertEqual((r["verdict"], r["value"]), ("PASS", 0.975))  # the 15 of its own run
        self.assertIn("of 15", r["interval_text"])
        # The planted run is divided by the same clean figure the target is judged on.
        self.assertAlmostEqual(find(rows, "planted defect kv-scatter")["value"], 0.80 / 0.975)

    def test_planted_kv_scatter_is_judged_only_where_scattered_blocks_cost_time(self):
        m = lambda key, v, **params: {"key": key, "value": v, "samples": [v, v, v], "params": params}
        placed = "kernels.attention.paged_vs_contiguous.ctx4096.engine_placement"
        clean = {"metrics": [m(placed, 0.98, mean_run_blocks=128.0), m("kernels.attention.paged_vs_contiguous.ctx4096", 0.82)]}
        planted = {"metrics": [m(placed, 0.80, mean_run_blocks=1.0)]}
        rows, md = run({"kernels.json": clean, "kernels-planted-kv-scatter.json": planted})
        r = find(rows, "planted defect kv-scatter")
        self.assertAlmostEqual(r["value"], 0.80 / 0.98)
        self.assertEqual(r["verdict"], "PASS")
        self.assertIn("runs of 1.0 blocks", r["detail"])
        planted["metrics"][0]["value"] = 0.97  # the scatter not seen
        self.assertEqual(find(run({"kernels.json": clean, "kernels-planted-kv-scatter.json": planted})[0],
                              "planted defect kv-scatter")["verdict"], "FAIL")
        clean["metrics"][1]["value"] = 0.95  # a machine whose prefetchers follow scattered blocks
        r = find(run({"kernels.json": clean, "kernels-planted-kv-scatter.json": planted})[0], "planted defect kv-scatter")
        self.assertEqual(r["verdict"], "RECORDED")
        self.assertIn("cost this machine little (0.950)", r["detail"])
        self.assertEqual(find(run({"kernels.json": clean})[0], "planted defect kv-scatter")["verdict"], "MISSING")

    def test_gemm_peer_rows_are_recorded_against_the_faster_onednn_path(self):
        m = lambda key, v, samples=None: {"key": key, "value": v, "samples": samples or [v], "params": {}}
        sh = "K2048_N32000"
        g = {"metrics": [m(f"kernels.matmul.cpu_vs_onednn.{sh}.M16", 1.26, [1.35, 1.26, 1.24]),
                         m(f"kernels.bench.matmul.cpu.f32.{sh}.M16.gflops", 295.0),
                         m(f"kernels.bench.matmul.onednn_matmul.f32.{sh}.M16.gflops", 224.0),
                         m(f"kernels.bench.matmul.onednn_sgemm.f32.{sh}.M16.gflops", 60.0)]}
        rows, _ = run({"kernels-gemm-peers.json": g})
        r = find(rows, "F32 GEMM lm_head (262 MB) at 16 rows vs oneDNN")
        self.assertEqual(r["verdict"], "RECORDED")  # a peer, never a target
        self.assertAlmostEqual(r["value"], 1.26)
        self.assertIn("ours 295, primitive 224, sgemm 60", r["detail"])
        self.assertEqual(find(rows, "F32 GEMM down (46 MB) at 128 rows vs oneDNN")["verdict"], "MISSING")

    def test_op_profile_read_limit_names_both_windows_where_the_run_has_them(self):
        pk = {"mem_read": {"value": 50.0}}
        bracketed = {"read_gbs": 61.0, "read_gbs_before": 36.4, "read_gbs_after": 61.0}
        self.assertEqual(summary.read_limit_detail(bracketed, pk), "61.0 GB/s read (before 36.4, after 61.0)")
        self.assertEqual(summary.read_limit_detail({"read_gbs": 36.4}, pk), "36.4 GB/s read")  # older runs: one window
        self.assertEqual(summary.read_limit_detail({}, pk), "50.0 GB/s read")  # oldest: the run's peak

    def test_missing_files_are_missing(self):
        rows, _ = run({})
        self.assertEqual(find(rows, "F32 batch-1 decode")["verdict"], "MISSING")
        self.assertEqual(find(rows, "BF16-dot 128-token prefill")["verdict"], "MISSING")
        self.assertEqual(find(rows, "paged / contiguous")["verdict"], "MISSING")


if __name__ == "__main__":
    unittest.main(verbosity=2)
