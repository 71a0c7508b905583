#!/bin/bash
# Retention: finished runs older than their pipeline's "retention" option (else pipeline_worker.retention) are
# deleted in the background with their step rows, and their idempotency keys are free again; unfinished runs are
# never deleted; -1 keeps everything (the setting, or a pipeline's option); purge_runs deletes now, for the runs its caller may purge.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up retention 2 20 "pipeline_worker.retention = '1 hour'" || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE FUNCTION rt_step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT ctx->'input' $$;
SELECT pipeline_worker.create_pipeline('short', '[{"name": "a", "function": "rt_step"}]', '{"retention": "2 seconds"}');
SELECT pipeline_worker.create_pipeline('long', '[{"name": "a", "function": "rt_step"}]');
SELECT pipeline_worker.create_pipeline('held', '[{"name": "a", "function": "rt_step"}]', '{"retention": "1 second"}');
SELECT pipeline_worker.pause_pipeline('held');
SELECT pipeline_worker.create_run('short', jsonb_build_object('n', g), idempotency_key => 'key' || g) FROM generate_series(1, 30) g;
SELECT pipeline_worker.create_run('long', jsonb_build_object('n', g)) FROM generate_series(1, 30) g;
SELECT pipeline_worker.create_run('held', '{}');
SQL
first=$(pw_psql -c "SELECT id FROM pipeline_worker.runs WHERE idempotency_key = 'key1'")
# (waited for, not read after a second: on a slow machine 'short' may still be draining -- or already expiring)
pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE status <> 'succeeded' AND pipeline <> 'held'" >/dev/null
pw_check_sql "runs finished" "0|30" "SELECT count(*) FILTER (WHERE status <> 'succeeded' AND pipeline <> 'held') || '|'
    || count(*) FILTER (WHERE pipeline = 'long' AND status = 'succeeded') FROM pipeline_worker.runs"
if pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'short'" 0.2 >/dev/null; then
    pw_ok "runs past their pipeline's retention (2 s) were deleted within 15 s"
else
    pw_fail "runs of 'short' still there after 15 s"
fi
pw_check_sql "their step rows went with them" 0 \
    "SELECT count(*) FROM pipeline_worker.run_steps s WHERE NOT EXISTS (SELECT 1 FROM pipeline_worker.runs r WHERE r.id = s.run_id)"
pw_check_sql "runs within the global retention (1 hour) stay" 30 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'long'"
pw_check_sql "an unfinished run is never deleted, however old" 1 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'held'"
pw_check_sql "a deleted run's idempotency key is free again" t \
    "SELECT pipeline_worker.create_run('short', '{\"again\": 1}', idempotency_key => 'key1') <> $first"

# the global setting; -1 keeps everything; invalid values are refused
out=$(pw_psql -c "ALTER SYSTEM SET pipeline_worker.retention = 'nonsense'" 2>&1)
case "$out" in *"positive interval"*) pw_ok "pipeline_worker.retention refuses an invalid value";;
               *) pw_fail "invalid retention: $out";; esac
# (a bare number is seconds to PostgreSQL's interval input: refused, so that '30' meant as days deletes nothing)
out=$(pw_psql -c "ALTER SYSTEM SET pipeline_worker.retention = '30'" 2>&1)
case "$out" in *"with its unit"*) pw_ok "pipeline_worker.retention refuses a bare number ('30')";;
               *) pw_fail "bare number retention: $out";; esac
pw_set_conf pipeline_worker.retention -1 >/dev/null || pw_fail "could not set retention -1"
pw_psql -c "SELECT pipeline_worker.alter_pipeline('short', '{\"retention\": null}')" >/dev/null
pw_psql -c "SELECT pipeline_worker.create_run('short', jsonb_build_object('k', g)) FROM generate_series(1, 5) g" >/dev/null
sleep 4
pw_check_sql "retention -1 (and no option): finished runs are kept" 6 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'short'"
# 2^64 microseconds (about 584,542 years): computed in int64 it wrapped to 0, "delete everything now" (and the GUC
# was refused as not positive); past the int64 range it means older than any run
HUGE='213503982 days 08:01:49.551616'
pw_set_conf pipeline_worker.retention "$HUGE" >/dev/null || pw_fail "could not set retention '$HUGE'"
sleep 3
pw_check_sql "retention of 2^64 microseconds (past the int64 range): finished runs are kept" 6 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'short'"
# a retention reaching before 4713 BC ("keep", written as years) is an age, not a date: it must neither fail the
# statement (which would keep every pipeline's runs) nor delete
pw_psql -c "SELECT pipeline_worker.create_pipeline('ancient', '[{\"name\": \"a\", \"function\": \"rt_step\"}]', '{\"retention\": \"10000 years\"}')" \
    -c "SELECT pipeline_worker.create_run('ancient', '{}')" >/dev/null
