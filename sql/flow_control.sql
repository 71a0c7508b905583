-- Flow control (0.2): submission arguments, idempotency keys, priorities, run_at, create_runs, limits, pause,
-- alter_pipeline, schedules -- in sessions (pipeline_worker.workers = 0: only claim_run() starts runs here).
-- Ids are never printed: comparisons print booleans, and fc_err() masks digits in error messages.

CREATE FUNCTION public.fc_step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT ctx->'input' $$;
CREATE FUNCTION public.fc_err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                            hnt = PG_EXCEPTION_HINT;
    RETURN st || ': ' || regexp_replace(msg, '[0-9]+', 'N', 'g')
           || COALESCE(' / ' || NULLIF(regexp_replace(det, '[0-9]+', 'N', 'g'), ''), '')
           || COALESCE(' / hint: ' || NULLIF(hnt, ''), '');
END $$;
SELECT pipeline_worker.create_pipeline('fc', '[{"name": "only", "function": "public.fc_step"}]');

-- ---------------------------------------------------------------- create_run's arguments
SELECT pipeline_worker.create_run('fc', '{"n": 1}', '{"m": 1}') > 0 AS positional_0_1_call;
SELECT pipeline_worker.create_run('fc', '{}', run_at => now() + interval '1 hour') AS later \gset
SELECT status, run_at IS NOT NULL AS has_run_at, priority FROM pipeline_worker.runs WHERE id = :later;
SELECT fc_err($$SELECT pipeline_worker.create_run('fc', '{}', priority => 40000)$$);
SELECT fc_err($$SELECT pipeline_worker.create_run('fc', '{}', priority => -40000)$$);
SELECT fc_err($$SELECT pipeline_worker.create_run('fc', '{}', idempotency_key => '')$$);
SELECT fc_err($$SELECT pipeline_worker.create_run('fc', '{}', idempotency_key => repeat('k', 1001))$$);
SELECT fc_err($$SELECT pipeline_worker.create_run('fc', '{}', concurrency_key => '')$$);
SELECT fc_err($$SELECT pipeline_worker.create_run('fc', '{}', run_at => 'infinity')$$);
SELECT count(*) AS runs_after_bad_input FROM pipeline_worker.runs WHERE pipeline = 'fc';
SELECT pipeline_worker.cancel_run(id) FROM pipeline_worker.runs WHERE pipeline = 'fc' AND status = 'pending';

-- ---------------------------------------------------------------- idempotency keys
SELECT pipeline_worker.create_run('fc', '{"order": 7}', idempotency_key => 'order-7') AS first \gset
SELECT pipeline_worker.create_run('fc', '{"order": 7}', '{"other": "metadata"}', 5,
                                  idempotency_key => 'order-7') = :first AS same_id_for_duplicate;
SELECT fc_err($$SELECT pipeline_worker.create_run('fc', '{"order": 8}', idempotency_key => 'order-7')$$);
SELECT count(*) AS runs_with_key FROM pipeline_worker.runs WHERE idempotency_key = 'order-7';
-- whatever the run's status: still the same run once finished
SELECT pipeline_worker.cancel_run(:first);
SELECT pipeline_worker.create_run('fc', '{"order": 7}', idempotency_key => 'order-7') = :first AS same_id_when_finished;
-- another role's key is its own
CREATE ROLE regress_fc_tenant;
SELECT pipeline_worker.grant_pipeline('fc', 'regress_fc_tenant');
SET ROLE regress_fc_tenant;
SELECT pipeline_worker.create_run('fc', '{"order": 7}', idempotency_key => 'order-7') <> :first AS tenant_gets_own_run;
SELECT count(*) AS tenant_sees FROM pipeline_worker.runs WHERE idempotency_key = 'order-7';
RESET ROLE;
SELECT pipeline_worker.cancel_run(id) FROM pipeline_worker.runs WHERE pipeline = 'fc' AND status = 'pending';
-- a pipeline dropped and created again under its name is another pipeline: the keys of the dropped one's runs
-- match nothing (until 2026-12-03 they returned the old run, and the new request was lost)
SELECT pipeline_worker.create_pipeline('fc_again', '[{"name": "only", "function": "public.fc_step"}]');
SELECT pipeline_worker.create_run('fc_again', '{"order": 9}', idempotency_key => 'order-9') AS old_run \gset
SELECT pipeline_worker.create_runs('fc_again', '[{"order": 10}]', idempotency_keys => ARRAY['order-10']) AS old_bulk \gset
SELECT pipeline_worker.cancel_run(id) FROM pipeline_worker.runs WHERE pipeline = 'fc_again';
SELECT pipeline_worker.drop_pipeline('fc_again');
SELECT pipeline_worker.create_pipeline('fc_again', '[{"name": "only", "function": "public.fc_step"}]');
SELECT pipeline_worker.create_run('fc_again', '{"order": 9}', idempotency_key => 'order-9') AS new_run \gset
SELECT :new_run <> :old_run AS new_pipeline_new_run;
SELECT pipeline_worker.create_run('fc_again', '{"order": 9}', idempotency_key => 'order-9') = :new_run AS then_its_own_key;
SELECT id <> :old_bulk AS new_pipeline_new_bulk_run
  FROM pipeline_worker.create_runs('fc_again', '[{"order": 10}]', idempotency_keys => ARRAY['order-10']) id;
