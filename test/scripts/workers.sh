#!/bin/bash
# Background workers: they start before CREATE EXTENSION and wait quietly, serve runs once the
# extension exists (no restart), survive failing steps, sleep when idle or disabled (pipeline_worker.enabled = off),
# and exit promptly on SIGTERM.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

PW_WORKERS=4 pw_cluster_start workers

# ---------------------------------------------------------------- before CREATE EXTENSION
if got=$(pw_wait_workers 4 20); then
    pw_ok "4 backends with backend_type 'pipeline_worker' in pg_stat_activity"
else
    pw_fail "expected 4 'pipeline_worker' backends, got $got"
fi
pw_check_sql "exactly one 'pipeline_worker launcher'" 1 \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker launcher'"
pw_check_sql "workers are attached to database postgres" 4 \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND datname = 'postgres'"
pids_before=$(pw_worker_pids)
log_lines_start=$(wc -l <"$PW_LOG")
sleep 3
pids_idle=$(pw_worker_pids)
pw_check "worker pids stable while the extension does not exist (no exit/restart loop)" "$pids_before" "$pids_idle"
problems=$(pw_log_problems)
if [ -z "$problems" ]; then pw_ok "no ERROR/FATAL/worker exit in the log before CREATE EXTENSION"
else pw_fail "log problems before CREATE EXTENSION: $(echo "$problems" | head -3)"; fi
idle_lines=$(( $(wc -l <"$PW_LOG") - log_lines_start ))
if [ "$idle_lines" -le 5 ]; then pw_ok "workers wait quietly ($idle_lines log lines in 3 s)"
else pw_fail "log spam while waiting for the extension: $idle_lines lines in 3 s"; fi

# ---------------------------------------------------------------- CREATE EXTENSION, first runs
pw_load_fixtures
start=$(pw_now)
id=$(pw_psql -c "SELECT pipeline_worker.create_run('p3', '{\"n\": 7, \"tag\": \"first\"}')")
st=$(pw_psql -c "SELECT pipeline_worker.wait_run($id, '15 seconds')")
pw_check "first run after CREATE EXTENSION succeeds (no restart needed)" succeeded "$st"
pw_info "first run done $(pw_elapsed "$start") s after create_run"
pw_check_sql "first run result" '{"n": 7, "acc": 42, "tag": "first", "step": "s3", "prev_step": "s2"}' \
    "SELECT result FROM pipeline_worker.runs WHERE id = $id"
pw_check_sql "first run executed by one of the pre-existing workers" 1 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id = $id AND worker_pid = ANY ($(pw_int_array "$pids_before"))"
pw_check_sql "steps executed once each, in the worker named by worker_pid" "3" \
    "SELECT count(*) FROM fx JOIN pipeline_worker.runs r ON r.id = fx.run_id WHERE fx.run_id = $id AND fx.pid = r.worker_pid"
pw_check "worker pids unchanged after CREATE EXTENSION" "$pids_before" "$(pw_worker_pids)"
pw_check "idle workers show 'waiting for runs' in pg_stat_activity" 4 \
    "$(pw_wait_sql 4 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'
                          AND state = 'idle' AND query = 'waiting for runs'")"
problems=$(pw_log_problems)
if [ -z "$problems" ]; then pw_ok "no ERROR/FATAL/worker exit in the log after CREATE EXTENSION and a run"
else pw_fail "log problems: $(echo "$problems" | head -3)"; fi

