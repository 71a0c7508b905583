#!/bin/bash
# contrib/postgres_exporter.yaml with the real exporter (Debian's prometheus-postgres-exporter, postgres_exporter
# 0.11): a known workload (7 runs that succeed, 3 that fail, 2 with an HTTP step, 4 held pending while
# pipeline_worker.enabled = off, one paused pipeline), then the exporter, connected over the cluster's unix socket as
# a role with pg_monitor and pipeline_worker_admin, is scraped over HTTP: every pipeline_worker series has the name,
# type, labels and value it must have -- the workload's numbers, and exactly the rows of
# pipeline_worker.metric_samples() and pipeline_worker.pipeline_stats read as the exporter's role at the same time.
# A second exporter as a role with pg_monitor only still exports metric_samples() (every pipeline) but, through
# pipeline_stats' row-level security, no per-pipeline gauge. After the held runs finish, a new scrape shows the new
# values (nothing cached). Fails (does not skip) when the exporter is not installed.
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/../lib/http.sh"

EXPORTER=${PW_EXPORTER:-/usr/bin/prometheus-postgres-exporter}
YAML=$(cd "$(dirname "$0")/../.." && pwd)/contrib/postgres_exporter.yaml
EX_PID=
EX_URL=
EX_LOG=

# the exporter's process dies with the script (then the endpoint, then the cluster)
ex_cleanup() {
    local rc=$?
    ex_stop
    (exit "$rc")
    pw_http_cleanup
}
trap ex_cleanup EXIT

# ---------------------------------------------------------------- helpers

# ex_start ROLE : start the exporter with contrib/postgres_exporter.yaml, connected as ROLE, on a free port of
# 127.0.0.1 (sets EX_PID, EX_URL, EX_LOG); a failure that ends the script when /metrics does not show pg_up 1
# within 20 s
ex_start() {
    local port
    port=$(pw_free_port) || pw_die "no free port for the exporter"
    EX_URL=http://127.0.0.1:$port/metrics
    EX_LOG=$PW_CLUSTER_DIR/exporter-$1.log
    # (the keyword form: single blanks between the pairs -- the exporter splits it to make its server label)
    DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=$1 dbname=$PGDATABASE sslmode=disable" \
        "$EXPORTER" --extend.query-path="$YAML" --web.listen-address="127.0.0.1:$port" \
        --disable-default-metrics --disable-settings-metrics --no-collector.database --no-collector.bgwriter \
        >"$EX_LOG" 2>&1 &
    EX_PID=$!
    pw_wait_until 20 0.2 _ex_up
    if ! kill -0 "$EX_PID" 2>/dev/null; then
        tail -n 5 "$EX_LOG" | sed 's/^/       | /'
        pw_die "the exporter (as $1) exited"
    fi
    if ! _ex_up; then
        echo "info   its answer:"
        curl -s --max-time 5 "$EX_URL" 2>&1 | grep -v '^#' | head -n 5 | cut -c1-300 | sed 's/^/       | /'
        tail -n 5 "$EX_LOG" | sed 's/^/       | /'
        pw_die "the exporter (as $1) does not show pg_up 1 on $EX_URL"
    fi
    pw_info "exporter as $1: pid $EX_PID, $EX_URL"
}
# (true once /metrics shows pg_up 1, or once the exporter died)
_ex_up() {
    kill -0 "$EX_PID" 2>/dev/null || return 0
    curl -s --max-time 5 "$EX_URL" 2>/dev/null | grep -qx 'pg_up 1'
}

# ex_stop : stop the exporter started last (if it runs)
ex_stop() {
    [ -n "$EX_PID" ] || return 0
    kill "$EX_PID" 2>/dev/null
    pw_wait_exit "$EX_PID" 5 || kill -9 "$EX_PID" 2>/dev/null
    wait "$EX_PID" 2>/dev/null
    EX_PID=
}

