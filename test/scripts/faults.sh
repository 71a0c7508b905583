#!/bin/bash
# Fault injection (durability): while 2,000 three-step runs are executing, kill workers in three ways
#   A. SIGKILL of workers (the postmaster reinitialises: every backend dies, crash recovery runs)
#   B. pg_terminate_backend of workers
#   C. pg_ctl stop -m immediate, then start
# and prove afterwards, for each phase: every run finished and succeeded, every step's side effect happened
# exactly once, results are exact, exactly one succeeded run_steps row per (run, position), no run stuck.
# The runs use the 0.2 flow control: half of them go to a pipeline with concurrency limits (pipeline-wide and per
# key, so runs are parked and put back while the faults land), all have priorities and idempotency keys, every
# seventh waits for a run_at a moment ahead (the timer brings it in). Two databases are served
# (pipeline_worker.databases), each with its own runs: the workers move between them while the faults land.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT
RUNS=${PW_FAULT_RUNS:-2000}

PW_WORKERS=6 pw_cluster_start faults "restart_after_crash = on" "pipeline_worker.recovery_interval_ms = 500" \
    "pipeline_worker.databases = 'postgres, faults_b'"
DBS="postgres faults_b"
pw_psql -c "CREATE DATABASE faults_b" >/dev/null || pw_die "CREATE DATABASE faults_b"
for db in $DBS; do
pw_psql -d "$db" >/dev/null <<'SQL' || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
-- side effects without a unique key: a duplicate execution would show up as a count of 2
CREATE TABLE fx (run_id bigint NOT NULL, step int NOT NULL, at timestamptz DEFAULT clock_timestamp());
CREATE INDEX ON fx (run_id, step);
CREATE FUNCTION fstep(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE k int := (ctx->>'position')::int;
BEGIN
    INSERT INTO fx (run_id, step) VALUES ((ctx->>'run_id')::bigint, k);
    PERFORM pg_sleep(0.003);   -- long enough that kills land inside steps
    RETURN jsonb_build_object('value', (ctx->'prev'->>'value')::bigint + k);
END $$;
SELECT pipeline_worker.create_pipeline('faulty', '[{"name": "s1", "function": "fstep"},
    {"name": "s2", "function": "fstep"}, {"name": "s3", "function": "fstep"}]');
SELECT pipeline_worker.create_pipeline('faulty_lim', '[{"name": "s1", "function": "fstep"},
    {"name": "s2", "function": "fstep"}, {"name": "s3", "function": "fstep"}]',
    '{"concurrency": 4, "concurrency_per_key": 2}');
SQL
done

# psql that survives the server being down for a moment (crash recovery, restart): retries for up to 20 s
psql_retry() { pw_retry 20 pw_psql "$@"; }

submit() {  # $1 = phase tag: RUNS runs with input value = phase*100000 + i, in each database
    # (a retry after the server went away creates nothing twice: the idempotency keys)
    local db
    for db in $DBS; do PGDATABASE=$db submit_in "$1"; done
}
submit_in() {
    psql_retry -c "SELECT count(pipeline_worker.create_run(CASE WHEN g % 2 = 0 THEN 'faulty' ELSE 'faulty_lim' END,
                     jsonb_build_object('value', $1 * 100000 + g, 'phase', $1), priority => g % 10,
                     run_at => CASE WHEN g % 7 = 0 THEN clock_timestamp() + (g % 10) * interval '100 ms' END,
                     idempotency_key => 'p$1-' || g, concurrency_key => 'k' || (g % 5)))
                   FROM generate_series(1, $RUNS) g" >/dev/null
}

