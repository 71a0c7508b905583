#!/bin/bash
# A session that keeps a snapshot open (a long report, pg_dump, a client idle in a transaction, a standby's feedback)
# holds back the xmin horizon: the queue's index entries of every run claimed since then cannot be marked dead, and a
# claim that starts at the head of the queue reads them all again. The workers' claims must not start there while
# the queue has work past the claim hint -- neither every few claims nor while a worker's commit puts unstarted runs
# back -- or a drain slows down in proportion to the runs finished since the snapshot (a 300,000-run drain took 19 s
# instead of 5, reading 365 million index entries). Checked by counting the queue index's entries read per run:
# a count, not a time.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

N=200000
PW_WORKERS=8 pw_cluster_start heldsnapshot "pipeline_worker.enabled = off"
pw_psql >/dev/null <<'SQL' || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
CREATE FUNCTION quick(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN RETURN ctx->'input'; END $$;
SELECT pipeline_worker.create_pipeline('q3', '[{"name": "a", "function": "quick"}, {"name": "b", "function": "quick"},
                                              {"name": "c", "function": "quick"}]');
SQL
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('q3',
              (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, $N) g))" >/dev/null \
    || pw_die "create_runs failed"
pw_psql -c "VACUUM ANALYZE pipeline_worker.runs" >/dev/null
# One run cancelled now, retried once the drain is under way: its place in the queue is far behind the claim hint.
pw_psql -c "SELECT pipeline_worker.cancel_run(1)" >/dev/null || pw_die "cancel_run failed"

# The snapshot: taken before the first claim, kept until the end.
holdfile=$(mktemp)
touch "$holdfile.keep"  # the session ends (its input closes) once this file is gone
{
    echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 'held', count(*) FROM pipeline_worker.runs;"
    while [ -e "$holdfile.keep" ]; do sleep 0.2; done
} | pw_psql >"$holdfile" 2>&1 &
holder=$!
pw_wait_until 10 0.1 grep -q held "$holdfile" || pw_die "the snapshot was not taken"
pw_psql -c "SELECT pg_stat_reset()" >/dev/null

t0=$(pw_now)
pw_set_conf pipeline_worker.enabled on
pw_wait_sql t 60 "SELECT count(*) >= 20000 FROM pipeline_worker.runs WHERE status = 'succeeded'" 0.05 >/dev/null \
    || pw_fail "the drain did not start"