# ex_scrape NAME : GET $EX_URL into $PW_CLUSTER_DIR/NAME.prom, and its samples into NAME.norm without comments and
# without the exporter's server label (lines: name{labels, sorted by name, le last} value); prints the HTTP status
ex_scrape() {
    local f=$PW_CLUSTER_DIR/$1
    curl -s --max-time 15 -o "$f.prom" -w '%{http_code}' "$EX_URL"
    grep -v '^#' "$f.prom" | sed -E 's/,?server="[^"]*"//; s/\{,/{/; s/\{\}//' >"$f.norm"
}

# ex_sum FILE NAME [LABEL="VALUE"...] : sum of the samples of FILE (a .norm) named NAME that have all these labels;
# "absent" when there is none
ex_sum() {
    local file=$1 name=$2
    shift 2
    awk -v name="$name" -v want="$(IFS='|'; echo "$*")" '
        BEGIN { n = split(want, w, "|") }
        { v = $NF; k = substr($0, 1, length($0) - length(v) - 1); b = index(k, "{")
          if ((b ? substr(k, 1, b - 1) : k) != name) next
          for (i = 1; i <= n; i++) if (index(k, w[i]) == 0) next
          s += v; c++ }
        END { if (c) print s; else print "absent" }' "$file"
}

# ex_values FILE NAME LABEL [LABEL="VALUE"...] : the distinct values of LABEL in the samples NAME that have all
# these labels, sorted, space separated
ex_values() {
    local file=$1 name=$2 label=$3
    shift 3
    awk -v name="$name" -v label="$label" -v want="$(IFS='|'; echo "$*")" '
        BEGIN { n = split(want, w, "|") }
        { v = $NF; k = substr($0, 1, length($0) - length(v) - 1); b = index(k, "{")
          if ((b ? substr(k, 1, b - 1) : k) != name) next
          for (i = 1; i <= n; i++) if (index(k, w[i]) == 0) next
          p = index(k, label "=\""); if (!p) next
          r = substr(k, p + length(label) + 2); print substr(r, 1, index(r, "\"") - 1) }' "$file" | sort -u | paste -sd' '
}

# ex_type FILE NAME : the type the exporter declares for NAME (# TYPE line of the .prom FILE)
ex_type() { awk -v name="$2" '$1 == "#" && $2 == "TYPE" && $3 == name { print $4 }' "$1"; }

# ex_compare WHAT EXPECTED NORM : compare with EXPECTED (lines "name{labels} value") the series of NORM that WHAT
# covers -- samples: the pipeline_worker_* series of metric_samples(); stats: the pipeline_worker_pipeline_* gauges of
# pipeline_stats; prints one line per difference (missing, extra, different value), nothing when they agree. Values
# agree within 1e-9 (relative), NaN only with NaN; the ages of the oldest pending runs, which grow, may be up to 60 s
# older at the exporter.
ex_compare() {
    awk -v what="$1" '
        function num(x) { return (tolower(x) == "nan") ? "NaN" : x + 0 }
        function agree(k, e, g,   d, a) {
            if (num(e) == "NaN" || num(g) == "NaN") return num(e) == num(g)
            d = g - e
            if (k ~ /^pipeline_worker_(pipeline_)?oldest_pending/) return d >= -0.01 && d <= 60
            if (d < 0) d = -d
            a = e < 0 ? -e : e
            return d <= 1e-9 * (a > 1 ? a : 1)
        }
        { v = $NF; k = substr($0, 1, length($0) - length(v) - 1) }
        FILENAME == ARGV[1] { want[k] = v; next }
        k !~ /^pipeline_worker_/ { next }
        (what == "stats") != (k ~ /^pipeline_worker_pipeline_/) { next }
        { got[k] = v }
        END {
            for (k in want)
                if (!(k in got)) print "missing: " k " " want[k]
                else if (!agree(k, want[k], got[k])) print "differs: " k " expected " want[k] ", exporter " got[k]
            for (k in got) if (!(k in want)) print "extra: " k " " got[k]
        }' "$2" "$3" | sort
}

