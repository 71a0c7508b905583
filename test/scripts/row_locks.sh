#!/bin/bash
# Transactions of users that hold rows the workers need.
# - A parked run that another transaction keeps locked (a cancel_run() not yet committed, a SELECT ... FOR UPDATE left
#   open) holds back nothing but itself: its lane's other parked runs go back to the queue and run while the lock is
#   held, no worker waits on the lock, and the locked run runs (or stays cancelled) once the transaction ends. The
#   same for a session's claim_run() without workers putting back the runs parked before a restart. (Until 2026-12-05
#   the put-back waited for the lock: the lane stayed parked and the worker stuck for as long as the transaction
#   lasted.)
# - A step's own lock_timeout ends its wait for a row another transaction holds. (Until 2026-12-05 the workers
#   dropped the SIGINT that PostgreSQL's lock_timeout sends: the step waited for as long as the lock was held.)
# - An HTTP step's answer whose run another transaction holds is recorded once the lock is gone, and the worker goes
#   on meanwhile. (Until 2026-12-05 it waited for the lock, its other answers and claims with it.)
# - An orphaned run (its worker terminated) that another transaction holds is recovered once the lock is gone, and the
#   workers sweeping go on meanwhile. (Until 2026-12-05 every worker that came to sweep waited for the lock.)
# - A queued run another transaction holds is skipped by the workers' claims and runs once the lock is gone; the runs
#   queued with it run meanwhile.
# - A lock_timeout the workers inherit (ALTER DATABASE ... SET) that ends one of their own statements blames no run:
#   the batch goes back and runs once the lock is gone. (Until bb6dc56 the run being executed was failed.)
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/../lib/http.sh"
trap pw_http_cleanup EXIT

