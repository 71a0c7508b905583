#!/bin/bash
# A run whose step crashes its own server process (a segfault: a C function that writes through a null pointer) makes
# PostgreSQL restart every process. Without a guard the run is claimed again after each restart and the server
# never stays up. With it: the run fails after its worker crashed 3 times (its step row says why), the server then
# stays up, the other runs submitted with it all succeed, and a worker killed from outside with SIGKILL 4 times does
# not make its run fail (the contract: a run whose worker is killed is completed; kills count only up to 10, for the
# out-of-memory killer's), nor does a run whose step was running in another worker when the server restarted.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT
PW_WORKERS=2 pw_cluster_start crashloop "restart_after_crash = on"
# a real fault (a SIGSEGV sent by another process counts as a kill): a C function that writes to address 0
mkdir -p "$PW_CLUSTER_DIR/lib" && cat > "$PW_CLUSTER_DIR/lib/segv.c" <<'C'
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
PG_FUNCTION_INFO_V1(pw_test_segv);
Datum pw_test_segv(PG_FUNCTION_ARGS) {
    *(volatile int *) (uintptr_t) PG_GETARG_INT32(0) = 1;  /* 0: a segmentation fault */
    PG_RETURN_VOID();
}
C
PG_CONFIG=$PW_BINDIR/pg_config; [ -x "$PG_CONFIG" ] || PG_CONFIG=pg_config
CC=$(command -v cc || command -v gcc) || pw_die "no C compiler (scripts/setup.sh installs g++, which brings gcc)"
"$CC" -shared -fPIC -O0 -I"$($PG_CONFIG --includedir-server)" -o "$PW_CLUSTER_DIR/lib/segv.so" "$PW_CLUSTER_DIR/lib/segv.c" ||
    pw_die "could not build the segfaulting test function"