SELECT pipeline_worker.cancel_run(id) FROM pipeline_worker.runs WHERE pipeline = 'fc_again' AND status = 'pending';
SELECT pipeline_worker.drop_pipeline('fc_again');

-- ---------------------------------------------------------------- priority: claim order
SELECT pipeline_worker.create_run('fc', '{"p": "low"}', priority => -5) AS low \gset
SELECT pipeline_worker.create_run('fc', '{"p": "mid1"}') AS mid1 \gset
SELECT pipeline_worker.create_run('fc', '{"p": "high"}', priority => 10) AS high \gset
SELECT pipeline_worker.create_run('fc', '{"p": "mid2"}') AS mid2 \gset
SELECT pipeline_worker.claim_run() = :high AS claimed_high;
SELECT pipeline_worker.claim_run() = :mid1 AS claimed_mid1;
SELECT pipeline_worker.claim_run() = :mid2 AS claimed_mid2;
SELECT pipeline_worker.claim_run() = :low AS claimed_low;
SELECT pipeline_worker.execute_run(id) FROM pipeline_worker.runs WHERE id IN (:high, :mid1, :mid2, :low) ORDER BY id;

-- ---------------------------------------------------------------- run_at
SELECT pipeline_worker.create_run('fc', '{"p": "soon"}', run_at => clock_timestamp() + interval '300 ms') AS soon \gset
SELECT pipeline_worker.claim_run() IS NULL AS not_claimed_before_run_at;
SELECT pg_sleep(0.4);
SELECT pipeline_worker.claim_run() = :soon AS claimed_after_run_at;
SELECT pipeline_worker.execute_run(:soon);
SELECT pipeline_worker.create_run('fc', '{}', run_at => now() - interval '1 day') AS past \gset
SELECT pipeline_worker.claim_run() = :past AS past_run_at_is_now;
SELECT pipeline_worker.execute_run(:past);
-- a run cancelled before its run_at and retried waits for its run_at again (until 2026-12-05 it ran at once); one
-- whose run_at has passed is queued at once
SELECT pipeline_worker.create_run('fc', '{"p": "retried early"}', run_at => clock_timestamp() + interval '1 hour') AS early \gset
SELECT pipeline_worker.cancel_run(:early), pipeline_worker.retry_run(:early);
SELECT status, not_before = run_at AS waits_for_run_at, pipeline_worker.claim_run() IS NULL AS not_claimed
  FROM pipeline_worker.runs WHERE id = :early;
SELECT pipeline_worker.cancel_run(:early);

-- ---------------------------------------------------------------- create_runs
SELECT array_agg(id) AS ids FROM pipeline_worker.create_runs('fc', '[{"i": 1}, {"i": 2}, {"i": 3}]') AS id \gset
SELECT (SELECT array_agg(input->'i' ORDER BY ord)
          FROM unnest(:'ids'::bigint[]) WITH ORDINALITY u(id, ord) JOIN pipeline_worker.runs r USING (id))
       AS inputs_in_element_order;
SELECT array_agg(id) AS ids FROM pipeline_worker.create_runs('fc', '[{"j": 1}, {"j": 2}, {"j": 3}]',
    idempotency_keys => ARRAY['a', NULL, 'c'], concurrency_keys => ARRAY[NULL, 'x', 'y']) AS id \gset