# a pipeline's "retention": -1 (or "-1") keeps its runs forever, as the setting's -1 does, whatever the setting
pw_psql -c "SELECT pipeline_worker.create_pipeline('forever_n', '[{\"name\": \"a\", \"function\": \"rt_step\"}]', '{\"retention\": -1}')" \
    -c "SELECT pipeline_worker.create_pipeline('forever_s', '[{\"name\": \"a\", \"function\": \"rt_step\"}]', '{\"retention\": \"-1\"}')" \
    -c "SELECT pipeline_worker.create_run('forever_n', '{}'), pipeline_worker.create_run('forever_s', '{}')" >/dev/null \
    || pw_fail "pipelines with retention -1 refused"
# finished runs of every status, of a pipeline dropped since (retention finds pipelines through the runs' index)
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('gone', '[{"name": "a", "function": "rt_step"}]');
SELECT pipeline_worker.create_run('gone', jsonb_build_object('n', g)) FROM generate_series(1, 3) g;
SQL
pw_wait_sql 3 10 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'gone' AND status = 'succeeded'" 0.2 >/dev/null
pw_psql >/dev/null <<'SQL'
UPDATE pipeline_worker.runs SET status = CASE (input->>'n')::int WHEN 1 THEN 'failed' WHEN 2 THEN 'cancelled' ELSE status END
 WHERE pipeline = 'gone';
SELECT pipeline_worker.drop_pipeline('gone');
SQL
pw_check_sql "a dropped pipeline's runs (succeeded, failed, cancelled) are there before" 3 \
    "SELECT count(DISTINCT status) FROM pipeline_worker.runs WHERE pipeline = 'gone'"
pw_set_conf pipeline_worker.retention '1 second' >/dev/null || pw_fail "could not set retention 1 second"
pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('succeeded', 'failed', 'cancelled') AND pipeline NOT IN ('ancient', 'forever_n', 'forever_s')" 0.2 >/dev/null \
    && pw_ok "pipeline_worker.retention = 1 second: every finished run deleted, a dropped pipeline's of every status too (a pipeline keeping 10000 years beside)" \
    || pw_fail "finished runs left after the global retention: $(pw_psql -c "SELECT string_agg(pipeline || ':' || status, ' ') FROM pipeline_worker.runs WHERE status IN ('succeeded', 'failed', 'cancelled') AND pipeline NOT IN ('ancient', 'forever_n', 'forever_s')")"
pw_check_sql "the run of the pipeline whose retention is 10000 years is kept" 1 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'ancient' AND status = 'succeeded'"
sleep 2  # (past a full round of retention too)
pw_check_sql "the runs of the pipelines whose retention is -1 (number or string) are kept" 2 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline IN ('forever_n', 'forever_s') AND status = 'succeeded'"
pw_psql -c "SELECT pipeline_worker.purge_runs('0', p) FROM unnest(ARRAY['ancient', 'forever_n', 'forever_s']) p" >/dev/null
pw_check_sql "the paused pipeline's pending run is still there" 1 "SELECT count(*) FROM pipeline_worker.runs"
pw_set_conf pipeline_worker.retention -1 >/dev/null

