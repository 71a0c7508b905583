-- --workflows, W2 on the workflow engines (bench/js/peer-dbos-w2.mjs, bench/js/peer-pgflow-w2.mjs): the application's
-- own tables, created in each engine's own database (pw_dbos, pw_pgflow) next to the engine's schemas. The engines keep
-- their own state (workflows, steps, queues); these tables are what the application writes and what is verified.
--   w2app.runs    one row per W2 run, input n; claimed by the run's first unit of work (split), finished by sum
--   w2app.squares one row per square task, written by that task; the primary key makes a second execution of a
--                 task fail loudly instead of counting twice
DROP SCHEMA IF EXISTS w2app CASCADE;
CREATE SCHEMA w2app;
CREATE TABLE w2app.runs (
    id          bigserial PRIMARY KEY,
    n           int NOT NULL,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'succeeded')),
    attempts    int NOT NULL DEFAULT 0,
    result      jsonb,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE TABLE w2app.squares (
    run_id     bigint NOT NULL,
    idx        int NOT NULL,            -- 1-based position of the element in split's output
    v          bigint NOT NULL,         -- the element squared
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, idx)
);

-- 'ok', or what is wrong with the drain of `runs` runs of {"n": n}: every run claimed once and succeeded with
-- n(n+1)(2n+1)/6, exactly one square row per element 1..n with its right value, written while its run was running.
CREATE FUNCTION w2app.verify(runs int, n int) RETURNS text LANGUAGE sql AS $$
    WITH s AS (
        SELECT run_id, count(*) AS cnt, count(DISTINCT idx) AS idxs, min(idx) AS lo, max(idx) AS hi,
               bool_and(v = idx::bigint * idx) AS vals_ok, min(created_at) AS first_at, max(created_at) AS last_at
          FROM w2app.squares GROUP BY run_id),
    p AS (
        SELECT format('runs_%s_expected_%s', (SELECT count(*) FROM w2app.runs), runs) AS msg
         WHERE (SELECT count(*) FROM w2app.runs) <> runs
        UNION ALL
        SELECT format('%s_runs_not_succeeded', count(*)) FROM w2app.runs WHERE status <> 'succeeded' HAVING count(*) > 0
        UNION ALL
        SELECT format('%s_runs_claimed_other_than_once', count(*)) FROM w2app.runs WHERE attempts <> 1 HAVING count(*) > 0
        UNION ALL
        SELECT format('%s_runs_with_wrong_sum', count(*)) FROM w2app.runs
         WHERE n <> verify.n OR (result->>'value')::bigint IS DISTINCT FROM (n::bigint * (n + 1) * (2 * n + 1)) / 6
        HAVING count(*) > 0
        UNION ALL
        SELECT format('squares_%s_expected_%s', (SELECT count(*) FROM w2app.squares), runs::bigint * n)
         WHERE (SELECT count(*) FROM w2app.squares) <> runs::bigint * n
        UNION ALL
        SELECT format('%s_runs_without_one_square_per_element', count(*))
          FROM w2app.runs r LEFT JOIN s ON s.run_id = r.id
         WHERE s.cnt IS DISTINCT FROM r.n::bigint OR s.idxs <> s.cnt OR s.lo <> 1 OR s.hi <> r.n
        HAVING count(*) > 0
        UNION ALL
        SELECT format('%s_runs_with_wrong_squares', count(*)) FROM s WHERE NOT vals_ok HAVING count(*) > 0
        UNION ALL
        SELECT format('%s_squares_of_unknown_runs', count(*)) FROM w2app.squares q
         WHERE NOT EXISTS (SELECT 1 FROM w2app.runs r WHERE r.id = q.run_id) HAVING count(*) > 0
        UNION ALL
        SELECT format('%s_runs_with_squares_outside_the_run', count(*)) FROM w2app.runs r JOIN s ON s.run_id = r.id
         WHERE NOT (r.started_at <= s.first_at AND s.last_at <= r.finished_at) HAVING count(*) > 0)
    SELECT coalesce(string_agg(msg, ';'), 'ok') FROM p;
$$;