SELECT array_agg(r.input->'j' ORDER BY u.ord) AS inputs, array_agg(r.concurrency_key ORDER BY u.ord) AS concurrency_keys,
       array_agg(r.idempotency_key ORDER BY u.ord) AS idempotency_keys
  FROM unnest(:'ids'::bigint[]) WITH ORDINALITY u(id, ord) JOIN pipeline_worker.runs r ON r.id = u.id;
-- a key repeated in the call, or matching an existing run: that run's id
SELECT ids[1] = ids[3] AS repeated_key_same_id, ids[2] = (SELECT id FROM pipeline_worker.runs WHERE idempotency_key = 'a')
       AS existing_key_same_id, ids[1] <> ids[2] AS distinct_keys_distinct_runs
  FROM (SELECT array_agg(id) AS ids FROM pipeline_worker.create_runs('fc', '[{"k": 1}, {"j": 1}, {"k": 1}]',
            idempotency_keys => ARRAY['new', 'a', 'new']) AS id) x;
SELECT fc_err($$SELECT pipeline_worker.create_runs('fc', '[{"k": 1}, {"k": 2}]', idempotency_keys => ARRAY['z', 'z'])$$);
-- an existing run's key given twice, once with its input, once with another: that run is named, not the elements
SELECT fc_err($$SELECT pipeline_worker.create_runs('fc', '[{"j": 1}, {"j": 2}]', idempotency_keys => ARRAY['a', 'a'])$$);
SELECT fc_err($$SELECT pipeline_worker.create_runs('fc', '[{}, {}]', idempotency_keys => ARRAY['only-one'])$$);
-- a two-dimensional key array: said so (it once read "has 2 element(s) but inputs has 2")
SELECT fc_err($$SELECT pipeline_worker.create_runs('fc', '[{}, {}]', idempotency_keys => ARRAY[['a'], ['b']])$$);
SELECT fc_err($$SELECT pipeline_worker.create_runs('fc', '[{}, {}]', concurrency_keys => ARRAY['a', 'b', 'c'])$$);
SELECT fc_err($$SELECT pipeline_worker.create_runs('fc', '{"not": "an array"}')$$);
SELECT fc_err($$SELECT pipeline_worker.create_runs('fc', '[{}]', idempotency_keys => ARRAY[''])$$);
SELECT fc_err($$SELECT pipeline_worker.create_runs('fc', '[{}]', priority => 99999)$$);
SELECT count(*) AS empty_call FROM pipeline_worker.create_runs('fc', '[]');
SELECT count(*) AS z_runs FROM pipeline_worker.runs WHERE idempotency_key = 'z';
SELECT pipeline_worker.cancel_run(id) FROM pipeline_worker.runs WHERE pipeline = 'fc' AND status = 'pending';

-- ---------------------------------------------------------------- limits through claim_run()
SELECT pipeline_worker.create_pipeline('fc_lim', '[{"name": "only", "function": "public.fc_step"}]',
                                       '{"concurrency_per_key": 1}');
SELECT pipeline_worker.create_run('fc_lim', '{"n": 1}', concurrency_key => 'A') AS a1 \gset
SELECT pipeline_worker.create_run('fc_lim', '{"n": 2}', concurrency_key => 'A') AS a2 \gset
SELECT pipeline_worker.create_run('fc_lim', '{"n": 3}', concurrency_key => 'B') AS b1 \gset
SELECT pipeline_worker.create_run('fc_lim', '{"n": 4}') AS nokey \gset
SELECT pipeline_worker.claim_run() = :a1 AS claimed_a1;
-- A is at its limit: a2 waits (filtered out by the claims while A is full), b1 is next
SELECT pipeline_worker.claim_run() = :b1 AS claimed_b1_past_a2;
SELECT pipeline_worker.claim_run() = :nokey AS claimed_run_without_key;
SELECT pipeline_worker.claim_run() IS NULL AS a2_waits;
SELECT status, parked FROM pipeline_worker.runs WHERE id = :a2;
SELECT pipeline_worker.execute_run(:a1);
SELECT pipeline_worker.claim_run() = :a2 AS a2_after_a1_finished;
SELECT pipeline_worker.execute_run(id) FROM pipeline_worker.runs WHERE id IN (:a2, :b1, :nokey) ORDER BY id;
-- pipeline-wide limit, changed with alter_pipeline
SELECT pipeline_worker.alter_pipeline('fc_lim', '{"concurrency": 1, "concurrency_per_key": null}');
SELECT options FROM pipeline_worker.pipelines WHERE name = 'fc_lim';
SELECT pipeline_worker.create_run('fc_lim', '{}', concurrency_key => 'A') AS c1 \gset
SELECT pipeline_worker.create_run('fc_lim', '{}', concurrency_key => 'B') AS c2 \gset
SELECT pipeline_worker.claim_run() = :c1 AS claimed_c1;
SELECT pipeline_worker.claim_run() IS NULL AS pipeline_at_its_limit;
SELECT pipeline_worker.alter_pipeline('fc_lim', '{"concurrency": 2}');
SELECT pipeline_worker.claim_run() = :c2 AS raised_limit_admits_c2;
SELECT pipeline_worker.execute_run(id) FROM pipeline_worker.runs WHERE id IN (:c1, :c2) ORDER BY id;
-- a put-back that is rolled back leaves the run parked, and the lane still knows it is there: the next claim
-- puts it back again (a lane that forgot at the unpark, before its commit, left such a run parked for ever)
SELECT pipeline_worker.create_pipeline('fc_rb', '[{"name": "only", "function": "public.fc_step"}]',
                                       '{"concurrency": 2}');
