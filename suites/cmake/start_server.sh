# Sourced by the end-to-end test scripts (load.cmake, accuracy_http.cmake, server_doubles.cmake).
# start_server NAME LOG CMD...: runs CMD in the background with its output in LOG, stops it on
# every exit path (bash trap), and waits up to 60 s for its "listening on http://HOST:PORT" line.
# Sets $url and $pid; exits the script with the log when the server dies or never listens.
start_server() {
  local name="$1" log="$2"
  shift 2
  "$@" > "$log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null' EXIT
  url=""
  for _ in $(seq 1 600); do
    url=$(grep -o 'listening on http://[0-9.]*:[0-9]*' "$log" | head -1 | sed 's/^listening on //')
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "$name exited before listening:"; cat "$log"; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "$name printed no listening line in 60 s:"; cat "$log"; exit 1; }
  echo "$name: $url (pid $pid)"
}
