#!/bin/bash
# Pipeline option "notify": true — each finished run (succeeded, failed, cancelled; by a worker or by cancel_run)
# sends exactly one NOTIFY pipeline_worker with {"run_id", "pipeline", "status"} from its finishing transaction:
# delivered at commit, none for a rolled-back finish, none for pipelines without the option.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up notify 2 20 || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE FUNCTION nt_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF ctx->'input' ? 'fail' THEN RAISE EXCEPTION 'asked to fail'; END IF;
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('np', '[{"name": "a", "function": "nt_step"}]', '{"notify": true}');
SELECT pipeline_worker.create_pipeline('qp', '[{"name": "a", "function": "nt_step"}]');
SELECT pipeline_worker.create_pipeline('np_held', '[{"name": "a", "function": "nt_step"}]', '{"notify": true}');
SELECT pipeline_worker.pause_pipeline('np_held');
SQL
out=$(pw_psql -c "SELECT pipeline_worker.create_pipeline('bad', '[{\"name\": \"a\", \"function\": \"nt_step\"}]', '{\"notify\": \"yes\"}')" 2>&1)
case "$out" in *"must be true or false"*) pw_ok "notify must be a boolean";; *) pw_fail "notify option: $out";; esac

LISTEN_OUT=$PW_CLUSTER_DIR/listen.out
# (a listener seen listening before anything is submitted, listening until every run is finished -- not for a fixed
# time; psql prints what it received when its next command runs)
pw_session_open "$LISTEN_OUT" "LISTEN pipeline_worker;" "SELECT 1;"
pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN pipeline_worker;' AND state = 'idle'
                    AND pid <> pg_backend_pid()" >/dev/null || pw_fail "the listener did not start"
held=$(pw_psql -c "SELECT pipeline_worker.create_run('np_held', '{}')")
pw_psql >/dev/null <<SQL
SELECT pipeline_worker.create_run('np', jsonb_build_object('n', g)) FROM generate_series(1, 20) g;
SELECT pipeline_worker.create_run('np', '{"fail": true}') FROM generate_series(1, 2);
SELECT pipeline_worker.create_run('qp', jsonb_build_object('n', g)) FROM generate_series(1, 10) g;
-- a finish that rolls back notifies nobody; the committed one once
BEGIN;
SELECT pipeline_worker.cancel_run($held);
ROLLBACK;
SELECT pipeline_worker.cancel_run($held);
SQL
pw_wait_all_finished 30 || pw_fail "runs left unfinished"
sleep 0.3   # (the last finishes' notifications reach the listener)
pw_session_close
got=$(grep -c 'Asynchronous notification "pipeline_worker"' "$LISTEN_OUT")
pw_check "one notification per finished run of the notify pipelines (20 succeeded, 2 failed, 1 cancelled)" 23 "$got"
pw_check "never twice for a run" 23 "$(grep -o '"run_id": [0-9]*' "$LISTEN_OUT" | sort -u | wc -l)"
pw_check "none for the pipeline without the option" 0 "$(grep -c '"pipeline": "qp"' "$LISTEN_OUT")"
pw_check "statuses: succeeded 20, failed 2, cancelled 1" "20 2 1" \
    "$(grep -c '"status": "succeeded"' "$LISTEN_OUT") $(grep -c '"status": "failed"' "$LISTEN_OUT") $(grep -c '"status": "cancelled"' "$LISTEN_OUT")"
pw_check "the cancelled run's notification names it" 1 "$(grep -c "\"run_id\": $held, \"pipeline\": \"np_held\", \"status\": \"cancelled\"" "$LISTEN_OUT")"
payload=$(grep -o 'payload "[^"]*' "$LISTEN_OUT" | head -1)
pw_info "a notification: $(grep -m1 'Asynchronous notification' "$LISTEN_OUT")"
pw_check_sql "the ids are the runs' ids" 0 \
    "SELECT count(*) FROM unnest('{$(grep -o '"run_id": [0-9]*' "$LISTEN_OUT" | grep -o '[0-9]*' | paste -sd,)}'::bigint[]) AS u(id)
      WHERE NOT EXISTS (SELECT 1 FROM pipeline_worker.runs r WHERE r.id = u.id AND r.pipeline IN ('np', 'np_held'))"
pw_finish