SELECT pipeline_worker.create_run('fc_rb', '{}') AS rb1 \gset
SELECT pipeline_worker.create_run('fc_rb', '{}') AS rb2 \gset
SELECT pipeline_worker.create_run('fc_rb', '{}') AS rb3 \gset
-- two claims in one statement: the second sees the first's slot as taken (it once freed it as stale)
SELECT pipeline_worker.claim_run() = :rb1 AS claimed_rb1, pipeline_worker.claim_run() = :rb2 AS claimed_rb2;
SELECT pipeline_worker.claim_run() IS NULL AS limit_of_2_holds;
-- the lanes forget the limits at an alter (until the next admission): rb3 passes the claim's filter and is parked
SELECT pipeline_worker.alter_pipeline('fc_rb', '{"concurrency": 2}');
SELECT pipeline_worker.claim_run() IS NULL AS rb3_not_claimed;
SELECT parked FROM pipeline_worker.runs WHERE id = :rb3;
SELECT pipeline_worker.execute_run(id) FROM pipeline_worker.runs WHERE id IN (:rb1, :rb2) ORDER BY id;
BEGIN;
SELECT pipeline_worker.claim_run() = :rb3 AS rb3_put_back_and_claimed;
ROLLBACK;
SELECT parked FROM pipeline_worker.runs WHERE id = :rb3;
SELECT pipeline_worker.claim_run() = :rb3 AS rb3_claimed_after_the_rollback;
SELECT pipeline_worker.execute_run(:rb3);
-- invalid options change nothing
SELECT fc_err($$SELECT pipeline_worker.alter_pipeline('fc_lim', '{"concurrency": 0}')$$);
SELECT fc_err($$SELECT pipeline_worker.alter_pipeline('fc_lim', '{"concurrency_per_key": -1}')$$);
SELECT fc_err($$SELECT pipeline_worker.alter_pipeline('fc_lim', '{"rate_limit": {"runs": 5}}')$$);
SELECT fc_err($$SELECT pipeline_worker.alter_pipeline('fc_lim', '{"rate_limit": {"runs": 5, "per_ms": 0}}')$$);
SELECT fc_err($$SELECT pipeline_worker.alter_pipeline('fc_lim', '{"rate_limit": {"runs": 5, "per_ms": 10, "x": 1}}')$$);
SELECT fc_err($$SELECT pipeline_worker.alter_pipeline('fc_lim', '{"rate_limit_per_key": 3}')$$);
SELECT fc_err($$SELECT pipeline_worker.alter_pipeline('fc_lim', '{"concurency": 2}')$$);
-- a misspelt removal is refused too (the null value would otherwise be dropped unread, the limit left in place)
SELECT fc_err($$SELECT pipeline_worker.alter_pipeline('fc_lim', '{"concurency": null}')$$);
SELECT fc_err($$SELECT pipeline_worker.alter_pipeline('fc_lim', '[1]')$$);
SELECT fc_err($$SELECT pipeline_worker.create_pipeline('fc_bad', '[{"name": "s", "function": "public.fc_step"}]', '{"concurrency": "5"}')$$);
SELECT options FROM pipeline_worker.pipelines WHERE name = 'fc_lim';

