#!/bin/bash
# The lead worker vacuums the run tables itself (pipeline_worker.vacuum_interval_ms) when they hold enough dead rows:
# autovacuum is off here, so every VACUUM counted on them is the extension's. It is a plain VACUUM that skips a table
# someone else is vacuuming or locking (the runs keep flowing), it stops when set to 0, and terminating or killing the
# worker in the middle of one loses no run and repeats no step's effect.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

PW_WORKERS=2 pw_cluster_start selfvacuum "autovacuum = off" "pipeline_worker.vacuum_interval_ms = 300" \
    "pipeline_worker.retention = '1 second'"
pw_psql >/dev/null <<'SQL' || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE effects (run_id bigint NOT NULL, n int NOT NULL);
CREATE FUNCTION effect(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.effects VALUES ((ctx->>'run_id')::bigint, (ctx->'input'->>'n')::int);
    RETURN '{}';
END $$;
CREATE FUNCTION quick(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT pipeline_worker.create_pipeline('fx', '[{"name": "e", "function": "effect"}, {"name": "q", "function": "quick"}]');
SQL
pw_wait_workers 2 20 >/dev/null || pw_die "no workers"

vacuums() { pw_psql -c "SELECT vacuum_count + autovacuum_count FROM pg_stat_user_tables WHERE relid = 'pipeline_worker.runs'::regclass"; }
submit() {  # N FIRST: N runs of fx with inputs FIRST..FIRST+N-1, one create_runs call
    pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('fx', (SELECT jsonb_agg(jsonb_build_object('n', g))
                  FROM generate_series($2, $2 + $1 - 1) g))" >/dev/null || pw_fail "create_runs failed"
}
settled() {  # every run finished, and retention has deleted them (else: what is left, and what the workers do)
    pw_wait_sql 0 90 "SELECT count(*) FROM pipeline_worker.runs" 0.3 >/dev/null && return 0
    pw_info "left: $(pw_psql -c "SELECT string_agg(status || ' ' || n || ' (finished ' || coalesce(f, '-') || ')', ', ')
                                  FROM (SELECT status, count(*) n, min(finished_at)::time || '..' || max(finished_at)::time f
                                          FROM pipeline_worker.runs GROUP BY 1) x")"
    pw_info "workers: $(pw_psql -c "SELECT string_agg(pid || ' ' || state || ' ' || coalesce(wait_event_type || ':' || wait_event, '-')
                                       || ' ' || left(query, 60) || ' (' || (now() - query_start)::text || ')', ' | ')
                                     FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'")"
    pw_info "dead rows: $(pw_psql -c "SELECT string_agg(relname || ' ' || n_dead_tup, ', ') FROM pg_stat_user_tables
                                       WHERE schemaname = 'pipeline_worker' AND relname IN ('runs', 'run_steps')")"
    return 1
}
log0=$(pw_log_size)

# 1. Dead rows (updated and deleted runs, deleted steps) and no autovacuum: the lead worker vacuums.
submit 30000 1
settled || pw_fail "30,000 runs not finished and deleted in 90 s"
got=$(pw_wait_sql t 20 "SELECT vacuum_count > 0 AND n_dead_tup < 10000 FROM pg_stat_user_tables
                         WHERE relid = 'pipeline_worker.runs'::regclass" 0.3)
pw_check "with autovacuum off, runs was vacuumed (by the lead worker) and holds few dead rows" "t" "$got"
pw_check_sql "run_steps too" "t" \
    "SELECT vacuum_count > 0 FROM pg_stat_user_tables WHERE relid = 'pipeline_worker.run_steps'::regclass"
pw_check_sql "every step's effect once" "30000|30000" "SELECT count(*), count(DISTINCT n) FROM effects"

# 2. A table someone else holds (another VACUUM, an ANALYZE: the same lock) is skipped, not waited for.
pw_psql -c "TRUNCATE effects" >/dev/null
lockfile=$(mktemp)
# (held until the checks below are done -- not a fixed 8 s, which a slow machine could spend submitting)
pw_session_open "$lockfile" "BEGIN; LOCK TABLE pipeline_worker.runs IN SHARE UPDATE EXCLUSIVE MODE; SELECT 'locked';" \
    "COMMIT;"
pw_wait_until 10 0.1 grep -q locked "$lockfile" || pw_fail "the lock was not taken"
t0=$(pw_now)
submit 20000 100001
left=$(pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')" 0.2)
pw_check "while another session holds runs' vacuum lock, 20,000 runs finish (the lead worker does not wait for it)" \
    "0" "$left"
pw_check_sql "... and no worker waited for a lock" "0" \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event_type = 'Lock'"
pw_check "... while the lock was still held" "locked" "$(kill -0 "$PW_SESSION_PID" 2>/dev/null && echo locked)"
pw_session_close
rm -f "$lockfile"
pw_info "20,000 runs under the held lock: $(pw_elapsed "$t0") s"
settled || pw_fail "runs not deleted after the lock was released"

# 3. Terminated or killed in the middle of a VACUUM: nothing lost, no effect twice.
pw_psql -c "TRUNCATE effects" >/dev/null
submit 40000 200001
hits=0 kills=0
for i in $(seq 1 60); do
    pid=$(pw_psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'
                        AND query LIKE 'VACUUM pipeline_worker%' AND state = 'active' LIMIT 1")
    if [ -n "$pid" ]; then
        if [ $((hits % 2)) -eq 0 ]; then pw_psql -c "SELECT pg_terminate_backend($pid)" >/dev/null
        else kill -9 "$pid" 2>/dev/null && kills=$((kills + 1)); fi
        hits=$((hits + 1))
        [ "$hits" -ge 4 ] && break
        sleep 1
        pw_wait_until 30 0.2 pw_psql -c "SELECT 1" >/dev/null 2>&1  # (a SIGKILL restarts the server)
    fi
    sleep 0.1
done
pw_info "workers interrupted in a VACUUM: $hits (SIGKILL: $kills)"
[ "$hits" -gt 0 ] && pw_ok "a worker was interrupted in the middle of a VACUUM" \
    || pw_info "no VACUUM caught in progress this time (they are short); the load went on anyway"
pw_wait_workers 2 30 >/dev/null || pw_fail "the workers did not come back"
settled || pw_fail "40,000 runs not finished and deleted after the interruptions"
pw_check_sql "after the interruptions every run's effect exactly once" "40000|40000|0" \
    "SELECT count(*), count(DISTINCT n), count(*) - count(DISTINCT n) FROM effects"

# 4. Off: no VACUUM any more.
pw_set_conf pipeline_worker.vacuum_interval_ms 0 || pw_fail "set vacuum_interval_ms"
before=$(vacuums)
submit 20000 300001
settled || pw_fail "runs not finished and deleted with vacuum_interval_ms = 0"
sleep 2
pw_check "with vacuum_interval_ms = 0 the run tables are left to autovacuum (no VACUUM of runs)" "$before" "$(vacuums)"
problems=$(pw_log_problems_beyond_kills "$log0")
pw_check "no other error in the server log" "" "$problems"
pw_finish
