#!/bin/bash
# HTTP steps under way, against the Node test server test/http/server.js: an answer read late is not a timeout, 200
# requests in flight on 2 workers with no transaction open, cancel and SIGTERM during a request (re-issued with the
# same Idempotency-Key), cancel of a limited run waiting for its answer and of a session's HTTP step, and 1,000 runs
# with no lost or duplicated request. (The set-up, shared with http.sh: test/lib/http_setup.sh.)
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/../lib/http.sh"
source "$(dirname "$0")/../lib/http_setup.sh"

# ---------------------------------------------------------------- an answer read late is not a timeout
# One worker: a request (answered after 2 s, timeout 2.5 s) is in flight when the worker takes a run whose function
# step lasts 3 s. The answer arrives during that step and the worker reads it only afterwards, past the timeout: it
# arrived in time, so the step succeeds on its first attempt and the endpoint is not called again.
set_guc pipeline_worker.workers 1
pw_wait_workers 1 10 >/dev/null || pw_fail "late answer: the workers did not come down to 1"
srv_reset
r=$(pw_run lateread)
in_flight_is() { [ "$(srv_stat in_flight)" = "$1" ]; }
pw_wait_until 2.5 0.05 in_flight_is 1 || pw_fail "late answer: the request never showed as in flight"
r2=$(pw_run sleeper)
pw_check "late answer: the 3 s function step succeeded" succeeded "$(wait_status "$r2")"
pw_check "late answer: the HTTP step succeeded" succeeded "$(wait_status "$r")"
pw_check "late answer: one attempt, one request" "1.1:succeeded 1" "$(attempts_of "$r") $(srv_stat requests)"
pw_check_sql "late answer: it was read after the long step (the scenario happened)" t \
    "SELECT h.finished_at >= f.finished_at AND f.started_at < h.started_at + interval '2 seconds'
       FROM pipeline_worker.run_steps h, pipeline_worker.run_steps f
      WHERE h.run_id = $r AND h.attempt = 1 AND f.run_id = $r2"
set_guc pipeline_worker.workers 2
pw_wait_workers 2 10 >/dev/null || pw_fail "late answer: the workers did not come back to 2"

# ---------------------------------------------------------------- 200 requests in flight on 2 workers
WORKER_FILTER="(backend_type = 'pipeline_worker' OR application_name = 'pipeline_worker')"
srv_reset
start=$(pw_now)
pw_psql -c "SELECT count(pipeline_worker.create_run('slow1s')) FROM generate_series(1, 200)" >/dev/null
inf=0
in_flight_ge() { inf=$(srv_stat in_flight); ge "$inf" "$1"; }
pw_wait_until 6 0.1 in_flight_ge 100
pw_info "concurrency: $inf requests in flight at the server $(pw_elapsed "$start") s after submitting"
# Samples count only while the server has answered none of the 200 requests and nothing moved at the server
# during the sample (same requests / in_flight before and after): then the workers have nothing to do but wait
# for the responses, and must hold no transaction, xid or snapshot while doing so.
srv_pair() { srv /stats | sed -n 's/.*"requests":\([0-9][0-9]*\),.*"in_flight":\([0-9][0-9]*\),.*/\1 \2/p'; }
samples=0
warm=
bad=
workers_seen=
running_seen=
for _ in $(seq 1 15); do
    s1=$(srv_pair)
    line=$(pw_psql -c "SELECT (SELECT count(*) FROM pg_stat_activity WHERE $WORKER_FILTER) || ' ' ||
                              (SELECT count(*) FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id
                                WHERE r.pipeline = 'slow1s' AND r.status = 'running'
                                  AND s.status = 'running' AND s.finished_at IS NULL) || ' ' ||
                              (SELECT coalesce(string_agg(pid || ':xid=' || coalesce(backend_xid::text, '-') || ':xmin=' ||
                                                          coalesce(backend_xmin::text, '-') || ':' || coalesce(state, '-'), ','), '-')
                                 FROM pg_stat_activity WHERE $WORKER_FILTER
                                  AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL OR state LIKE 'idle in transaction%')
                                  -- a short claim poll may coincide with a sample; one held across the wait is old
                                  AND clock_timestamp() - xact_start > interval '150 ms')")
    s2=$(srv_pair)
    if [ -n "$s1" ] && [ "$s1" = "$s2" ] && [ "${s1% *}" = "${s1#* }" ] && ge "${s1#* }" 100; then
        # let the requests be in flight a while first, so a transaction held across the wait is older
        # than the age filter above
        if [ -z "$warm" ]; then warm=1; sleep 0.2; continue; fi
        read -r w running offenders <<<"$line"
        samples=$((samples + 1))
        workers_seen="$workers_seen $w"
        running_seen="$running_seen $running"
        [ "$offenders" != - ] && bad="$bad $offenders"
        [ "$samples" -ge 5 ] && break
    fi
    sleep 0.03
