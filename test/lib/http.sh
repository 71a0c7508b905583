# shellcheck shell=bash
# Helpers for script tests with HTTP steps: the Node test endpoint test/http/server.js. Source after cluster.sh:
#
#   source "$(dirname "$0")/../lib/cluster.sh"
#   source "$(dirname "$0")/../lib/http.sh"
#   trap pw_http_cleanup EXIT                 # stops the endpoint, then pw_cleanup
#   pw_http_start [--host 127.0.0.1,127.0.0.2]  # sets SRV_PID, SRV_DIR (scratch files), PORT and B (base URL)
#   srv /ok; srv_reset; srv_stat requests
#
# SRV_MAX_TIME: seconds a request of srv may take (default 5).

SRV_PID=
SRV_DIR=
SRV_MAX_TIME=${SRV_MAX_TIME:-5}

# pw_http_start [server.js options...] : start the endpoint in the background and wait (up to 10 s) for its port
pw_http_start() {
    SRV_DIR=$(mktemp -d /tmp/pw-http-server.XXXXXX)
    node "$PW_LIB_DIR/../http/server.js" "$@" >"$SRV_DIR/stdout" 2>"$SRV_DIR/stderr" &
    SRV_PID=$!
    PORT=
    pw_wait_until 10 0.1 _pw_http_port
    [ -n "$PORT" ] || pw_die "test server did not start: $(tail -n 3 "$SRV_DIR/stderr" 2>/dev/null)"
    B=http://127.0.0.1:$PORT
}
# (true once the endpoint said its port, or once it died)
_pw_http_port() {
    PORT=$(awk '$1 == "PORT" { print $2; exit }' "$SRV_DIR/stdout" 2>/dev/null)
    [ -n "$PORT" ] || ! kill -0 "$SRV_PID" 2>/dev/null
}

# pw_http_cleanup : trap handler (trap pw_http_cleanup EXIT). Stops the endpoint, shows the end of its stderr when
# a check failed, removes SRV_DIR, then pw_cleanup.
pw_http_cleanup() {
    local rc=$?
    if [ -n "$SRV_PID" ]; then
        kill "$SRV_PID" 2>/dev/null
        wait "$SRV_PID" 2>/dev/null
    fi
    if [ "$PW_FAILED" -gt 0 ] && [ -s "$SRV_DIR/stderr" ]; then
        echo "info   test server stderr:"
        tail -n 10 "$SRV_DIR/stderr" | sed 's/^/       | /'
    fi
    [ -n "$SRV_DIR" ] && rm -rf "$SRV_DIR"
    (exit "$rc")
    pw_cleanup
}

# srv PATH [METHOD] : body of a request to the endpoint (bounded by SRV_MAX_TIME)
if command -v curl >/dev/null 2>&1; then
    srv() { curl -s --max-time "$SRV_MAX_TIME" -X "${2:-GET}" "$B$1"; }
else
    srv() {
        node -e 'fetch(process.argv[1], {method: process.argv[2], signal: AbortSignal.timeout(process.argv[3] * 1000)})
                   .then(r => r.text()).then(t => process.stdout.write(t), () => process.exit(1))' \
            "$B$1" "${2:-GET}" "$SRV_MAX_TIME"
    }
fi
# srv_reset : zero the endpoint's counters (a failure when it does not answer)
srv_reset() { [ "$(srv /reset POST)" = '{"reset":true}' ] || pw_fail "test server: /reset failed"; }
# srv_stat NAME [STATS_JSON] : a top-level number of /stats (requests, keys, duplicates, no_key, in_flight,
# max_in_flight, ...), from STATS_JSON when given (one snapshot for several numbers)
srv_stat() { printf '%s' "${2:-$(srv /stats)}" | sed -n "s/.*\"$1\":\([0-9][0-9]*\).*/\1/p"; }