# purge_runs
pw_psql >/dev/null <<'SQL'
CREATE ROLE rt_tenant LOGIN;
CREATE ROLE rt_other LOGIN;
GRANT EXECUTE ON FUNCTION rt_step(jsonb) TO rt_tenant;
SET ROLE rt_tenant;
SELECT pipeline_worker.create_pipeline('tenant_p', '[{"name": "a", "function": "public.rt_step"}]');
SELECT pipeline_worker.create_run('tenant_p', jsonb_build_object('n', g)) FROM generate_series(1, 20) g;
RESET ROLE;
SELECT pipeline_worker.create_run('long', jsonb_build_object('n', g)) FROM generate_series(1, 10) g;
SQL
pw_wait_sql 0 20 "SELECT count(*) FROM pipeline_worker.runs WHERE status <> 'succeeded' AND pipeline <> 'held'" >/dev/null \
    || pw_fail "the runs to purge did not finish"
q() { pw_psql -U "$1" -c "$2" 2>&1; }
out=$(q rt_other "SELECT pipeline_worker.purge_runs('0', 'tenant_p')")
out2=$(q rt_other "SELECT pipeline_worker.purge_runs('0', 'no_such_pipeline')")
case "$out" in *"permission denied to purge runs of pipeline \"tenant_p\""*) pw_ok "another role may not purge the tenant's runs";;
               *) pw_fail "purge by another role: $out";; esac
pw_check "a missing pipeline answers the same" "${out//tenant_p/X}" "${out2//no_such_pipeline/X}"
pw_check "another role purging everything it may deletes none of the others' runs" 0 "$(q rt_other "SELECT pipeline_worker.purge_runs('0')")"
pw_check "the owner purges its pipeline's finished runs" 20 "$(q rt_tenant "SELECT pipeline_worker.purge_runs('0', 'tenant_p')")"
pw_check_sql "only those" "0|10" "SELECT count(*) FILTER (WHERE pipeline = 'tenant_p') || '|' || count(*) FILTER (WHERE pipeline = 'long') FROM pipeline_worker.runs"
pw_check "an admin purges older than 2^64 microseconds: none (the interval does not wrap to 0)" 0 \
    "$(q postgres "SELECT pipeline_worker.purge_runs('$HUGE')")"
pw_check "an admin purges older than an hour: none of these" 0 "$(q postgres "SELECT pipeline_worker.purge_runs('1 hour')")"
pw_check "an admin purges everything finished" 10 "$(q postgres "SELECT pipeline_worker.purge_runs('0')")"
out=$(q postgres "SELECT pipeline_worker.purge_runs('-1 day')")
case "$out" in *"must not be negative"*) pw_ok "purge_runs refuses a negative interval";; *) pw_fail "negative: $out";; esac
out=$(q postgres "SELECT pipeline_worker.create_pipeline('bad', '[{\"name\": \"a\", \"function\": \"rt_step\"}]', '{\"retention\": \"soon\"}')")
case "$out" in *"22023"*|*"invalid interval"*) pw_ok "an invalid retention option is refused";; *) pw_fail "retention option: $out";; esac
out=$(q postgres "SELECT pipeline_worker.create_pipeline('bad2', '[{\"name\": \"a\", \"function\": \"rt_step\"}]', '{\"retention\": -2}')")
case "$out" in *"22023"*|*"must be an interval with its unit as a JSON string, or -1"*) pw_ok "a retention option of -2 is refused (-1 alone keeps forever)";; *) pw_fail "retention option -2: $out";; esac
out=$(q postgres "SELECT pipeline_worker.create_pipeline('bad3', '[{\"name\": \"a\", \"function\": \"rt_step\"}]', '{\"retention\": \"30\"}')")
case "$out" in *"with its unit"*) pw_ok "a retention option of \"30\" (a bare number) is refused";; *) pw_fail "retention option \"30\": $out";; esac
out=$(q postgres "SELECT pipeline_worker.alter_pipeline('long', '{\"retention\": \"30\"}')")
case "$out" in *"with its unit"*) pw_ok "... and by alter_pipeline";; *) pw_fail "alter_pipeline retention \"30\": $out";; esac

# Each second retention starts each (pipeline, status) range at the newest run it deleted from it (the entries before
# are dead); a full round from the start every 10 s finds a run that appeared below that point later (a transaction
# that committed late, a restore, a run skipped while locked).
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('cursor_p', '[{"name": "a", "function": "rt_step"}]', '{"retention": "1 second"}');
SELECT pipeline_worker.create_run('cursor_p', jsonb_build_object('n', g)) FROM generate_series(1, 20) g;
SQL
pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'cursor_p'" 0.2 >/dev/null \
    || pw_fail "the runs of cursor_p were not deleted"
