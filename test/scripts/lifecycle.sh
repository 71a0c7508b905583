#!/bin/bash
# Lifecycle: DROP/CREATE EXTENSION under running workers, changing pipeline_worker.workers with a
# reload, runs surviving a shutdown in the middle of a step, pipeline_worker.database.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up lifecycle 2 20
pw_load_fixtures
pids=$(pw_worker_pids)
id=$(pw_psql -c "SELECT pipeline_worker.create_run('p1', '{\"n\": 1}')")
pw_check_sql "a first run succeeds" succeeded "SELECT pipeline_worker.wait_run($id, '10 seconds')"

# ---------------------------------------------------------------- DROP EXTENSION / CREATE EXTENSION
log0=$(pw_log_size)
pw_psql -c "DROP EXTENSION pipeline_worker CASCADE" 2>/dev/null
pw_psql -c "DROP TABLE fx, fx_nosleep; DROP FUNCTION t_step(jsonb)"
sleep 3
problems=$(pw_log_problems "$log0")
if [ -z "$problems" ]; then pw_ok "no ERROR/FATAL/worker exit in the log for 3 s after DROP EXTENSION"
else pw_fail "log after DROP EXTENSION: $(echo "$problems" | head -3)"; fi
pw_check "workers stay (same pids) after DROP EXTENSION" "$pids" "$(pw_worker_pids)"
pw_load_fixtures "fixtures failed again"
id=$(pw_psql -c "SELECT pipeline_worker.create_run('p3', '{\"n\": 2}')")
pw_check_sql "served again after CREATE EXTENSION" succeeded "SELECT pipeline_worker.wait_run($id, '10 seconds')"
problems=$(pw_log_problems "$log0")
if [ -z "$problems" ]; then pw_ok "no ERROR/FATAL/worker exit in the log after re-creating the extension"
else pw_fail "log after re-creating the extension: $(echo "$problems" | head -3)"; fi

# ---------------------------------------------------------------- pipeline_worker.workers on reload
pw_set_conf pipeline_worker.workers 0
if got=$(pw_wait_workers 0 10); then pw_ok "workers = 0 after reload: no workers"
else pw_fail "workers = 0 after reload: still $got workers"; fi
pw_psql -c "SELECT count(pipeline_worker.create_run('p1', jsonb_build_object('n', i, 'tag', 'reload'))) FROM generate_series(1, 5) i" >/dev/null
sleep 1
pw_check_sql "runs stay pending without workers" 5 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'tag' = 'reload' AND status = 'pending'"
pw_set_conf pipeline_worker.workers 3
if got=$(pw_wait_workers 3 10); then pw_ok "workers = 3 after reload: 3 workers"
else pw_fail "workers = 3 after reload: $got workers"; fi
pw_wait_all_finished 15 && pw_ok "the pending runs are executed by the new workers"
pw_check_sql "their results" 5 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'tag' = 'reload' AND status = 'succeeded'
        AND result->'acc' = input->'n'"

# ---------------------------------------------------------------- shutdown in the middle of a run
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION public.sleepy(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    IF NOT EXISTS (SELECT 1 FROM public.fx_nosleep) THEN PERFORM pg_sleep(60); END IF;
    RETURN jsonb_build_object('acc', (ctx->'prev'->>'acc')::int + 100);
END $$;
SELECT pipeline_worker.create_pipeline('interrupted', '[{"name": "s1", "function": "t_step"},
                                                        {"name": "s2", "function": "sleepy"},
                                                        {"name": "s3", "function": "t_step"}]');
SQL
id=$(pw_psql -c "SELECT pipeline_worker.create_run('interrupted', '{\"n\": 5}')")
pw_wait_sleeping_worker 10 >/dev/null
sleep 0.3
pw_psql -c "INSERT INTO fx_nosleep VALUES (1)"
start=$(pw_now)
pw_cluster_stop fast || pw_fail "pg_ctl stop -m fast failed"
pw_info "stopped in $(pw_elapsed "$start") s with a step sleeping"
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >/dev/null 2>&1 || pw_die "restart failed"
pw_wait_workers 3 20 >/dev/null || pw_fail "workers did not come back after the restart"
pw_check_sql "the interrupted run completes after the restart" succeeded \
    "SELECT pipeline_worker.wait_run($id, '20 seconds')"
pw_check_sql "each of its steps left exactly one effect" "s1 s2 s3" \
    "SELECT string_agg(step, ' ' ORDER BY step) FROM fx WHERE run_id = $id"
pw_check_sql "its result" '{"n": 5, "acc": 120, "tag": null, "step": "s3", "prev_step": null}' \
    "SELECT result FROM pipeline_worker.runs WHERE id = $id"
pw_check_sql "one succeeded step row per position" "1 2 3" \
    "SELECT string_agg(position::text, ' ' ORDER BY position) FROM pipeline_worker.run_steps WHERE run_id = $id AND status = 'succeeded'"

# ---------------------------------------------------------------- pipeline_worker.database
pw_psql -c "CREATE DATABASE appdb" >/dev/null
PGDATABASE=appdb pw_load_fixtures "fixtures in appdb failed"
pw_cluster_restart "pipeline_worker.database = 'appdb'" || pw_die "restart with pipeline_worker.database failed"
pw_wait_workers 3 20 >/dev/null || pw_fail "workers did not come back"
pw_check_sql "workers attach to pipeline_worker.database" "appdb" \
    "SELECT string_agg(DISTINCT datname, ',') FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'"
id=$(PGDATABASE=appdb pw_psql -c "SELECT pipeline_worker.create_run('p3', '{\"n\": 6}')")
pw_check "a run in appdb is executed" succeeded \
    "$(PGDATABASE=appdb pw_psql -c "SELECT pipeline_worker.wait_run($id, '10 seconds')")"
id=$(pw_psql -c "SELECT pipeline_worker.create_run('p3', '{\"n\": 7}')")
pw_check_sql "a run in database postgres is not served" pending \
    "SELECT pipeline_worker.wait_run($id, '1 second')"

# ---------------------------------------------------------------- binary upgrade mode
# pg_upgrade starts the server with -b: the library must register its settings and do nothing else.
pw_cluster_stop fast || pw_die "stop before the binary-upgrade start failed"
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -o "-b" -w -t 60 start >/dev/null 2>&1 \
    || pw_die "start in binary-upgrade mode failed"
sleep 2   # a launcher would have started its workers by now
pw_check_sql "binary-upgrade mode: no launcher, no workers" 0 \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pipeline_worker%'"
pw_check_sql "binary-upgrade mode: the settings exist" 3 "SHOW pipeline_worker.workers"
pw_cluster_stop fast || pw_die "stop after the binary-upgrade start failed"
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >/dev/null 2>&1 || pw_die "restart failed"
pw_wait_workers 3 20 >/dev/null && pw_ok "after a normal start the workers are back" \
    || pw_fail "workers did not come back after the binary-upgrade start"
pw_finish
