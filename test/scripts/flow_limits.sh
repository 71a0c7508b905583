#!/bin/bash
# Flow control through the workers: concurrency limits never exceeded (per key and per pipeline, 10 workers), a
# slot freed by pg_terminate_backend and by SIGKILL, no head-of-line blocking behind a limited key, rate windows,
# a full lane's backlog parked at once and put back in order, priority order under "concurrency": 1 and with one
# worker, run_at lateness, pause/resume, retry_run of a run cancelled while parked or retried while paused, and
# high-priority runs committed while a backlog drains starting within a few claims.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up flow 10 30 "pipeline_worker.commit_interval_ms = 20" || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
-- every step logs its start and end; effects counts executions that committed
CREATE TABLE steplog (run_id bigint, pipeline text, k text, s timestamptz, e timestamptz,
                      x xid8 DEFAULT pg_current_xact_id());
CREATE TABLE effects (run_id bigint PRIMARY KEY);
CREATE FUNCTION fl_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE t timestamptz := clock_timestamp();
BEGIN
    PERFORM pg_sleep(COALESCE((ctx->'input'->>'sleep')::float8, 0));
    INSERT INTO steplog VALUES ((ctx->>'run_id')::bigint, ctx->>'pipeline', ctx->'input'->>'k', t, clock_timestamp());
    INSERT INTO effects VALUES ((ctx->>'run_id')::bigint);
    RETURN '{}';
END $$;
-- the start is logged in a separate transaction too (dblink-free: a sequence is not transactional)
CREATE SEQUENCE starts;
CREATE FUNCTION overlap_max(p text, by_key boolean) RETURNS bigint LANGUAGE sql AS $$
    SELECT COALESCE(max(n), 0) FROM (
        SELECT (SELECT count(*) FROM steplog b WHERE b.pipeline = p AND (NOT by_key OR b.k = a.k)
                                              AND b.s <= a.s AND b.e > a.s) AS n
          FROM steplog a WHERE a.pipeline = p) x
$$;
SELECT pipeline_worker.create_pipeline('lim', '[{"name": "s", "function": "fl_step"}]',
                                       '{"concurrency": 4, "concurrency_per_key": 2}');
SQL

# ------------------------------------------------------------------ limits with 10 workers
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('lim',
              (SELECT jsonb_agg(jsonb_build_object('sleep', 0.02, 'k', 'k' || (i % 5))) FROM generate_series(1, 200) i),
              concurrency_keys => (SELECT array_agg('k' || (i % 5)) FROM generate_series(1, 200) i))" >/dev/null
pw_wait_all_finished 60
pw_check_sql "200 limited runs succeeded" 200 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'lim' AND status = 'succeeded'"
pw_check_sql "at most 2 runs of a key at once" t "SELECT overlap_max('lim', true) <= 2"
pw_check_sql "at most 4 runs of the pipeline at once" t "SELECT overlap_max('lim', false) <= 4"
pw_check_sql "the limit was used (4 at once at some point)" t "SELECT overlap_max('lim', false) = 4"
pw_check_sql "nothing left parked" 0 "SELECT count(*) FROM pipeline_worker.runs WHERE parked IS NOT NULL"

# ------------------------------------------------------------------ a terminated or killed worker frees its slot
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('one', '[{"name": "s", "function": "fl_step"}]', '{"concurrency": 1}');
SELECT pipeline_worker.create_run('one', '{"sleep": 30, "k": "first"}');
SELECT pipeline_worker.create_run('one', '{"sleep": 0, "k": "second"}');
SQL
pid=$(pw_wait_row 10 "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE '%pg_sleep%' AND state = 'active'")
[ -n "$pid" ] || pid=$(pw_wait_sleeping_worker 10)
sleep 0.5
pw_check_sql "the second run waits for the slot" 0 "SELECT count(*) FROM steplog WHERE k = 'second'"
t0=$(pw_now)
pw_psql -c "SELECT pg_terminate_backend($pid)" >/dev/null
# The slot is free once the terminated backend has exited: the second run starts -- or the first, when the recovery
# sweep (which follows the exit by milliseconds) queued it again first: it is older, so it comes first.
if pw_wait_sql t 5 "SELECT (SELECT count(*) FROM steplog WHERE k = 'second') + (SELECT count(*)
                      FROM pipeline_worker.workers() w JOIN pipeline_worker.runs r ON r.id = w.run_id
                     WHERE r.pipeline = 'one' AND r.input->>'k' = 'first') > 0" 0.05 >/dev/null; then
    took=$(pw_elapsed "$t0")
    pw_info "a run of the pipeline started ${took}s after pg_terminate_backend (second finished: $(pw_psql -c "SELECT count(*) FROM steplog WHERE k = 'second'"))"
    pw_lt "$took" 2 && pw_ok "pg_terminate_backend of the slot holder: the next run starts at once" \
        || pw_fail "the slot came back only after ${took}s"