sleep 1.5  # (a fast round or two after the deletions)
pw_psql >/dev/null <<'SQL'
INSERT INTO pipeline_worker.runs (pipeline, pipeline_id, pipeline_owner, submitted_by, status, input, created_at,
                                  started_at, finished_at, claims)
SELECT p.name, p.id, p.owner, p.owner, 'succeeded', '{"straggler": true}', now() - interval '2 hours',
       now() - interval '2 hours', now() - interval '1 hour', 1
  FROM pipeline_worker.pipelines p WHERE p.name = 'cursor_p';
SQL
if pw_wait_sql 0 25 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'cursor_p'" 0.2 >/dev/null; then
    pw_ok "a run that finished before the newest one retention deleted, appearing after it, is deleted too"
else
    pw_fail "the straggler of cursor_p is still there after 25 s"
fi
# A run's events go with it, whether retention or purge_runs deletes it; another run's stay. (Checked since 2026-12-04,
# when the deletion became one index scan over the batch, skipped while the events table is empty.)
pw_psql >/dev/null <<'SQL' || pw_fail "event fixtures"
SELECT pipeline_worker.create_pipeline('ev_short', '[{"name": "w", "wait_for": "go"}, {"name": "a", "function": "rt_step"}]',
                                       '{"retention": "1 second"}');
SELECT pipeline_worker.create_pipeline('ev_kept', '[{"name": "w", "wait_for": "go"}, {"name": "a", "function": "rt_step"}]');
SELECT pipeline_worker.create_run('ev_short', jsonb_build_object('n', g)) FROM generate_series(1, 3) g;
SELECT pipeline_worker.create_run('ev_kept', jsonb_build_object('n', g)) FROM generate_series(1, 3) g;
SQL
pw_wait_sql 6 10 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline IN ('ev_short', 'ev_kept') AND status = 'waiting'" >/dev/null
waiting=$(pw_psql -c "SELECT pipeline_worker.create_run('ev_kept', '{\"stays\": true}')")
pw_psql >/dev/null <<SQL
SELECT pipeline_worker.send_event(id, 'unused', '{}') FROM pipeline_worker.runs WHERE pipeline IN ('ev_short', 'ev_kept');
SELECT pipeline_worker.send_event(id, 'go', '{}') FROM pipeline_worker.runs WHERE pipeline IN ('ev_short', 'ev_kept') AND id <> $waiting;
SQL
pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'ev_short'" 0.2 >/dev/null \
    || pw_fail "the runs of ev_short were not deleted"
pw_check_sql "retention deletes a run's events with it" 0 \
    "SELECT count(*) FROM pipeline_worker.events e WHERE NOT EXISTS (SELECT 1 FROM pipeline_worker.runs r WHERE r.id = e.run_id)"
pw_check_sql "... and keeps the events of the runs it keeps (finished or waiting)" 7 "SELECT count(*) FROM pipeline_worker.events"
pw_wait_sql 3 10 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'ev_kept' AND status = 'succeeded'" >/dev/null
pw_check "purge_runs deletes the finished runs of ev_kept" 3 "$(q postgres "SELECT pipeline_worker.purge_runs('0', 'ev_kept')")"
pw_check_sql "... with their events, the waiting run's left" "1|$waiting" \
    "SELECT count(*) || '|' || min(run_id) FROM pipeline_worker.events"
# The lead worker deletes expired runs by the row version its statement found, without a statement (pg/direct_rows):
# a run another transaction holds (here FOR UPDATE; a retry_run, a purge_runs) is left, with its step rows, and is
# deleted by a later round once free -- never waited for, never half deleted.
pw_psql >/dev/null <<'SQL' || pw_fail "lock fixtures"
SELECT pipeline_worker.create_pipeline('lk', '[{"name": "a", "function": "rt_step"}]');
SELECT pipeline_worker.create_run('lk', jsonb_build_object('n', g)) FROM generate_series(1, 5) g;
SQL
pw_wait_sql 5 10 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'lk' AND status = 'succeeded'" >/dev/null \
    || pw_fail "the runs of lk did not finish"
