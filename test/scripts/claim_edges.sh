#!/bin/bash
# The workers' claim without a statement (store/direct_claim) in the cases it must get right besides the plain one
# (plans_stats.sh and row_locks.sh have that):
# - cancels racing the claim: a pending run cancelled after a worker's snapshot but before its lock is found in its
#   newest version and not claimed (FOR UPDATE's re-check in READ COMMITTED). Every run whose cancel_run said true
#   ends cancelled, no step of it run after the cancel; every other run succeeds with its step's effect once.
# - an index named runs_ready_idx of another definition: the workers claim through the statement, which never
#   misses a run the index leaves out.
# - a database whose transactions are read-only by default (default_transaction_read_only, in the configuration
#   files or by ALTER DATABASE): the workers say once that they pause, claim nothing and log no error; nothing is
#   lost, and the runs run once the setting is gone (worker/read_only.cpp).
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/../lib/http.sh"
trap pw_http_cleanup EXIT

ROUNDS=${PW_RECHECK_ROUNDS:-8}   # rounds of the race
RUNS=${PW_RECHECK_RUNS:-4000}    # runs per round
CANCELLERS=4                     # sessions cancelling, each its share of the round's runs

pw_cluster_up claim_edges 4 20 "shared_preload_libraries = 'pipeline_worker,auto_explain'" \
    "auto_explain.log_min_duration = -1" "auto_explain.log_nested_statements = on" \
    "pipeline_worker.http_allowed_hosts = '127.0.0.1'" || exit 1
pw_load_fixtures
pw_http_start
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
SELECT pipeline_worker.create_pipeline('rc', '[{"name": "s1", "function": "public.t_step"}]');
-- what each cancel_run said, committed with it
CREATE TABLE public.said (run_id bigint PRIMARY KEY, cancelled boolean NOT NULL);
-- cancels the runs of [lo, hi] whose id is k modulo m, newest first (the workers take the oldest first: the two
-- meet in the middle of the backlog), each in a transaction of its own
CREATE PROCEDURE public.cancel_share(lo bigint, hi bigint, k int, m int) LANGUAGE plpgsql AS $$
DECLARE i bigint;
BEGIN
    FOR i IN SELECT g FROM generate_series(hi, lo, -1) g WHERE g % m = k LOOP
        INSERT INTO public.said VALUES (i, pipeline_worker.cancel_run(i));
        COMMIT;
    END LOOP;
END $$;
SQL

# auto_explain logs the workers' statements (nested ones too) while on: the claim statement shows when it runs
explain_on() { pw_set_conf auto_explain.log_min_duration 0; sleep 0.5; }
explain_off() { pw_reset_conf auto_explain.log_min_duration; sleep 0.5; }

# ------------------------------------------------------------------ cancels racing the claim
dir=$PW_CLUSTER_DIR/race
mkdir -p "$dir"
for r in $(seq 1 "$ROUNDS"); do
    range=$(pw_psql -c "SELECT min(i) || ' ' || max(i) FROM (SELECT pipeline_worker.create_run('rc', jsonb_build_object('n', g, 'race', $r)) i
                                                          FROM generate_series(1, $RUNS) g) s")
    read -r lo hi <<<"$range"
    jobs_=()
    for k in $(seq 0 $((CANCELLERS - 1))); do
        pw_psql -c "CALL public.cancel_share($lo, $hi, $k, $CANCELLERS)" >"$dir/$r.$k" 2>&1 &
        jobs_+=($!)
    done
    for j in "${jobs_[@]}"; do wait "$j" || pw_fail "round $r: a canceller failed: $(cat "$dir"/$r.* | head -3)"; done
done
pw_wait_all_finished 60
pw_check_sql "race: every run's cancel_run was recorded" "$((ROUNDS * RUNS))" "SELECT count(*) FROM public.said"
split=$(pw_psql -c "SELECT count(*) FILTER (WHERE cancelled) || ' cancelled, ' || count(*) FILTER (WHERE NOT cancelled) || ' ran'
                      FROM public.said")
pw_info "race: $split"
pw_check_sql "race: both outcomes happened in every round (the cancels met the claims)" "$ROUNDS" \
    "SELECT count(*) FROM (SELECT r.input->>'race' FROM public.said s JOIN pipeline_worker.runs r ON r.id = s.run_id
                            GROUP BY 1 HAVING bool_or(s.cancelled) AND NOT bool_and(s.cancelled)) x"
pw_check_sql "race: every run cancel_run said true for ended cancelled" 0 \
    "SELECT count(*) FROM public.said s JOIN pipeline_worker.runs r ON r.id = s.run_id
      WHERE s.cancelled AND r.status <> 'cancelled'"