else
    pw_fail "the slot did not come back after pg_terminate_backend"
fi
# the terminated run is recovered and runs again (it is the one holding the slot now)
pw_psql -c "SELECT pipeline_worker.create_run('one', '{\"sleep\": 0, \"k\": \"third\"}')" >/dev/null
pid=$(pw_wait_sleeping_worker 15)
[ -n "$pid" ] || pw_fail "the recovered first run did not start again"
pw_as_pg kill -9 "$pid" 2>/dev/null || kill -9 "$pid"
t0=$(pw_now)
pw_wait_workers 10 30 >/dev/null || pw_fail "workers did not come back after the crash"
# After the crash restart the slot is free: the recovered first run (or the third) starts at once.
if [ -n "$(pw_wait_sleeping_worker 10)" ]; then
    pw_ok "after SIGKILL (crash restart) the slot is free again: a run of the limited pipeline started ($(pw_elapsed "$t0")s after the kill)"
else
    pw_fail "no run of the limited pipeline started within 10 s of the SIGKILL"
fi
# the first run is executing again (30 s): cancelling it frees the slot for the third at once
pw_psql -c "SELECT pipeline_worker.cancel_run(id) FROM pipeline_worker.runs WHERE input->>'k' = 'first'" >/dev/null
pw_wait_sql 1 10 "SELECT count(*) FROM steplog WHERE k = 'third'" 0.05 >/dev/null \
    && pw_ok "cancel_run of the slot holder: the next run started" || pw_fail "the third run did not start after the cancel"
pw_psql -c "SELECT pipeline_worker.cancel_run(id) FROM pipeline_worker.runs WHERE pipeline = 'one' AND status IN ('pending', 'running')" >/dev/null

# ------------------------------------------------------------------ no head-of-line blocking
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('hol', '[{"name": "s", "function": "fl_step"}]', '{"concurrency_per_key": 1}');
SELECT count(*) FROM pipeline_worker.create_runs('hol',
    (SELECT jsonb_agg(jsonb_build_object('sleep', 0.003, 'k', 'A')) FROM generate_series(1, 2000)),
    concurrency_keys => array_fill('A'::text, ARRAY[2000]));
SELECT count(*) FROM pipeline_worker.create_runs('hol',
    (SELECT jsonb_agg(jsonb_build_object('k', 'B')) FROM generate_series(1, 20)),
    concurrency_keys => array_fill('B'::text, ARRAY[20]));