pw_http_start
pw_cluster_up rowlocks 2 30 "pipeline_worker.commit_interval_ms = 20" \
    "pipeline_worker.http_allowed_hosts = '127.0.0.1'" || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE steplog (run_id bigint, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION pb_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(COALESCE((ctx->'input'->>'sleep')::float8, 0));
    INSERT INTO steplog (run_id) VALUES ((ctx->>'run_id')::bigint);
    RETURN '{}';
END $$;
CREATE FUNCTION pb_noop(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
-- hold()'s gate: a locker keeps its transaction open until release() opens its gate (or max_s pass)
CREATE TABLE rl_gate (name text PRIMARY KEY);
CREATE FUNCTION rl_wait_gate(gate text, max_s float8) RETURNS void LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    WHILE NOT EXISTS (SELECT 1 FROM rl_gate g WHERE g.name = gate) AND clock_timestamp() < t0 + max_s * interval '1 s' LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT pipeline_worker.create_pipeline('orphan', '[{"name": "s", "function": "pb_step"}]');
SELECT pipeline_worker.create_pipeline('filler', '[{"name": "s", "function": "pb_noop"}]');
SQL
dir=/tmp/pw-rowlocks

# hold NAME SECONDS SQL [ID] : SQL (which takes row locks; :id is ID) in a transaction kept open until release NAME
# (at most SECONDS s), in the background (its pid in $job); returns once SQL has run. (Until 2026-12-07 each was held
# for a fixed 5-10 s, which a slow machine could spend on the checks before the last of them ran.)
hold() {
    pw_psql -v id="${4:-0}" >"$dir/$1.locker" 2>&1 <<SQL &
BEGIN;
$3
\echo locked
SELECT rl_wait_gate('$1', $2);
COMMIT;
SQL
    job=$!
    pw_wait_until 5 0.05 grep -q '^locked' "$dir/$1.locker" || pw_fail "$1: the locker did not take the lock"
}
# check_no_long_lock_wait NAME : no worker has been waiting on a lock for more than 2 s (a put-back waits a second
# before it skips the row, each worker once)
check_no_long_lock_wait() {
    pw_check "$1: no worker has waited on a lock for more than 2 s meanwhile" "" \
        "$(pw_psql -c "SELECT string_agg(pid || ': ' || query || ' for ' || (clock_timestamp() - query_start), '; ')
                         FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event_type = 'Lock'
                          AND clock_timestamp() - query_start > interval '2 s'")"
}
# check_still_held NAME : the locker started by hold still runs (what was checked happened while it held its locks)
# release NAME : opens the gate of the locker started by hold NAME: its transaction commits
release() { pw_psql -c "INSERT INTO rl_gate VALUES ('$1') ON CONFLICT DO NOTHING" >/dev/null; }
check_still_held() { pw_check "$1: the locker was still holding its lock" 0 "$(kill -0 "$job" 2>/dev/null; echo $?)"; }

# lane_with_locked_run PIPELINE LOCKER_SQL FINAL_STATUS : a pipeline at "concurrency" 1, a holder run in its only
# slot, five runs parked behind it; LOCKER_SQL (with :id the first parked run, in put-back order) runs in a
# transaction held until released; then the holder is cancelled, which frees the slot. (The holder sleeps 2 minutes: a
# holder that ended by itself could free the slot before the setup was done on a slow machine.)
lane_with_locked_run() {
    local p=$1 locker=$2 final=$3 holder first job
    pw_psql -c "SELECT pipeline_worker.create_pipeline('$p', '[{\"name\": \"s\", \"function\": \"pb_step\"}]',
                                                       '{\"concurrency\": 1}')" >/dev/null
    holder=$(pw_psql -c "SELECT pipeline_worker.create_run('$p', '{\"sleep\": 120}')")
    pw_wait_row 10 "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $holder step 1 %'" \
        >/dev/null || pw_fail "$p: the holder did not start"
    pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('$p', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 5)))" >/dev/null
    # (A claim from the head parks them, and tells their lane; the claims from the hint filter a full lane's runs and
    # leave them queued. The workers claim from the head every 16 claims: other runs keep them claiming.)
    local i
    # (up to 10 rounds of filler: which claim comes from the head depends on the claims' count so far -- CI once saw
    # none park them in 3 rounds, 2026-12-07)
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('filler', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 3000)))" >/dev/null
        pw_wait_sql 5 2 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = '$p' AND parked IS NOT NULL" >/dev/null && break
    done
    pw_info "$p: $i round(s) of 3,000 filler runs"
    pw_check_sql "$p: the five runs behind the holder were parked" 5 \
        "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = '$p' AND parked IS NOT NULL"
    first=$(pw_psql -c "SELECT id FROM pipeline_worker.runs WHERE pipeline = '$p' AND parked IS NOT NULL ORDER BY id LIMIT 1")
    hold "$p" 60 "$locker" "$first"
    pw_check_sql "$p: the holder cancelled (its slot freed)" t "SELECT pipeline_worker.cancel_run($holder)"
    if pw_wait_sql 4 5 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = '$p' AND status = 'succeeded' AND id NOT IN ($holder, $first)" >/dev/null &&
        kill -0 "$job" 2>/dev/null; then
        pw_ok "$p: the lane's four other parked runs ran while a transaction held the first one's row lock"
    else
        pw_fail "$p: the lane's other parked runs waited for the transaction holding the first one's row ($(pw_psql -c "SELECT string_agg(id || ' ' || status || ' ' || coalesce(parked::text, '-'), ', ' ORDER BY id) FROM pipeline_worker.runs WHERE pipeline = '$p'"))"
    fi
    check_no_long_lock_wait "$p"
    pw_check_sql "$p: the locked run is still parked meanwhile" "pending true" \
        "SELECT status || ' ' || (parked IS NOT NULL) FROM pipeline_worker.runs WHERE id = $first"
    check_still_held "$p"
    release "$p"
    pw_wait_exit "$job" 15 || pw_fail "$p: the locker did not end"
    pw_check "$p: the locker had no error" "" "$(grep -i error "$dir/$p.locker")"
    pw_check_sql "$p: once the transaction ended, the locked run is $final" "$final" \
        "SELECT pipeline_worker.wait_run($first, '10 s')"
    local runs_expected=5  # (the holder's effect was rolled back with its cancelled step)
    [ "$final" = cancelled ] && runs_expected=4
    pw_check_sql "$p: every run that ran, once" "$runs_expected $runs_expected" \
        "SELECT count(*) || ' ' || count(DISTINCT l.run_id) FROM steplog l JOIN pipeline_worker.runs r ON r.id = l.run_id WHERE r.pipeline = '$p'"
}

lane_with_locked_run locked_row "SELECT 1 FROM pipeline_worker.runs WHERE id = :id FOR UPDATE;" succeeded
lane_with_locked_run cancel_open "SELECT pipeline_worker.cancel_run(:id);" cancelled
pw_check_sql "nothing left parked" 0 "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending' AND parked IS NOT NULL"

