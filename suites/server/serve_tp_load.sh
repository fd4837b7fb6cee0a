#!/usr/bin/env bash
# A tensor-parallel server as a user runs it: `mpirun -n 2 refengine serve --tp 2` must answer
# exactly what one rank answers (greedy, n = 2 so the forked samples' copy-on-write KV blocks reach
# the follower too), carry the quick load suite over HTTP, and drain and exit on SIGTERM to mpirun.
#   serve_tp_load.sh REFENGINE CLAIMBENCH MPIEXEC WORKDIR
set -u
RE=$1
CB=$2
MPIEXEC=$3
WORK=$4
rm -rf "$WORK"
mkdir -p "$WORK"
PID=""
fail() {
  echo "FAIL: $*" >&2
  for f in "$WORK"/*.out "$WORK"/*.err; do [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
  exit 1
}

# start NAME CMD...: runs CMD in the background, sets PID and URL once it prints its listening line.
start() {
  local name=$1
  shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PID=$!
  URL=""
  for _ in $(seq 1 600); do
    URL=$(sed -n 's|^refengine serve: listening on \(http://127\.0\.0\.1:[0-9][0-9]*\)$|\1|p' "$WORK/$name.out" | head -1)
    [ -n "$URL" ] && return 0
    kill -0 "$PID" 2>/dev/null || fail "$name exited before listening"
    sleep 0.1
  done
  fail "$name printed no listening line within 60 s"
}

stop() {
  kill -TERM "$PID" 2>/dev/null
  for _ in $(seq 1 300); do
    kill -0 "$PID" 2>/dev/null || { wait "$PID"; local rc=$?; PID=""; return $rc; }
    sleep 0.1
  done
  fail "still running 30 s after SIGTERM"
}

PROMPTS=("copy:tensor|" "rev:parallel|" "add:345+678=" "brk:([{}])?" "rec:a12 b34 c56?b34 c")
answers() {  # the greedy texts of every prompt, two samples each, one line per sample
  for p in "${PROMPTS[@]}"; do
    curl -sS --max-time 60 -H 'Content-Type: application/json' \
      -d "{\"prompt\":\"$p\",\"max_tokens\":12,\"temperature\":0,\"n\":2}" "$URL/v1/completions" |
      python3 -c 'import json,sys; [print(repr(c["text"])) for c in json.load(sys.stdin)["choices"]]' ||
      fail "completion of '$p' failed"
  done
}

start tp1 "$RE" serve --port 0
answers >"$WORK/tp1.txt"
stop || fail "tp 1 server exited non-zero"

start tp2 "$MPIEXEC" -n 2 "$RE" serve --port 0 --tp 2
grep -q "tensor parallel 2 over mpi" "$WORK/tp2.out" || fail "the server does not report tensor parallel 2 over mpi"
answers >"$WORK/tp2.txt"
diff "$WORK/tp1.txt" "$WORK/tp2.txt" || fail "tp 2 answers differ from tp 1"
echo "tp 2 answers equal tp 1 ($(wc -l <"$WORK/tp2.txt") samples)"

"$CB" run --suite load --quick --sut "$URL" --out "$WORK/runs" >"$WORK/claimbench.out" 2>&1 || fail "claimbench load suite failed"
python3 - "$WORK/runs" <<'EOF' || fail "load.json of the tp 2 run is not ok"
import glob, json, sys
[f] = glob.glob(sys.argv[1] + "/*/load.json")
j = json.load(open(f))
rps = {m["key"]: m["value"] for m in j["metrics"]}.get("load.throughput.requests_per_s", 0)
assert j["status"] == "ok" and rps > 0, (j["status"], rps)
print(f"load suite against the tp 2 server: load.throughput.requests_per_s = {rps:.1f}")
EOF
# mpirun forwards SIGTERM to every rank, then reports the signal in its own exit status, so what
# counts is that rank 0 drained and every rank is gone.
stop
echo "mpirun exit status after SIGTERM: $?"
grep -q "drained, exiting" "$WORK/tp2.err" || fail "rank 0 did not drain"
pgrep -f "$RE serve --port 0 --tp 2" >/dev/null && fail "a rank outlived mpirun"
echo "PASS: tensor-parallel server"