-- ---------------------------------------------------------------- pause and resume
SELECT pipeline_worker.create_run('fc', '{"before": "pause"}') AS before_pause \gset
SELECT pipeline_worker.pause_pipeline('fc');
SELECT paused FROM pipeline_worker.pipelines WHERE name = 'fc';
SELECT pipeline_worker.create_run('fc', '{"during": "pause"}') AS during_pause \gset
SELECT pipeline_worker.claim_run() IS NULL AS nothing_claimed_while_paused;
-- a paused run cancelled is no longer parked (parked describes pending runs only)
SELECT pipeline_worker.create_run('fc', '{"cancelled": "while paused"}') AS cancelled_paused \gset
SELECT parked FROM pipeline_worker.runs WHERE id = :cancelled_paused;
SELECT pipeline_worker.cancel_run(:cancelled_paused);
SELECT status, parked FROM pipeline_worker.runs WHERE id = :cancelled_paused;
SELECT pipeline_worker.resume_pipeline('fc');
SELECT pipeline_worker.claim_run() = :before_pause AS first_after_resume;
SELECT pipeline_worker.claim_run() = :during_pause AS second_after_resume;
SELECT pipeline_worker.execute_run(id) FROM pipeline_worker.runs WHERE id IN (:before_pause, :during_pause) ORDER BY id;
-- a waiting run woken while its pipeline is paused (an event here; a sleep's end and children finishing alike) is
-- parked: claimed only once the pipeline is resumed
SELECT pipeline_worker.create_pipeline('fc_wait', '[{"name": "w", "wait_for": "go"}, {"name": "s", "function": "public.fc_step"}]');
SELECT pipeline_worker.create_run('fc_wait', '{"woken": "while paused"}') AS waiter \gset
SELECT pipeline_worker.claim_run() = :waiter AS waiter_claimed;
SELECT pipeline_worker.execute_run(:waiter) AS waiting;
SELECT pipeline_worker.pause_pipeline('fc_wait');
SELECT pipeline_worker.send_event(:waiter, 'go') AS event_sent;
SELECT status, parked FROM pipeline_worker.runs WHERE id = :waiter;
SELECT pipeline_worker.claim_run() IS NULL AS woken_run_not_claimed_while_paused;
SELECT pipeline_worker.resume_pipeline('fc_wait');
SELECT pipeline_worker.claim_run() = :waiter AS woken_run_claimed_after_resume;
SELECT pipeline_worker.execute_run(:waiter) AS resumed;
-- an event name has at most 200 bytes: 101 two-byte characters are too many
SELECT pipeline_worker.send_event(:waiter, repeat('é', 101));
SELECT pipeline_worker.drop_pipeline('fc_wait');
-- only its owner (or an admin)
SET ROLE regress_fc_tenant;
SELECT fc_err($$SELECT pipeline_worker.pause_pipeline('fc')$$);
SELECT fc_err($$SELECT pipeline_worker.resume_pipeline('fc')$$);
SELECT fc_err($$SELECT pipeline_worker.alter_pipeline('fc', '{"concurrency": 1}')$$);
-- a pipeline that does not exist answers the same
SELECT fc_err($$SELECT pipeline_worker.pause_pipeline('fc_nonexistent')$$);
RESET ROLE;
SELECT paused, options FROM pipeline_worker.pipelines WHERE name = 'fc';

-- ---------------------------------------------------------------- schedules
SELECT pipeline_worker.schedule('fc_every_minute', 'fc', '* * * * *', '{"from": "cron"}');
SELECT name, pipeline, cron, input, owner, active, next_run_at > now() AS next_in_future,
       next_run_at <= now() + interval '1 minute' AS within_a_minute, last_slot, last_run_id, skipped
  FROM pipeline_worker.schedules;
SELECT pipeline_worker.schedule('fc_tz', 'fc', '30 2 * * *', options => '{"timezone": "America/New_York",
       "catch_up": "latest", "overlap": "skip", "priority": 3, "concurrency_key": "nightly"}');
SELECT extract(hour FROM next_run_at AT TIME ZONE 'America/New_York') AS local_hour,
       extract(minute FROM next_run_at AT TIME ZONE 'America/New_York') AS local_minute
  FROM pipeline_worker.schedules WHERE name = 'fc_tz';
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '61 * * * *')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '* 24 * * *')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '* * 0 * *')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '* * * 13 *')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '* * * * MON-FUNDAY')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '* * * *')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '60 seconds')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '@sometimes')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '0 0 30 2 *')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '0 0 31 4,6,9,11 *')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '@daily', options => '{"timezone": "Mars/Olympus"}')$$);
-- POSIX zone specs, which PostgreSQL also reads (with their offsets west of Greenwich), are not IANA names
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '@daily', options => '{"timezone": "+03:00"}')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '@daily', options => '{"timezone": "UTC+3"}')$$);
-- names of the tz database with digits in them are
SELECT pipeline_worker.schedule('fc_gmt', 'fc', '0 12 * * *', options => '{"timezone": "etc/gmt-3"}') IS NOT NULL AS ok;
SELECT to_char(next_run_at AT TIME ZONE 'UTC', 'HH24:MI') AS noon_at_gmt_minus_3_in_utc
  FROM pipeline_worker.schedules WHERE name = 'fc_gmt';
