# shellcheck shell=bash
# Helpers for pipeline_worker script tests.  Source this file from a test script:
#
#   source "$(dirname "$0")/../lib/cluster.sh"
#   trap pw_cleanup EXIT
#   PW_WORKERS=4 pw_cluster_start mytest "log_min_messages = debug1"
#   pw_psql -c "CREATE EXTENSION pipeline_worker"
#   [ "$(pw_psql -c 'SELECT 1')" = 1 ] && pw_ok "select works" || pw_fail "select broken"
#   pw_finish
# or, with 4 workers waited for (up to 20 s) and test/lib/fixtures.sql loaded:
#   pw_cluster_up mytest 4 20 "log_min_messages = debug1"
#   pw_load_fixtures
# HTTP steps against the test endpoint: test/lib/http.sh.
#
# Every server process runs as the OS user postgres (PostgreSQL refuses root); psql runs as the
# calling user and connects over the cluster's private unix socket with trust authentication.
#
# Environment knobs:
#   PW_BINDIR       PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   PW_WORKERS      pipeline_worker.workers for pw_cluster_start (default 4)
#   PW_PRELOAD      shared_preload_libraries (default pipeline_worker)
#   PW_KEEP=1       keep /tmp/pw-NAME after the script (it is always kept when a check failed)
#   PW_OS_USER      OS user running the server (default postgres)
#   PW_EXTRA_CONF   more postgresql.conf lines for every cluster (newline separated), appended last
#   PW_PGCTL_WRAP   command prefix for pg_ctl start (e.g. "prlimit --nofile=256:256 --")

PW_BINDIR=${PW_BINDIR:-/usr/lib/postgresql/15/bin}
PW_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PW_OS_USER=${PW_OS_USER:-postgres}
PW_PASSED=0
PW_FAILED=0
PW_FINISHED=0
PW_CLUSTER_DIR=
PW_DATA=
PW_LOG=

# ------------------------------------------------------------------ reporting

pw_ok()   { PW_PASSED=$((PW_PASSED + 1)); printf 'ok     %s\n' "$*"; }
pw_fail() { PW_FAILED=$((PW_FAILED + 1)); printf 'FAIL   %s\n' "$*"; }
pw_info() { printf 'info   %s\n' "$*"; }

# pw_check DESCRIPTION EXPECTED ACTUAL : ok when equal, otherwise a failure showing both.
pw_check() {
    local desc=$1 expected=$2 actual=$3
    if [ "$expected" = "$actual" ]; then
        pw_ok "$desc"
    else
        pw_fail "$desc (expected '$expected', got '$actual')"
    fi
}

# pw_check_sql DESCRIPTION EXPECTED SQL : runs SQL (one value) and compares.
pw_check_sql() {
    local desc=$1 expected=$2 sql=$3 actual
    actual=$(pw_psql -c "$sql" 2>&1)
    pw_check "$desc" "$expected" "$actual"
}

# pw_die MSG : a failure that makes going on pointless (no cluster, ...). Exits through pw_cleanup.
pw_die() {
    pw_fail "$*"
    exit 1
}

