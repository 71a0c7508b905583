#!/bin/bash
# A cancel that cascades to a child run held by another transaction survives a crash. cancel_run of a parent cancels
# the children whose rows it can lock; a child held elsewhere (here: a session's SELECT ... FOR UPDATE, as a worker's
# open batch would) is told through shared memory instead, and an immediate stop forgets that. Since 2026-12-05 the
# claim of a child whose parent is cancelled (or failed) asks for its cancel itself: after the restart the child is
# cancelled before its step, which never runs. Until then it ran (docs/GUIDE.md, "Limits and known limitations").
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
-- the children wait (paused) until the end: nothing executes them before the crash
SELECT pipeline_worker.pause_pipeline('cc_kid');
SQL

# held KID : a session holds the child's row (FOR UPDATE) until the server stops
held() {
    pw_psql -c "BEGIN" -c "SELECT 1 FROM pipeline_worker.runs WHERE id = $1 FOR UPDATE" -c "SELECT pg_sleep(120)" \
        >/dev/null 2>&1 &
    pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'" >/dev/null
}

# two parents, each waiting for its child: one cancelled while its child is held, one left alone
p1=$(pw_psql -c "SELECT pipeline_worker.create_run('cc_parent', '{}')")
p2=$(pw_psql -c "SELECT pipeline_worker.create_run('cc_parent', '{}')")
pw_wait_sql 2 20 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($p1, $p2) AND status = 'waiting'" >/dev/null \
    || pw_die "the parents did not start their children"
k1=$(pw_psql -c "SELECT id FROM pipeline_worker.runs WHERE parent_run_id = $p1")
k2=$(pw_psql -c "SELECT id FROM pipeline_worker.runs WHERE parent_run_id = $p2")
held "$k1" || pw_die "could not hold the child's row"
pw_check "cancel_run of the parent whose child is held elsewhere" t \
    "$(pw_psql -c "SELECT pipeline_worker.cancel_run($p1)")"
pw_check "the parent is cancelled; its held child is not (yet): told through shared memory" "cancelled pending" \
    "$(pw_psql -c "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $p1) || ' ' ||
                          (SELECT status FROM pipeline_worker.runs WHERE id = $k1)")"

pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" stop -m immediate -w >/dev/null 2>&1
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >/dev/null 2>&1 || pw_die "restart failed"
pw_ok "stopped -m immediate and started again"
wait 2>/dev/null

pw_retry 20 pw_psql -c "SELECT pipeline_worker.resume_pipeline('cc_kid')" >/dev/null || pw_fail "resume_pipeline"
pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($k1, $k2, $p2)
                  AND status NOT IN ('succeeded', 'failed', 'cancelled')" >/dev/null
pw_check "after the restart the child of the cancelled parent is cancelled, not run" cancelled \
    "$(pw_psql -c "SELECT status FROM pipeline_worker.runs WHERE id = $k1")"
pw_check "... its step never ran" 0 "$(pw_psql -c "SELECT count(*) FROM effects WHERE run_id = $k1")"
pw_check "the other parent's child ran once, and the other parent succeeded" "succeeded 1 succeeded" \
    "$(pw_psql -c "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $k2) || ' ' ||
                          (SELECT count(*) FROM effects WHERE run_id = $k2) || ' ' ||
                          (SELECT status FROM pipeline_worker.runs WHERE id = $p2)")"
pw_finish
