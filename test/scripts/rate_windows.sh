#!/bin/bash
# Rate limits with short windows, on a fresh cluster with one worker: the runs a full window holds back stay queued
# (the claims filter their lane out), and the worker wakes when the window moves on -- not at its once-a-second look.
# Until 2026-12-03, 8 runs at 1 per 150 ms took 7 s (pipeline-wide and per key alike). A rate-limited run claimed in
# one batch behind a slow run begins first (its claim holds the window's place until it begins). (Long windows, limits
# with 10 workers: flow_limits.sh.)
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT
pw_cluster_up rate_windows 1 20 || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures"
CREATE EXTENSION pipeline_worker;
CREATE TABLE startlog (pipeline text, run_id bigint, s timestamptz);
CREATE FUNCTION rw_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO startlog VALUES (ctx->>'pipeline', (ctx->>'run_id')::bigint, clock_timestamp());
    RETURN '1';
END $$;
SELECT pipeline_worker.create_pipeline('rate_short', '[{"name": "s", "function": "rw_step"}]',
                                       '{"rate_limit": {"runs": 1, "per_ms": 150}}');
SELECT pipeline_worker.create_pipeline('rate_key', '[{"name": "s", "function": "rw_step"}]',
                                       '{"rate_limit_per_key": {"runs": 1, "per_ms": 150}}');
SQL

for p in rate_short rate_key; do
    keys=NULL
    [ $p = rate_key ] && keys="array_fill('A'::text, ARRAY[8])"
    pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('$p', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 8)),
                                                                 concurrency_keys => $keys)" >/dev/null
    pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE status <> 'succeeded'" >/dev/null ||
        pw_fail "$p: runs left unfinished after 30 s"
    # (Windows measured on the claims -- runs.started_at, taken as the claim admits the run -- not on the steps' own
    # clock: a step may begin a moment after its claim on a busy machine, and two steps 150 ms apart by their claims
    # were seen closer than that by their steps once in CI, 2026-12-05.)
    pw_check_sql "$p: every run began once, one per 150 ms window" "8|8|0" \
        "SELECT count(*) || '|' || count(DISTINCT run_id) || '|' ||
                (SELECT count(*) FROM pipeline_worker.runs a WHERE a.pipeline = '$p' AND (SELECT count(*)
                   FROM pipeline_worker.runs b WHERE b.pipeline = '$p' AND b.started_at >= a.started_at
                    AND b.started_at < a.started_at + interval '150 ms') > 1)
           FROM startlog WHERE pipeline = '$p'"
    pw_check_sql "$p: each next run began as the window moved on (8 runs in under 3 s, not one a second)" t \
        "SELECT max(s) - min(s) < interval '3 s' FROM startlog WHERE pipeline = '$p'"
done