# pw_check_indexes : amcheck's bt_index_check with heapallindexed on every btree index of the extension's tables
# in every database of the cluster that has the extension: each index holds every row version it should, and its
# structure is sound. Run by pw_finish, so every scenario (crashes, limits, retention, direct writes without a
# statement) ends with it. Skipped, with a line saying so, when the server is not up or amcheck cannot be created
# there (a standby).
pw_check_indexes() {
    [ -n "$PW_DATA" ] && [ -f "$PW_DATA/postmaster.pid" ] || return 0
    local dbs db out schema
    dbs=$(pw_psql -d postgres -c "SET search_path = pg_catalog" -c "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1" 2>/dev/null) || {
        pw_info "indexes not checked: the server does not answer"
        return 0
    }
    for db in $dbs; do
        pw_psql -d "$db" -c "SET search_path = pg_catalog" -c "SELECT 1 FROM pg_extension WHERE extname = 'pipeline_worker'" 2>/dev/null | grep -q 1 || continue
        # (in a schema of its own: a test may have given the role a hostile search_path)
        if ! schema=$(pw_psql -d "$db" -c "SET search_path = pg_catalog" -c "CREATE SCHEMA IF NOT EXISTS pw_amcheck" \
                        -c "CREATE EXTENSION IF NOT EXISTS amcheck SCHEMA pw_amcheck" \
                        -c "SELECT quote_ident(extnamespace::regnamespace::text) FROM pg_extension WHERE extname = 'amcheck'" 2>/dev/null); then
            pw_info "indexes not checked in $db: amcheck cannot be created there"
            continue
        fi
        if out=$(pw_psql -d "$db" -c "SET search_path = pg_catalog" \
                         -c "SELECT count($schema.bt_index_check(i.indexrelid, true))
                               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                               JOIN pg_am a ON a.oid = c.relam
                              WHERE i.indrelid IN (SELECT objid FROM pg_depend WHERE refobjid =
                                        (SELECT oid FROM pg_extension WHERE extname = 'pipeline_worker')
                                        AND classid = 'pg_class'::regclass)
                                AND a.amname = 'btree' AND i.indisvalid AND i.indisready" 2>&1); then
            pw_ok "database $db: $out btree indexes of the extension's tables hold every row (amcheck, heapallindexed)"
        else
            pw_fail "database $db: amcheck found an index of the extension's tables damaged: $(echo "$out" | head -3 | paste -sd' ')"
        fi
    done
}

# pw_finish : print the summary line and exit with the right status.
pw_finish() {
    pw_check_indexes
    PW_FINISHED=1
    echo "$PW_PASSED passed, $PW_FAILED failed"
    if [ "$PW_FAILED" -gt 0 ]; then exit 1; fi
    exit 0
}

# ------------------------------------------------------------------ helpers

pw_as_pg() { (cd /tmp && runuser -u "$PW_OS_USER" -- "$@"); }

pw_psql() { "$PW_BINDIR/psql" -X -v ON_ERROR_STOP=1 -Atq "$@"; }

# pw_session_open OUT BEFORE_SQL [AFTER_SQL] : a psql session in the background (its pid in PW_SESSION_PID) that runs
# BEFORE_SQL, then stays open -- its transaction, locks, LISTEN -- until pw_session_close, which has it run AFTER_SQL
# and waits for it to end. Its output (notifications included) goes to OUT. One such session at a time. (For what must
# last until the checks are done: a fixed pg_sleep may run out first on a slow machine.)
pw_session_open() {
    PW_SESSION_KEEP=$(mktemp)
    { printf '%s\n' "$2"; while [ -e "$PW_SESSION_KEEP" ]; do sleep 0.1; done; printf '%s\n' "${3:-}"; } \
        | pw_psql >"$1" 2>&1 &
    PW_SESSION_PID=$!
}
pw_session_close() { rm -f "$PW_SESSION_KEEP"; wait "$PW_SESSION_PID"; }

# a port nobody listens on (the socket lives in our own directory, so this is mostly hygiene)
pw_free_port() {
    local port tries=0
    while [ $tries -lt 200 ]; do
        port=$((20000 + RANDOM % 30000))
        tries=$((tries + 1))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
           && ! ls /tmp/pw-*/.s.PGSQL."$port" >/dev/null 2>&1 \
           && ! ls /tmp/.s.PGSQL."$port" >/dev/null 2>&1 \
           && ! ls /var/run/postgresql/.s.PGSQL."$port" >/dev/null 2>&1; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# pw_now : seconds since the epoch with fractions
pw_now() { date +%s.%N; }
# pw_elapsed START : seconds since START (from pw_now), 3 decimals
pw_elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.3f", e - s }'; }
# pw_left START TOTAL_S : seconds left (3 decimals, 0 when none) until TOTAL_S seconds after START (from pw_now)
pw_left() { awk -v s="$1" -v n="$2" -v e="$(date +%s.%N)" 'BEGIN { r = s + n - e; printf "%.3f", (r > 0 ? r : 0) }'; }
# pw_lt A B : true when number A < number B
pw_lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
# pw_int_array "1 2 3" : the SQL literal '{1,2,3}'::int[] (e.g. of pw_worker_pids)
pw_int_array() { echo "'{${1// /,}}'::int[]"; }

# ------------------------------------------------------------------ waiting

# pw_wait_until TIMEOUT_S INTERVAL_S CMD... : run CMD (in this shell) every INTERVAL_S seconds until it succeeds;
# false when it still fails after TIMEOUT_S seconds
pw_wait_until() {
    local _pw_timeout=$1 _pw_interval=$2 _pw_start   # (names CMD does not use: it sees these locals)
    shift 2
    _pw_start=$(pw_now)
    until "$@"; do
        pw_lt "$(pw_elapsed "$_pw_start")" "$_pw_timeout" || return 1
        sleep "$_pw_interval"
    done
}

# pw_wait_sql EXPECTED TIMEOUT_S SQL [INTERVAL_S] : poll SQL (every INTERVAL_S, default 0.1 s) until it returns
# EXPECTED; prints its last output (or error), false after TIMEOUT_S seconds
pw_wait_sql() {
    local rc=0
    pw_wait_until "$2" "${4:-0.1}" _pw_sql_is "$1" "$3" || rc=1
    echo "$PW_GOT"
    return $rc
}
_pw_sql_is() { PW_GOT=$(pw_psql -c "$2" 2>&1); [ "$PW_GOT" = "$1" ]; }

# pw_wait_row TIMEOUT_S SQL [INTERVAL_S] : poll SQL (every INTERVAL_S, default 0.1 s) until it returns something;
# prints that, false (no output) after TIMEOUT_S seconds. Errors count as nothing.
pw_wait_row() {
    local rc=0
    pw_wait_until "$1" "${3:-0.1}" _pw_sql_rows "$2" || rc=1
    echo "$PW_GOT"
    return $rc
}
_pw_sql_rows() { PW_GOT=$(pw_psql -c "$1" 2>/dev/null); [ -n "$PW_GOT" ]; }

# pw_wait_exit PID TIMEOUT_S : wait until process PID is gone; false when it still runs after TIMEOUT_S seconds
pw_wait_exit() { pw_wait_until "$2" 0.1 _pw_gone "$1"; }
_pw_gone() { ! kill -0 "$1" 2>/dev/null; }

# pw_retry TIMEOUT_S CMD... : CMD until it succeeds, every 0.2 s (psql while the server restarts or recovers);
# prints the output of the attempt that succeeded, false when none did within about TIMEOUT_S seconds
pw_retry() {
    local _pw_tries=$(($1 * 5)) _pw_i _pw_out
    shift
    for ((_pw_i = 0; _pw_i < _pw_tries; _pw_i++)); do
        if _pw_out=$("$@" 2>/dev/null); then echo "$_pw_out"; return 0; fi
        sleep 0.2
    done
    return 1
}

# ------------------------------------------------------------------ cluster

# pw_cluster_start NAME [extra postgresql.conf lines...]
pw_cluster_start() {
    local name=$1; shift
    local dir=/tmp/pw-$name port line
    PW_CLUSTER_NAME=$name
    if [ -d "$dir" ]; then
        # leftover of an earlier run: stop it if it still runs, then start afresh
        if [ -f "$dir/data/postmaster.pid" ]; then
            pw_as_pg "$PW_BINDIR/pg_ctl" -D "$dir/data" stop -m immediate -w >/dev/null 2>&1
        fi
        rm -rf "$dir"
    fi
    mkdir -p "$dir"
    chown "$PW_OS_USER": "$dir"
    chmod 755 "$dir"
    PW_CLUSTER_DIR=$dir
    PW_DATA=$dir/data
    PW_LOG=$dir/server.log

    if ! pw_as_pg "$PW_BINDIR/initdb" -D "$PW_DATA" -U postgres --auth=trust --no-locale -E UTF8 \
            >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        pw_die "initdb failed for $name"
    fi

    port=$(pw_free_port) || pw_die "no free port"
    {
        echo "# --- pipeline_worker test settings"
        echo "listen_addresses = ''"
        echo "port = $port"
        echo "unix_socket_directories = '$dir'"
        echo "shared_preload_libraries = '${PW_PRELOAD-pipeline_worker}'"
        echo "max_worker_processes = 40"
        echo "max_connections = 100"
        echo "pipeline_worker.workers = ${PW_WORKERS:-4}"
        echo "log_line_prefix = '%m [%p] %b '"
        echo "shared_buffers = 32MB"
        for line in "$@"; do echo "$line"; done
        [ -n "${PW_EXTRA_CONF:-}" ] && printf '%s\n' "$PW_EXTRA_CONF"
    } >>"$PW_DATA/postgresql.conf"

    # shellcheck disable=SC2086  # PW_PGCTL_WRAP is a command prefix, split on purpose
    if ! pw_as_pg ${PW_PGCTL_WRAP:-} "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >"$dir/pg_ctl.log" 2>&1; then
        cat "$dir/pg_ctl.log" >&2
        tail -n 30 "$PW_LOG" >&2
        pw_die "cluster $name did not start"
    fi
    export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
    export PGAPPNAME=pw-test
    pw_info "cluster $name up: PGHOST=$PGHOST PGPORT=$PGPORT workers=${PW_WORKERS:-4}"
}

# pw_cluster_up NAME WORKERS WAIT_S [extra postgresql.conf lines...] : pw_cluster_start with WORKERS workers, then
# wait for them: a failure (and false) when they do not all show up within WAIT_S seconds
pw_cluster_up() {
    local name=$1 n=$2 wait=$3
    shift 3
    PW_WORKERS=$n pw_cluster_start "$name" "$@"
    pw_wait_workers "$n" "$wait" >/dev/null || { pw_fail "$n workers did not show up"; return 1; }
}

# pw_cluster_stop [MODE] : stop the current cluster (fast by default); returns pg_ctl's status
pw_cluster_stop() {
    local mode=${1:-fast}
    [ -n "$PW_DATA" ] && [ -f "$PW_DATA/postmaster.pid" ] || return 0
    pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" stop -m "$mode" -w -t 60 >/dev/null 2>&1
}

# pw_cluster_restart [extra postgresql.conf lines...] : append lines, restart (same data)
pw_cluster_restart() {
    local line
    for line in "$@"; do echo "$line" >>"$PW_DATA/postgresql.conf"; done
    pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 restart -m fast >/dev/null 2>&1
}

# pw_set_conf NAME VALUE : ALTER SYSTEM SET + pg_reload_conf(), then wait (up to 5 s) until new sessions see VALUE
# (as pg_settings.setting shows it, blanks ignored). False, saying why on stderr, when either fails.
pw_set_conf() {
    local err
    if ! err=$(pw_psql -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" 2>&1 >/dev/null); then
        echo "ALTER SYSTEM SET $1 = '$2': $err" >&2
        return 1
    fi
    # (compared without blanks: a check hook may normalise a list)
    pw_wait_sql "${2// /}" 5 "SELECT replace(setting, ' ', '') FROM pg_settings WHERE name = '$1'" >/dev/null && return 0
    echo "$1 is not '$2' 5 s after pg_reload_conf()" >&2
    return 1
}

# pw_reset_conf NAME : ALTER SYSTEM RESET + pg_reload_conf()
pw_reset_conf() { pw_psql -c "ALTER SYSTEM RESET $1" -c "SELECT pg_reload_conf()" >/dev/null; }

# pw_cleanup : trap handler (trap pw_cleanup EXIT). Stops the cluster, removes its directory unless
# something failed or PW_KEEP=1, prints the summary line if the script did not.
pw_cleanup() {
    local rc=$?
    if [ -n "$PW_DATA" ] && [ -f "$PW_DATA/postmaster.pid" ]; then
        pw_cluster_stop fast || pw_cluster_stop immediate
    fi
    # background jobs of the script (psql clients)
    local j
    for j in $(jobs -p); do kill "$j" 2>/dev/null; done
    if [ -n "$PW_CLUSTER_DIR" ] && [ -d "$PW_CLUSTER_DIR" ]; then
        if [ "$PW_FAILED" -gt 0 ] || [ "$rc" -ne 0 ] || [ "${PW_KEEP:-0}" = 1 ]; then
            echo "info   kept $PW_CLUSTER_DIR (server log: $PW_LOG)"
            if [ "$PW_FAILED" -gt 0 ] && [ -f "$PW_LOG" ]; then
                echo "info   last lines of the server log:"
                tail -n 15 "$PW_LOG" | sed 's/^/       | /'
            fi
        else
            rm -rf "$PW_CLUSTER_DIR"
        fi
    fi
    if [ "$PW_FINISHED" != 1 ]; then
        [ "$rc" -ne 0 ] && [ "$PW_FAILED" -eq 0 ] && PW_FAILED=1
        echo "$PW_PASSED passed, $PW_FAILED failed"
        [ "$PW_FAILED" -gt 0 ] && exit 1
    fi
    exit "$rc"
}

# ------------------------------------------------------------------ pipeline_worker specifics

# pw_load_fixtures [FAILURE_MSG] : test/lib/fixtures.sql into $PGDATABASE; the script ends when that fails
pw_load_fixtures() { pw_psql -f "$PW_LIB_DIR/fixtures.sql" >/dev/null || pw_die "${1:-fixtures failed}"; }

# pw_run PIPELINE [INPUT [METADATA]] : create_run (JSON arguments default to {}); prints the run id
pw_run() { pw_psql -c "SELECT pipeline_worker.create_run('$1', '${2:-{\}}', '${3:-{\}}')"; }
# pw_create_runs PIPELINE INPUT... : one create_run per INPUT, all in one transaction; prints the run ids, one a line
pw_create_runs() {
    local pipeline=$1 input
    shift
    {
        echo "BEGIN;"
        for input in "$@"; do echo "SELECT pipeline_worker.create_run('$pipeline', '$input');"; done
        echo "COMMIT;"
    } | pw_psql
}
# pw_parked_runs PIPELINE FUNCTION N [psql args...] : a pipeline of one step FUNCTION with "concurrency" 1, and N runs
# parked by its limit in the transaction that creates them: they stand for runs parked before a restart (the lanes
# of the next life know nothing of them)
pw_parked_runs() {
    local pipeline=$1 function=$2 n=$3
    shift 3
    pw_psql "$@" >/dev/null <<SQL
SELECT pipeline_worker.create_pipeline('$pipeline', '[{"name": "a", "function": "$function"}]', '{"concurrency": 1}');
BEGIN;
SELECT count(*) FROM pipeline_worker.create_runs('$pipeline', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, $n) i));
UPDATE pipeline_worker.runs SET parked = 1 WHERE pipeline = '$pipeline';
COMMIT;
SQL
}
# pw_wait_run RUN [TIMEOUT_S] : wait_run (default 20 s); prints the status it returned
pw_wait_run() { pw_psql -c "SELECT pipeline_worker.wait_run($1, '${2:-20} s')"; }

# pw_wait_all_finished TIMEOUT_S : poll until no run is pending or running. Returns 1 (and records a
# failure) when runs are still unfinished after TIMEOUT_S seconds.
pw_wait_all_finished() {
    local timeout=${1:-30} left
    left=$(pw_wait_sql 0 "$timeout" "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending','running')" 0.2) \
        && return 0
    pw_fail "runs still unfinished after ${timeout}s: $left ($(pw_psql -c "SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, count(*) n FROM pipeline_worker.runs GROUP BY 1 ORDER BY 1) s" 2>&1))"
    return 1
}

