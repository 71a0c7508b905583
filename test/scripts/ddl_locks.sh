#!/bin/bash
# DROP EXTENSION and TRUNCATE of the run tables while the workers drain a backlog: the command waits for the workers'
# transactions and succeeds, no deadlock. Every worker transaction locks the run table before any other table of the
# extension (pg::lock_run_table_first); PostgreSQL's DROP EXTENSION locks the tables to drop in catalog order
# (pipelines before runs) and TRUNCATE in the order written, so until 2026-12-06 either could deadlock with a worker
# ("deadlock detected", one side rolled back; a documented limitation). A ProcessUtility hook (worker/ddl_locks.cpp)
# now takes the run table first -- only for a role that may run the command: others get their error without waiting.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up ddl_locks 6 20 "deadlock_timeout = '50ms'" "pipeline_worker.commit_interval_ms = 5" || exit 1

setup() {
    pw_psql >/dev/null <<'SQL' || pw_die "setup failed"
SET client_min_messages = warning;
CREATE EXTENSION pipeline_worker;
CREATE OR REPLACE FUNCTION public.dl_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (ctx->'input'->>'sleep') IS NOT NULL THEN PERFORM pg_sleep((ctx->'input'->>'sleep')::float8); END IF;
    RETURN jsonb_build_object('v', coalesce((ctx->'prev'->>'v')::int, 0) + 1);
END $$;
SELECT pipeline_worker.create_pipeline('dl', '[{"name": "a", "function": "public.dl_step"},
    {"name": "b", "function": "public.dl_step"}, {"name": "c", "function": "public.dl_step"}]');
-- a step that reads pipeline_stats after a while (its transaction reads the pipelines table after the run table)
-- and notes what it read
CREATE TABLE IF NOT EXISTS public.dl_seen (pipelines bigint);
CREATE OR REPLACE FUNCTION public.dl_stats(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(1);
    INSERT INTO public.dl_seen SELECT count(*) FROM pipeline_worker.pipeline_stats;
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('dl_stats', '[{"name": "stats", "function": "public.dl_stats"}]');
SQL
}
# a backlog the workers drain, submitted in batches while they run (submissions and claims overlap the command)
load() {
    for _ in 1 2 3 4 5 6 7 8; do
        pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('dl',
                      (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 5000)))" >/dev/null 2>&1 || break
    done
}
busy() {  # the workers are executing the backlog
    pw_wait_sql t 20 "SELECT EXISTS (SELECT 1 FROM pipeline_worker.runs WHERE status = 'succeeded')
                        AND EXISTS (SELECT 1 FROM pipeline_worker.runs WHERE status = 'pending')" >/dev/null
}
no_deadlock() {
    pw_check "$1: no deadlock in the server log" "" \
        "$(tail -c +"$(($2 + 1))" "$PW_LOG" | grep -i 'deadlock detected' | head -3)"
}

setup
# ---------------------------------------------------------------- DROP EXTENSION while a step reads pipeline_stats
# The worker's transaction holds the run table and, a second later, the step reads pipeline_stats (the pipelines
# table), which DROP EXTENSION locks before the run table: without the run table first, the DROP held the pipelines
# table while it waited for the run table, and the step waited for the DROP -- until the step's lock wait ended it
# (the step failed; with another lock wait, a deadlock). The DROP now waits for the run table first: the step reads,
# notes what it read and commits, then the DROP goes on.
start=$(pw_log_size)
id=$(pw_run dl_stats '{}')
pw_wait_sql t 20 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'
                                  AND wait_event = 'PgSleep')" >/dev/null || pw_fail "no worker in the sleeping step"
out=$(pw_psql -c "SET statement_timeout = '30s'" -c "DROP EXTENSION pipeline_worker CASCADE" 2>&1) \
    && pw_ok "DROP EXTENSION while a step reading pipeline_stats executes: done" \
    || pw_fail "DROP EXTENSION while a step reading pipeline_stats executes: $out"
