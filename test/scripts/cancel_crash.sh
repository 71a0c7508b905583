#!/bin/bash
# A cancel that cascades to a descendant run held by another transaction is not lost. cancel_run of a parent cancels
# the descendants whose rows it can lock; one held elsewhere (here: a session's SELECT ... FOR UPDATE, as a worker's
# open batch would) is told through shared memory -- which an immediate stop forgets, and whose ring of 4,096
# requests newer cancels push old ones out of. Since 2026-12-06 the cancelling transaction also records the run in
# pipeline_worker.cancel_requests: the lead worker's look (about once a second) cancels a recorded run once nothing
# holds it, and a claim of a recorded run cancels it before its first step (until then such a run was executed after
# a restart: docs/GUIDE.md, "Limits and known limitations").
# Also what the same crash must not undo: a run executing when its pipeline was paused, stopped by the crash, is
# recovered parked as paused and waits for resume_pipeline (until 2026-12-06 it was executed at once).
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up cancel_crash 2 20 || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE effects (run_id bigint);
CREATE FUNCTION cc_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects VALUES ((ctx->>'run_id')::bigint);
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('cc_kid', '[{"name": "k", "function": "cc_step"}]');
SELECT pipeline_worker.create_pipeline('cc_parent', '[{"name": "kid", "pipeline": "cc_kid"}]');
SELECT pipeline_worker.create_pipeline('cc_top', '[{"name": "mid", "pipeline": "cc_parent"}]');
SELECT pipeline_worker.create_pipeline('cc_fill', '[{"name": "f", "function": "cc_step"}]');
CREATE FUNCTION cc_slow(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects VALUES ((ctx->>'run_id')::bigint);
    PERFORM pg_sleep(30);
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('cc_slow', '[{"name": "s", "function": "cc_slow"}]');
-- the children wait (parked by the pause) until the pipeline is resumed: nothing executes them before that
SELECT pipeline_worker.pause_pipeline('cc_kid');
SELECT pipeline_worker.pause_pipeline('cc_fill');
SQL

# hold RUN: a session holds the run's row (FOR UPDATE) until it is terminated or the server stops
hold() {
    pw_psql -c "BEGIN" -c "SELECT 1 FROM pipeline_worker.runs WHERE id = $1 FOR UPDATE" \
        -c "SELECT pg_sleep(120) /* holding $1 */" >/dev/null 2>&1 &
    pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%/* holding $1 */'" >/dev/null
}
unhold() {
    pw_psql -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120) /* holding $1 */'" >/dev/null
    pw_wait_sql 0 10 "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120) /* holding $1 */'" >/dev/null
}
# child RUN: the run its first step started, once it did
child() {
    pw_wait_sql 1 20 "SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $1" >/dev/null ||
        pw_die "run $1 did not start its child"
    pw_psql -c "SELECT id FROM pipeline_worker.runs WHERE parent_run_id = $1"
}
recorded() { pw_psql -c "SELECT count(*) FROM pipeline_worker.cancel_requests WHERE run_id = $1"; }

# ------------------------------------------------------------------ before the crash
# p1: its child k1 held while p1 is cancelled. t1: its grandchild g1 held while t1 is cancelled (the middle run m1,
# waiting for g1, is cancelled at once). p2: left alone. p3: its child k3 held while a cancel of p3 is rolled back.
p1=$(pw_run cc_parent); p2=$(pw_run cc_parent); p3=$(pw_run cc_parent); t1=$(pw_run cc_top)
k1=$(child "$p1"); k2=$(child "$p2"); k3=$(child "$p3"); m1=$(child "$t1"); g1=$(child "$m1")
hold "$k1" || pw_die "could not hold $k1"
hold "$g1" || pw_die "could not hold $g1"
hold "$k3" || pw_die "could not hold $k3"
# s1 executes its (30 s) step when its pipeline is paused
s1=$(pw_run cc_slow)
pw_wait_sql running 10 "SELECT status FROM pipeline_worker.runs WHERE id = $s1" >/dev/null || pw_die "$s1 did not start"
pw_psql -c "SELECT pipeline_worker.pause_pipeline('cc_slow')" >/dev/null
pw_check "cancel_run of a parent whose child is held elsewhere" t "$(pw_psql -c "SELECT pipeline_worker.cancel_run($p1)")"
pw_check "cancel_run of a top run whose grandchild is held elsewhere" t "$(pw_psql -c "SELECT pipeline_worker.cancel_run($t1)")"
pw_psql -c "BEGIN" -c "SELECT pipeline_worker.cancel_run($p3)" -c "ROLLBACK" >/dev/null
pw_check "the held runs are not cancelled yet (told through shared memory); the waiting middle run is" \
    "pending pending cancelled pending" \
    "$(pw_psql -c "SELECT string_agg(status, ' ' ORDER BY o) FROM pipeline_worker.runs
                     JOIN unnest(ARRAY[$k1, $g1, $m1, $k3]) WITH ORDINALITY AS u(id, o) USING (id)")"