pw_check_sql "retry_run of the cancelled run, with the drain under way" "t" "SELECT pipeline_worker.retry_run(1)"
left=$(pw_wait_sql 0 180 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')" 0.3)
pw_check "with a snapshot held, all $N runs finish" "0" "$left"
pw_info "$N runs with a snapshot held: $(pw_elapsed "$t0") s"
pw_check_sql "the snapshot was held throughout (it still holds back the horizon)" "1" \
    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%''held''%' AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()"
pw_check_sql "every run succeeded" "$N" "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'"
# It keeps its turn: the retry's commit moves the claim hint back to it (not left to a worker's next walk from the
# head of the queue, which the snapshot makes rare).
pw_check_sql "the retried run finished while at least a quarter of the runs were still to finish" "t" \
    "SELECT count(*) >= $N / 4 FROM pipeline_worker.runs
      WHERE finished_at > (SELECT finished_at FROM pipeline_worker.runs WHERE id = 1)"

# runs_ready_idx entries read per run since the last pg_stat_reset (the workers' counters reach pg_stat a moment
# after their last commit: read until they stop moving). Sets per_run; $1 runs, $2 what they were.
entries_per_run() {
    local prev=-1 cur
    for _ in $(seq 1 40); do
        cur=$(pw_psql -c "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 'runs_ready_idx'")
        [ "$cur" = "$prev" ] && break
        prev=$cur
        sleep 0.5
    done
    per_run=$((cur / $1))
    pw_info "$2: $cur runs_ready_idx entries read for $1 runs ($per_run per run)"
}
# Zeroes the counters before the next part (the counters of the last part's last claims reach pg_stat a moment after
# the first reset: once more a second later).
reset_counts() {
    pw_psql -c "SELECT pg_stat_reset()" >/dev/null
    sleep 1
    pw_psql -c "SELECT pg_stat_reset()" >/dev/null
}
# per_run_below BOUND WHAT: passes if per_run (set by entries_per_run) is under BOUND; WHAT names the check.
per_run_below() {
    if [ "$per_run" -lt "$1" ]; then
        pw_ok "$2: $per_run queue index entries read (under $1)"
    else
        pw_fail "$2: $per_run queue index entries read (expected under $1)"
    fi
}
entries_per_run "$N" "plain runs"
# Without the bounds (before 2026-12-03): 551 entries per run here, growing with the runs claimed since the snapshot
# (1,200 per run over 300,000 runs). With them: 25-55 (the claimed entry, the entries other workers hold, and the
# periodic walks from the head, kept to a fiftieth of each worker's time, plus one per worker when the queue runs dry).
# With the periodic walks one at a time for the database once slow (2026-12-04): 4-5.
per_run_below 150 "claims per run with a snapshot held"

# Idle workers woken for nothing they can claim (here by wake_workers(); in a limited pipeline's drain, for a run
# another worker took first). A claim that finds nothing past the hint looks behind it, from the head of the queue, for
# runs committed there without moving the hint -- with the snapshot held, a walk over the entries of every run claimed
# since (200,000). Once such a look is slow, the next one, by any worker, waits ten times as long as it took.
reset_counts
for _ in $(seq 1 200); do echo "SELECT pipeline_worker.wake_workers(); SELECT pg_sleep(0.005);"; done | pw_psql >/dev/null \
    || pw_die "wake_workers failed"
entries_per_run 200 "200 wake-ups of the idle workers"
# Without the limit: 65,000-70,000 entries per wake-up (a walk of 200,000 entries every third wake-up, as fast as the
# workers could make them); with it: 12,000-18,000, most of them each worker's periodic claim from the head (every
# 16 claims, at most 2 % of its own time: 8 workers walked at once). Since those are the database's walks, one at a
# time once slow (2026-12-04): 2,000-4,000.
per_run_below 10000 "idle workers woken for nothing per wake-up"

# A limited pipeline under the same snapshot. Every run of a limited lane gives its slot back when it finishes, and
# runs of full lanes are left queued behind the claim hint; each release used to send the hint to the head of the
# queue, so the next claims walked from there: 100,000 runs with "concurrency_per_key": 1 over 100 keys took 148 s
# instead of 5, reading 22,600 index entries per run. Now a release moves the hint back only as far as the first run
# a claim left queued for that lane, and claims from the head park such runs instead (the unpark says where they go).
K=30000
pw_psql >/dev/null <<'SQL' || pw_die "setup of the keyed pipeline failed"
SELECT pipeline_worker.create_pipeline('keyed', '[{"name": "a", "function": "quick"}, {"name": "b", "function": "quick"}]',
                                       '{"concurrency_per_key": 1}');
SQL
reset_counts
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('keyed',
              (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, $K) g),
              concurrency_keys => (SELECT array_agg('k' || (g % 100)) FROM generate_series(1, $K) g))" >/dev/null \
    || pw_die "create_runs of the keyed runs failed"