# ------------------------------------------------------------------ a queued run that a transaction holds
# The workers' claim skips a queued run whose row another transaction keeps locked (FOR UPDATE SKIP LOCKED, which
# store/direct_claim does without a statement): the runs queued with it run meanwhile, no worker waits for the lock,
# and the held run runs once, after the transaction ends.
pw_set_conf pipeline_worker.workers 0 >/dev/null || pw_fail "workers not set to 0"
pw_wait_sql 0 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'" >/dev/null ||
    pw_fail "workers still running with workers = 0"
held=$(pw_psql -c "SELECT pipeline_worker.create_run('orphan', '{\"queued\": 1}')")
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('orphan', (SELECT jsonb_agg('{\"queued\": 1}'::jsonb) FROM generate_series(1, 30)))" >/dev/null
hold queued 60 "SELECT 1 FROM pipeline_worker.runs WHERE id = :id FOR UPDATE;" "$held"
# (back to the cluster's 2 workers; a value left in postgresql.auto.conf would outlive the restart below)
pw_psql -c "ALTER SYSTEM RESET pipeline_worker.workers" -c "SELECT pg_reload_conf()" >/dev/null ||
    pw_fail "workers not reset"
pw_wait_sql 30 6 "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'queued' = '1' AND status = 'succeeded'" >/dev/null
pw_check_sql "queued: the 30 runs queued with a held one ran while a transaction held its row" 30 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'queued' = '1' AND status = 'succeeded'"
sleep 2  # (a worker that took the held run anyway would be waiting for its lock by now)
pw_check_sql "queued: no worker waits for a lock" 0 \
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
      WHERE NOT l.granted AND a.backend_type = 'pipeline_worker'"
check_no_long_lock_wait queued
pw_check_sql "queued: the held run is still queued meanwhile, its step not run" "pending 0" \
    "SELECT status || ' ' || (SELECT count(*) FROM steplog WHERE run_id = $held) FROM pipeline_worker.runs WHERE id = $held"
check_still_held queued
release queued
pw_wait_exit "$job" 15 || pw_fail "queued: the locker did not end"
pw_check_sql "queued: once the transaction ended, the held run succeeded" succeeded \
    "SELECT pipeline_worker.wait_run($held, '10 s')"
pw_check_sql "queued: each of the 31 runs' step ran once" "31 31" \
    "SELECT count(*) || ' ' || count(DISTINCT l.run_id) FROM steplog l JOIN pipeline_worker.runs r ON r.id = l.run_id
      WHERE r.input->>'queued' = '1'"

# ------------------------------------------------------------------ a step's own lock_timeout
pw_psql >/dev/null <<'SQL' || pw_fail "lock_timeout fixtures failed"
CREATE TABLE guarded (id int PRIMARY KEY);
INSERT INTO guarded VALUES (1);
CREATE FUNCTION lt_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql SET lock_timeout = '200ms' AS $$
BEGIN
    PERFORM 1 FROM guarded WHERE id = 1 FOR UPDATE;
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('lt', '[{"name": "s", "function": "lt_step"}]');
SQL
hold lt 60 "SELECT 1 FROM guarded WHERE id = 1 FOR UPDATE;"
r=$(pw_psql -c "SELECT pipeline_worker.create_run('lt', '{}')")
pw_check_sql "a step whose lock_timeout passed while another transaction held its row failed at once" "failed" \
    "SELECT pipeline_worker.wait_run($r, '4 s')"
pw_check_sql "... with lock_timeout's error" t \
    "SELECT error LIKE '%canceling statement due to lock timeout%' FROM pipeline_worker.runs WHERE id = $r"
check_still_held lt
release lt
pw_wait_exit "$job" 10 || pw_fail "lt: the locker did not end"

# ------------------------------------------------------------------ an orphaned run that is held
# A worker terminated during a long step leaves its run 'running' (its claim was committed before the step, whose
# transaction does not lock the run's row); a session holds that row. The sweep that recovers the run skips
# it meanwhile (the worker sweeping does not wait), and recovers it afterwards.
r=$(pw_psql -c "SELECT pipeline_worker.create_run('orphan', '{\"sleep\": 30}')")
pid=$(pw_wait_row 10 "SELECT worker_pid FROM pipeline_worker.runs WHERE id = $r AND status = 'running'")
pw_wait_row 10 "SELECT 1 FROM pg_stat_activity WHERE pid = $pid AND query LIKE 'run $r step 1 %'" >/dev/null ||
    pw_fail "orphan: the step did not start"