# pw_worker_pids : pids of the pipeline_worker backends, sorted, space separated
pw_worker_pids() {
    pw_psql -c "SELECT coalesce(string_agg(pid::text, ' ' ORDER BY pid), '') FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'"
}

# pw_wait_workers N TIMEOUT_S : wait until exactly N pipeline_worker backends show (prints the count seen last
# when they do not)
pw_wait_workers() {
    local got
    got=$(pw_wait_sql "$1" "${2:-15}" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'" 0.2) \
        && return 0
    echo "$got"
    return 1
}

# pw_wait_sleeping_worker TIMEOUT_S : pid of a pipeline_worker backend sleeping in a step (pg_sleep); false (no
# output) when none does within TIMEOUT_S seconds
pw_wait_sleeping_worker() {
    pw_wait_row "$1" "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event = 'PgSleep'
                       ORDER BY pid LIMIT 1"
}

# pw_log_problems [FROM_BYTE] : ERROR/FATAL/PANIC lines and worker crash/exit reports in the server log
pw_log_problems() {
    local from=${1:-0}
    tail -c +"$((from + 1))" "$PW_LOG" 2>/dev/null \
        | grep -E 'ERROR:|FATAL:|PANIC:|terminated by signal|exited with exit code|server process .* was terminated|context writer disagrees' || true
}

# pw_log_problems_beyond_kills [FROM_BYTE] : pw_log_problems without what a test's own SIGKILLs and
# pg_terminate_backend calls leave (terminations, the crash restart)
pw_log_problems_beyond_kills() {
    pw_log_problems "${1:-0}" | grep -vE "terminat|signal 9|exited with exit code 1|crash of another|database system is (starting up|shutting down|in recovery mode|not yet accepting connections)|Consistent recovery state has not been yet reached|immediate shutdown" || true
}

pw_log_size() { stat -c %s "$PW_LOG" 2>/dev/null || echo 0; }