SQL
if pw_wait_sql 20 30 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'hol' AND concurrency_key = 'B' AND status = 'succeeded'" 0.05 >/dev/null; then
    left=$(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'hol' AND concurrency_key = 'A' AND status <> 'succeeded'")
    pw_info "B's 20 runs finished with $left of A's 2000 still to go"
    [ "$left" -gt 0 ] && pw_ok "no head-of-line blocking: key B's runs finished while key A's backlog was draining" \
        || pw_fail "key B's runs only finished after key A's whole backlog"
else
    pw_fail "key B's runs did not finish"
fi
pw_wait_all_finished 120
pw_check_sql "key A never ran twice at once" t "SELECT overlap_max('hol', true) <= 1"
pw_check_sql "every hol run once" "2020|2020" "SELECT count(*) || '|' || count(DISTINCT run_id) FROM steplog WHERE pipeline = 'hol'"

# ------------------------------------------------------------------ rate windows
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('rate', '[{"name": "s", "function": "fl_step"}]',
                                       '{"rate_limit": {"runs": 10, "per_ms": 500}}');
SELECT count(*) FROM pipeline_worker.create_runs('rate', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 40)));
SQL
pw_wait_all_finished 30
# The limiter counts each start at its own clock reading; the step's first statement reads the clock later, by a
# delay that varies with the scheduling (a worker preempted in between on a loaded machine). Two starts the limiter
# saw 500 ms apart can be logged a few ms closer (CI once saw 11 in a 500 ms window of the logged times). The window
# checked here is 450 ms; a limiter whose window is short by more than that is caught by the next check (40 runs
# must take at least 3 full windows).
pw_check_sql "rate: at most 10 runs began in any 450 ms window (500 ms, less the scheduling between count and step)" 0 \
    "SELECT count(*) FROM steplog a WHERE a.pipeline = 'rate' AND (SELECT count(*) FROM steplog b
       WHERE b.pipeline = 'rate' AND b.s >= a.s AND b.s < a.s + interval '450 ms') > 10"
pw_check_sql "rate: 40 runs took at least 1.5 s (3 full windows)" t \
    "SELECT max(s) - min(s) >= interval '1.5 s' FROM steplog WHERE pipeline = 'rate'"
# A claim holds its run's place in the window until the run begins: no other worker's claim takes it meanwhile, to
# find the window full when its run begins and put it back (counted as a claim). Until 2026-12-07 a window of one run
# and 10 workers put back up to nine claims a window, and such a run showed a started_at while pending.
pw_check_sql "rate: every run was claimed once (none put back as it began)" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'rate' AND claims <> 1"
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('rate1', '[{"name": "s", "function": "fl_step"}]',
                                       '{"rate_limit": {"runs": 1, "per_ms": 400}}');
SELECT count(*) FROM pipeline_worker.create_runs('rate1', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 8)));
SQL
seen=0
for _ in $(seq 1 30); do  # (about 3 s: the 8 runs take 2.8 s)
    n=$(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'rate1' AND status = 'pending'
                      AND started_at IS NOT NULL")
    [ "$n" != 0 ] && seen=$((seen + 1))
    sleep 0.1
done
pw_check "rate1 (1 run per 400 ms, 10 workers): no pending run showed a started_at" 0 "$seen"
pw_wait_all_finished 30
pw_check_sql "rate1: 8 runs, each claimed once, one per 400 ms window" "8|0|0" \
    "SELECT count(*) || '|' || count(*) FILTER (WHERE claims <> 1) || '|' ||
            (SELECT count(*) FROM pipeline_worker.runs a WHERE a.pipeline = 'rate1' AND (SELECT count(*)
               FROM pipeline_worker.runs b WHERE b.pipeline = 'rate1' AND b.started_at >= a.started_at
                AND b.started_at < a.started_at + interval '400 ms') > 1)
       FROM pipeline_worker.runs WHERE pipeline = 'rate1'"

# ------------------------------------------------------------------ pause and resume
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('pz', '[{"name": "s", "function": "fl_step"}]');
SELECT pipeline_worker.pause_pipeline('pz');
SELECT count(*) FROM pipeline_worker.create_runs('pz', (SELECT jsonb_agg(jsonb_build_object('p', i)) FROM generate_series(1, 30) i));
SQL
sleep 1
pw_check_sql "paused: nothing started" "0|30" \
    "SELECT (SELECT count(*) FROM steplog WHERE pipeline = 'pz') || '|' || count(*) FROM pipeline_worker.runs WHERE pipeline = 'pz' AND status = 'pending'"
pw_psql -c "SELECT pipeline_worker.resume_pipeline('pz')" >/dev/null
pw_wait_all_finished 20
pw_check_sql "resumed: all 30 ran" 30 "SELECT count(*) FROM steplog WHERE pipeline = 'pz'"
# A run cancelled while parked (here by the pause), retried after the resume: it runs (a retry queues it unparked --
# it kept its park, and nothing would put it back). A run cancelled unparked (due in 3 s), retried while the
# pipeline is paused: it waits for the resume (a retry used to queue it at once), and for its run_at if still ahead.
c2=$(pw_psql -c "SELECT pipeline_worker.create_run('pz', '{\"k\": \"c2\"}', run_at => now() + interval '3 seconds')")
pw_psql -c "SELECT pipeline_worker.cancel_run($c2)" -c "SELECT pipeline_worker.pause_pipeline('pz')" >/dev/null
c1=$(pw_psql -c "SELECT pipeline_worker.create_run('pz', '{\"k\": \"c1\"}')")
pw_check_sql "paused: a run parked, cancelled (and one cancelled unparked before the pause)" "3 true|cancelled" \
    "SELECT parked || ' ' || pipeline_worker.cancel_run($c1) || '|' || (SELECT status || COALESCE(parked::text, '')
       FROM pipeline_worker.runs WHERE id = $c2) FROM pipeline_worker.runs WHERE id = $c1"
