#!/usr/bin/env bash
# `refengine serve` as a user runs it: start on a free loopback port, wait for the listening line,
# curl a completion and a streaming completion, then SIGTERM while a long stream is in flight: the
# stream must complete ([DONE]) and the server must exit 0.
#   serve_smoke.sh REFENGINE WORKDIR
set -u
RE=$1
WORK=$2
mkdir -p "$WORK"
OUT=$WORK/serve.out
ERR=$WORK/serve.err
fail() {
  echo "FAIL: $*" >&2
  echo "--- server stdout" >&2; cat "$OUT" >&2
  echo "--- server stderr" >&2; cat "$ERR" >&2
  [ -n "${PID:-}" ] && kill -KILL "$PID" 2>/dev/null
  exit 1
}

# 5 ms per engine step: the long stream below is surely in flight when SIGTERM arrives.
"$RE" serve --port 0 --max-queue 8 --step-delay-ms 5 >"$OUT" 2>"$ERR" &
PID=$!
URL=""
for _ in $(seq 1 300); do
  URL=$(sed -n 's|^refengine serve: listening on \(http://127\.0\.0\.1:[0-9][0-9]*\)$|\1|p' "$OUT" | head -1)
  [ -n "$URL" ] && break
  kill -0 "$PID" 2>/dev/null || fail "the server exited before listening"
  sleep 0.1
done
[ -n "$URL" ] || fail "no listening line within 30 s"
echo "server at $URL"

BODY=$(curl -sS --max-time 30 -H 'Content-Type: application/json' \
  -d '{"prompt":"Hello","max_tokens":8,"temperature":0,"ignore_eos":true}' "$URL/v1/completions") || fail "completion request failed"
echo "$BODY" | grep -q '"object":"text_completion"' || fail "not a text_completion: $BODY"
echo "$BODY" | grep -q '"completion_tokens":8' || fail "expected 8 completion tokens: $BODY"

STREAM=$(curl -sS -N --max-time 30 -H 'Content-Type: application/json' \
  -d '{"prompt":"Hello","max_tokens":6,"stream":true}' "$URL/v1/completions") || fail "streaming request failed"
[ "$(echo "$STREAM" | grep -c '^data: {')" -ge 2 ] || fail "expected several data chunks: $STREAM"
echo "$STREAM" | grep -q '^data: \[DONE\]$' || fail "stream did not end with [DONE]: $STREAM"

CODE=$(curl -s -o /dev/null -w '%{http_code}' -d '{"prompt":"x","max_tokens":0}' "$URL/v1/completions")
[ "$CODE" = 400 ] || fail "max_tokens 0 gave HTTP $CODE, expected 400"

# A long stream in flight when SIGTERM arrives must still complete.
curl -sS -N --max-time 60 -H 'Content-Type: application/json' \
  -d '{"prompt":"drain","max_tokens":200,"ignore_eos":true,"stream":true}' "$URL/v1/completions" >"$WORK/long.sse" &
CURL=$!
for _ in $(seq 1 200); do
  grep -q '^data: {' "$WORK/long.sse" 2>/dev/null && break
  sleep 0.05
done
grep -q '^data: {' "$WORK/long.sse" || fail "the long stream did not start"
kill -TERM "$PID"
wait "$PID"
RC=$?
wait "$CURL"
[ "$RC" = 0 ] || fail "refengine serve exited $RC after SIGTERM, expected 0"
grep '^data: ' "$WORK/long.sse" | tail -1 | grep -q '^data: \[DONE\]$' || { tail -c 300 "$WORK/long.sse" >&2; fail "the in-flight stream was cut off by the drain"; }
grep -q '"completion_tokens":200' "$WORK/long.sse" || fail "the in-flight stream did not get all its tokens"
grep -q 'draining' "$ERR" || fail "no drain message on stderr"
echo "PASS: completion, stream, 400, drain on SIGTERM with a stream in flight, exit 0"