pw_check "... and recorded in cancel_requests (not the one whose cancel rolled back)" "1 1 0" \
    "$(recorded "$k1") $(recorded "$g1") $(recorded "$k3")"

pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" stop -m immediate -w >/dev/null 2>&1
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >/dev/null 2>&1 || pw_die "restart failed"
pw_ok "stopped -m immediate and started again"
wait 2>/dev/null

# ------------------------------------------------------------------ after the restart
if pw_wait_sql "pending 3" 15 "SELECT status || ' ' || coalesce(parked::text, '-') FROM pipeline_worker.runs WHERE id = $s1" >/dev/null; then
    pw_ok "the run stopped by the crash while its pipeline was paused is recovered parked as paused"
else
    pw_fail "run $s1 after the restart: $(pw_psql -c "SELECT status || ' ' || coalesce(parked::text, '-') FROM pipeline_worker.runs WHERE id = $s1")"
fi
pw_retry 20 pw_psql -c "SELECT pipeline_worker.resume_pipeline('cc_kid')" >/dev/null || pw_fail "resume_pipeline"
pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($k1, $g1, $k2, $p2, $k3, $p3)
                  AND status NOT IN ('succeeded', 'failed', 'cancelled')" >/dev/null ||
    pw_fail "runs still unfinished 30 s after the resume"
pw_check "after the restart the held child of the cancelled parent is cancelled, not executed" "cancelled 0" \
    "$(pw_psql -c "SELECT status || ' ' || (SELECT count(*) FROM effects WHERE run_id = $k1) FROM pipeline_worker.runs WHERE id = $k1")"
pw_check "... and so is the held grandchild of the cancelled top run" "cancelled 0" \
    "$(pw_psql -c "SELECT status || ' ' || (SELECT count(*) FROM effects WHERE run_id = $g1) FROM pipeline_worker.runs WHERE id = $g1")"
in_step_sql="SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $s1 step 1 %'"
in_step() { pw_psql -c "$in_step_sql"; }
sleep 1
pw_check "... and waits: a second later it is still parked, its step not started" "pending 3 0" \
    "$(pw_psql -c "SELECT status || ' ' || coalesce(parked::text, '-') FROM pipeline_worker.runs WHERE id = $s1") $(in_step)"
pw_psql -c "SELECT pipeline_worker.resume_pipeline('cc_slow')" >/dev/null
if pw_wait_sql 1 15 "$in_step_sql" >/dev/null; then
    pw_ok "resume_pipeline: its step starts again"
else
    pw_fail "run $s1 after resume_pipeline: $(pw_psql -c "SELECT status FROM pipeline_worker.runs WHERE id = $s1")"
fi
pw_check "cancel_run: the run is cancelled; neither interrupted attempt left an effect" "cancelled 0" \
    "$(pw_psql -c "SELECT pipeline_worker.cancel_run($s1)" >/dev/null; pw_wait_run "$s1" 10) $(pw_psql -c "SELECT count(*) FROM effects WHERE run_id = $s1")"
pw_check "the untouched parent's child ran once, and that parent succeeded" "succeeded 1 succeeded" \
    "$(pw_psql -c "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $k2) || ' ' ||
                          (SELECT count(*) FROM effects WHERE run_id = $k2) || ' ' ||
                          (SELECT status FROM pipeline_worker.runs WHERE id = $p2)")"
pw_check "a cancel rolled back cancels nothing: that child ran once, its parent succeeded" "succeeded 1 succeeded" \
    "$(pw_psql -c "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $k3) || ' ' ||
                          (SELECT count(*) FROM effects WHERE run_id = $k3) || ' ' ||
                          (SELECT status FROM pipeline_worker.runs WHERE id = $p3)")"
pw_check "retry_run of the cancelled child: it runs (its record does not cancel it again)" "t succeeded 1" \
    "$(pw_psql -c "SELECT pipeline_worker.retry_run($k1)") $(pw_wait_run "$k1" 20) $(pw_psql -c "SELECT count(*) FROM effects WHERE run_id = $k1")"
if pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.cancel_requests" >/dev/null; then
    pw_ok "the records of finished runs are swept (by the lead worker, about once a second)"
else
    pw_fail "records left: $(pw_psql -c "SELECT string_agg(run_id::text, ' ') FROM pipeline_worker.cancel_requests")"
fi