# The series metric_samples() must give, as the exporter's role sees them: name{labels sorted by name, le last} value
# (the worker state, in the status column, is the label "state"; le as the exporter prints it)
SAMPLES_SQL="
SELECT m.metric || coalesce('{' || (SELECT string_agg(format('%s=\"%s\"', l.k, l.v), ',' ORDER BY l.ord)
                                     FROM (VALUES (1, 'database', m.database), (2, 'kind', m.kind),
                                                  (3, 'outcome', m.outcome), (4, 'pipeline', m.pipeline),
                                                  (5, CASE WHEN m.metric = 'pipeline_worker_workers' THEN 'state'
                                                           ELSE 'status' END, m.status),
                                                  (6, 'le', CASE WHEN m.le::float8 = 'Infinity' THEN '+Inf'
                                                                 ELSE m.le::float8::text END)) l(ord, k, v)
                                    WHERE l.v IS NOT NULL) || '}', '')
       || ' ' || coalesce(m.value::text, 'NaN')
  FROM pipeline_worker.metric_samples() m"
# ... and pipeline_stats, one gauge per column (intervals in seconds, paused 1/0)
STATS_SQL="
SELECT format('pipeline_worker_pipeline_%s{database=\"%s\",pipeline=\"%s\"} %s', c.col, current_database(), s.pipeline,
              coalesce(c.val::text, 'NaN'))
  FROM pipeline_worker.pipeline_stats s,
       LATERAL (VALUES ('pending', s.pending::float8), ('scheduled', s.scheduled), ('running', s.running),
                       ('waiting', s.waiting), ('succeeded_1h', s.succeeded_1h), ('failed_1h', s.failed_1h),
                       ('cancelled_1h', s.cancelled_1h),
                       ('oldest_pending_age_seconds', coalesce(extract(epoch FROM s.oldest_pending_age), 0)::float8),
                       ('p50_duration_1h_seconds', extract(epoch FROM s.p50_duration_1h)::float8),
                       ('p95_duration_1h_seconds', extract(epoch FROM s.p95_duration_1h)::float8),
                       ('paused', s.paused::int)) c(col, val)"

# ex_agrees ROLE NAME : one round: what metric_samples() and pipeline_stats say as ROLE, then a scrape NAME; true
# when the exporter agrees (differences in $PW_CLUSTER_DIR/NAME.diff)
ex_agrees() {
    local d=$PW_CLUSTER_DIR/$2
    local code sql_ok=1
    if ! pw_psql -U "$1" -c "$SAMPLES_SQL" >"$d.samples" 2>"$d.diff" \
       || ! pw_psql -U "$1" -c "$STATS_SQL" >"$d.stats" 2>"$d.diff"; then
        sql_ok=0
    fi
    code=$(ex_scrape "$2")
    [ "$sql_ok" = 1 ] || return 1
    [ "$code" = 200 ] || { echo "HTTP status $code: $(head -c 300 "$d.prom")" >"$d.diff"; return 1; }
    ex_compare samples "$d.samples" "$d.norm" >"$d.diff"
    ex_compare stats "$d.stats" "$d.norm" >>"$d.diff"
    [ ! -s "$d.diff" ]
}

# ex_healthy NAME WHO : pg_up 1, no scrape error, the queries file loaded, nothing logged as an error
ex_healthy() {
    local f=$PW_CLUSTER_DIR/$1.norm
    pw_check "$2: pg_up 1, pg_exporter_last_scrape_error 0, the queries file loaded" "1 0 0" \
        "$(ex_sum "$f" pg_up) $(ex_sum "$f" pg_exporter_last_scrape_error) $(ex_sum "$f" pg_exporter_user_queries_load_error)"
    local errs
    errs=$(grep -E 'level=(error|warn)|err=' "$EX_LOG")
    [ -z "$errs" ] && pw_ok "$2: the exporter logged no error" \
        || pw_fail "$2: the exporter logged: $(head -3 <<<"$errs" | cut -c1-300 | paste -sd'|')"
}

# ---------------------------------------------------------------- the workload
if [ ! -x "$EXPORTER" ]; then
    pw_fail "$EXPORTER is missing: apt-get install prometheus-postgres-exporter (scripts/setup.sh installs it)"
    pw_finish
fi
[ -r "$YAML" ] || pw_die "$YAML is missing"
pw_info "$("$EXPORTER" --version 2>&1 | head -1)"

