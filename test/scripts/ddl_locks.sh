#!/bin/bash
# TRUNCATE of the run tables while the workers drain a backlog: the command waits for the workers' transactions and
# succeeds, no deadlock. Every worker transaction locks the run table before any other table of the extension
# (pg::lock_run_table_first); PostgreSQL's TRUNCATE locks its list in the order written, so until 2026-12-06
# "TRUNCATE run_steps, runs" under load deadlocked with a worker in most rounds ("deadlock detected", one side rolled
# back). A ProcessUtility hook (worker/ddl_locks.cpp) now takes the run table first -- only for a role that may
# truncate every table listed and lock the run table, and not in a read-only transaction: the hook makes no TRUNCATE
# that fails anyway wait. (DROP EXTENSION is left in PostgreSQL's order, which sessions' create_run and pipeline_stats share:
# see lifecycle.sh.)
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

# ---------------------------------------------------------------- a TRUNCATE that fails: its error, at once
# A worker's transaction holds the run table for 5 s (a step sleeping). A TRUNCATE that fails anyway -- by a role that
# may not truncate the tables, or in a read-only transaction -- gets its error without the hook making it wait for
# the workers (with lock_timeout 500ms, a wait would end in 55P03); one of a table the role may truncate, by a role
# that may not lock the run table, is not held up by the workers either.
pw_psql >/dev/null <<'SQL' || pw_die "roles failed"
CREATE ROLE dl_user LOGIN;
CREATE TABLE public.dl_private (x int);
SQL
id=$(pw_run dl '{"sleep": 5}')
pw_wait_sql t 20 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'
                                  AND wait_event = 'PgSleep')" >/dev/null || pw_fail "no worker in the sleeping step"
state() {  # ROLE SQL: "done", or the SQLSTATE of its error
    local out
    out=$(pw_psql -U "$1" -c "SET lock_timeout = '500ms'" -c "\\set VERBOSITY sqlstate" -c "$2" 2>&1) && echo done ||
        echo "$out" | tail -1 | awk '{print $NF}'
}
pw_check "TRUNCATE pipeline_worker.runs by a role that may not: 42501, without waiting" 42501 \
    "$(state dl_user "TRUNCATE pipeline_worker.runs")"
pw_psql -c "GRANT TRUNCATE ON pipeline_worker.runs TO dl_user" >/dev/null
# (PostgreSQL checks and locks the tables in the order written: dl_private, refused, comes first)
pw_check "TRUNCATE dl_private, runs by a role that may truncate runs but not dl_private: 42501, without waiting" 42501 \
    "$(state dl_user "TRUNCATE public.dl_private, pipeline_worker.runs")"
pw_psql -c "REVOKE TRUNCATE ON pipeline_worker.runs FROM dl_user" \
        -c "GRANT TRUNCATE ON pipeline_worker.finished_minutes TO dl_user" >/dev/null
pw_check "TRUNCATE of another table of the extension by a role that may not lock the run table: not held up" \
    done "$(state dl_user "TRUNCATE pipeline_worker.finished_minutes")"
pw_check "TRUNCATE run_steps, runs in a read-only transaction: 25006, without waiting" 25006 \
    "$(state postgres "BEGIN READ ONLY; TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs")"
pw_check_sql "the sleeping run went on" succeeded "SELECT pipeline_worker.wait_run($id, '20 s')"

pw_finish