pw_psql -c "SELECT pipeline_worker.resume_pipeline('pz')" >/dev/null
pw_check_sql "a run cancelled while parked: retried after the resume" t "SELECT pipeline_worker.retry_run($c1)"
pw_check "... it runs" succeeded "$(pw_wait_run "$c1" 10)"
pw_psql -c "SELECT pipeline_worker.pause_pipeline('pz')" -c "SELECT pipeline_worker.retry_run($c2)" >/dev/null
sleep 0.5
pw_check_sql "a run retried while its pipeline is paused waits (parked by the pause)" "pending 3 0" \
    "SELECT status || ' ' || parked || ' ' || (SELECT count(*) FROM steplog WHERE run_id = $c2) FROM pipeline_worker.runs WHERE id = $c2"
pw_psql -c "SELECT pipeline_worker.resume_pipeline('pz')" >/dev/null
pw_check "... and runs once the pipeline is resumed" succeeded "$(pw_wait_run "$c2" 10)"

# ------------------------------------------------------------------ run_at lateness
pw_psql -c "SELECT pipeline_worker.create_pipeline('late', '[{\"name\": \"s\", \"function\": \"fl_step\"}]')" >/dev/null
pw_psql -c "SELECT pipeline_worker.create_run('late', '{}', run_at => clock_timestamp() + (i * 37 % 1500 + 300) * interval '1 ms')
              FROM generate_series(1, 40) i" >/dev/null
sleep 2.2
pw_wait_all_finished 10
pw_check_sql "run_at: no run started early" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'late' AND started_at < run_at"
lat=$(pw_psql -c "SELECT round(1000 * extract(epoch FROM max(started_at - run_at))) FROM pipeline_worker.runs WHERE pipeline = 'late'")
pw_info "run_at lateness: max ${lat} ms over 40 runs (the benchmark measures p99)"
pw_check_sql "run_at: every run started within 1 s of its run_at" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'late' AND started_at > run_at + interval '1 s'"
# ------------------------------------------------------------------ a full lane's long backlog, parked at once
# Filtered, a full pipeline lane's backlog is stepped over by every claim (50,000 runs at "concurrency" 4 took 58 s,
# both cores busy); once a claim that filtered it was slow, claims park it instead: the runs they lock and the lane's
# runs queued behind them, in one statement. While the first run holds the only slot, the 20,000 behind it must
# leave the queue.
# (The holder's step must be running: a worker's claim is not committed before its batch is -- the row reads
# 'pending' until the step ends. Until 2026-12-05 the test waited for a status other than 'pending': the backlog came
# after the holder had finished, and was parked while the lane drained it, one run at a time -- flaky in CI.)
pw_psql -c "SELECT pipeline_worker.create_pipeline('bulk', '[{\"name\": \"s\", \"function\": \"fl_step\"}]', '{\"concurrency\": 1}')" >/dev/null
# (The holder sleeps 60 s and is cancelled once the backlog is seen parked: a holder that ended by itself while a slow
# machine was still creating the backlog would let the lane drain it instead.)
holder=$(pw_psql -c "SELECT pipeline_worker.create_run('bulk', '{\"sleep\": 60, \"k\": \"holder\"}')")
pw_wait_row 10 "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $holder step 1 %'" >/dev/null ||
    pw_fail "the bulk holder did not start"
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('bulk',
              (SELECT jsonb_agg(jsonb_build_object('k', i)) FROM generate_series(1, 20000) i))" >/dev/null