pw_http_start
pw_cluster_up exporter 2 20 "pipeline_worker.http_allowed_hosts = '127.0.0.1'" || exit 1
export PGOPTIONS="-c statement_timeout=30s"
pw_psql >/dev/null <<'SQL' || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
CREATE FUNCTION ex_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.05);
    IF ctx->'input' ? 'fail' THEN RAISE EXCEPTION 'asked to fail'; END IF;
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('ex_ok', '[{"name": "a", "function": "ex_step"}]');
SELECT pipeline_worker.create_pipeline('ex_fail', '[{"name": "a", "function": "ex_step"}]');
SELECT pipeline_worker.create_pipeline('ex_held', '[{"name": "a", "function": "ex_step"}]');
SELECT pipeline_worker.create_pipeline('ex_paused', '[{"name": "a", "function": "ex_step"}]');
SELECT pipeline_worker.pause_pipeline('ex_paused');
-- the exporter's roles: pg_monitor for metric_samples(), pipeline_worker_admin to see every pipeline's stats
CREATE ROLE ex_exporter LOGIN;
GRANT pg_monitor, pipeline_worker_admin TO ex_exporter;
CREATE ROLE ex_monitor LOGIN;
GRANT pg_monitor TO ex_monitor;
SQL
[ "$(pw_psql -c "SELECT to_regprocedure('pipeline_worker.metric_samples()') IS NOT NULL
                        AND to_regclass('pipeline_worker.pipeline_stats') IS NOT NULL")" = t ] \
    || pw_die "the installed pipeline_worker has no metric_samples() or pipeline_stats (make install first)"
pw_psql -c "SELECT pipeline_worker.create_pipeline('ex_http', '[{\"name\": \"call\", \"http\": {\"url\": \"$B/ok\"}}]')" \
    >/dev/null || pw_die "create_pipeline ex_http failed"
pw_psql >/dev/null <<'SQL' || pw_die "create_run failed"
SELECT pipeline_worker.create_run('ex_ok', jsonb_build_object('n', g)) FROM generate_series(1, 7) g;
SELECT pipeline_worker.create_run('ex_fail', jsonb_build_object('n', g, 'fail', true)) FROM generate_series(1, 3) g;
SELECT pipeline_worker.create_run('ex_http', jsonb_build_object('n', g)) FROM generate_series(1, 2) g;
SQL
pw_wait_all_finished 30
pw_check_sql "the workload: ex_ok 7 succeeded, ex_fail 3 failed, ex_http 2 succeeded" \
    "ex_fail:failed:3 ex_http:succeeded:2 ex_ok:succeeded:7" \
    "SELECT string_agg(pipeline || ':' || status || ':' || n, ' ' ORDER BY pipeline, status)
       FROM (SELECT pipeline, status, count(*) n FROM pipeline_worker.runs GROUP BY 1, 2) s"
# 4 runs that stay pending: nothing is claimed while pipeline_worker.enabled = off
pw_set_conf pipeline_worker.enabled off || pw_die "pipeline_worker.enabled = off failed"
sleep 0.5   # (the workers take the reload)
pw_psql -c "SELECT pipeline_worker.create_run('ex_held', jsonb_build_object('n', g)) FROM generate_series(1, 4) g" \
    >/dev/null || pw_die "create_run ex_held failed"
sleep 1.2   # the oldest pending run is more than a second old
pw_check_sql "the workload: 4 runs of ex_held pending" 4 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'ex_held' AND status = 'pending'"

# (should metric_samples() count asynchronously: wait until it has counted the workload)
ms_wait() {
    pw_wait_sql "$1" 10 "SELECT coalesce(sum(value), 0) FROM pipeline_worker.metric_samples() WHERE $2" >/dev/null \
        || pw_info "metric_samples() still short of $1 after 10 s for $2"
}
ms_wait 7 "metric = 'pipeline_worker_runs_finished_total' AND pipeline = 'ex_ok' AND status = 'succeeded'"
ms_wait 4 "metric = 'pipeline_worker_runs_created_total' AND pipeline = 'ex_held'"