chmod -R a+rX "$PW_CLUSTER_DIR/lib"
pw_psql <<SQL >/dev/null || pw_die "setup failed"
CREATE FUNCTION segv(int) RETURNS void LANGUAGE c AS '$PW_CLUSTER_DIR/lib/segv.so', 'pw_test_segv';
SQL
pw_psql <<'SQL' >/dev/null || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE done (run_id bigint);
CREATE FUNCTION crashme(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM segv(0);
    RETURN '{}';  -- not reached
END $$;
-- an operator's kill -SEGV (for a core dump) comes from another process: a kill, not a fault of the step. Sent by
-- the shell started by COPY ... TO PROGRAM, a child of this backend ($PPID is the worker), the first 3 times (a
-- counter in a file: the database's writes are lost with each crash)
CREATE FUNCTION sent_segv(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'f=' || (ctx->'input'->>'file') ||
        '; n=$(cat $f 2>/dev/null || echo 0); if [ $n -lt 3 ]; then echo $((n + 1)) > $f; kill -SEGV $PPID; fi');
    PERFORM pg_sleep(1);  -- (the signal lands here)
    RETURN '{"survived": true}';
END $$;
-- what the out-of-memory killer does to a step that takes all the memory: SIGKILL, which no process can catch
CREATE FUNCTION oomed(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    COPY (SELECT 1) TO PROGRAM 'kill -9 $PPID';
    PERFORM pg_sleep(5);  -- not reached
    RETURN '{}';
END $$;
CREATE FUNCTION fine(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO done VALUES ((ctx->>'run_id')::bigint);
    RETURN '{"fine": true}';
END $$;
CREATE FUNCTION nap(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(3);
    RETURN '{"napped": true}';
END $$;
-- killed from outside (the marker file says so) until the flag is set, then fine
CREATE TABLE once (killed boolean);
INSERT INTO once VALUES (false);
CREATE FUNCTION killed_once(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT killed FROM once) THEN
        PERFORM pg_sleep(30);
    END IF;
    RETURN '{"survived": true}';
END $$;
SELECT pipeline_worker.create_pipeline('crash', '[{"name": "ok", "function": "fine"}, {"name": "boom", "function": "crashme"}]');
SELECT pipeline_worker.create_pipeline('fine', '[{"name": "f", "function": "fine"}]');
SELECT pipeline_worker.create_pipeline('once', '[{"name": "w", "function": "killed_once"}]');
SELECT pipeline_worker.create_pipeline('nap', '[{"name": "n", "function": "nap"}]');
SELECT pipeline_worker.create_pipeline('oom', '[{"name": "o", "function": "oomed"}]');
SELECT pipeline_worker.create_pipeline('sent', '[{"name": "s", "function": "sent_segv"}]');
SQL

# q SQL : psql that tolerates the restarts (retries for up to 60 s while the server is in recovery)
q() { pw_retry 60 pw_psql -c "$1"; }

# a long step of another run is executing in the other worker when the first crash happens: that worker is
# stopped by the postmaster (SIGQUIT), its run recovered -- not counted
nap_run=$(q "SELECT pipeline_worker.create_run('nap')")
pw_wait_row 5 "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $nap_run %'" 0.05 \
    >/dev/null
start=$(pw_now)
crash_run=$(q "SELECT pipeline_worker.create_run('crash')")
q "SELECT count(pipeline_worker.create_run('fine')) FROM generate_series(1, 20)" >/dev/null
settled=
st=$(pw_wait_sql failed 60 "SELECT status FROM pipeline_worker.runs WHERE id = $crash_run" 0.2) && settled=1
t=$(pw_elapsed "$start")
[ -n "$settled" ] && pw_ok "the crashing run failed after $t s" || pw_fail "the crashing run is '$st' after $t s"
restarts=$(grep -c 'terminated by signal 11' "$PW_LOG")
pw_check "exactly 3 crash restarts (the run's worker crashed 3 times)" 3 "$restarts"
pw_check "the launcher counted them as faults" "1 2 3" \
    "$(grep -o "ended abnormally (signal 11) in step 2 (attempt 1) of run $crash_run; abnormal end [0-9]* of 10, fault [0-9]* of 3" "$PW_LOG" | awk '{print $(NF-2)}' | xargs)"
pw_check_sql "run error names the step and the cause" t \
    "SELECT error LIKE 'step \"boom\" failed: the worker process executing this step ended abnormally 3 times (a crash%'
       FROM pipeline_worker.runs WHERE id = $crash_run"
# (step 1's row shared the crashed transaction: it was lost with it, like its effects)
pw_check_sql "step rows: 2.1 failed and finished" "2.1:failed:true" \
    "SELECT string_agg(position || '.' || attempt || ':' || status ||
                       CASE WHEN status = 'failed' THEN ':' || (finished_at IS NOT NULL) ELSE '' END, ' '
                       ORDER BY position, attempt)
       FROM pipeline_worker.run_steps WHERE run_id = $crash_run"
pw_check_sql "wait_run sees it failed" failed "SELECT pipeline_worker.wait_run($crash_run, '1 s')"
pw_wait_all_finished 30 || pw_fail "the other runs did not finish"
pw_check_sql "the 20 other runs all succeeded, each step once" "20 20" \
    "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' ||
            (SELECT count(DISTINCT run_id) FROM done WHERE run_id <> $crash_run)
       FROM pipeline_worker.runs WHERE pipeline = 'fine'"
pw_check "the run whose long step was interrupted by the restarts was not counted" 0 \
    "$(grep -c "of run $nap_run;" "$PW_LOG")"
pw_check "... and it succeeded" succeeded "$(q "SELECT pipeline_worker.wait_run($nap_run, '20 s')")"
pw_check "the crash counter was removed (nothing left to settle)" "" \
    "$(pw_as_pg ls "$PW_DATA/pipeline_worker" | grep '^crashes_' || true)"
sleep 2
pw_check "no further restart once the run failed" 3 "$(grep -c 'terminated by signal 11' "$PW_LOG")"
pw_wait_workers 2 20 >/dev/null && pw_ok "both workers serve" || pw_fail "workers not back"

# killed from outside with SIGKILL 4 times while in its step: each counted as a kill, the step executed again, the
# run succeeds (until 2026-12-07 the third kill failed it: "ended abnormally 3 times"; acceptance walk-through)
r=$(q "SELECT pipeline_worker.create_run('once')")
for k in 1 2 3 4; do
    pid=$(pw_wait_row 30 "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE '%run $r %'
                          LIMIT 1")
    [ -n "$pid" ] && pw_ok "kill $k: the 'once' run is executing in worker $pid" || pw_fail "kill $k: the 'once' run never showed in a worker"
    [ "$k" = 4 ] && q "UPDATE once SET killed = true" >/dev/null
    kill -9 "$pid" 2>/dev/null
    pw_wait_sql 0 30 "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid" 0.1 >/dev/null 2>&1 || true
done
pw_check "killed 4 times from outside: the run succeeded after the restarts" succeeded \
    "$(q "SELECT pipeline_worker.wait_run($r, '60 s')")"
pw_check "the kills were counted as abnormal ends 1 to 4 of 10, no fault" "1 2 3 4" \
    "$(grep -o "ended abnormally (killed) in step 1 (attempt 1) of run $r; abnormal end [0-9]* of 10, fault 0 of 3" "$PW_LOG" | awk '{print $14}' | xargs)"
pw_check_sql "its step has one succeeded row and no failed one" "1:succeeded" \
    "SELECT string_agg(attempt || ':' || status, ' ') FROM pipeline_worker.run_steps WHERE run_id = $r"

# a SIGSEGV sent to the worker by another process (an operator's, for a core dump) 3 times: kills, not faults of the
# step -- the run then succeeds (counted as faults, the third would have failed it)
r=$(q "SELECT pipeline_worker.create_run('sent', jsonb_build_object('file', '$PW_CLUSTER_DIR/sent_count'))")
ends() { grep -c "ended abnormally ([a-z0-9 ]*) in step 1 (attempt 1) of run $r;" "$PW_LOG"; }
pw_check "SIGSEGV sent from outside 3 times: the run succeeded" succeeded \
    "$(q "SELECT pipeline_worker.wait_run($r, '60 s')")"
pw_check "... each counted as a kill, not a fault" "0" \
    "$(grep "of run $r;" "$PW_LOG" | grep -vc "ended abnormally (killed) .* fault 0 of 3")"
pw_check "... all 3 of them" 3 "$(ends)"

# a step whose worker is killed every time (SIGKILL, as by the out-of-memory killer): failed at the 10th kill, and the
# server then stays up
kills_before=$(grep -c 'terminated by signal 9' "$PW_LOG")
r=$(q "SELECT pipeline_worker.create_run('oom')")
st=$(pw_retry 60 pw_wait_sql failed 90 "SELECT status FROM pipeline_worker.runs WHERE id = $r" 0.2)
pw_check "a step killed every time fails" failed "$st"
pw_check "... after exactly 10 kills" 10 "$(( $(grep -c 'terminated by signal 9' "$PW_LOG") - kills_before ))"
pw_check_sql "... with an error that says it was killed" t \
    "SELECT error LIKE 'step \"o\" failed: the worker process executing this step ended abnormally 10 times (killed%'
       FROM pipeline_worker.runs WHERE id = $r"
# (PostgreSQL 15 itself does not finish a fast shutdown requested during crash recovery: let the restart end)
q "SELECT 1" >/dev/null
pw_wait_workers 2 20 >/dev/null || pw_fail "workers not back after the kill"

# the launcher alone is terminated: the new launcher does not start a second worker on a slot whose worker lives
pw_psql -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker launcher'" >/dev/null
sleep 3
pw_check "after the launcher restarted alone: still exactly 2 workers" 2 \
    "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'")"
r=$(q "SELECT pipeline_worker.create_run('fine')")
pw_check "... and they serve" succeeded "$(q "SELECT pipeline_worker.wait_run($r, '10 s')")"
pw_finish