if pw_wait_sql t 3 "SELECT count(*) >= 19000 FROM pipeline_worker.runs WHERE pipeline = 'bulk' AND parked = 1" >/dev/null; then
    pw_ok "a full lane's long backlog left the queue while its slot was held (>= 19,000 of 20,000 parked)"
else
    pw_fail "a full lane's long backlog stayed queued ($(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'bulk' AND parked = 1") of 20,000 parked)"
    pw_info "workers: $(pw_psql -c "SELECT string_agg(pid || ' ' || state || ' ' || coalesce(wait_event, '-') || ' ' || left(query, 40), '; ')
                                     FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'")"
fi
pw_check_sql "the bulk holder is cancelled (its slot freed)" t "SELECT pipeline_worker.cancel_run($holder)"
# Unparks start where the last one stopped (the runs put back leave dead index entries in front); a run parked later
# at a better position -- a higher priority -- lowers that start again, or it would stay parked for good.
pw_wait_sql t 30 "SELECT count(*) >= 200 FROM steplog WHERE pipeline = 'bulk' AND k <> 'holder'" >/dev/null ||
    pw_fail "the bulk backlog did not start draining"
hi=$(pw_psql -c "SELECT pipeline_worker.create_run('bulk', '{\"k\": \"high\"}', priority => 10)")
pw_wait_sql 1 20 "SELECT count(*) FROM steplog WHERE run_id = $hi" >/dev/null
# Not stuck means: it ran, well before the 19,000-odd runs still parked. (Until 2026-12-04 "fewer than 10 runs
# between": a timing bound -- the backlog runs at ~1,000 runs/s, and the run's way through a claim, its park and the
# next unpark took 10 ms and 11 runs in a passing run; it failed twice in CI.)
hi_ok=$(pw_psql -c "SELECT EXISTS (SELECT FROM steplog WHERE run_id = $hi) AND count(*) < 200 FROM steplog l WHERE l.pipeline = 'bulk'
       AND l.s > (SELECT created_at FROM pipeline_worker.runs WHERE id = $hi)
       AND l.s < (SELECT s FROM steplog WHERE run_id = $hi)")
pw_check "a high-priority run parked behind the unparks' start ran before the backlog's rest (< 200 of ~19,000 runs between)" t "$hi_ok"
# (what the run and the backlog did, should it fail)
[ "$hi_ok" = t ] || pw_info "high-priority run $hi: $(pw_psql -c "SELECT status || ' parked=' || coalesce(parked::text, '-')
    || ' claims=' || claims || ' created ' || to_char(created_at, 'HH24:MI:SS.MS') || ' started '
    || coalesce(to_char(started_at, 'HH24:MI:SS.MS'), '-') FROM pipeline_worker.runs WHERE id = $hi"); bulk runs started
    after it was created, before it: $(pw_psql -c "SELECT count(*) || ', first: ' || coalesce(string_agg(run_id || '@'
    || to_char(s, 'SS.MS'), ' ' ORDER BY s) FILTER (WHERE rn <= 12), '-') FROM (SELECT run_id, s, row_number() OVER (ORDER BY s) rn
    FROM steplog WHERE pipeline = 'bulk' AND run_id <> $hi AND s > (SELECT created_at FROM pipeline_worker.runs WHERE id = $hi)
    AND s < coalesce((SELECT s FROM steplog WHERE run_id = $hi), clock_timestamp())) x")"