# (The locker's UPDATE takes the lock and drops the 30 s sleep for the run's next execution.)
hold orphan 60 "UPDATE pipeline_worker.runs SET input = '{}' WHERE id = :id;" "$r"
pw_psql -c "SELECT pg_terminate_backend($pid)" >/dev/null
sleep 3.5  # (the sweep the worker's exit asks for, and three periodic ones)
check_no_long_lock_wait orphan
pw_check_sql "orphan: the run stays running (its claimer gone) while its row is held" running \
    "SELECT status FROM pipeline_worker.runs WHERE id = $r"
check_still_held orphan
release orphan
pw_wait_exit "$job" 10 || pw_fail "orphan: the locker did not end"
pw_check_sql "orphan: recovered once the lock was gone, and run again" succeeded "SELECT pipeline_worker.wait_run($r, '10 s')"
pw_check_sql "orphan: its step's effect once (the terminated attempt was rolled back)" 1 \
    "SELECT count(*) FROM steplog WHERE run_id = $r"

# ------------------------------------------------------------------ an HTTP answer whose run is held
pw_psql -c "SELECT pipeline_worker.create_pipeline('hl', '[{\"name\": \"call\", \"http\": {\"url\": \"$B/delay?ms=1500\"}}]')" \
        -c "SELECT pipeline_worker.create_pipeline('hok', '[{\"name\": \"call\", \"http\": {\"url\": \"$B/ok\"}}]')" >/dev/null ||
    pw_fail "hl: pipelines not created"
srv_reset
r=$(pw_psql -c "SELECT pipeline_worker.create_run('hl', '{}')")
pw_wait_sql 1 5 "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND status = 'running'" >/dev/null ||
    pw_fail "hl: the request did not leave"
hold hl 60 "SELECT 1 FROM pipeline_worker.runs WHERE id = :id FOR UPDATE;" "$r"
sleep 1.5  # (the answer comes 1.5 s after the request left)
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('hok', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 20)))" >/dev/null
pw_check_sql "hl: 20 HTTP runs committed meanwhile succeeded while the answered run's row was held" 20 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'hok' AND pipeline_worker.wait_run(id, '5 s') = 'succeeded'"
sleep 3  # (here, 4.5 s or more into the hold: a worker that waited for the lock since the answer came, 3 s or more)
check_no_long_lock_wait hl
pw_check_sql "hl: the answered run is still running while its row is held" running \
    "SELECT status FROM pipeline_worker.runs WHERE id = $r"
check_still_held hl
release hl
pw_wait_exit "$job" 10 || pw_fail "hl: the locker did not end"
pw_check_sql "hl: once the lock was gone, the answer was recorded" succeeded "SELECT pipeline_worker.wait_run($r, '5 s')"
pw_check_sql "hl: one step row, attempt 1" "1 1" \
    "SELECT count(*) || ' ' || max(attempt) FROM pipeline_worker.run_steps WHERE run_id = $r"
pw_check "hl: one request, with its Idempotency-Key" "$r:1:1=1" \
    "$(pw_psql -c "SELECT coalesce(string_agg(key || '=' || value, ' ' ORDER BY key), '')
                     FROM jsonb_each_text('$(srv /keys)'::jsonb) WHERE key LIKE '$r:%'")"

# ------------------------------------------------------------------ a lock_timeout the workers inherit
# ALTER DATABASE ... SET lock_timeout applies to the workers' own statements too. A session holds run_steps in SHARE
# mode: the workers' writes of step rows time out, their batches are rolled back and put back with no run
# blamed, and run again once the lock is gone. (Until bb6dc56 the timeout failed the run being executed: "internal
# error: canceling statement due to lock timeout".)
pw_psql -c "ALTER DATABASE postgres SET lock_timeout = '300ms'" >/dev/null
old_pids=$(pw_worker_pids)
pw_psql -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'" >/dev/null
pw_wait_sql 2 15 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND pid <> ALL ('{${old_pids// /,}}'::int[])" \
    >/dev/null || pw_fail "inherited: the workers did not come back"
log_at=$(pw_log_size)
hold inherited 60 "LOCK TABLE pipeline_worker.run_steps IN SHARE MODE;"
ids=$(pw_psql -c "SELECT string_agg(id::text, ',') FROM pipeline_worker.create_runs('filler', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 20))) id")
sleep 1
pw_check_sql "inherited: none of the 20 runs finished while their step rows could not be written" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status IN ('succeeded', 'failed', 'cancelled')"
check_still_held inherited
release inherited
pw_wait_exit "$job" 10 || pw_fail "inherited: the locker did not end"
pw_check "inherited: the workers' statements timed out meanwhile (server log)" yes \
    "$(tail -c +$((log_at + 1)) "$PW_LOG" | grep -q 'canceling statement due to lock timeout' && echo yes || echo no)"