SELECT pipeline_worker.unschedule('fc_gmt');
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '@daily', options => '{"catch_up": "some"}')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '@daily', options => '{"overlap": "queue"}')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '@daily', options => '{"catch_up_max": 0}')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc', '@daily', options => '{"every": 1}')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('bad', 'fc_nonexistent', '@daily')$$);
SELECT count(*) AS bad_schedules FROM pipeline_worker.schedules WHERE name = 'bad';
-- roles: may not schedule a pipeline it may not submit to; sees only its own schedules
CREATE ROLE regress_fc_other;
SET ROLE regress_fc_other;
SELECT fc_err($$SELECT pipeline_worker.schedule('other', 'fc', '@daily')$$);
SELECT fc_err($$SELECT pipeline_worker.schedule('other', 'fc_nonexistent', '@daily')$$);
SELECT count(*) AS other_sees_schedules FROM pipeline_worker.schedules;
SELECT pipeline_worker.unschedule('fc_every_minute') AS other_unschedules;
SELECT pipeline_worker.unschedule('no_such_schedule') AS other_unschedules_missing;
RESET ROLE;
SET ROLE regress_fc_tenant;
SELECT pipeline_worker.schedule('tenant_daily', 'fc', '@daily');
SELECT name FROM pipeline_worker.schedules;
SELECT fc_err($$SELECT pipeline_worker.schedule('fc_every_minute', 'fc', '@hourly')$$);
RESET ROLE;
SELECT pipeline_worker.unschedule('fc_every_minute'), pipeline_worker.unschedule('fc_every_minute');
SELECT pipeline_worker.unschedule('tenant_daily'), pipeline_worker.unschedule('fc_tz');
SELECT count(*) AS unfinished FROM pipeline_worker.runs WHERE status IN ('pending', 'running');
-- NULL where a value is needed is an invalid argument like any other: 22023 with a hint (until 2026-12-08 some
-- said 22004, others 22023)
DO $$
DECLARE c text; st text; h text;
BEGIN
    FOREACH c IN ARRAY ARRAY[
        'create_run(NULL)', 'create_runs(NULL, ''[{}]'')', 'create_runs(''fc'', NULL)',
        'pause_pipeline(NULL)', 'resume_pipeline(NULL)', 'alter_pipeline(NULL, ''{}'')',
        'schedule(NULL, ''fc'', ''* * * * *'')', 'schedule(''x'', NULL, ''* * * * *'')', 'schedule(''x'', ''fc'', NULL)',
        'unschedule(NULL)', 'create_pipeline(NULL, ''[]'')', 'create_pipeline(''x'', NULL)',
        'send_event(NULL::bigint, ''e'')', 'send_event(1, NULL)', 'send_event(''fc'', NULL, ''e'')']
    LOOP
        BEGIN
            EXECUTE 'SELECT pipeline_worker.' || c;
            RAISE NOTICE '%: no error', c;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, h = PG_EXCEPTION_HINT;
            RAISE NOTICE '%: % (hint: %)', c, st, h <> '';
        END;
    END LOOP;
END $$;
-- leave no pipeline behind for the files that follow
SELECT pipeline_worker.drop_pipeline('fc'), pipeline_worker.drop_pipeline('fc_lim'), pipeline_worker.drop_pipeline('fc_rb');