pw_psql -c "SELECT count(pipeline_worker.cancel_run(id)) FROM pipeline_worker.runs WHERE pipeline = 'bulk' AND status = 'pending'" >/dev/null
pw_wait_all_finished 30
# (A run whose step had ended when its cancel_run came is cancelled with its step's effect kept: seen once, run 3317
# of 20,002 -- so "ran" and "cancelled" may overlap, by the one run executing at the cancel.)
pw_check_sql "bulk: every run that ran, ran once; every one succeeded (and ran) or was cancelled" "true|0|0" \
    "SELECT (count(*) = count(DISTINCT run_id))::text
            || '|' || (SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'bulk' AND status NOT IN ('succeeded', 'cancelled'))
            || '|' || (SELECT count(*) FROM pipeline_worker.runs r WHERE r.pipeline = 'bulk' AND r.status = 'succeeded'
                         AND NOT EXISTS (SELECT FROM steplog l WHERE l.run_id = r.id))
       FROM steplog WHERE pipeline = 'bulk'"
pw_check_sql "bulk: one run at a time" t "SELECT overlap_max('bulk', false) <= 1"
pw_check_sql "bulk: no pending run left parked" 0 "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending' AND parked IS NOT NULL"

# ------------------------------------------------------------------ priority order under "concurrency": 1 (4 workers)
# 20 runs of 5 ms and mixed priorities released at once by resume_pipeline, 20 times: all run, one at a time. How many
# places early a run started at most, per drain, is printed, not checked: it depends on how the workers' claims meet
# when a slot frees. In 60 drains on the 2-core VM (2026-12-08): before that day's change 19 out of order, 10 of them
# by 8 to 15 places (a queued run took the slot ahead of parked ones of a higher priority); after it 1 to 6, by 1 or 2
# places -- but once, here, two drains in 20 by 10 and 16. (The liveness of that change: isolation_levels.sh.)
pw_retry 20 pw_set_conf pipeline_worker.workers 4 >/dev/null
pw_wait_workers 4 20 >/dev/null || pw_fail "workers did not go down to 4"
pw_psql -c "SELECT pipeline_worker.create_pipeline('order1', '[{\"name\": \"s\", \"function\": \"fl_step\"}]',
                                                   '{\"concurrency\": 1}')" >/dev/null
early=""
for i in $(seq 0 20); do
    pw_psql >/dev/null <<SQL
SELECT pipeline_worker.pause_pipeline('order1');
SELECT pipeline_worker.create_run('order1', jsonb_build_object('k', 'd$i', 'sleep', 0.005), priority => (random() * 5)::int)
  FROM generate_series(1, 20);
SELECT pipeline_worker.resume_pipeline('order1');
SQL
    pw_wait_all_finished 20
    # how many places early a run started at most (its place by start against its place by priority, then id)
    # (not the new pipeline's first drain: its first claims are sized before the workers know it is limited)
    [ "$i" = 0 ] && continue
    early="$early $(pw_psql -c "WITH l AS (SELECT row_number() OVER (ORDER BY l.s) AS n, r.id, r.priority
                                FROM steplog l JOIN pipeline_worker.runs r ON r.id = l.run_id WHERE l.k = 'd$i'),
                            e AS (SELECT row_number() OVER (ORDER BY priority DESC, id) AS n, id FROM l)
                       SELECT max(e.n - l.n) FROM l JOIN e USING (id)")"
done
pw_info "concurrency 1, 4 workers: places early, per drain:$early"
pw_check_sql "concurrency 1: 420 runs succeeded, one at a time" "420|true" \
    "SELECT count(*) || '|' || (overlap_max('order1', false) <= 1) FROM pipeline_worker.runs WHERE pipeline = 'order1' AND status = 'succeeded'"

# ------------------------------------------------------------------ priority order with one worker
pw_retry 20 pw_set_conf pipeline_worker.workers 1 >/dev/null
pw_wait_workers 1 20 >/dev/null || pw_fail "workers did not go down to 1"
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('prio', '[{"name": "s", "function": "fl_step"}]');
SELECT pipeline_worker.pause_pipeline('prio');
SELECT pipeline_worker.create_run('prio', jsonb_build_object('k', g::text), priority => (g * 7) % 5 - 2)
  FROM generate_series(1, 60) g;
SELECT pipeline_worker.resume_pipeline('prio');
SQL
pw_wait_all_finished 20
pw_check_sql "one worker executes by priority (higher first), then FIFO" 0 \
    "SELECT count(*) FROM (SELECT r.priority, r.id, lag(r.priority) OVER w AS p_prio, lag(r.id) OVER w AS p_id
       FROM steplog l JOIN pipeline_worker.runs r ON r.id = l.run_id WHERE l.pipeline = 'prio'
       WINDOW w AS (ORDER BY l.s)) x
      WHERE p_prio IS NOT NULL AND (priority > p_prio OR (priority = p_prio AND id < p_id))"
