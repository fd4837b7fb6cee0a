#!/usr/bin/env python3
"""Checks a cb_kernel_bench JSON run (ctest kernels.bench_case_counters): each benchmark below ran
without error, has exactly the counters listed (the kernels suite reads GFLOP/s, GB/s, M, N, K and
the label; results/ baselines were measured with these), and its bytes and flops per iteration
(rate x time per iteration) are the formula values the baselines were measured with.

Usage: check_counters.py RUN.json"""
import json, sys

RATES = {"GFLOP/s", "GB/s"}
ATTENTION = ({"M": 1, "ctx": 512, "heads": 32, "kv_heads": 4, "head_dim": 64},
             # 4 * head_dim per (query head, visible key); q + out, K and V of 512 tokens, 32 block-table entries
             4 * 64 * 32 * 512, 8 * 32 * 64 + 8 * 512 * 4 * 64 + 4 * 32)
RMSNORM = ({"M": 1, "D": 2048}, 4 * 2048, 8 * 2048 + 4 * 2048)
# name: (label, counters, flops per iteration, bytes per iteration)
WANT = {
    "rmsnorm/cpu/f32/D2048/M1/real_time": ("cpu f32 (weight f32)",) + RMSNORM,
    "kv_store/cpu/f32/KV4_D64_B16/M1/real_time": ("cpu f32 block 16, pos0 1000", {"M": 1, "kv_heads": 4, "head_dim": 64},
                                                  0, 2 * 256 * 4 * 2),
    "silu_mul/cpu/f32/F5632/M1/real_time": ("cpu f32", {"M": 1, "F": 5632}, 4 * 5632, 3 * 5632 * 4),
    "attention/cpu/f32/H32_KV4_D64_B16/decode_ctx512/M1/real_time": ("cpu f32 paged block 16, decode",) + ATTENTION,
    "op/cpu/rmsnorm/f32/D2048/M1/real_time": ("cpu rmsnorm(w f32, M=1, D=2048, eps=1e-05)",) + RMSNORM,
    "op/cpu/attention/f32/H32_KV4_D64_B16/C512/M1/real_time":
        ("cpu attention(heads=32, block=16, kv_heads=4, head_dim=64, seqs=[1@511], pool=32)",) + ATTENTION,
    # int8 weight + f32 per-channel scales, x read, y written: as matmul/cpu/int8pc/K2048_N256/M1
    "op/cpu/matmul/int8pc/K2048_N256/M1/real_time": ("cpu matmul(i8/ch, M=1, K=2048, N=256)", {"M": 1, "N": 256, "K": 2048},
                                                     2 * 2048 * 256, 2048 * 256 + 4 * 256 + 4 * (2048 + 256)),
    # the oneDNN matmul primitive peers: f32 as matmul/cpu/f32 (W + x + y); int8 W and x, int32 y
    "matmul/onednn_matmul/f32/K2048_N256/M1/real_time": ("onednn matmul f32 k/v proj", {"M": 1, "N": 256, "K": 2048},
                                                        2 * 2048 * 256, 4 * 2048 * 256 + 4 * (2048 + 256)),
    "matmul/onednn_matmul/w8a8/K2048_N256/M1/real_time": ("onednn matmul s8s8s32 k/v proj", {"M": 1, "N": 256, "K": 2048},
                                                         2 * 2048 * 256, 2048 * 256 + 2048 + 4 * 256),
    # bf16 W, x and y counted as matmul/cpu/bf16dot counts them (kt::matmul_bytes of a bf16 weight)
    "matmul/onednn_matmul/bf16dot/K2048_N256/M1/real_time": ("onednn matmul bf16 k/v proj", {"M": 1, "N": 256, "K": 2048},
                                                            2 * 2048 * 256, 2 * 2048 * 256 + 4 * (2048 + 256)),
}
# oneDNN has no bf16 kernel on CPUs without AVX512_BF16 / AMX: the peer says "unsupported".
MAY_BE_UNSUPPORTED = {"matmul/onednn_matmul/bf16dot/K2048_N256/M1/real_time"}
UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
STANDARD = {"name", "family_index", "per_family_instance_index", "run_name", "run_type", "repetitions", "repetition_index",
            "threads", "iterations", "real_time", "cpu_time", "time_unit", "label"}

run = json.load(open(sys.argv[1]))
got = {e["name"]: e for e in run["benchmarks"]}
problems = []
for name, (label, counters, flops, nbytes) in WANT.items():
    e = got.get(name)
    if e is None:
        problems.append(f"{name}: not in the run")
        continue
    if e.get("error_occurred"):
        msg = e.get("error_message", "")
        if name in MAY_BE_UNSUPPORTED and msg.startswith("unsupported:"):
            print(f"note: {name}: {msg} (no such peer on this CPU)")
        else:
            problems.append(f"{name}: error {msg}")
        continue
    if e.get("label") != label:
        problems.append(f"{name}: label {e.get('label')!r}, want {label!r}")
    extra = set(e) - STANDARD
    if extra != RATES | set(counters):
        problems.append(f"{name}: counters {sorted(extra)}, want {sorted(RATES | set(counters))}")
    for k, v in counters.items():
        if e.get(k) != v:
            problems.append(f"{name}: {k} = {e.get(k)}, want {v}")
    secs = e["real_time"] * UNIT[e["time_unit"]]
    if not secs > 0:
        problems.append(f"{name}: real_time {e['real_time']}")
        continue
    for rate, want in (("GFLOP/s", flops), ("GB/s", nbytes)):
        per_iter = e.get(rate, float("nan")) * 1e9 * secs
        if not abs(per_iter - want) <= 1e-6 * max(want, 1):
            problems.append(f"{name}: {rate} x time = {per_iter:.1f} per iteration, want {want}")
unexpected = set(got) - set(WANT)
if unexpected:
    problems.append(f"benchmarks the filter should not have run: {sorted(unexpected)}")
for p in problems:
    print("FAIL", p)
if problems:
    sys.exit(1)
print(f"counters: {len(WANT)} benchmarks checked (labels, counter sets, bytes and flops per iteration)")