no_deadlock "DROP EXTENSION during a step reading pipeline_stats" "$start"
pw_check_sql "... the step under way read pipeline_stats and committed before the DROP went on" 1 \
    "SELECT count(*) FROM public.dl_seen"
pw_psql -c "DROP EXTENSION IF EXISTS pipeline_worker CASCADE" >/dev/null 2>&1
setup

# ---------------------------------------------------------------- DROP EXTENSION under load, five times
start=$(pw_log_size)
dropped=0
for i in 1 2 3 4 5; do
    load &
    loader=$!
    busy || pw_fail "round $i: no backlog was being drained when the command came"
    sleep 0.$((RANDOM % 3 + 1))
    if out=$(pw_psql -c "SET statement_timeout = '60s'" -c "DROP EXTENSION pipeline_worker CASCADE" 2>&1); then
        dropped=$((dropped + 1))
    else
        pw_info "round $i: $out"
    fi
    wait "$loader"
    pw_psql -c "DROP EXTENSION IF EXISTS pipeline_worker CASCADE" >/dev/null 2>&1
    setup
done
pw_check "DROP EXTENSION while the workers drain a backlog: five of five succeeded" 5 "$dropped"
no_deadlock "DROP EXTENSION under load" "$start"
id=$(pw_run dl '{}')
pw_check_sql "runs are served after the extension is created again" succeeded "SELECT pipeline_worker.wait_run($id, '20 s')"

# ---------------------------------------------------------------- TRUNCATE of the run tables under load
# (step rows first, as a user who empties the child table first writes it)
start=$(pw_log_size)
truncated=0
for i in 1 2 3 4 5; do
    load &
    loader=$!
    busy || pw_fail "round $i: no backlog was being drained when the command came"
    sleep 0.$((RANDOM % 3 + 1))
    if out=$(pw_psql -c "SET statement_timeout = '60s'" \
                     -c "TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs" 2>&1); then
        truncated=$((truncated + 1))
    else
        pw_info "round $i: $out"
    fi
    wait "$loader"
done
pw_check "TRUNCATE run_steps, runs while the workers drain a backlog: five of five succeeded" 5 "$truncated"
no_deadlock "TRUNCATE under load" "$start"
pw_wait_sql 0 120 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')" >/dev/null \
    || pw_fail "the runs submitted after the last TRUNCATE were not all finished within 120 s"
pw_check_sql "every run left finished with its three steps (none lost its step rows, none half-truncated)" 0 \
    "SELECT count(*) FROM pipeline_worker.runs r WHERE r.status <> 'succeeded'
        OR (SELECT count(*) FROM pipeline_worker.run_steps s WHERE s.run_id = r.id AND s.status = 'succeeded') <> 3"

# ---------------------------------------------------------------- a role that may not: its error, at once
# A worker's transaction holds the run table for 3 s (a step sleeping); a role that may neither drop the extension nor
# truncate its tables gets 42501 -- not a lock wait (with lock_timeout 500ms, waiting would end in 55P03).
pw_psql -c "CREATE ROLE dl_user LOGIN" >/dev/null
id=$(pw_run dl '{"sleep": 3}')
pw_wait_sql t 20 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'
                                  AND wait_event = 'PgSleep')" >/dev/null || pw_fail "no worker in the sleeping step"
state() { pw_psql -U dl_user -c "SET lock_timeout = '500ms'" -c "\\set VERBOSITY sqlstate" -c "$1" 2>&1 | tail -1 | awk '{print $NF}'; }
pw_check "DROP EXTENSION by a role that may not: 42501, without waiting for the workers" 42501 \
    "$(state "DROP EXTENSION pipeline_worker")"
pw_check "TRUNCATE pipeline_worker.runs by a role that may not: 42501, without waiting" 42501 \
    "$(state "TRUNCATE pipeline_worker.runs")"
pw_check "DROP SCHEMA pipeline_worker CASCADE by a role that may not: 42501, without waiting" 42501 \
    "$(state "DROP SCHEMA pipeline_worker CASCADE")"
pw_check_sql "the sleeping run went on" succeeded "SELECT pipeline_worker.wait_run($id, '20 s')"

pw_finish