left=$(pw_wait_sql 0 180 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')" 0.3)
pw_check "with a snapshot held, all $K runs of 100 keys at one run per key finish" "0" "$left"
pw_check_sql "every keyed run succeeded" "$K" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'keyed' AND status = 'succeeded'"
entries_per_run "$K" "keyed runs"
# The previous build read 129,654 per run here and had not finished the runs after 180 s; this one: 117-735 (each walk from
# the head, periodic or when nothing past the hint can start, reads the 200,000 dead entries of the first drain).
per_run_below 2000 "claims of the keyed runs per run with a snapshot held"

# Runs of a higher priority committed one by one during a drain, under the same snapshot. Each commit moves the claim
# hint back to its priority level, and a claim from there walks the queue's entries of every run claimed since the
# snapshot. Claims that overlapped such a commit moving the hint up past its runs would leave them behind (see
# flow_limits.sh); claims that do not, with the hint moved back every few milliseconds, all walked: 200,000 runs took
# over 300 s (33,000 entries per run; 84 s and 7,600 before either change; 7 s and 270 now). Once a walk from a
# moved-back hint is slow,
# such walks are limited to a tenth of each worker's time (worker/claiming.cpp).
P=50000
reset_counts
touch "$holdfile.prio"
{
    while [ -e "$holdfile.prio" ]; do
        echo "SELECT pipeline_worker.create_run('q3', '{\"hi\": 1}', priority => 5); SELECT pg_sleep(0.01);"
    done
} | pw_psql >/dev/null 2>&1 &
submitter=$!
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('q3',
              (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, $P) g))" >/dev/null \
    || pw_die "create_runs of the third drain failed"