held=$(pw_psql -c "SELECT min(id) FROM pipeline_worker.runs WHERE pipeline = 'lk'")
# (held until cancelled below, not for a fixed time: a late round must not find it free already)
pw_psql -c "BEGIN" -c "SELECT id FROM pipeline_worker.runs WHERE id = $held FOR UPDATE" -c "SELECT pg_sleep(120) /* rt_holder */" \
    -c "COMMIT" >/dev/null 2>&1 &
holder=$!
pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%rt_holder%' AND state = 'active' AND pid <> pg_backend_pid()" \
    >/dev/null || pw_fail "the holding session did not start"
pw_psql -c "SELECT pipeline_worker.alter_pipeline('lk', '{\"retention\": \"1 second\"}')" >/dev/null
pw_wait_sql 1 15 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'lk'" 0.2 >/dev/null \
    || pw_fail "the free runs of lk were not deleted while one was held"
pw_check_sql "a run held by another transaction is left while the others expire, with its step row" "1|1" \
    "SELECT (SELECT count(*) FROM pipeline_worker.runs WHERE id = $held) || '|' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $held)"
sleep 11  # (past a full round too: the fast ones start past it)
pw_check_sql "... still there 11 s later (a full round included)" 1 "SELECT count(*) FROM pipeline_worker.runs WHERE id = $held"
pw_psql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%rt_holder%' AND pid <> pg_backend_pid()" >/dev/null
wait "$holder"
pw_wait_sql 0 25 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'lk'" 0.2 >/dev/null \
    && pw_ok "... and is deleted once free" || pw_fail "the held run of lk is still there 25 s after its lock went"
pw_check_sql "... with its step row" 0 "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $held"
# A table with a trigger for DELETE (a user's audit, a foreign key to runs) is deleted from by the statement, which
# fires it.
pw_psql >/dev/null <<'SQL' || pw_fail "trigger fixtures"
-- one audit of deleted rows for both run tables: the table's name and the row's run id (its column: the argument)
CREATE TABLE rt_audit (tbl text, run_id bigint);
CREATE FUNCTION rt_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.rt_audit VALUES (TG_TABLE_NAME, (to_jsonb(OLD) ->> TG_ARGV[0])::bigint); RETURN OLD; END $$;
SELECT pipeline_worker.create_pipeline('tg', '[{"name": "a", "function": "rt_step"}]', '{"retention": "1 second"}');
SQL
# audited_expiry TABLE RUN_ID_COLUMN N: with a DELETE trigger on TABLE, N runs of tg expire; the trigger saw each
# row of TABLE go (one step row a run), and no step row is left behind
audited_expiry() {
    pw_psql -c "CREATE TRIGGER rt_audit AFTER DELETE ON pipeline_worker.$1 FOR EACH ROW EXECUTE FUNCTION rt_audit_fn('$2')" \
            -c "SELECT pipeline_worker.create_run('tg', jsonb_build_object('n', g)) FROM generate_series(1, $3) g" >/dev/null \
        || pw_fail "trigger on $1: fixtures"
    pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'tg'" 0.2 >/dev/null \
        || pw_fail "the runs of tg were not deleted (a DELETE trigger on $1)"
    pw_check_sql "with a DELETE trigger on $1, retention deletes its rows through the statement: the trigger saw each" "$3" \
        "SELECT count(*) FROM rt_audit WHERE tbl = '$1'"
    pw_check_sql "... and no step row is left behind" 0 \
        "SELECT count(*) FROM pipeline_worker.run_steps s WHERE NOT EXISTS (SELECT 1 FROM pipeline_worker.runs r WHERE r.id = s.run_id)"
    pw_psql -c "DROP TRIGGER rt_audit ON pipeline_worker.$1" >/dev/null
}
audited_expiry runs id 7
# The same for run_steps: its rows then go by the statement, the runs without one.
audited_expiry run_steps run_id 6
# A step row held by another transaction: the run goes, its step row is deleted by the statement, which waits for
# that transaction.
pw_psql -c "SELECT pipeline_worker.alter_pipeline('lk', '{\"retention\": null}')" \
        -c "SELECT pipeline_worker.create_run('lk', jsonb_build_object('n', g)) FROM generate_series(1, 3) g" >/dev/null