# A batch's run whose claim holds a place in a rate window begins first among the batch's runs of its priority: behind
# a slow run claimed with it, the place would stay held and the window idle that long. (Until 2026-12-07 a 1 s run
# claimed first delayed it by 1 s.) One worker, warmed by the runs above: its claim takes both runs at once -- a
# batch is sized as commit_interval_ms over the recent run time, 1 s over a few ms here (at 20 ms, one slow moment of
# the machine among the last runs could make it a batch of one).
pw_set_conf pipeline_worker.commit_interval_ms 1000 || pw_die "commit_interval_ms"
pw_psql >/dev/null <<'SQL' || pw_die "fixtures (batch order)"
CREATE FUNCTION rw_slow(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO startlog VALUES (ctx->>'pipeline', (ctx->>'run_id')::bigint, clock_timestamp());
    PERFORM pg_sleep(1);
    RETURN '1';
END $$;
SELECT pipeline_worker.create_pipeline('slow_first', '[{"name": "s", "function": "rw_slow"}]');
BEGIN;
SELECT pipeline_worker.create_run('slow_first', '{}');
SELECT pipeline_worker.create_run('rate_short', '{"after": "slow"}');
COMMIT;
SQL
pw_wait_sql 0 10 "SELECT count(*) FROM pipeline_worker.runs WHERE status <> 'succeeded'" >/dev/null ||
    pw_fail "batch order: runs left unfinished after 10 s"
pw_check_sql "the rate-limited run claimed behind a 1 s run began first, not 1 s later" t \
    "SELECT (SELECT s FROM startlog l JOIN pipeline_worker.runs r ON r.id = l.run_id WHERE r.input ? 'after')
          < (SELECT s FROM startlog WHERE pipeline = 'slow_first')"
pw_check_sql "... each claimed once" "2|2" \
    "SELECT count(*) || '|' || sum(claims) FROM pipeline_worker.runs WHERE pipeline = 'slow_first' OR input ? 'after'"
pw_reset_conf pipeline_worker.commit_interval_ms

# A rate limit raised while runs wait for the window: the starts already made in it still count. Until 2026-12-07 the
# lane could be forgotten between the alter's commit and the next admission (its limits reset, its window counted as
# empty), and 1 -> 2 runs per 20 s let 3 start (in about half of the tries): four pipelines at once, 4 workers.
pw_set_conf pipeline_worker.workers 4 >/dev/null || pw_fail "workers = 4"
pw_wait_workers 4 20 >/dev/null || pw_fail "raised limit: not 4 workers"
for t in 1 2 3 4; do
    pw_psql -c "SELECT pipeline_worker.create_pipeline('raised$t', '[{\"name\": \"s\", \"function\": \"rw_step\"}]',
                  '{\"rate_limit\": {\"runs\": 1, \"per_ms\": 20000}}')" \
            -c "SELECT count(*) FROM pipeline_worker.create_runs('raised$t', (SELECT jsonb_agg(jsonb_build_object('i', g))
                                                                         FROM generate_series(1, 8) g))" >/dev/null
done
pw_wait_sql 4 10 "SELECT count(*) FROM startlog WHERE pipeline LIKE 'raised%'" >/dev/null || pw_fail "raised limit: no first starts"
sleep 0.5
for t in 1 2 3 4; do
    pw_psql -c "SELECT pipeline_worker.alter_pipeline('raised$t', '{\"rate_limit\": {\"runs\": 2, \"per_ms\": 20000}}')" >/dev/null
done
pw_wait_sql t 10 "SELECT count(*) >= 8 FROM startlog WHERE pipeline LIKE 'raised%'" >/dev/null || pw_fail "raised limit: no second starts"
sleep 2  # (a third start, if any, comes at once: the window would be taken for empty)
pw_check_sql "a rate limit raised from 1 to 2 per 20 s: 2 starts in the window, in each of four pipelines" "2 2 2 2" \
    "SELECT string_agg(n::text, ' ' ORDER BY p) FROM (SELECT pipeline AS p, count(*) AS n FROM startlog
                                                     WHERE pipeline LIKE 'raised%' GROUP BY pipeline) c"
# ... and a period lengthened (1 per 20 s -> 1 per 30 s) right after a start: that start stays in the new window (until
# 2026-12-07 the new period began with an empty window and the next run started at once; then, for a while, a start
# moved into a bucket still to come was not counted, in about a third of the tries): four pipelines at once.
for t in 1 2 3 4; do
    pw_psql -c "SELECT pipeline_worker.create_pipeline('longer$t', '[{\"name\": \"s\", \"function\": \"rw_step\"}]',
                  '{\"rate_limit\": {\"runs\": 1, \"per_ms\": 20000}}')" \
            -c "SELECT count(*) FROM pipeline_worker.create_runs('longer$t', '[{}, {}, {}]')" >/dev/null
done
pw_wait_sql 4 10 "SELECT count(*) FROM startlog WHERE pipeline LIKE 'longer%'" 0.02 >/dev/null || pw_fail "longer period: no first starts"
for t in 1 2 3 4; do
    pw_psql -c "SELECT pipeline_worker.alter_pipeline('longer$t', '{\"rate_limit\": {\"runs\": 1, \"per_ms\": 30000}}')" >/dev/null
done
sleep 2
pw_check_sql "a rate period lengthened from 20 s to 30 s: the start made counts in the new window (one start each)" \
    "1 1 1 1" "SELECT string_agg(n::text, ' ' ORDER BY p) FROM (SELECT pipeline AS p, count(*) AS n FROM startlog
                                                              WHERE pipeline LIKE 'longer%' GROUP BY pipeline) c"
pw_finish