verify() {  # $1 = phase tag, $2 = description: in each database
    local db
    for db in $DBS; do PGDATABASE=$db verify_in "$1" "$2 [$db]"; done
}
verify_in() {
    local phase=$1 what=$2 left
    left=$(pw_wait_sql 0 120 "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '$phase' AND status IN ('pending', 'running')" 0.3) \
        || { pw_fail "$what: $left runs unfinished after 120 s (stuck)"; stuck_report "$phase"; return; }
    pw_check_sql "$what: all $RUNS runs succeeded, none left parked or due" "$RUNS" \
        "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '$phase' AND status = 'succeeded'"
    pw_check_sql "$what: results exact (input + 6)" "0" \
        "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '$phase'
           AND (result->>'value')::bigint IS DISTINCT FROM (input->>'value')::bigint + 6"
    pw_check_sql "$what: every step's side effect exactly once" "$((RUNS * 3)) 0" \
        "SELECT count(*) || ' ' || count(*) FILTER (WHERE n <> 1) FROM (
           SELECT f.run_id, f.step, count(*) n FROM fx f JOIN pipeline_worker.runs r ON r.id = f.run_id
            WHERE r.input->>'phase' = '$phase' GROUP BY 1, 2) s"
    pw_check_sql "$what: one succeeded step row per (run, position), outputs exact" "$((RUNS * 3)) 0" \
        "SELECT count(*) || ' ' || count(*) FILTER (WHERE (s.output->>'value')::bigint
                 <> (r.input->>'value')::bigint + (s.position * (s.position + 1)) / 2)
           FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id
          WHERE r.input->>'phase' = '$phase' AND s.status = 'succeeded'"
    pw_check_sql "$what: no failed step attempts" "0" \
        "SELECT count(*) FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id
          WHERE r.input->>'phase' = '$phase' AND s.status <> 'succeeded'"
}

stuck_report() {  # what the stuck runs look like (for a failure seen only in CI)
    pw_psql -c "SELECT id, pipeline, status, priority, parked, not_before, worker_pid, claims, concurrency_key,
                       (SELECT count(*) FROM pg_locks l WHERE l.locktype = 'transactionid') AS xid_locks
                  FROM pipeline_worker.runs WHERE input->>'phase' = '$1' AND status IN ('pending', 'running')
                 ORDER BY id LIMIT 20" | sed 's/^/info   stuck: /'
    pw_psql -c "SELECT pid, backend_type, state, wait_event, left(query, 60) FROM pg_stat_activity
                 WHERE backend_type LIKE 'pipeline_worker%'" | sed 's/^/info   backend: /'
    pw_psql -c "SELECT pipeline, status, count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')
                 GROUP BY 1, 2" | sed 's/^/info   open runs: /'
}

in_progress() {  # how many of this phase's runs are done (both databases)
    echo $(( $(PGDATABASE=postgres psql_retry -c "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '$1' AND status = 'succeeded'") \
           + $(PGDATABASE=faults_b psql_retry -c "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '$1' AND status = 'succeeded'") ))
}

# ---------------------------------------------------------------- A: SIGKILL
submit 1
kills=0
# (up to 15 tries for 4 kills: after a kill the first try often finds the workers not back yet from crash recovery)
for i in $(seq 1 15); do
    [ "$kills" -ge 4 ] && break
    sleep 0.4
    pid=$(psql_retry -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND state = 'active' ORDER BY random() LIMIT 1")
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
done
done_at_kill=$(in_progress 1)
pw_info "A: $kills SIGKILLs; $done_at_kill/$((2 * RUNS)) runs done at the last kill"
[ "$kills" -ge 3 ] && pw_ok "A: killed workers with SIGKILL $kills times mid-load" || pw_fail "A: could not kill workers ($kills)"
verify 1 "A (SIGKILL)"
pw_check "A: crash recovery happened" "yes" "$(grep -q 'terminated by signal 9' "$PW_LOG" && echo yes || echo no)"

# ---------------------------------------------------------------- B: pg_terminate_backend
submit 2
terms=0
for i in $(seq 1 20); do
    [ "$terms" -ge 6 ] && break
    sleep 0.25
    t=$(psql_retry -c "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity
                         WHERE backend_type = 'pipeline_worker' AND state = 'active' ORDER BY random() LIMIT 1) s")
    terms=$((terms + ${t:-0}))
done
pw_info "B: $terms workers terminated; $(in_progress 2)/$((2 * RUNS)) runs done at the last one"
[ "$terms" -ge 5 ] && pw_ok "B: terminated workers $terms times mid-load" || pw_fail "B: could not terminate workers ($terms)"
verify 2 "B (pg_terminate_backend)"
pw_check "B: workers are back" "6" "$(pw_wait_sql 6 15 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'")"