# (A run cancelled while a worker executed it keeps the effects of the steps it recorded as succeeded -- GUIDE,
# cancel_run: here its only step, done before the cancel but not yet its run's outcome. A worker that claimed a run
# already cancelled would execute its step after the cancel.)
pw_check_sql "race: no step of a cancelled run ran after the cancel" 0 \
    "SELECT count(*) FROM public.said s JOIN public.fx f ON f.run_id = s.run_id JOIN pipeline_worker.runs r ON r.id = s.run_id
      WHERE s.cancelled AND f.at >= r.finished_at"
pw_check_sql "race: a cancelled run's effect is of a step recorded as succeeded" 0 \
    "SELECT count(*) FROM public.said s JOIN public.fx f ON f.run_id = s.run_id
      WHERE s.cancelled AND NOT EXISTS (SELECT 1 FROM pipeline_worker.run_steps rs WHERE rs.run_id = s.run_id
                                           AND rs.status = 'succeeded')"
pw_info "race: $(pw_psql -c "SELECT count(*) FROM public.said s JOIN public.fx f ON f.run_id = s.run_id WHERE s.cancelled") cancelled runs had done their step before the cancel"
pw_check_sql "race: every other run succeeded, its step's effect there once" 0 \
    "SELECT count(*) FROM public.said s JOIN pipeline_worker.runs r ON r.id = s.run_id
      WHERE NOT s.cancelled AND (r.status <> 'succeeded' OR (SELECT count(*) FROM public.fx f WHERE f.run_id = s.run_id) <> 1)"
pw_check "race: no errors in the log" "" "$(pw_log_problems)"

# ------------------------------------------------------------------ an index of another definition
# runs_ready_idx replaced by one that leaves out runs of negative priority. The workers' claim must not read it as
# the queue: it declines, and the claim statement (which cannot use the index for its condition) takes every run.
pw_psql >/dev/null <<'SQL' || pw_fail "index swap failed"
ALTER INDEX pipeline_worker.runs_ready_idx RENAME TO runs_ready_idx_shipped;
CREATE INDEX runs_ready_idx ON pipeline_worker.runs ((- priority), id)
    WHERE status = 'pending' AND not_before IS NULL AND parked IS NULL AND priority >= 0;
SQL
explain_on
from=$(pw_log_size)
ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('rc', jsonb_build_object('n', g, 'swap', 1), priority => -1 - g % 3)::text, ',')
                   FROM generate_series(1, 200) g")
pw_wait_sql 200 20 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status = 'succeeded'" >/dev/null
pw_check_sql "another index: the 200 runs it leaves out were claimed and succeeded" 200 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status = 'succeeded'"
claims=$(tail -c +"$((from + 1))" "$PW_LOG" | grep -c 'Query Text: /\* pw_indexes: runs_ready_idx \*/ SELECT id, pipeline')
if [ "$claims" -gt 0 ]; then pw_ok "another index: the workers claimed through the statement ($claims claims)"
else pw_fail "another index: no claim statement in the log"; fi
pw_psql >/dev/null <<'SQL' || pw_fail "index swap back failed"
DROP INDEX pipeline_worker.runs_ready_idx;
ALTER INDEX pipeline_worker.runs_ready_idx_shipped RENAME TO runs_ready_idx;
SQL
from=$(pw_log_size)
ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('rc', jsonb_build_object('n', g, 'back', 1), priority => -1)::text, ',')
                   FROM generate_series(1, 100) g")
pw_wait_sql 100 20 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status = 'succeeded'" >/dev/null
pw_check_sql "the shipped index back: 100 runs succeeded" 100 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status = 'succeeded'"
pw_check "the shipped index back: no claim statement again" 0 \
    "$(tail -c +"$((from + 1))" "$PW_LOG" | grep -c 'Query Text: /\* pw_indexes: runs_ready_idx \*/ SELECT id, pipeline')"
explain_off