pw_check_sql "all 5 priority levels ran" 5 "SELECT count(DISTINCT priority) FROM pipeline_worker.runs WHERE pipeline = 'prio'"
# A batch cut short by a commit (here: 48 subtransactions that wrote) releases the runs it claimed but did not
# start. The claim had moved the shared claim hint past the whole batch: unless it comes back to the first released
# run, the next claim takes the rest of the level before them (once in CI: 2411, 2416, 2421, then 2366 ... 2406).
# 50 of 60 claimed at once (claim_batch; fast runs of the pipeline before, so that the batch is neither sized down
# nor ended at a run of a pipeline the worker has not seen), 48 run, 2 released.
pw_set_conf pipeline_worker.claim_batch 50 >/dev/null || pw_fail "claim_batch not set"
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('prio2', '[{"name": "s", "function": "fl_step"}]');
SELECT count(*) FROM pipeline_worker.create_runs('prio2', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 200)));
SQL
pw_wait_all_finished 20
pw_psql >/dev/null <<'SQL'
DELETE FROM steplog WHERE pipeline = 'prio2';
SELECT pipeline_worker.pause_pipeline('prio2');
SELECT pipeline_worker.create_run('prio2', jsonb_build_object('k', g::text), priority => (g * 7) % 5 - 2)
  FROM generate_series(1, 60) g;
SELECT pipeline_worker.resume_pipeline('prio2');
SQL
pw_wait_all_finished 20
pw_check_sql "a batch cut by a commit: its unstarted runs keep their turn (priority, then FIFO)" 0 \
    "SELECT count(*) FROM (SELECT r.priority, r.id, lag(r.priority) OVER w AS p_prio, lag(r.id) OVER w AS p_id
       FROM steplog l JOIN pipeline_worker.runs r ON r.id = l.run_id WHERE l.pipeline = 'prio2'
       WINDOW w AS (ORDER BY l.s)) x
      WHERE p_prio IS NOT NULL AND (priority > p_prio OR (priority = p_prio AND id < p_id))"
pw_check_sql "... and the batch was really cut (the first transaction ran 48 runs)" 48 \
    "SELECT count(*) FROM steplog WHERE pipeline = 'prio2' AND x = (SELECT x FROM steplog WHERE pipeline = 'prio2' ORDER BY s LIMIT 1)"
# ------------------------------------------------------------------ high priority while a backlog drains (2 workers)
# A run committed at a better position lowers the shared claim hint to it (commit_notes::publish). A claim that began
# before that commit and ended after it used to put the hint back past its own batch: the run then waited for a claim
# from the head of the queue (every 16th claim, or when a hinted claim finds nothing) while the backlog went first.
# Each high-priority run must start once the claims in flight at its commit are done: with 2 workers claiming 4 runs
# at a time, a few batches, not the ~16 claims to the next head claim. (Fast runs: the race needs claims to be a good
# part of a worker's time; with runs of ~1 ms the broken build passed too. The backlog of 250,000 lasts ~10 s at
# 24,000 runs/s. Until 2026-12-07 it had 100,000: a CI emulation drained them in 4.6 s, before the last of the 100
# commits, made over 4.4 s.)
pw_retry 20 pw_set_conf pipeline_worker.workers 2 >/dev/null
pw_wait_workers 2 20 >/dev/null || pw_fail "workers did not go up to 2"
pw_set_conf pipeline_worker.claim_batch 4 >/dev/null || pw_fail "claim_batch not set"
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('drain', '[{"name": "s", "function": "fl_step"}]');
CREATE TABLE hi_commits (run_id bigint, committed timestamptz);
SELECT count(*) FROM pipeline_worker.create_runs('drain', (SELECT jsonb_agg(jsonb_build_object('k', i)) FROM generate_series(1, 250000) i));
SQL
pw_wait_sql t 30 "SELECT count(*) >= 500 FROM steplog WHERE pipeline = 'drain'" >/dev/null || pw_fail "the drain did not start"
for i in $(seq 1 100); do
    # the run's commit, then the moment after it: backlog runs that start later had no head start
    pw_psql >/dev/null <<SQL