# ---------------------------------------------------------------- the exporter as pg_monitor + pipeline_worker_admin
ex_start ex_exporter
A=$PW_CLUSTER_DIR/a.norm
if pw_wait_until 10 1 ex_agrees ex_exporter a; then
    pw_ok "every pipeline_worker series agrees with metric_samples() and pipeline_stats ($(grep -c '^pipeline_worker_' "$A") samples)"
else
    pw_fail "the exporter disagrees with metric_samples() / pipeline_stats: $(head -5 "$PW_CLUSTER_DIR/a.diff" | paste -sd';')"
fi
ex_healthy a "as pg_monitor + pipeline_worker_admin"
pw_check "every series has the exporter's server label (its unix socket directory and port)" \
    "$(grep -c '^pipeline_worker_' "$PW_CLUSTER_DIR/a.prom")" \
    "$(grep -c "^pipeline_worker_.*server=\"$PGHOST:$PGPORT\"" "$PW_CLUSTER_DIR/a.prom")"

P=$PW_CLUSTER_DIR/a.prom
pw_check "types: the counters, gauges and the histogram" \
    "counter counter counter counter gauge gauge gauge histogram" \
    "$(ex_type "$P" pipeline_worker_runs_created_total) $(ex_type "$P" pipeline_worker_runs_finished_total) $(ex_type "$P" pipeline_worker_steps_total) $(ex_type "$P" pipeline_worker_http_requests_total) $(ex_type "$P" pipeline_worker_runs) $(ex_type "$P" pipeline_worker_oldest_pending_seconds) $(ex_type "$P" pipeline_worker_workers) $(ex_type "$P" pipeline_worker_run_duration_seconds)"
pw_check "types: the pipeline_stats gauges" "gauge gauge gauge gauge gauge gauge gauge gauge gauge gauge gauge" \
    "$(for c in pending scheduled running waiting succeeded_1h failed_1h cancelled_1h oldest_pending_age_seconds \
               p50_duration_1h_seconds p95_duration_1h_seconds paused; do
           ex_type "$P" "pipeline_worker_pipeline_$c"; done | paste -sd' ')"

db='database="postgres"'
pw_check "runs_created_total: ex_ok 7, ex_fail 3, ex_http 2, ex_held 4" "7 3 2 4" \
    "$(for p in ex_ok ex_fail ex_http ex_held; do ex_sum "$A" pipeline_worker_runs_created_total "$db" "pipeline=\"$p\""; done | paste -sd' ')"
pw_check "runs_finished_total: ex_ok succeeded 7, ex_fail failed 3, ex_http succeeded 2" "7 3 2" \
    "$(ex_sum "$A" pipeline_worker_runs_finished_total "$db" 'pipeline="ex_ok"' 'status="succeeded"') $(ex_sum "$A" pipeline_worker_runs_finished_total "$db" 'pipeline="ex_fail"' 'status="failed"') $(ex_sum "$A" pipeline_worker_runs_finished_total "$db" 'pipeline="ex_http"' 'status="succeeded"')"
pw_check "runs_finished_total: none failed in ex_ok, none succeeded in ex_fail, none for ex_held" "absent absent absent" \
    "$(ex_sum "$A" pipeline_worker_runs_finished_total 'pipeline="ex_ok"' 'status="failed"' | sed 's/^0$/absent/') $(ex_sum "$A" pipeline_worker_runs_finished_total 'pipeline="ex_fail"' 'status="succeeded"' | sed 's/^0$/absent/') $(ex_sum "$A" pipeline_worker_runs_finished_total 'pipeline="ex_held"' | sed 's/^0$/absent/')"
pw_check "steps_total (all kinds): ex_ok succeeded 7, ex_fail failed 3, ex_http succeeded 2" "7 3 2" \
    "$(ex_sum "$A" pipeline_worker_steps_total "$db" 'pipeline="ex_ok"' 'status="succeeded"') $(ex_sum "$A" pipeline_worker_steps_total "$db" 'pipeline="ex_fail"' 'status="failed"') $(ex_sum "$A" pipeline_worker_steps_total "$db" 'pipeline="ex_http"' 'status="succeeded"')"