# ---------------------------------------------------------------- C: immediate stop + start
submit 3
for i in 1 2; do
    sleep 0.6
    pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" stop -m immediate -w >/dev/null 2>&1
    pw_info "C: immediate stop $i; restarting"
    pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >/dev/null 2>&1 || pw_die "C: restart failed"
done
pw_info "C: $(in_progress 3)/$((2 * RUNS)) runs done after the restarts"
verify 3 "C (pg_ctl stop -m immediate)"

# ---------------------------------------------------------------- a claim by a session that disconnects
pw_retry 20 pw_set_conf pipeline_worker.workers 0 >/dev/null
pw_wait_workers 0 15 >/dev/null || pw_fail "workers did not stop after pipeline_worker.workers = 0"
orphan=$(psql_retry -c "SELECT pipeline_worker.create_run('faulty', '{\"value\": 7, \"phase\": 7}')")
claimed=$(psql_retry -c "SELECT pipeline_worker.claim_run()")   # session ends right after claiming
pw_check "session claim: claimed the new run" "$orphan" "$claimed"
pw_check_sql "session claim: the run is running with a dead claimer" "running" "SELECT status FROM pipeline_worker.runs WHERE id = $orphan"
pw_retry 20 pw_set_conf pipeline_worker.workers 2 >/dev/null
pw_check_sql "session claim: recovered and completed by a worker" "succeeded" "SELECT pipeline_worker.wait_run($orphan, '15 s')"
pw_check_sql "session claim: result exact" "13" "SELECT result->>'value' FROM pipeline_worker.runs WHERE id = $orphan"
grep -q "recovered .* run(s) whose worker had exited" "$PW_LOG" && pw_ok "log: 'recovered N run(s)' lines present" \
    || pw_fail "log: no recovery line"
# ... with the workers running and recovery_interval_ms below a second: the lead's sweep comes that often (until
# 2026-12-07 its 1 s sleep held it at a second: ~1.0 s here, where 100 ms gives ~0.1-0.2 s)
pw_set_conf pipeline_worker.recovery_interval_ms 100 >/dev/null || pw_fail "recovery_interval_ms = 100"
sleep 1.2  # (the lead's sleep begun before the reload ends)
out=$(printf '%s\n' "BEGIN;" "SELECT pipeline_worker.create_run('faulty', '{\"value\": 7}') \\gset" \
                     "SELECT pipeline_worker.claim_run() = :create_run;" "COMMIT;" "SELECT :create_run;" | pw_psql)
start=$(pw_now)
orphan=$(tail -1 <<<"$out")
pw_check "session claim with workers running: the session claimed the run it created" t "$(head -1 <<<"$out")"
pw_check_sql "session claim with workers running: recovered and completed" "succeeded" \
    "SELECT pipeline_worker.wait_run($orphan, '15 s')"
# (timed by the server: from the run's creation in the session's short transaction to its finish)
took=$(pw_psql -c "SELECT round(extract(epoch FROM finished_at - created_at)::numeric, 3)
                    FROM pipeline_worker.runs WHERE id = $orphan")
pw_info "recovery_interval_ms = 100: the orphan finished $took s after its creation" \
    "(wall clock: $(pw_elapsed "$start") s after its session ended)"
pw_lt "$took" 0.8 && pw_ok "recovery_interval_ms below a second is honoured (orphan done in under 0.8 s)" \
    || pw_fail "recovery_interval_ms = 100: the orphan was done $took s after its creation"
pw_reset_conf pipeline_worker.recovery_interval_ms
pw_finish