t0=$(pw_now)
left=$(pw_wait_sql 0 120 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running') AND NOT input ? 'hi'" 0.3)
pw_info "$P runs with a priority run committed every ~10 ms: $(pw_elapsed "$t0") s"
rm -f "$holdfile.prio"
wait "$submitter" 2>/dev/null
pw_check "with a snapshot held and a priority run committed every ~10 ms, all $P runs finish" "0" "$left"
left=$(pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')" 0.3)
pw_check_sql "... and so do the priority runs (some were committed)" "true|0" \
    "SELECT (count(*) > 10)::text || '|' || count(*) FILTER (WHERE status <> 'succeeded') FROM pipeline_worker.runs WHERE input ? 'hi'"
entries_per_run "$P" "runs drained while priority runs were committed"
# Without the limit: 52,759 per run, and 37,462 of the runs still queued after 120 s; with it: 2,300-3,200 (the dead
# entries in front grow with everything drained before in this script).
per_run_below 10000 "claims per run while priority runs were committed"

# Runs of a higher priority committed one by one while nothing else is queued. A claim that does not fill its batch
# scanned on to the end of the queue index: past its run, through the entries of every run claimed since the snapshot
# (~280,000 here) -- in a limited pipeline's drain, where every run is the only one a claim finds, that made a
# 50,000-run backlog at "concurrency": 4 drain at ~470 runs/s instead of ~2,400 (bench/README.md). Claims stop at the
# queue's known end: where an earlier claim found nothing more, moved up by each commit that queues runs past it
# (worker/claiming.cpp, shared::note_queue_end).
reset_counts
for _ in $(seq 1 200); do
    echo "SELECT pipeline_worker.create_run('q3', '{\"alone\": 1}', priority => 5); SELECT pg_sleep(0.005);"
done | pw_psql >/dev/null || pw_die "create_run of the lone priority runs failed"
left=$(pw_wait_sql 0 60 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')" 0.3)
pw_check "with a snapshot held, 200 priority runs committed one by one finish" "0" "$left"
entries_per_run 200 "200 priority runs alone in the queue"
# Without the known end: 169,000 entries per run (each claim walked to the end); with it: 4,500-10,500 (a walk to the
# end once the known end is no longer trusted, at most a second after the walk that found it, and the entries of the
# priority level itself between). While a worker's release of part of a small batch to the idle ones forgot the known
# end (before 2026-12-04): 5,900-84,000, most often 35,000-70,000 -- each release made the next claims walk to the end.
per_run_below 25000 "claims per lone run with a snapshot held"

# Runs whose first attempt fails and is retried at once (retry_delay_ms 0): pending again at their place in the queue.
# The commit of each failure moved the claim hint back to the head of the queue (before 2026-12-04), and the next
# claims walked from there -- through the entries of every run claimed since the snapshot: 479,000 entries per run
# here. Now to the run's place: 1,550-1,660, locally 1,073-1,682, once 5,076 in CI (2026-12-05; the periodic claims
# from the head walk the same entries, and how often they come follows the machine): the bound is well above that and
# far below the regression.
pw_psql >/dev/null <<'SQL' || pw_die "setup of the flaky pipeline failed"
CREATE FUNCTION flaky(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (ctx->>'attempt')::int = 1 THEN RAISE EXCEPTION 'first attempt fails'; END IF;
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('flaky', '[{"name": "a", "function": "flaky"}]',
                                       '{"max_attempts": 2, "retry_delay_ms": 0}');
SQL
F=3000
reset_counts
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('flaky',
              (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, $F) g))" >/dev/null \
    || pw_die "create_runs of the flaky runs failed"
left=$(pw_wait_sql 0 120 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')" 0.3)
pw_check "with a snapshot held, $F runs retried at once after a failed first attempt finish" "0" "$left"
pw_check_sql "... and succeed at their second attempt" "$F" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'flaky' AND status = 'succeeded'"
entries_per_run "$F" "runs retried at once"
per_run_below 20000 "claims per run retried at once with a snapshot held"

# Runs that start a child run each: the commit that created a child forgot the queue's known end (before 2026-12-04),
# and the next claims walked to the end of the queue index -- with the snapshot held, through every run claimed since.
pw_psql >/dev/null <<'SQL' || pw_die "setup of the parent pipeline failed"
SELECT pipeline_worker.create_pipeline('kid', '[{"name": "a", "function": "quick"}]');
SELECT pipeline_worker.create_pipeline('parent', '[{"name": "c", "pipeline": "kid"}]');
SQL
C=1000
reset_counts
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('parent',
              (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, $C) g))" >/dev/null \
    || pw_die "create_runs of the parent runs failed"
left=$(pw_wait_sql 0 120 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running', 'waiting')" 0.3)
pw_check "with a snapshot held, $C parent runs and their children finish" "0" "$left"
pw_check_sql "... and succeed" "$((2 * C))" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline IN ('parent', 'kid') AND status = 'succeeded'"
entries_per_run "$((2 * C))" "parent and child runs"
per_run_below 5000 "claims per parent or child run with a snapshot held"

# Failed runs retried with retry_run(), one transaction each, while the workers drain them: the commit of each retry
# forgot the queue's known end (before 2026-12-05), and the next claims walked to the end of the queue index --
# 1,466-1,486 entries per run here then; 230-383 since.
pw_psql >/dev/null <<'SQL' || pw_die "setup of the doomed pipeline failed"
CREATE TABLE doomed_ok (ok boolean);
CREATE FUNCTION doomed(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM doomed_ok) THEN RAISE EXCEPTION 'not yet'; END IF;
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('doomed', '[{"name": "a", "function": "doomed"}]', '{"max_attempts": 1}');
SQL
R=2000
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('doomed',
              (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, $R) g))" >/dev/null \
    || pw_die "create_runs of the doomed runs failed"
pw_wait_sql 0 120 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')" 0.3 >/dev/null
pw_psql -c "INSERT INTO doomed_ok VALUES (true)" >/dev/null
reset_counts
pw_psql >/dev/null <<'SQL' || pw_fail "retry_run of the doomed runs"
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT id FROM pipeline_worker.runs WHERE pipeline = 'doomed' AND status = 'failed' ORDER BY id LOOP
        PERFORM pipeline_worker.retry_run(r.id);
        COMMIT;
    END LOOP;
END $$;
SQL
left=$(pw_wait_sql 0 120 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')" 0.3)
pw_check "with a snapshot held, $R runs retried one by one with retry_run() finish" "0" "$left"
pw_check_sql "... and succeed" "$R" "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'doomed' AND status = 'succeeded'"
entries_per_run "$R" "runs retried with retry_run()"
per_run_below 900 "claims per run retried with retry_run() with a snapshot held"

rm -f "$holdfile.keep"
wait "$holder" 2>/dev/null
rm -f "$holdfile"
pw_finish