pw_check_sql "inherited: once the lock was gone, all 20 runs succeeded, none blamed" 20 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND pipeline_worker.wait_run(id, '10 s') = 'succeeded'"
pw_psql -c "ALTER DATABASE postgres RESET lock_timeout" >/dev/null

# ------------------------------------------------------------------ the roll-ups' lock held by a session
# retry_run() of a run failed within the hour takes the minute roll-ups' lock (finished_sealed) until its transaction
# ends. The lead worker seals minutes each second and retention discounts the runs it deletes under the same lock:
# they skip their round while a session holds it, instead of waiting. (Until 2026-12-05 the lead worker waited for as
# long as the transaction lasted, its claims and recovery sweeps with it.)
pw_psql >/dev/null <<'SQL' || pw_fail "sealed: fixtures failed"
CREATE FUNCTION pb_fail(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;
SELECT pipeline_worker.create_pipeline('failing', '[{"name": "s", "function": "pb_fail", "max_attempts": 1}]');
SQL
f=$(pw_psql -c "SELECT pipeline_worker.create_run('failing')")
pw_check_sql "sealed: a run failed" failed "SELECT pipeline_worker.wait_run($f, '10 s')"
pw_set_conf pipeline_worker.retention '1 s' || pw_fail "sealed: retention not set"
hold sealed 60 "SELECT pipeline_worker.retry_run($f);"
ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('filler')::text, ',') FROM generate_series(1, 20)")
pw_wait_sql 20 5 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status = 'succeeded'" >/dev/null
sleep 2.5  # (past their retention: a retention round that deletes them would discount them under the lock)
# (sampled: a worker's activity line, and so query_start, is not renewed by every statement it waits in)
in_lock=0
for i in $(seq 1 10); do
    n=$(pw_psql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event_type = 'Lock'")
    [ "$n" -gt 0 ] && in_lock=$((in_lock + 1))
    sleep 0.3
done
# (a sample may catch a short lock wait between the workers themselves: the build before waits in all 10)
[ "$in_lock" -le 2 ] && pw_ok "sealed: no worker waits for the session's lock ($in_lock of 10 samples in a lock wait)" \
    || pw_fail "sealed: a worker waited for the session's lock ($in_lock of 10 samples in a lock wait)"
pw_check_sql "sealed: the 20 runs that finished meanwhile are kept while the lock is held" 20 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids)"
check_still_held sealed
release sealed
pw_wait_exit "$job" 15 || pw_fail "sealed: the locker did not end"
pw_check "sealed: the locker had no error" "" "$(grep -i error "$dir/sealed.locker")"
pw_wait_sql 0 10 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids)" >/dev/null
pw_check_sql "sealed: once the lock was gone, retention deleted them" 0 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids)"
pw_reset_conf pipeline_worker.retention

# ------------------------------------------------------------------ claim_run() without workers, after a restart
# The first put-back after a restart puts back every run a limit parked (the lanes know none): here a session's
# claim_run(). One of the runs locked by another session: the claim goes on with the others after a second.
pw_parked_runs fresh pb_step 3 || pw_fail "parked runs not set up"
pw_cluster_restart "pipeline_worker.workers = 0" || pw_fail "restart failed"
pw_wait_sql 0 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'" >/dev/null ||
    pw_fail "workers still running with workers = 0"
first=$(pw_psql -c "SELECT min(id) FROM pipeline_worker.runs WHERE pipeline = 'fresh'")
hold fresh 60 "SELECT 1 FROM pipeline_worker.runs WHERE id = :id FOR UPDATE;" "$first"
start=$(pw_now)
claimed=$(pw_psql -c "SELECT pipeline_worker.claim_run()")
t=$(pw_elapsed "$start")
if [ -n "$claimed" ] && [ "$claimed" != "$first" ] && pw_lt "$t" 3; then
    pw_ok "claim_run put back the runs parked before the restart but one locked, and claimed one, in $t s"
else
    pw_fail "claim_run with a parked run locked by another session: run '$claimed' (locked: $first) after $t s"
fi
check_still_held fresh
release fresh
pw_wait_exit "$job" 10 || pw_fail "fresh: the locker did not end"
pw_finish