done
if [ "$samples" -gt 0 ]; then
    pw_info "in flight: $samples samples; workers:$workers_seen; running step rows:$running_seen"
    [[ "$workers_seen" =~ ^( 2)+$ ]] && pw_ok "in flight: both workers seen in every sample" \
        || pw_fail "in flight: workers seen:$workers_seen"
    [ -z "$bad" ] && pw_ok "in flight: no worker holds a transaction, xid or snapshot ($samples samples)" \
        || pw_fail "in flight: workers in a transaction:$bad"
    ok=1
    for n in $running_seen; do ge "$n" 100 || ok=; done
    [ -n "$ok" ] && pw_ok "in flight: runs 'running' with a 'running' step row (>= 100 in every sample)" \
        || pw_fail "in flight: running step rows of running runs per sample:$running_seen"
else
    pw_fail "in flight: never saw >= 100 requests in flight with none answered yet (last: $(srv_pair))"
fi
if pw_wait_all_finished 15; then
    t=$(pw_elapsed "$start")
    pw_lt "$t" 8 && pw_ok "200 runs of /delay?ms=3000 on 2 workers done in $t s" \
        || pw_fail "200 runs of /delay?ms=3000 on 2 workers took $t s"
fi
pw_check_sql "200 delayed runs: all succeeded, one attempt each" "200 200" \
    "SELECT count(*) FILTER (WHERE r.status = 'succeeded') || ' ' ||
            count(*) FILTER (WHERE (SELECT string_agg(attempt || ':' || status, ' ') FROM pipeline_worker.run_steps s
                                     WHERE s.run_id = r.id) = '1:succeeded')
       FROM pipeline_worker.runs r WHERE r.pipeline = 'slow1s'"
pw_check_sql "200 delayed runs: created-to-finished span < 8 s" t \
    "SELECT max(finished_at) - min(created_at) < interval '8 s' FROM pipeline_worker.runs WHERE pipeline = 'slow1s'"
mif=$(srv_stat max_in_flight)
ge "$mif" 100 && pw_ok "server saw $mif requests in flight at once (>= 100)" \
    || pw_fail "server saw only ${mif:-?} requests in flight at once (expected >= 100)"
pw_check "200 delayed runs: 200 requests, no duplicate key" "200 0" "$(srv_stat requests) $(srv_stat duplicates)"

# ---------------------------------------------------------------- cancel during a request
srv_reset
r=$(pw_run slow30s)
cancel_in_flight() {
    [ "$(pw_psql -c "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND status = 'running'")" = 1 ] \
        && in_flight_is 1
}
pw_wait_until 5 0.1 cancel_in_flight && pw_ok "cancel: the request is in flight, its step row running" \
    || pw_fail "cancel: the request never showed as in flight (steps: $(attempts_of "$r"))"
start=$(pw_now)
c=$(PGOPTIONS="-c statement_timeout=5s" pw_psql -c "SELECT pipeline_worker.cancel_run($r)" 2>&1)
t=$(pw_elapsed "$start")
pw_check "cancel: cancel_run returned true" t "$c"
pw_lt "$t" 2 && pw_ok "cancel: cancel_run took $t s" || pw_fail "cancel: cancel_run took $t s"
pw_check "cancel: the run is cancelled" cancelled "$(wait_status "$r" 5)"
# the worker records the interrupted attempt by itself, possibly a moment after cancel_run returned
pw_wait_sql 0 5 "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND status = 'running'" >/dev/null
pw_info "cancel: step row settled $(pw_elapsed "$start") s after cancel_run; server in_flight $(srv_stat in_flight) (0 = the request was aborted)"
pw_check "cancel: the interrupted attempt is recorded failed and finished" "1.1:failed" \
    "$(pw_psql -c "SELECT string_agg(position || '.' || attempt || ':' || status, ' ') FROM pipeline_worker.run_steps
                    WHERE run_id = $r AND finished_at IS NOT NULL")"

# ---------------------------------------------------------------- cancel of a limited run waiting for its answer
# The run holds its pipeline's slot while its request is out. Cancelled then, the slot must come back. One worker:
# it is inside a 3 s function step (sleeper) when cancel_run comes, so the cancel commits before the worker looks
# at the request again; it then finds the run cancelled and records the attempt. Until 2026-12-04 it kept the slot
# until it exited: at "concurrency": 1 the pipeline's next run never started.
set_guc pipeline_worker.workers 1
pw_wait_workers 1 10 >/dev/null || pw_fail "limited cancel: the workers did not come down to 1"
srv_reset
pw_psql -c "SELECT pipeline_worker.create_pipeline('lim_wait', '[{\"name\": \"call\", \"http\": {\"url\": \"$B/delay?ms=2000\"}}]', '{\"concurrency\": 1}')" >/dev/null
r=$(pw_run lim_wait)
pw_wait_until 5 0.05 in_flight_is 1 || pw_fail "limited cancel: the first request never showed as in flight"
r2=$(pw_run sleeper)
pw_wait_sql 1 5 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event = 'PgSleep'" 0.05 >/dev/null \
    || pw_fail "limited cancel: the worker never started the 3 s step"