# ---------------------------------------------------------------- failing steps do not kill workers
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION public.t_div0(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT to_jsonb(1 / 0) $$;
SELECT pipeline_worker.create_pipeline('div0', '[{"name": "a", "function": "t_step"}, {"name": "z", "function": "t_div0"}]');
SQL
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_run('p3', jsonb_build_object('n', i, 'fail_at', 's2')) FROM generate_series(1, 8) i;
SELECT pipeline_worker.create_run('div0', jsonb_build_object('n', i)) FROM generate_series(1, 4) i;
SQL
pw_wait_all_finished 30
pw_check_sql "12 failing runs are failed" 12 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'failed'"
pw_check_sql "their errors name the failing step" 12 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'failed' AND (error LIKE '%s2%planned failure%' OR error LIKE '%z%division by zero%')"
pw_check "same worker pids after failing steps" "$pids_before" "$(pw_worker_pids)"
id=$(pw_psql -c "SELECT pipeline_worker.create_run('p3', '{\"n\": 1}')")
pw_check_sql "a run after the failures succeeds" succeeded "SELECT pipeline_worker.wait_run($id, '15 seconds')"
pw_check "still the same worker pids" "$pids_before" "$(pw_worker_pids)"

# ---------------------------------------------------------------- a slow run after fast ones shows as running
# A claim is written (status running, started_at, worker_pid) before its run executes, unless the run's pipeline is
# known to this worker to finish within ~2 ms. Until 2026-12-05 the worker's average alone decided: after fast runs, a
# slow run of another pipeline stayed pending, with no started_at or worker_pid, for its whole first step -- a one-step
# run never showed as running at all (found by a contract audit of #2).
pw_psql -c "SELECT pipeline_worker.create_run('p3', jsonb_build_object('n', i)) FROM generate_series(1, 400) i" >/dev/null
pw_wait_all_finished 30
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION public.t_lazy(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN '{}'; END $$;
SELECT pipeline_worker.create_pipeline('lazy', '[{"name": "only", "function": "t_lazy"}]');
SQL
id=$(pw_psql -c "SELECT pipeline_worker.create_run('lazy')")
pid=$(pw_wait_row 10 "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $id %'" 0.05)
pw_check_sql "a slow run of a new pipeline after 400 fast runs shows, while it executes: running, started, its worker's pid" \
    "running|t|t" "SELECT status, started_at IS NOT NULL, worker_pid = ${pid:-0} FROM pipeline_worker.runs WHERE id = $id"
pw_check_sql "... and then succeeded" succeeded "SELECT pipeline_worker.wait_run($id, '15 seconds')"

# ---------------------------------------------------------------- idle, and disabled: the workers sleep
# cpu_ticks PIDS : user + system CPU time of these processes so far, in clock ticks (/proc/PID/stat fields 14, 15)
cpu_ticks() {
    local t=0 p f
    for p in $1; do
        read -ra f <"/proc/$p/stat" 2>/dev/null || continue
        t=$((t + f[13] + f[14]))
    done
    echo $t
}
hz=$(getconf CLK_TCK)
# idle_cpu_ms : the workers' CPU over the next 3 s, in ms (one worker awake and looping would take ~3,000)
idle_cpu_ms() {
    local pids a b
    pids=$(pw_worker_pids)
    a=$(cpu_ticks "$pids"); sleep 3; b=$(cpu_ticks "$pids")
    echo $(((b - a) * 1000 / hz))
}
ms=$(idle_cpu_ms)
pw_info "4 idle workers: $ms ms of CPU in 3 s"
[ "$ms" -lt 500 ] && pw_ok "idle workers sleep ($ms ms of CPU in 3 s)" || pw_fail "idle workers took $ms ms of CPU in 3 s"
# Disabled, with a run that falls due meanwhile: every worker saw the due moment and woke for it, but none takes it
# while disabled -- until 2026-12-04 they looped, 100 % of both cores, for as long as the workers were off.
pw_set_conf pipeline_worker.enabled off || pw_fail "setting enabled = off"
id=$(pw_psql -c "SELECT pipeline_worker.create_run('p3', '{\"n\": 2}', run_at => clock_timestamp() + interval '1 second')")
sleep 1.5
ms=$(idle_cpu_ms)
pw_info "4 workers, pipeline_worker.enabled = off, a run due: $ms ms of CPU in 3 s"
[ "$ms" -lt 500 ] && pw_ok "disabled workers sleep though a run fell due ($ms ms of CPU in 3 s)" \
    || pw_fail "disabled workers took $ms ms of CPU in 3 s (a loop)"
pw_check_sql "... and it stays pending while disabled" pending "SELECT status FROM pipeline_worker.runs WHERE id = $id"
pw_reset_conf pipeline_worker.enabled
pw_check_sql "enabled again: the due run succeeds" succeeded "SELECT pipeline_worker.wait_run($id, '15 seconds')"

# ---------------------------------------------------------------- SIGTERM
# a) idle worker
victim=${pids_before%% *}
pw_check_sql "pg_terminate_backend on an idle worker" t "SELECT pg_terminate_backend($victim)"
start=$(pw_now)
if pw_wait_exit "$victim" 5; then pw_ok "idle worker exited $(pw_elapsed "$start") s after SIGTERM"
else pw_fail "idle worker $victim still alive 5 s after SIGTERM"; fi
sleep 2
pw_info "workers after terminating one: $(pw_psql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'") (launcher may or may not replace it)"

# b) worker busy in a long step; the run is recovered and completed afterwards
id=$(pw_psql -c "SELECT pipeline_worker.create_run('p3', '{\"n\": 5, \"sleep\": 60}')")
if ! busy=$(pw_wait_sleeping_worker 10); then
    pw_fail "no worker picked up the sleeping run within 10 s"
else
    pw_ok "a worker is executing the sleeping step"
    # the next execution of that run must not sleep again (set before the kill: workers may
    # recover the run by themselves right away)
    pw_psql -c "INSERT INTO fx_nosleep VALUES (1)"
    pw_psql -c "SELECT pg_terminate_backend($busy)" >/dev/null
    start=$(pw_now)
    if pw_wait_exit "$busy" 5; then pw_ok "busy worker (in pg_sleep) exited $(pw_elapsed "$start") s after SIGTERM"
    else pw_fail "busy worker $busy still alive 5 s after SIGTERM"; fi
    recovered=$(pw_psql -c "SELECT pipeline_worker.recover_runs()")
    pw_info "recover_runs() returned $recovered"
    st=$(pw_psql -c "SELECT pipeline_worker.wait_run($id, '30 seconds')")
    pw_check "run of the killed worker is recovered and completed" succeeded "$st"
    pw_check_sql "killed attempt left no side effects: each step of that run once" 3 \
        "SELECT count(*) FROM fx WHERE run_id = $id"
    pw_check_sql "recovered run result" '{"n": 5, "acc": 30, "tag": null, "step": "s3", "prev_step": "s2"}' \
        "SELECT result FROM pipeline_worker.runs WHERE id = $id"
fi

# c) pg_ctl stop -m fast while a worker sleeps in a step
pw_psql -c "DELETE FROM fx_nosleep"
pw_psql -c "SELECT pipeline_worker.create_run('p1', '{\"n\": 1, \"sleep\": 120}')" >/dev/null
pw_wait_sleeping_worker 10 >/dev/null || pw_fail "no worker picked up the sleeping run before shutdown"
all_pids=$(pw_psql -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE backend_type IN ('pipeline_worker', 'pipeline_worker launcher')")
start=$(pw_now)
if pw_cluster_stop fast; then
    t=$(pw_elapsed "$start")
    if pw_lt "$t" 10; then pw_ok "pg_ctl stop -m fast with a busy worker took $t s"
    else pw_fail "pg_ctl stop -m fast took $t s"; fi
else
    pw_fail "pg_ctl stop -m fast failed or timed out"
    pw_cluster_stop immediate
fi
alive=
for p in $all_pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
pw_check "no worker or launcher process left after shutdown" "" "$alive"
pw_finish
