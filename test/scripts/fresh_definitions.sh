#!/bin/bash
# A worker reads a changed pipeline definition as committed, even in the middle of a batch: the batch's transaction
# began before alter_pipeline() committed, and the definition re-read then must not come from that transaction's
# first snapshot (it was: the old options were cached under the new generation, and every later run of the
# pipeline on that worker kept them, until the next change of any pipeline).
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

# One worker, and a commit interval long enough that the whole batch runs in one transaction.
PW_WORKERS=1 pw_cluster_start freshdefs "pipeline_worker.commit_interval_ms = 60000"
pw_psql >/dev/null <<'SQL' || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE ctl (go boolean NOT NULL);
INSERT INTO ctl VALUES (true);
-- holds its run (and the worker's transaction) until the test says go
CREATE FUNCTION hold(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        EXIT WHEN (SELECT go FROM public.ctl);
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN '{}';
END $$;
CREATE FUNCTION quick(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT pipeline_worker.create_pipeline('holder', '[{"name": "hold", "function": "hold"}]');
SELECT pipeline_worker.create_pipeline('quick', '[{"name": "q", "function": "quick"}]');
SQL
pw_wait_workers 1 20 >/dev/null || pw_die "no worker"

# warm-up: the worker learns that runs of both pipelines are fast (batches of one until it knows; and a batch ends
# with a run of a pipeline the worker has not seen)
pw_psql -c "SELECT count(pipeline_worker.create_run('quick', '{}')) FROM generate_series(1, 20)" \
        -c "SELECT count(pipeline_worker.create_run('holder', '{}')) FROM generate_series(1, 3)" >/dev/null
pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE status <> 'succeeded'" >/dev/null \
    || pw_die "warm-up runs did not finish"
pw_psql -c "UPDATE ctl SET go = false" >/dev/null

# Both runs in one transaction: the worker claims them in one batch (loading 'quick' as it is now: no notify).
ids=$(pw_psql -c "BEGIN" -c "SELECT pipeline_worker.create_run('holder', '{}')" \
              -c "SELECT pipeline_worker.create_run('quick', '{\"n\": 1}')" -c "COMMIT")
holder=$(echo "$ids" | sed -n 1p); q1=$(echo "$ids" | sed -n 2p)
pw_wait_sql 1 20 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event = 'PgSleep'" \
    >/dev/null || pw_die "the holding run did not start"
# (held by the worker's open transaction, or -- its claims written first -- running)
pw_check_sql "the batch took both runs (the second is the worker's: no other claim can take it)" "0" \
    "SELECT count(*) FROM (SELECT 1 FROM pipeline_worker.runs WHERE id = $q1 AND status = 'pending' FOR UPDATE SKIP LOCKED) x"

# While that transaction is open: 'quick' now notifies; then the held run goes on, and 'quick' runs after it.
listen_out=$(mktemp)
# (listening until the runs are done -- not a fixed 4 s -- and seen listening before the change)
pw_session_open "$listen_out" "LISTEN pipeline_worker;" "SELECT 'done';"
pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN pipeline_worker;' AND state = 'idle'
                    AND pid <> pg_backend_pid()" >/dev/null || pw_fail "the listener did not start"
pw_psql -c "SELECT pipeline_worker.alter_pipeline('quick', '{\"notify\": true}')" >/dev/null || pw_die "alter failed"
pw_psql -c "UPDATE ctl SET go = true" >/dev/null
pw_check_sql "the run claimed before the change finished" "succeeded" "SELECT pipeline_worker.wait_run($q1, '10 s')"
q2=$(pw_psql -c "SELECT pipeline_worker.create_run('quick', '{\"n\": 2}')")
pw_check_sql "a run submitted after the change finished" "succeeded" "SELECT pipeline_worker.wait_run($q2, '10 s')"
pw_session_close
pw_check "the run executed after the change (same transaction) notified" "1" \
    "$(grep -c "\"run_id\": $q1," "$listen_out")"
pw_check "the next run of the pipeline on that worker notified too" "1" "$(grep -c "\"run_id\": $q2," "$listen_out")"
rm -f "$listen_out"
pw_finish