pw_check "limited cancel: cancel_run of the run waiting for its answer" t "$(pw_psql -c "SELECT pipeline_worker.cancel_run($r)")"
pw_check "limited cancel: the run is cancelled" cancelled "$(wait_status "$r" 5)"
r3=$(pw_run lim_wait)
pw_check "limited cancel: the pipeline's next run gets the slot and succeeds" succeeded "$(wait_status "$r3" 15)"
pw_check "limited cancel: the 3 s step succeeded meanwhile" succeeded "$(wait_status "$r2" 5)"
pw_check "limited cancel: the cancelled attempt is recorded" "1.1:failed" "$(attempts_of "$r")"
set_guc pipeline_worker.workers 2
pw_wait_workers 2 10 >/dev/null || pw_fail "limited cancel: the workers did not come back to 2"

# ---------------------------------------------------------------- SIGTERM during requests
srv_reset
pw_psql -c "SELECT count(pipeline_worker.create_run('term')) FROM generate_series(1, 20)" >/dev/null
term_in_flight() {
    [ "$(pw_psql -c "SELECT count(*) FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id
                      WHERE r.pipeline = 'term' AND s.status = 'running'")" = 20 ] && in_flight_ge 20
}
pw_wait_until 5 0.1 term_in_flight && pw_ok "SIGTERM: 20 requests in flight, step rows running" \
    || pw_fail "SIGTERM: the 20 requests never were all in flight (server: $(srv_stat in_flight))"
old_pids=$(pw_psql -c "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_stat_activity WHERE $WORKER_FILTER")
start=$(pw_now)
pw_check_sql "SIGTERM: pg_terminate_backend on both workers" 2 \
    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE $WORKER_FILTER"
gone=
pw_wait_sql 0 2.5 "SELECT count(*) FROM pg_stat_activity WHERE pid IN (${old_pids:-0})" 0.05 >/dev/null && gone=1
t=$(pw_elapsed "$start")
[ -n "$gone" ] && pw_lt "$t" 2 && pw_ok "SIGTERM: workers exited promptly during their requests ($t s)" \
    || pw_fail "SIGTERM: workers $old_pids still there after $t s"
pw_wait_workers 2 10 >/dev/null && pw_ok "SIGTERM: the launcher restarted the workers" \
    || pw_fail "SIGTERM: workers not back"
deadline_ok=
# (up to 20 s after the termination)
pw_wait_sql 0 "$(pw_left "$start" 20)" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'term' AND status IN ('pending', 'running')" 0.2 \
    >/dev/null && deadline_ok=1
[ -n "$deadline_ok" ] && pw_ok "SIGTERM: all 20 runs finished $(pw_elapsed "$start") s after the termination" \
    || pw_fail "SIGTERM: runs unfinished 20 s after the termination"
pw_check_sql "SIGTERM: all 20 succeeded with exactly one step row, attempt 1 succeeded" "20 20" \
    "SELECT count(*) FILTER (WHERE r.status = 'succeeded') || ' ' ||
            count(*) FILTER (WHERE (SELECT string_agg(position || '.' || attempt || ':' || status, ' ')
                                      FROM pipeline_worker.run_steps s WHERE s.run_id = r.id) = '1.1:succeeded')
       FROM pipeline_worker.runs r WHERE r.pipeline = 'term'"
KEYS_JSON=$(srv /keys)
pw_check_sql "SIGTERM: every run's key <run>:1:1 reached the server, no <run>:1:2" "20 0" \
    "WITH k AS (SELECT key, value::int AS n FROM jsonb_each_text('$KEYS_JSON'::jsonb))
     SELECT count(*) FILTER (WHERE (SELECT n FROM k WHERE key = r.id || ':1:1') >= 1) || ' ' ||
            count(*) FILTER (WHERE EXISTS (SELECT 1 FROM k WHERE key = r.id || ':1:2'))
       FROM pipeline_worker.runs r WHERE r.pipeline = 'term'"