k_fn=$(ex_values "$A" pipeline_worker_steps_total kind 'pipeline="ex_ok"')
k_http=$(ex_values "$A" pipeline_worker_steps_total kind 'pipeline="ex_http"')
if [ -n "$k_fn" ] && [ -n "$k_http" ] && [ "${k_fn// /}" = "$k_fn" ] && [ "${k_http// /}" = "$k_http" ] \
   && [ "$k_fn" != "$k_http" ]; then
    pw_ok "steps_total: one kind for function steps ($k_fn), another for HTTP steps ($k_http)"
else
    pw_fail "steps_total kinds: function steps '$k_fn', HTTP steps '$k_http'"
fi
pw_check "http_requests_total (all outcomes): ex_http 2, none for the function pipeline" "2 absent" \
    "$(ex_sum "$A" pipeline_worker_http_requests_total "$db" 'pipeline="ex_http"') $(ex_sum "$A" pipeline_worker_http_requests_total 'pipeline="ex_ok"' | sed 's/^0$/absent/')"
pw_check "runs gauge: ex_held pending 4" 4 "$(ex_sum "$A" pipeline_worker_runs "$db" 'pipeline="ex_held"' 'status="pending"')"
age=$(ex_sum "$A" pipeline_worker_oldest_pending_seconds "$db" 'pipeline="ex_held"')
pw_lt 1 "$age" && pw_lt "$age" 120 && pw_ok "oldest_pending_seconds of ex_held is in seconds (${age})" \
    || pw_fail "oldest_pending_seconds of ex_held: '$age' (expected between 1 and 120)"
pw_check "workers gauge: the 2 workers, by state, in the label state" "2 absent" \
    "$(ex_sum "$A" pipeline_worker_workers "$db" 'state="') $(ex_sum "$A" pipeline_worker_workers 'status="')"
h=pipeline_worker_run_duration_seconds
pw_check "run_duration_seconds of ex_ok: count 7, +Inf bucket 7, le=0.005 bucket 0 (each run sleeps 50 ms)" "7 7 0" \
    "$(ex_sum "$A" ${h}_count "$db" 'pipeline="ex_ok"') $(ex_sum "$A" ${h}_bucket "$db" 'pipeline="ex_ok"' 'le="+Inf"') $(ex_sum "$A" ${h}_bucket "$db" 'pipeline="ex_ok"' 'le="0.005"')"
sum=$(ex_sum "$A" ${h}_sum "$db" 'pipeline="ex_ok"')
pw_lt 0.349 "$sum" && pw_lt "$sum" 30 && pw_ok "run_duration_seconds_sum of ex_ok is in seconds ($sum)" \
    || pw_fail "run_duration_seconds_sum of ex_ok: '$sum' (expected between 0.35 and 30)"
mono=$(grep "^${h}_bucket{" "$A" | grep 'pipeline="ex_ok"' | sed -E 's/.*le="([^"]*)"\} (.*)/\1 \2/' \
       | sed 's/^+Inf/inf/' | sort -g | awk 'NR > 1 && $2 < last { bad = 1 } { last = $2; n++ } END { print (n >= 2 && !bad) ? "ok" : "bad" }')
pw_check "run_duration_seconds buckets of ex_ok are cumulative" ok "$mono"

pw_check "pipeline_stats gauges: ex_held pending 4, running 0, scheduled 0" "4 0 0" \
    "$(ex_sum "$A" pipeline_worker_pipeline_pending "$db" 'pipeline="ex_held"') $(ex_sum "$A" pipeline_worker_pipeline_running 'pipeline="ex_held"') $(ex_sum "$A" pipeline_worker_pipeline_scheduled 'pipeline="ex_held"')"
pw_check "pipeline_stats gauges: succeeded_1h ex_ok 7 / ex_http 2, failed_1h ex_fail 3, cancelled_1h ex_ok 0" "7 2 3 0" \
    "$(ex_sum "$A" pipeline_worker_pipeline_succeeded_1h "$db" 'pipeline="ex_ok"') $(ex_sum "$A" pipeline_worker_pipeline_succeeded_1h 'pipeline="ex_http"') $(ex_sum "$A" pipeline_worker_pipeline_failed_1h 'pipeline="ex_fail"') $(ex_sum "$A" pipeline_worker_pipeline_cancelled_1h 'pipeline="ex_ok"')"