pw_wait_sql 3 10 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'lk' AND status = 'succeeded'" >/dev/null \
    || pw_fail "the new runs of lk did not finish"
held=$(pw_psql -c "SELECT min(id) FROM pipeline_worker.runs WHERE pipeline = 'lk'")
pw_psql -c "BEGIN" -c "SELECT run_id FROM pipeline_worker.run_steps WHERE run_id = $held FOR UPDATE" \
    -c "SELECT pg_sleep(120) /* rt_step_holder */" -c "COMMIT" >/dev/null 2>&1 &
holder=$!
pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%rt_step_holder%' AND state = 'active' AND pid <> pg_backend_pid()" \
    >/dev/null || pw_fail "the step row's holding session did not start"
pw_psql -c "SELECT pipeline_worker.alter_pipeline('lk', '{\"retention\": \"1 second\"}')" >/dev/null
pw_wait_sql 1 15 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event_type = 'Lock'" 0.2 \
    >/dev/null && pw_ok "the lead worker waits for the held step row (its run deleted in the same transaction)" \
    || pw_fail "no worker waited for the held step row"
pw_psql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%rt_step_holder%' AND pid <> pg_backend_pid()" >/dev/null
wait "$holder"
pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'lk'" 0.2 >/dev/null \
    || pw_fail "the runs of lk were not deleted after the step row's lock went"
pw_check_sql "a run whose step row another transaction held is deleted with it once the lock goes (no step row left)" 0 \
    "SELECT count(*) FROM pipeline_worker.run_steps s WHERE NOT EXISTS (SELECT 1 FROM pipeline_worker.runs r WHERE r.id = s.run_id)"
# A user's table inheriting from runs: the statement reads its rows too (no ONLY), by TIDs of that table, which mean
# nothing in runs itself -- the runs are deleted by the statement then, the child's expired rows with them.
pw_psql -c "SELECT pipeline_worker.alter_pipeline('tg', '{\"retention\": null}')" \
        -c "SELECT pipeline_worker.create_run('tg', '{\"model\": true}')" >/dev/null  # (kept until checked below)
pw_wait_sql 1 10 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'tg' AND status = 'succeeded'" >/dev/null \
    || pw_fail "the model run of tg did not finish"
kept=$(pw_psql -c "SELECT count(*) FROM ONLY pipeline_worker.runs")
pw_psql >/dev/null <<'SQL' || pw_fail "inheritance fixtures"
CREATE TABLE public.rt_child () INHERITS (pipeline_worker.runs);
-- 30 copies of a run that stays, made runs of 'tg' (retention 1 second) that finished two hours ago
INSERT INTO public.rt_child
SELECT (jsonb_populate_record(NULL::pipeline_worker.runs, to_jsonb(r) || jsonb_build_object('id', 1000000000 + g,
        'pipeline', 'tg', 'pipeline_id', p.id, 'idempotency_key', NULL, 'finished_at', now() - interval '2 hours'))).*
  FROM (SELECT * FROM ONLY pipeline_worker.runs WHERE pipeline = 'tg') r,
       pipeline_worker.pipelines p, generate_series(1, 30) g
 WHERE p.name = 'tg';
SQL
pw_check_sql "a child table of runs holds 30 finished rows" 30 "SELECT count(*) FROM public.rt_child"
pw_psql -c "SELECT pipeline_worker.alter_pipeline('tg', '{\"retention\": \"1 second\"}')" >/dev/null
pw_wait_sql 0 15 "SELECT count(*) FROM public.rt_child" 0.2 >/dev/null \
    && pw_ok "with a table inheriting from runs, retention deletes its expired rows (by the statement)" \
    || pw_fail "the child table's expired rows are still there after 15 s"
pw_wait_sql "$((kept - 1))" 5 "SELECT count(*) FROM ONLY pipeline_worker.runs" 0.2 >/dev/null \
    && pw_ok "... and not one row of runs itself but the expired model run" \
    || pw_fail "runs itself: $(pw_psql -c "SELECT count(*) FROM ONLY pipeline_worker.runs") rows, expected $((kept - 1))"
pw_psql -c "DROP TABLE public.rt_child" >/dev/null
pw_finish