SELECT pipeline_worker.create_run('drain', '{"k": "high"}', priority => 5) AS hi \\gset
INSERT INTO hi_commits VALUES (:hi, clock_timestamp());
SQL
    sleep 0.03
done
pw_check_sql "the backlog was still draining when the last high-priority run was committed" t \
    "SELECT count(*) > 0 FROM pipeline_worker.runs WHERE pipeline = 'drain' AND status = 'pending'
       AND id < (SELECT max(run_id) FROM hi_commits) AND id NOT IN (SELECT run_id FROM hi_commits)"
pw_wait_sql 0 20 "SELECT count(*) FROM hi_commits h WHERE NOT EXISTS (SELECT FROM steplog l WHERE l.run_id = h.run_id)" >/dev/null ||
    pw_fail "high-priority runs did not all start"
lags=$(pw_psql -c "SELECT string_agg(n::text, ' ' ORDER BY n DESC) FROM (SELECT (SELECT count(*) FROM steplog l
         WHERE l.pipeline = 'drain' AND l.k <> 'high' AND l.s > h.committed AND l.s < hs.s) n
         FROM hi_commits h JOIN steplog hs ON hs.run_id = h.run_id) x")
pw_info "backlog runs started after each high-priority run's commit, before it: $lags"
# (With the fix: the batches in flight at the commit, 0-8 runs, once 24 -- a worker stalled in an fsync while the other
# drains adds more -- so five of the 100 may go past the bound. Without it: 24 of 100 at 24-404 runs.)
pw_check "high-priority runs started within a few claims of their commit (< 24 backlog runs between, all but 5 of 100)" t \
    "$(pw_psql -c "SELECT count(*) FILTER (WHERE n >= 24) <= 5 FROM unnest('{${lags// /,}}'::int[]) n")"
pw_wait_all_finished 90

# Two create_runs calls with the same 200 idempotency keys in opposite orders, at once: one run per key, both callers
# get every id, no "deadlock detected" (until 2026-12-07: 2 of 5 rounds, one caller failed with 40P01).
pw_psql -c "SELECT pipeline_worker.create_pipeline('keyed', '[{\"name\": \"a\", \"function\": \"fl_step\"}]',
                                                   '{\"concurrency\": 1}')" -c "SELECT pipeline_worker.pause_pipeline('keyed')" >/dev/null
keyed() {  # ROUND ASC|DESC : the number of ids create_runs returned, or its error
    pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('keyed',
                  (SELECT jsonb_agg(jsonb_build_object('i', i) ORDER BY i $2) FROM generate_series(1, 200) i),
                  idempotency_keys => (SELECT array_agg('r$1-' || i ORDER BY i $2) FROM generate_series(1, 200) i))" 2>&1
}
for round in 1 2 3 4 5; do
    keyed "$round" ASC >"$PW_CLUSTER_DIR/keyed_a.out" & a=$!
    keyed "$round" DESC >"$PW_CLUSTER_DIR/keyed_b.out" & b=$!
    wait "$a" "$b"
    got="$(cat "$PW_CLUSTER_DIR/keyed_a.out") $(cat "$PW_CLUSTER_DIR/keyed_b.out")"
    [ "$got" = "200 200" ] || break
done
pw_check "two create_runs with 200 keys in opposite orders at once, 5 rounds: every id to both callers" "200 200" "$got"
pw_check_sql "... one run per key" "1000 1000" \
    "SELECT count(*) || ' ' || count(DISTINCT idempotency_key) FROM pipeline_worker.runs WHERE pipeline = 'keyed'"
pw_psql -c "SELECT pipeline_worker.drop_pipeline('keyed')" >/dev/null 2>&1

pw_check_sql "no effect repeated anywhere" 0 "SELECT count(*) FROM (SELECT run_id FROM steplog GROUP BY 1 HAVING count(*) > 1) d"
pw_finish
