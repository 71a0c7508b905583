-- W1 for the peers (client-side worker pool, graphile-worker, in-server PL/pgSQL floor).
-- Schema w1_peer, dropped and recreated before every timed peer run. Layout follows W1 as
-- defined in bench/README.md (W1): runs with a pending partial index and a claim counter,
-- step_results with a primary key on (run_id, step) so that a step executed twice fails loudly.
DROP SCHEMA IF EXISTS w1_peer CASCADE;
CREATE SCHEMA w1_peer;

CREATE TABLE w1_peer.runs (
    id          bigserial   PRIMARY KEY,
    status      text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    input       jsonb       NOT NULL,
    result      jsonb,
    attempts    int         NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX runs_pending ON w1_peer.runs (created_at, id) WHERE status = 'pending';

CREATE TABLE w1_peer.step_results (
    run_id     bigint      NOT NULL,
    step       int         NOT NULL CHECK (step IN (1, 2, 3)),
    output     jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, step)
);

-- n pending runs, input {"value": i}, created_at strictly increasing with i.
CREATE FUNCTION w1_peer.seed(n int) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO w1_peer.runs (input)
    SELECT jsonb_build_object('value', i) FROM generate_series(1, n) AS i ORDER BY i;
    RETURN n;
END $$;

-- In-server floor: one session's worker loop, W1's five transactions per run, no client round
-- trip at all. Peer "plpgsql-floor" runs W sessions of CALL w1_peer.drain().
CREATE PROCEDURE w1_peer.drain() LANGUAGE plpgsql AS $$
DECLARE
    run_id bigint;
    val    jsonb;
BEGIN
    LOOP
        UPDATE w1_peer.runs SET status = 'running', started_at = clock_timestamp(), attempts = attempts + 1
         WHERE id = (SELECT id FROM w1_peer.runs WHERE status = 'pending'
                      ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id, input INTO run_id, val;
        IF run_id IS NULL THEN
            EXIT;
        END IF;
        COMMIT;                                   -- 1: claim
        FOR k IN 1 .. 3 LOOP
            val := jsonb_build_object('value', (val->>'value')::bigint + k);
            INSERT INTO w1_peer.step_results (run_id, step, output) VALUES (run_id, k, val);
            COMMIT;                               -- 2..4: step k persisted before step k+1
        END LOOP;
        UPDATE w1_peer.runs SET status = 'succeeded', finished_at = clock_timestamp(), result = val
         WHERE id = run_id AND status = 'running';
        COMMIT;                                   -- 5: finish
        run_id := NULL;
    END LOOP;
END $$;

-- Post-run check; 'ok' or '; '-separated problems.
CREATE FUNCTION w1_peer.verify(n bigint) RETURNS text LANGUAGE sql AS $$
  WITH r AS (SELECT * FROM w1_peer.runs),
  st AS (
    SELECT run_id, count(*) AS cnt,
           array_agg(step ORDER BY step)                        AS steps,
           array_agg((output->>'value')::bigint ORDER BY step)  AS vals,
           array_agg(created_at ORDER BY step)                  AS ts
      FROM w1_peer.step_results GROUP BY run_id),
  bad AS (
    SELECT format('runs=%s expected %s', (SELECT count(*) FROM r), n) AS p
     WHERE (SELECT count(*) FROM r) <> n
    UNION ALL
    SELECT format('%s runs not succeeded (%s)', count(*), string_agg(DISTINCT status, ','))
      FROM r WHERE status <> 'succeeded' HAVING count(*) > 0
    UNION ALL
    SELECT format('%s runs claimed other than exactly once', count(*))
      FROM r WHERE attempts <> 1 HAVING count(*) > 0
    UNION ALL
    SELECT format('%s runs with missing/misordered created/started/finished', count(*))
      FROM r WHERE started_at IS NULL OR finished_at IS NULL
                OR NOT (created_at <= started_at AND started_at <= finished_at) HAVING count(*) > 0
    UNION ALL
    SELECT format('%s runs whose result is not input+6', count(*))
      FROM r WHERE (result->>'value')::bigint IS DISTINCT FROM (input->>'value')::bigint + 6
     HAVING count(*) > 0
    UNION ALL
    SELECT format('step_results=%s expected %s', (SELECT count(*) FROM w1_peer.step_results), 3 * n)
     WHERE (SELECT count(*) FROM w1_peer.step_results) <> 3 * n
    UNION ALL
    SELECT format('%s runs without exactly steps 1,2,3', count(*))
      FROM r LEFT JOIN st ON st.run_id = r.id
     WHERE st.steps IS DISTINCT FROM ARRAY[1,2,3] HAVING count(*) > 0
    UNION ALL
    SELECT format('%s step_results groups for unknown runs', count(*))
      FROM st WHERE NOT EXISTS (SELECT 1 FROM r WHERE r.id = st.run_id) HAVING count(*) > 0
    UNION ALL
    SELECT format('%s runs whose step outputs are not input+1/+3/+6', count(*))
      FROM r JOIN st ON st.run_id = r.id
     WHERE st.vals IS DISTINCT FROM ARRAY[(r.input->>'value')::bigint + 1,
                                          (r.input->>'value')::bigint + 3,
                                          (r.input->>'value')::bigint + 6]
     HAVING count(*) > 0
    UNION ALL
    SELECT format('%s runs whose step rows are outside the run or not increasing by step', count(*))
      FROM r JOIN st ON st.run_id = r.id
     WHERE st.cnt = 3 AND NOT (r.started_at <= st.ts[1] AND st.ts[1] < st.ts[2]
                               AND st.ts[2] < st.ts[3] AND st.ts[3] <= r.finished_at)
     HAVING count(*) > 0)
  SELECT coalesce(string_agg(p, '; '), 'ok') FROM bad;
$$;