# ------------------------------------------------------------------ no crash: the ring forgot
# Shared memory keeps the last 4,096 cancel requests: 4,200 cancels after it push out the request for a held child.
# Its record (committed after the sweep above found none left) stays; once the holder lets go, the lead worker's
# look (about once a second) cancels the run in the table -- parked as paused, it would not be claimed before the
# resume.
pw_psql -c "SELECT pipeline_worker.pause_pipeline('cc_kid')" >/dev/null
# (first: a cancel_run cascading to two free descendants in a new session, where their pipelines' definitions are not
# cached -- loading one ran a statement in the middle of the cascade's loop, which then read its rows instead and
# counted only the first descendant, until 2026-12-06)
cancelled_count() { pw_psql -c "SELECT coalesce(sum(value), 0)::bigint FROM pipeline_worker.metric_samples()
                                 WHERE metric = 'pipeline_worker_runs_finished_total' AND status = 'cancelled'
                                   AND pipeline IN ('cc_parent', 'cc_kid')"; }
t2=$(pw_run cc_top); m2=$(child "$t2"); g2=$(child "$m2")
before=$(cancelled_count)
pw_psql -c "SELECT pipeline_worker.cancel_run($t2)" >/dev/null
pw_check "cancel_run cascading to two descendants in a new session counts both as cancelled (metrics)" 2 \
    "$(( $(cancelled_count) - before ))"
p5=$(pw_run cc_parent); k5=$(child "$p5")
hold "$k5" || pw_die "could not hold $k5"
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('cc_fill', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 4200)))" >/dev/null
pw_check "cancel_run of a parent whose child is held, then 4,200 other cancels" "t 4200 1" \
    "$(pw_psql -c "SELECT pipeline_worker.cancel_run($p5)") $(pw_psql -c "SELECT count(*) FILTER (WHERE pipeline_worker.cancel_run(id))
                                                                          FROM pipeline_worker.runs WHERE pipeline = 'cc_fill'") $(recorded "$k5")"
sleep 1.5
pw_check_sql "while it is held, the child stays pending (parked), its record kept" "pending 1" \
    "SELECT status || ' ' || (SELECT count(*) FROM pipeline_worker.cancel_requests WHERE run_id = $k5) FROM pipeline_worker.runs WHERE id = $k5"
unhold "$k5"
pw_check "once let go, the held child whose request left the ring is cancelled, its pipeline still paused" "cancelled 0" \
    "$(pw_wait_run "$k5" 20) $(pw_psql -c "SELECT count(*) FROM effects WHERE run_id = $k5")"
pw_check_sql "... with the cascade's error" "cancelled: its parent run was cancelled" "SELECT error FROM pipeline_worker.runs WHERE id = $k5"
pw_psql -c "SELECT pipeline_worker.resume_pipeline('cc_kid')" >/dev/null
if pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.cancel_requests" >/dev/null; then
    pw_ok "... and its record is swept"
else
    pw_fail "its record was not swept"
fi
# The claim's look, and retry_run forgetting the run's record. With the workers off (no sweep) a session's claim_run
# looks at the records after a restart: a pending run with a record is cancelled by its executor before its first
# step; a record left for the cancelled k5 (as a record outrun by its run's end could be) must not cancel it once it is
# retried.
pw_cluster_restart "pipeline_worker.enabled = off" || pw_die "restart with the workers off failed"
x=$(pw_run cc_kid)
pw_psql -c "INSERT INTO pipeline_worker.cancel_requests (run_id, error) VALUES ($x, 'test'), ($k5, 'test')" >/dev/null
pw_check "a recorded pending run: claim_run + execute_run in a session cancel it before its step" "$x cancelled 0" \
    "$(pw_psql -c "SELECT pipeline_worker.claim_run()" -c "SELECT pipeline_worker.execute_run($x)" | tr '\n' ' ')$(pw_psql -c "SELECT count(*) FROM effects WHERE run_id = $x")"
pw_psql -c "DELETE FROM pipeline_worker.cancel_requests WHERE run_id = $x" >/dev/null
pw_check "a retried run with a record left: claim_run + execute_run in a session run it" "t $k5 succeeded 1" \
    "$(pw_psql -c "SELECT pipeline_worker.retry_run($k5)") $(pw_psql -c "SELECT pipeline_worker.claim_run()" \
        -c "SELECT pipeline_worker.execute_run($k5)" | tr '\n' ' ')$(pw_psql -c "SELECT count(*) FROM effects WHERE run_id = $k5")"
pw_check_sql "... and its record is gone" 0 "SELECT count(*) FROM pipeline_worker.cancel_requests"
pw_check_sql "no function step ran twice" 0 "SELECT count(*) FROM (SELECT run_id FROM effects GROUP BY run_id HAVING count(*) > 1) d"
pw_finish