# ------------------------------------------------------------------ a database read-only by default
# (What a managed service does to a nearly full disk: default_transaction_read_only on, in the configuration files.)
# A session may still write, by turning it off for itself: its runs wait.
rw() { pw_psql -c "SET default_transaction_read_only = off" "$@"; }
log_count() { tail -c +"$((from + 1))" "$PW_LOG" | grep -c "$1"; }
paused_all() { [ "$(log_count 'pauses in database')" -ge 4 ]; }
read_only_case() {  # NAME : the setting is on (the workers told); 20 runs submitted wait, no error logged
    pw_wait_until 10 0.2 paused_all || pw_fail "$1: the workers did not say they pause ($(log_count 'pauses in database') of 4)"
    ids=$(rw -c "SELECT string_agg(pipeline_worker.create_run('rc', jsonb_build_object('n', g, 'ro', '$1'))::text, ',')
                  FROM generate_series(1, 20) g")
    sleep 3
    pw_check_sql "$1: the 20 runs submitted meanwhile wait, not claimed" "20 0" \
        "SELECT count(*) FILTER (WHERE status = 'pending' AND claims = 0) || ' ' || (SELECT count(*) FROM public.fx WHERE run_id IN ($ids))
           FROM pipeline_worker.runs WHERE id IN ($ids)"
    pw_check "$1: no error logged while read-only" "" "$(pw_log_problems "$from")"
    pw_check_sql "$1: the workers show that they pause" 4 \
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query = 'paused: default_transaction_read_only is on'"
}
runs_succeeded() {  # NAME
    pw_wait_sql 20 20 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status = 'succeeded'" >/dev/null
    pw_check_sql "$1: once it is off, the 20 runs ran, each step once" "20 20" \
        "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' || (SELECT count(*) FROM public.fx WHERE run_id IN ($ids))
           FROM pipeline_worker.runs WHERE id IN ($ids)"
}
# Three HTTP runs in flight when it starts: answered meanwhile, recorded once it is off, each request sent once.
pw_psql -c "SELECT pipeline_worker.create_pipeline('rc_http', '[{\"name\": \"call\", \"http\": {\"url\": \"$B/delay?ms=4000\"}}]')" \
    >/dev/null || pw_fail "HTTP pipeline not created"
srv_reset
http_ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('rc_http')::text, ',') FROM generate_series(1, 3)")
pw_wait_sql 3 10 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($http_ids) AND status = 'running'" >/dev/null ||
    pw_fail "the HTTP runs did not start"
from=$(pw_log_size)
pw_set_conf default_transaction_read_only on || pw_fail "default_transaction_read_only not set"
read_only_case config_file
pw_check_sql "config_file: the HTTP runs in flight, answered meanwhile, still wait to be recorded" 3 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($http_ids) AND status = 'running'"
pw_wait_until 10 0.2 eval '[ "$(srv_stat in_flight)" = 0 ]'
stats=$(srv /stats)
pw_check "config_file: the endpoint answered the 3 requests" "3 0" "$(srv_stat requests "$stats") $(srv_stat in_flight "$stats")"
pw_check_sql "config_file: ... and the workers, paused, did not record the answers" 3 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($http_ids) AND status = 'running'"
pw_reset_conf default_transaction_read_only
runs_succeeded config_file
pw_wait_sql 3 10 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($http_ids) AND status = 'succeeded'" >/dev/null
pw_check_sql "config_file: the HTTP runs' answers were recorded once it was off" 3 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($http_ids) AND status = 'succeeded'"
pw_check "config_file: each HTTP request was sent once" 3 "$(srv_stat requests)"
pw_check "config_file: the workers said they resume" 4 "$(log_count 'resumes in database')"
# ALTER DATABASE ... SET applies when a session starts: workers started under it pause, and leave for new sessions
# once it is reset.
from=$(pw_log_size)
rw -c "ALTER DATABASE $PGDATABASE SET default_transaction_read_only = on" >/dev/null || pw_fail "ALTER DATABASE failed"
pw_set_conf pipeline_worker.workers 0 || pw_fail "workers not set to 0"
pw_wait_workers 0 10 >/dev/null || pw_fail "workers still running with workers = 0"
pw_reset_conf pipeline_worker.workers
pw_wait_workers 4 20 >/dev/null || pw_fail "the 4 workers did not come back"
read_only_case alter_database
rw -c "ALTER DATABASE $PGDATABASE RESET default_transaction_read_only" >/dev/null || pw_fail "ALTER DATABASE RESET failed"
runs_succeeded alter_database
if pw_wait_until 10 0.2 eval '[ "$(log_count "leaves for a new session")" -ge 4 ]'; then
    pw_ok "alter_database: the 4 paused workers left for new sessions"
else
    pw_fail "alter_database: $(log_count 'leaves for a new session') of the 4 paused workers left for new sessions"
fi
pw_check_sql "alter_database: no worker paused any more" 0 \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'paused:%'"
pw_check "alter_database: no error logged" "" "$(pw_log_problems "$from")"

pw_check_sql "every run's step ran once" 0 "SELECT count(*) FROM (SELECT run_id FROM public.fx GROUP BY 1 HAVING count(*) > 1) x"
pw_finish
