-- pipeline_worker side of the benchmark: the W1 pipeline and the post-run checks.
-- Run once per cluster by bench/js/main.mjs (idempotent). Everything of ours lives in schema
-- pwbench; the extension's own tables are only read here (and truncated between timed runs).
CREATE EXTENSION IF NOT EXISTS pipeline_worker;
CREATE EXTENSION IF NOT EXISTS pgstattuple;   -- exact dead-tuple counts for --soak

DROP SCHEMA IF EXISTS pwbench CASCADE;
CREATE SCHEMA pwbench;

-- W1 step k: {"value": prev.value + k}. The extension hands every step a context object;
-- for step 1 ctx.prev is the run's input. Two implementations: PL/pgSQL (default) and SQL.
CREATE FUNCTION pwbench.bench_step1(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN jsonb_build_object('value', (ctx->'prev'->>'value')::bigint + 1); END $$;
CREATE FUNCTION pwbench.bench_step2(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN jsonb_build_object('value', (ctx->'prev'->>'value')::bigint + 2); END $$;
CREATE FUNCTION pwbench.bench_step3(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN jsonb_build_object('value', (ctx->'prev'->>'value')::bigint + 3); END $$;

CREATE FUNCTION pwbench.bench_sql_step1(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
$$ SELECT jsonb_build_object('value', (ctx->'prev'->>'value')::bigint + 1) $$;
CREATE FUNCTION pwbench.bench_sql_step2(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
$$ SELECT jsonb_build_object('value', (ctx->'prev'->>'value')::bigint + 2) $$;
CREATE FUNCTION pwbench.bench_sql_step3(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
$$ SELECT jsonb_build_object('value', (ctx->'prev'->>'value')::bigint + 3) $$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pipeline_worker.pipelines WHERE name = 'w1') THEN
        PERFORM pipeline_worker.drop_pipeline('w1');
    END IF;
    IF EXISTS (SELECT 1 FROM pipeline_worker.pipelines WHERE name = 'w1_sql') THEN
        PERFORM pipeline_worker.drop_pipeline('w1_sql');
    END IF;
END $$;
SELECT pipeline_worker.create_pipeline('w1', '[
    {"name": "s1", "function": "pwbench.bench_step1"},
    {"name": "s2", "function": "pwbench.bench_step2"},
    {"name": "s3", "function": "pwbench.bench_step3"}]');
SELECT pipeline_worker.create_pipeline('w1_sql', '[
    {"name": "s1", "function": "pwbench.bench_sql_step1"},
    {"name": "s2", "function": "pwbench.bench_sql_step2"},
    {"name": "s3", "function": "pwbench.bench_sql_step3"}]');

-- Runs claimed other than exactly once, when the extension keeps a per-run claim counter
-- (pipeline_worker.runs.claims; older builds have none: NULL).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pipeline_worker.runs'::regclass
                                            AND attname = 'claims' AND NOT attisdropped) THEN
        EXECUTE $f$CREATE FUNCTION pwbench.claims_not_one() RETURNS bigint LANGUAGE sql AS
                   'SELECT count(*) FROM pipeline_worker.runs WHERE claims <> 1'$f$;
    ELSE
        EXECUTE $f$CREATE FUNCTION pwbench.claims_not_one() RETURNS bigint LANGUAGE sql AS
                   'SELECT NULL::bigint'$f$;
    END IF;
END $$;

-- Checks every benchmark's runs must pass (n runs in the table, all succeeded once, no error text, timestamps in
-- order); one problem text per row. Used by verify() and verify_http().
CREATE FUNCTION pwbench.run_problems(n bigint) RETURNS SETOF text LANGUAGE sql AS $$
  WITH r AS (SELECT * FROM pipeline_worker.runs)
    SELECT format('runs=%s expected %s', (SELECT count(*) FROM r), n)
     WHERE (SELECT count(*) FROM r) <> n
    UNION ALL
    SELECT format('%s runs not succeeded (%s; first error: %s)', count(*), string_agg(DISTINCT status, ','),
                  left(min(error), 120))
      FROM r WHERE status <> 'succeeded' HAVING count(*) > 0
    UNION ALL
    SELECT format('%s runs claimed other than exactly once (runs.claims <> 1)', pwbench.claims_not_one())
     WHERE coalesce(pwbench.claims_not_one(), 0) > 0
    UNION ALL
    SELECT format('%s runs with an error text', count(*)) FROM r WHERE error IS NOT NULL HAVING count(*) > 0
    UNION ALL
    SELECT format('%s runs with missing/misordered created/started/finished', count(*))
      FROM r WHERE started_at IS NULL OR finished_at IS NULL
                OR NOT (created_at <= started_at AND started_at <= finished_at) HAVING count(*) > 0;
$$;

-- Post-run check of pipeline_worker.runs / run_steps after a W1 run of n runs.
-- Returns 'ok' or '; '-separated problems. "Claimed once" is checked as runs.claims = 1 where that
-- column exists, and always as exactly one run_steps row per (run, position), attempt 1, succeeded.
CREATE FUNCTION pwbench.verify(n bigint) RETURNS text LANGUAGE sql AS $$
  WITH r AS (SELECT * FROM pipeline_worker.runs),
  st AS (
    SELECT run_id,
           count(*)                                              AS cnt,
           array_agg(position ORDER BY position, attempt)        AS positions,
           bool_and(attempt = 1)                                 AS first_attempt,
           bool_and(status = 'succeeded')                        AS all_ok,
           array_agg((output->>'value')::bigint ORDER BY position) AS vals,
           array_agg(started_at ORDER BY position)               AS t0,
           array_agg(finished_at ORDER BY position)              AS t1
      FROM pipeline_worker.run_steps GROUP BY run_id),
  bad AS (
    SELECT p FROM pwbench.run_problems(n) AS p
    UNION ALL
    SELECT format('%s runs without worker_pid', count(*)) FROM r WHERE worker_pid IS NULL HAVING count(*) > 0
    UNION ALL
    SELECT format('%s runs whose result is not input+6', count(*))
      FROM r WHERE (result->>'value')::bigint IS DISTINCT FROM (input->>'value')::bigint + 6
     HAVING count(*) > 0
    UNION ALL
    SELECT format('run_steps=%s expected %s', (SELECT count(*) FROM pipeline_worker.run_steps), 3 * n)
     WHERE (SELECT count(*) FROM pipeline_worker.run_steps) <> 3 * n
    UNION ALL
    SELECT format('%s runs without exactly one succeeded attempt-1 row for each of positions 1,2,3', count(*))
      FROM r LEFT JOIN st ON st.run_id = r.id
     WHERE st.positions IS DISTINCT FROM ARRAY[1,2,3] OR NOT st.first_attempt OR NOT st.all_ok
     HAVING count(*) > 0
    UNION ALL
    SELECT format('%s run_steps groups for unknown runs', count(*))
      FROM st WHERE NOT EXISTS (SELECT 1 FROM r WHERE r.id = st.run_id) HAVING count(*) > 0
    UNION ALL
    SELECT format('%s runs whose step outputs are not input+1/+3/+6', count(*))
      FROM r JOIN st ON st.run_id = r.id
     WHERE st.vals IS DISTINCT FROM ARRAY[(r.input->>'value')::bigint + 1,
                                          (r.input->>'value')::bigint + 3,
                                          (r.input->>'value')::bigint + 6]
     HAVING count(*) > 0
    UNION ALL
    -- step k ran inside the run's [started_at, finished_at], after step k-1 finished
    SELECT format('%s runs whose step times are outside the run or not increasing by position', count(*))
      FROM r JOIN st ON st.run_id = r.id
     WHERE st.cnt = 3 AND NOT (
             r.started_at <= st.t0[1] AND st.t0[1] <= st.t1[1]
         AND st.t1[1] <= st.t0[2] AND st.t0[2] <= st.t1[2]
         AND st.t1[2] <= st.t0[3] AND st.t0[3] <= st.t1[3]
         AND st.t1[1] < st.t1[2] AND st.t1[2] < st.t1[3]
         AND st.t1[3] <= r.finished_at)
     HAVING count(*) > 0)
  SELECT coalesce(string_agg(p, '; '), 'ok') FROM bad;
$$;

-- Post-run check of an HTTP benchmark run (bench/run.sh --http): n runs of a one-step HTTP
-- pipeline, every run succeeded with the endpoint's JSON answer `expect` as result, claimed once
-- (where runs.claims exists), and exactly one run_steps row per run: position 1, attempt 1,
-- succeeded, inside the run's [started_at, finished_at]. (That the endpoint saw each request once
-- is checked by bench/js/main.mjs against the endpoint's statistics.)
CREATE FUNCTION pwbench.verify_http(n bigint, expect jsonb) RETURNS text LANGUAGE sql AS $$
  WITH r AS (SELECT * FROM pipeline_worker.runs),
  s AS (SELECT * FROM pipeline_worker.run_steps),
  bad AS (
    SELECT p FROM pwbench.run_problems(n) AS p
    UNION ALL
    SELECT format('%s runs whose result is not %s', count(*), expect)
      FROM r WHERE result IS DISTINCT FROM expect HAVING count(*) > 0
    UNION ALL
    SELECT format('run_steps=%s expected %s', (SELECT count(*) FROM s), n)
     WHERE (SELECT count(*) FROM s) <> n
    UNION ALL
    SELECT format('%s runs without exactly one succeeded position-1 attempt-1 step row inside the run', count(*))
      FROM r
     WHERE (SELECT count(*) FROM s WHERE s.run_id = r.id) <> 1
        OR NOT EXISTS (SELECT 1 FROM s WHERE s.run_id = r.id AND s.position = 1 AND s.attempt = 1
                          AND s.status = 'succeeded' AND s.finished_at IS NOT NULL
                          AND r.started_at <= s.started_at AND s.started_at <= s.finished_at
                          AND s.finished_at <= r.finished_at)
     HAVING count(*) > 0)
  SELECT coalesce(string_agg(p, '; '), 'ok') FROM bad;
$$;

-- Claim cost probe (bench/run.sh --scale): the worker's claim statement -- the oldest pending runs at or past
-- min_id, up to `batch`, FOR UPDATE SKIP LOCKED -- executed k times, each in its own subtransaction that is
-- rolled back (so every probe takes its row locks afresh and none stays locked); returns the median
-- microseconds of the statement alone. k stays under 64 (the subtransaction cache).
CREATE FUNCTION pwbench.claim_probe(k int, min_id bigint, batch int DEFAULT 32) RETURNS numeric
LANGUAGE plpgsql AS $$
DECLARE
  t timestamptz;
  d float8[] := '{}';
  n int;
BEGIN
  FOR i IN 1..least(k, 60) LOOP
    BEGIN
      t := clock_timestamp();
      SELECT count(*) INTO n FROM (
        SELECT id, pipeline, submitted_by, input, metadata, claims + 1, pipeline_id
          FROM pipeline_worker.runs
         WHERE status = 'pending' AND id >= min_id
           AND (not_before IS NULL OR not_before <= clock_timestamp())
         ORDER BY id LIMIT batch FOR UPDATE SKIP LOCKED) c;
      d := d || (extract(epoch FROM clock_timestamp() - t) * 1e6)::float8;
      RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'pwbench probe rollback';
    EXCEPTION WHEN raise_exception THEN
      NULL;
    END;
  END LOOP;
  RETURN (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY x)::numeric, 1) FROM unnest(d) x);
END $$;