pw_check_sql "SIGTERM: the interrupted requests were re-issued with the same key (<run>:1:1 seen twice)" 20 \
    "WITH k AS (SELECT key, value::int AS n FROM jsonb_each_text('$KEYS_JSON'::jsonb))
     SELECT count(*) FROM pipeline_worker.runs r WHERE (SELECT n FROM k WHERE key = r.id || ':1:1') >= 2
        AND r.pipeline = 'term'"

# ---------------------------------------------------------------- 1,000 runs: none lost, none duplicated
srv_reset
base_id=$(pw_psql -c "SELECT coalesce(max(id), 0) FROM pipeline_worker.runs")
start=$(pw_now)
pw_psql -c "SELECT count(pipeline_worker.create_run('okp')) FROM generate_series(1, 1000)" >/dev/null
if pw_wait_all_finished 25; then
    pw_info "1,000 /ok runs done in $(pw_elapsed "$start") s"
fi
pw_check_sql "1,000 /ok runs: all succeeded with output {\"ok\": true}" 1000 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id > $base_id AND pipeline = 'okp' AND status = 'succeeded'
        AND result = '{\"ok\": true}'"
pw_check "1,000 /ok runs: the server counted exactly 1,000 requests, 1,000 keys, 0 duplicates, 0 without key" \
    "1000 1000 0 0" "$(srv_stat requests) $(srv_stat keys) $(srv_stat duplicates) $(srv_stat no_key)"

# ---------------------------------------------------------------- cancel_run of a session's HTTP step
# A session's execute_run waits for its request in the session: a cancel_run from elsewhere gives the request up
# within a fraction of a second, and the run is recorded cancelled. (Until 2026-12-05 the request went on to its
# answer, and the cancel_run waited for it.)
set_guc pipeline_worker.workers 0
pw_wait_sql 0 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'" >/dev/null
mkpipe slow5s '[{"name": "call", "http": {"url": "@B@/delay?ms=5000", "timeout_ms": 20000}}]'
r=$(pw_run slow5s)
start=$(pw_now)
pw_psql -c "SELECT pipeline_worker.claim_run()" -c "SELECT pipeline_worker.execute_run($r)" >"$SRV_DIR/session.out" 2>&1 &
session=$!
pw_wait_sql running 5 "SELECT status FROM pipeline_worker.runs WHERE id = $r" >/dev/null
sleep 0.5
pw_check_sql "cancel_run of a run a session is executing (an HTTP step)" t "SELECT pipeline_worker.cancel_run($r)"
wait "$session"
t=$(pw_elapsed "$start")
pw_check "... the session's execute_run ends cancelled" cancelled "$(tail -n 1 "$SRV_DIR/session.out")"
pw_lt "$t" 3 && pw_ok "... in $t s, not at the answer (5 s)" || pw_fail "the session's HTTP step was cancelled only after $t s"
set_guc pipeline_worker.workers 2

# ---------------------------------------------------------------- function steps shared while a request is out
# An HTTP step written after two independent function steps is requested first (steps that only start something go
# before function steps), and the function steps are still shared with the idle worker while the request is out
# (until 2026-12-07: the request left only before the first function step ran, and nothing was shared while it was
# out, so both ran one after the other on the run's worker). Three workers: the run's creation wakes one, which is
# not counted idle until it has looked for work -- with two, the other one was often that one, and nothing was shared.
set_guc pipeline_worker.workers 3
pw_wait_sql 3 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND state = 'idle'" >/dev/null
pw_psql -c "CREATE FUNCTION f_pid_nap(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
            BEGIN PERFORM pg_sleep(0.6); RETURN to_jsonb(pg_backend_pid()); END \$\$" >/dev/null
mkpipe fns_and_call '[{"name": "b", "function": "f_pid_nap", "depends_on": []},
                      {"name": "c", "function": "f_pid_nap", "depends_on": []},
                      {"name": "h", "http": {"url": "@B@/delay?ms=1000"}, "depends_on": []}]'
srv_reset
r=$(pw_run fns_and_call)
pw_check "function steps next to a request: the run succeeds" succeeded "$(wait_status "$r")"
pw_check_sql "... the two function steps ran on two workers, while the request was out" "true|true|1" \
    "SELECT (result->'b' <> result->'c') || '|' ||
            ((SELECT started_at FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'h')
               < (SELECT min(finished_at) FROM pipeline_worker.run_steps WHERE run_id = $r AND name IN ('b', 'c')))
            || '|' || $(srv_stat requests)
       FROM pipeline_worker.runs WHERE id = $r"
set_guc pipeline_worker.workers 2

# ---------------------------------------------------------------- the workers never crashed
crashes=$(grep -c 'terminated by signal' "$PW_LOG")
pw_check "no worker crashed (no 'terminated by signal' in the log)" 0 "$crashes"
kill -0 "$SRV_PID" 2>/dev/null && pw_ok "test server still up" || pw_fail "test server died"
pw_finish
