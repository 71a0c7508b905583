#!/bin/bash
# ALTER EXTENSION ... UPDATE from 0.1 while a worker's transaction is in the middle of a run: the update and the
# worker never deadlock. The workers lock the run table before any other table of the extension in every transaction
# (pg::lock_run_table_first); the update script's first statement alters the run table. Until 2026-12-05 a worker's
# transaction after a commit between two steps held the step rows (here: the step reads them) without the run table;
# the update took the run table, waited for the step rows, and the worker's outcome waited for the run table:
# "deadlock detected", one of them rolled back (about one update in sixteen under a plain load).
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up upgrade_locks 1 20 "pipeline_worker.commit_interval_ms = 20" "deadlock_timeout = '200ms'" || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "0.1 fixtures failed"
CREATE EXTENSION pipeline_worker VERSION '0.1';
CREATE TABLE effects (run_id bigint, step text, PRIMARY KEY (run_id, step));
-- longer than commit_interval_ms: the worker commits between the two steps
CREATE FUNCTION ul_first(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN INSERT INTO effects VALUES ((ctx->>'run_id')::bigint, ctx->>'step'); PERFORM pg_sleep(0.1); RETURN '{}'; END $$;
-- reads the step rows (their table's lock, held until the worker's transaction ends), then takes its time
CREATE FUNCTION ul_second(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(*) FROM pipeline_worker.run_steps;
    INSERT INTO effects VALUES ((ctx->>'run_id')::bigint, ctx->>'step');
    PERFORM pg_sleep(1.5);
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('ul', '[{"name": "a", "function": "ul_first"}, {"name": "b", "function": "ul_second"}]');
SQL
start=$(pw_log_size)
id=$(pw_run ul '{}')
pw_wait_sql t 20 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'
                                  AND query LIKE '%step 2%')" >/dev/null \
    || pw_fail "the worker never reached the second step"
sleep 0.2
out=$(pw_psql -c "SET statement_timeout = '30s'" -c "ALTER EXTENSION pipeline_worker UPDATE" 2>&1) \
    && pw_ok "ALTER EXTENSION UPDATE while a worker's transaction holds the step rows: done" \
    || pw_fail "ALTER EXTENSION UPDATE failed: $out"
pw_check_sql "updated to 0.2" "0.2" "SELECT extversion FROM pg_extension WHERE extname = 'pipeline_worker'"
pw_check_sql "the run in the middle of the update succeeded" succeeded "SELECT pipeline_worker.wait_run($id, '30 s')"
pw_check_sql "each of its steps took effect once" "a,b" "SELECT string_agg(step, ',' ORDER BY step) FROM effects"
pw_check "no deadlock in the server log" "" "$(tail -c +"$((start + 1))" "$PW_LOG" | grep -i 'deadlock detected' | head -3)"
pw_finish
