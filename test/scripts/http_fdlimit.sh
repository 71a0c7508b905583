#!/bin/bash
# HTTP steps under a low open-file limit (a server started from a shell often gets 1,024, here 256 soft and hard):
# the worker must stay under it -- fewer requests in flight than pipeline_worker.http_max_in_flight asks for --
# log clearly that the limit binds, and fail no request because of it.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../lib/cluster.sh"
SRV_PID=
SRV_DIR=$(mktemp -d /tmp/pw-http-fd.XXXXXX)
fd_cleanup() {
    local rc=$?
    [ -n "$SRV_PID" ] && { kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; }
    rm -rf "$SRV_DIR"
    (exit "$rc")
    pw_cleanup
}
trap fd_cleanup EXIT

node "$HERE/../http/server.js" >"$SRV_DIR/stdout" 2>"$SRV_DIR/stderr" &
SRV_PID=$!
PORT=
for _ in $(seq 1 100); do
    PORT=$(awk '$1 == "PORT" { print $2; exit }' "$SRV_DIR/stdout" 2>/dev/null)
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || pw_die "test server did not start"
srv() { curl -s --max-time 10 -X "${2:-GET}" "http://127.0.0.1:$PORT$1"; }

PW_PGCTL_WRAP="prlimit --nofile=256:256 --" PW_WORKERS=1 pw_cluster_start http_fdlimit \
    "pipeline_worker.http_allowed_hosts = '127.0.0.1'" "pipeline_worker.http_max_in_flight = 1000"
pid=$(head -1 "$PW_DATA/postmaster.pid")
pw_check "the server runs with an open file limit of 256" 256 "$(awk '/Max open files/ {print $4}' /proc/$pid/limits)"

pw_psql <<SQL >/dev/null || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
SELECT pipeline_worker.create_pipeline('slowish', '[{"name": "call", "http": {"url": "http://127.0.0.1:$PORT/delay?ms=100"}}]');
SQL
srv /reset POST >/dev/null
pw_psql -c "SELECT count(pipeline_worker.create_run('slowish')) FROM generate_series(1, 200)" >/dev/null
ok=
for _ in $(seq 1 300); do   # up to 30 s
    left=$(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')")
    [ "$left" = 0 ] && { ok=1; break; }
    sleep 0.1
done
[ -n "$ok" ] && pw_ok "200 runs finished under the limit" || pw_fail "runs still unfinished after 30 s: $left"
pw_check_sql "every run succeeded (no request failed because of the limit)" 200 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'"
stats=$(srv /stats)
max=$(echo "$stats" | sed -n 's/.*"max_in_flight":\([0-9]*\).*/\1/p')
pw_info "endpoint: $stats"
if [ -n "$max" ] && [ "$max" -ge 1 ] && [ "$max" -lt 100 ]; then
    pw_ok "requests in flight stayed under the file limit (peak $max, not http_max_in_flight = 1000)"
else
    pw_fail "requests in flight: peak '$max'"
fi
pw_check "the endpoint received exactly 200 requests" 200 "$(echo "$stats" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p')"
if grep -q "the open file limit (256) holds this worker to [0-9]* HTTP requests in flight instead of pipeline_worker.http_max_in_flight = 1000" "$PW_LOG"; then
    pw_ok "the worker logs that the open file limit binds"
else
    pw_fail "no log line about the open file limit"
fi
pw_check "logged once, not per request" 1 "$(grep -c 'the open file limit' "$PW_LOG")"
if grep -qiE "too many open files|EMFILE" "$PW_LOG"; then pw_fail "the server ran out of file descriptors"
else pw_ok "no 'too many open files' anywhere in the server log"; fi
pw_finish