pw_check "pipeline_stats gauges: paused 1 for ex_paused, 0 for ex_ok" "1 0" \
    "$(ex_sum "$A" pipeline_worker_pipeline_paused "$db" 'pipeline="ex_paused"') $(ex_sum "$A" pipeline_worker_pipeline_paused 'pipeline="ex_ok"')"
pw_check "pipeline_stats gauges: every pipeline, for an admin" "ex_fail ex_held ex_http ex_ok ex_paused" \
    "$(ex_values "$A" pipeline_worker_pipeline_pending pipeline)"
age=$(ex_sum "$A" pipeline_worker_pipeline_oldest_pending_age_seconds 'pipeline="ex_held"')
pw_lt 1 "$age" && pw_lt "$age" 120 && pw_ok "oldest_pending_age_seconds of ex_held is in seconds ($age)" \
    || pw_fail "oldest_pending_age_seconds of ex_held: '$age' (expected between 1 and 120)"
p50=$(ex_sum "$A" pipeline_worker_pipeline_p50_duration_1h_seconds 'pipeline="ex_ok"')
p95=$(ex_sum "$A" pipeline_worker_pipeline_p95_duration_1h_seconds 'pipeline="ex_ok"')
pw_lt 0.049 "$p50" && ! pw_lt "$p95" "$p50" && pw_lt "$p95" 5 \
    && pw_ok "p50/p95_duration_1h_seconds of ex_ok are in seconds ($p50, $p95)" \
    || pw_fail "p50/p95_duration_1h_seconds of ex_ok: '$p50' / '$p95' (expected 0.05 <= p50 <= p95 < 5)"

# ---------------------------------------------------------------- nothing cached: the held runs finish
pw_reset_conf pipeline_worker.enabled
pw_wait_all_finished 30
ms_wait 4 "metric = 'pipeline_worker_runs_finished_total' AND pipeline = 'ex_held' AND status = 'succeeded'"
if pw_wait_until 10 1 ex_agrees ex_exporter a2; then
    pw_ok "after the held runs finished, the exporter still agrees with metric_samples() and pipeline_stats"
else
    pw_fail "after the held runs finished, the exporter disagrees: $(head -5 "$PW_CLUSTER_DIR/a2.diff" | paste -sd';')"
fi
A2=$PW_CLUSTER_DIR/a2.norm
pw_check "new values: ex_held finished 4 succeeded, created still 4, pipeline_stats pending 0 / succeeded_1h 4" "4 4 0 4" \
    "$(ex_sum "$A2" pipeline_worker_runs_finished_total 'pipeline="ex_held"' 'status="succeeded"') $(ex_sum "$A2" pipeline_worker_runs_created_total 'pipeline="ex_held"') $(ex_sum "$A2" pipeline_worker_pipeline_pending 'pipeline="ex_held"') $(ex_sum "$A2" pipeline_worker_pipeline_succeeded_1h 'pipeline="ex_held"')"
ex_healthy a2 "after the held runs finished"
ex_stop

# ---------------------------------------------------------------- the exporter as pg_monitor only
ex_start ex_monitor
if pw_wait_until 10 1 ex_agrees ex_monitor m; then
    pw_ok "as pg_monitor only: the exporter agrees with what that role sees"
else
    pw_fail "as pg_monitor only: the exporter disagrees: $(head -5 "$PW_CLUSTER_DIR/m.diff" | paste -sd';')"
fi
ex_healthy m "as pg_monitor only"
M=$PW_CLUSTER_DIR/m.norm
pw_check "as pg_monitor only: metric_samples() still covers every pipeline (runs_created_total ex_ok 7, ex_held 4)" "7 4" \
    "$(ex_sum "$M" pipeline_worker_runs_created_total 'pipeline="ex_ok"') $(ex_sum "$M" pipeline_worker_runs_created_total 'pipeline="ex_held"')"
pw_check "as pg_monitor only: no pipeline_stats gauge (row-level security: the role may see no pipeline)" 0 \
    "$(grep -c '^pipeline_worker_pipeline_' "$M")"
ex_stop

pw_finish
