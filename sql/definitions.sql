-- Pipeline definitions: validation, storage, name resolution of step functions, drop_pipeline.
-- Every invalid definition must raise an error and store nothing: each invalid case uses its own
-- pipeline name (bad_*), and the list of stored pipelines is checked at the end.

CREATE FUNCTION public.def_ok(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT ctx->'input' $$;
CREATE SCHEMA defs;
CREATE FUNCTION defs.hidden(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT ctx->'input' $$;
-- wrong signatures
CREATE FUNCTION public.def_text_arg(ctx text) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION public.def_text_ret(ctx jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION public.def_two_args(ctx jsonb, extra int) RETURNS jsonb LANGUAGE sql AS $$ SELECT ctx $$;
CREATE FUNCTION public.def_no_args() RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION public.def_json(ctx json) RETURNS json LANGUAGE sql AS $$ SELECT ctx $$;
CREATE FUNCTION public.def_setof(ctx jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT ctx $$;
CREATE PROCEDURE public.def_proc(ctx jsonb) LANGUAGE sql AS $$ SELECT 1 $$;
-- overloaded name: the (jsonb) RETURNS jsonb variant is the step function
CREATE FUNCTION public.def_over(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT ctx $$;
CREATE FUNCTION public.def_over(ctx text) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;

SELECT count(*) AS pipelines_before FROM pipeline_worker.pipelines;

-- ---------------------------------------------------------------- invalid: shape of steps
SELECT pipeline_worker.create_pipeline('bad_null_steps', NULL);
SELECT pipeline_worker.create_pipeline('bad_object', '{"name": "a", "function": "public.def_ok"}');
SELECT pipeline_worker.create_pipeline('bad_string', '"public.def_ok"');
SELECT pipeline_worker.create_pipeline('bad_empty', '[]');
SELECT pipeline_worker.create_pipeline('bad_element_number', '[1]');
SELECT pipeline_worker.create_pipeline('bad_element_string', '["public.def_ok"]');
SELECT pipeline_worker.create_pipeline('bad_element_null', '[null]');
SELECT pipeline_worker.create_pipeline('bad_one_good_one_not', '[{"name": "a", "function": "public.def_ok"}, 2]');
-- malformed JSON text: refused by PostgreSQL's cast to jsonb (22P02) before the extension sees it
\set VERBOSITY sqlstate
SELECT pipeline_worker.create_pipeline('bad_malformed', '[{"name": "a", "function": ');
SELECT pipeline_worker.create_pipeline('bad_malformed_options', '[{"name": "a", "function": "public.def_ok"}]', '{x}');
\set VERBOSITY default

-- ---------------------------------------------------------------- invalid: step names
SELECT pipeline_worker.create_pipeline('bad_missing_name', '[{"function": "public.def_ok"}]');
SELECT pipeline_worker.create_pipeline('bad_empty_name', '[{"name": "", "function": "public.def_ok"}]');
SELECT pipeline_worker.create_pipeline('bad_null_name', '[{"name": null, "function": "public.def_ok"}]');
SELECT pipeline_worker.create_pipeline('bad_number_name', '[{"name": 5, "function": "public.def_ok"}]');
SELECT pipeline_worker.create_pipeline('bad_dup_names',
    '[{"name": "a", "function": "public.def_ok"}, {"name": "b", "function": "public.def_ok"},
      {"name": "a", "function": "public.def_ok"}]');
-- a function name PostgreSQL cannot parse, or one in another database: its error says which step
SELECT pipeline_worker.create_pipeline('bad_function_syntax', '[{"name": "a", "function": "public."}]');
SELECT pipeline_worker.create_pipeline('bad_function_db', '[{"name": "a", "function": "otherdb.public.def_ok"}]');
-- at most 200 bytes: 101 two-byte characters are too many
SELECT pipeline_worker.create_pipeline('bad_long_name', jsonb_build_array(jsonb_build_object('name', repeat('é', 101), 'function', 'public.def_ok')));

-- ---------------------------------------------------------------- invalid: keys, function/http
SELECT pipeline_worker.create_pipeline('bad_unknown_key', '[{"name": "a", "function": "public.def_ok", "bogus": 1}]');
SELECT pipeline_worker.create_pipeline('bad_misspelt_key', '[{"name": "a", "function": "public.def_ok", "max_attempt": 3}]');
SELECT pipeline_worker.create_pipeline('bad_both',
    '[{"name": "a", "function": "public.def_ok", "http": {"url": "http://localhost/hook"}}]');
SELECT pipeline_worker.create_pipeline('bad_neither', '[{"name": "a"}]');
SELECT pipeline_worker.create_pipeline('bad_neither_options', '[{"name": "a", "max_attempts": 2}]');
SELECT pipeline_worker.create_pipeline('bad_function_empty', '[{"name": "a", "function": ""}]');
SELECT pipeline_worker.create_pipeline('bad_function_number', '[{"name": "a", "function": 42}]');
SELECT pipeline_worker.create_pipeline('bad_function_null', '[{"name": "a", "function": null}]');
SELECT pipeline_worker.create_pipeline('bad_http_string', '[{"name": "a", "http": "http://localhost/hook"}]');

SELECT pipeline_worker.create_pipeline('bad_http_no_url', '[{"name": "a", "http": {"method": "POST"}}]');
SELECT pipeline_worker.create_pipeline('bad_http_scheme', '[{"name": "a", "http": {"url": "ftp://localhost/x"}}]');
SELECT pipeline_worker.create_pipeline('bad_http_key', '[{"name": "a", "http": {"url": "http://localhost/x", "bogus": 1}}]');
SELECT pipeline_worker.create_pipeline('bad_http_port', '[{"name": "a", "http": {"url": "http://localhost:99999/x"}}]');
SELECT pipeline_worker.create_pipeline('bad_http_userinfo', '[{"name": "a", "http": {"url": "https://me:pw@localhost/x"}}]');
SELECT pipeline_worker.create_pipeline('bad_http_framing', '[{"name": "a", "http": {"url": "http://localhost/x", "headers": {"Content-Length": "5"}}}]');
SELECT pipeline_worker.create_pipeline('bad_http_method', '[{"name": "a", "http": {"url": "http://localhost/x", "method": "HEAD"}}]');
SELECT pipeline_worker.create_pipeline('bad_http_headers', '[{"name": "a", "http": {"url": "http://localhost/x", "headers": ["X: 1"]}}]');
-- wrong JSON types: each with a hint saying what is allowed
SELECT pipeline_worker.create_pipeline('bad_http_method_type', '[{"name": "a", "http": {"url": "http://localhost/x", "method": 1}}]');
SELECT pipeline_worker.create_pipeline('bad_http_follow_type', '[{"name": "a", "http": {"url": "http://localhost/x", "follow_redirects": "yes"}}]');
SELECT pipeline_worker.create_pipeline('bad_http_secret_type', '[{"name": "a", "http": {"url": "http://localhost/x", "headers": {"X-A": "1"}, "secret_headers": "X-A"}}]');
SELECT pipeline_worker.create_pipeline('bad_http_header_value', '[{"name": "a", "http": {"url": "http://localhost/x", "headers": {"X-A": 1}}}]');
SELECT pipeline_worker.create_pipeline('bad_http_header_name', '[{"name": "a", "http": {"url": "http://localhost/x", "headers": {"X A": "1"}}}]');

-- ---------------------------------------------------------------- invalid: step options and pipeline options
SELECT pipeline_worker.create_pipeline('bad_attempts_zero', '[{"name": "a", "function": "public.def_ok", "max_attempts": 0}]');
SELECT pipeline_worker.create_pipeline('bad_attempts_string', '[{"name": "a", "function": "public.def_ok", "max_attempts": "3"}]');
SELECT pipeline_worker.create_pipeline('bad_attempts_fraction', '[{"name": "a", "function": "public.def_ok", "max_attempts": 1.5}]');
SELECT pipeline_worker.create_pipeline('bad_delay_negative', '[{"name": "a", "function": "public.def_ok", "retry_delay_ms": -5}]');
-- 0 means none on a function, http or wait_for step (no pipeline default); a sleep or a child pipeline has no
-- timeout_ms at all
SELECT pipeline_worker.create_pipeline('bad_timeout_on_sleep', '[{"name": "a", "sleep": "1 s", "timeout_ms": 0}]');
SELECT pipeline_worker.create_pipeline('bad_timeout_negative', '[{"name": "a", "function": "public.def_ok", "timeout_ms": -1}]');
SELECT pipeline_worker.create_pipeline('bad_options_array', '[{"name": "a", "function": "public.def_ok"}]', '[]');
SELECT pipeline_worker.create_pipeline('bad_options_key', '[{"name": "a", "function": "public.def_ok"}]', '{"bogus": 1}');

-- ---------------------------------------------------------------- invalid: function resolution
SELECT pipeline_worker.create_pipeline('bad_unknown_fn', '[{"name": "a", "function": "no_such_function"}]');
SELECT pipeline_worker.create_pipeline('bad_unknown_qualified', '[{"name": "a", "function": "public.no_such_function"}]');
SELECT pipeline_worker.create_pipeline('bad_unknown_schema', '[{"name": "a", "function": "no_such_schema.def_ok"}]');
SELECT pipeline_worker.create_pipeline('bad_not_in_path', '[{"name": "a", "function": "hidden"}]');
SELECT pipeline_worker.create_pipeline('bad_text_arg', '[{"name": "a", "function": "public.def_text_arg"}]');
SELECT pipeline_worker.create_pipeline('bad_text_ret', '[{"name": "a", "function": "public.def_text_ret"}]');
SELECT pipeline_worker.create_pipeline('bad_two_args', '[{"name": "a", "function": "def_two_args"}]');
SELECT pipeline_worker.create_pipeline('bad_no_args', '[{"name": "a", "function": "public.def_no_args"}]');
SELECT pipeline_worker.create_pipeline('bad_json', '[{"name": "a", "function": "public.def_json"}]');
SELECT pipeline_worker.create_pipeline('bad_setof', '[{"name": "a", "function": "public.def_setof"}]');
SELECT pipeline_worker.create_pipeline('bad_procedure', '[{"name": "a", "function": "public.def_proc"}]');
SELECT pipeline_worker.create_pipeline('bad_with_args', '[{"name": "a", "function": "public.def_ok(jsonb)"}]');
-- the second step is the bad one: the first, valid step must not be stored either
SELECT pipeline_worker.create_pipeline('bad_second_step',
    '[{"name": "a", "function": "public.def_ok"}, {"name": "b", "function": "public.no_such_function"}]');

-- ---------------------------------------------------------------- invalid: pipeline name
SELECT pipeline_worker.create_pipeline(NULL, '[{"name": "a", "function": "public.def_ok"}]');
SELECT pipeline_worker.create_pipeline('', '[{"name": "a", "function": "public.def_ok"}]');

-- nothing of the above was stored
SELECT name FROM pipeline_worker.pipelines ORDER BY name;

-- ---------------------------------------------------------------- valid definitions
SELECT pipeline_worker.create_pipeline('good_qualified', '[{"name": "a", "function": "public.def_ok"}]');
SELECT pipeline_worker.create_pipeline('good_unqualified', '[{"name": "a", "function": "def_ok"}]');
SELECT pipeline_worker.create_pipeline('good_other_schema', '[{"name": "a", "function": "defs.hidden"}]');
SELECT pipeline_worker.create_pipeline('good_overloaded', '[{"name": "a", "function": "def_over"}]');
SELECT pipeline_worker.create_pipeline('good_multi',
    '[{"name": "first", "function": "def_ok"},
      {"name": "second", "function": "public.def_ok", "max_attempts": 3, "retry_delay_ms": 100, "timeout_ms": 5000},
      {"name": "third", "function": "defs.hidden"}]');
SELECT pipeline_worker.create_pipeline('good_http',
    '[{"name": "hook", "http": {"url": "http://localhost:1/hook"}}]');
SELECT pipeline_worker.create_pipeline('good_mixed',
    '[{"name": "prepare", "function": "public.def_ok"},
      {"name": "notify", "http": {"url": "http://localhost:1/notify"}, "max_attempts": 2}]');
SELECT pipeline_worker.create_pipeline('good_options', '[{"name": "a", "function": "def_ok"}]', '{}');
-- step functions are stored resolved (schema-qualified), in definition order
SELECT name, jsonb_path_query_array(steps, '$[*].name') AS step_names,
       jsonb_path_query_array(steps, '$[*].function') AS functions,
       owner, created_at <= now() AS created
  FROM pipeline_worker.pipelines ORDER BY name;
-- a later change of search_path does not change what a stored step calls
SET search_path = defs, public;
SELECT jsonb_path_query_array(steps, '$[*].function') AS functions
  FROM pipeline_worker.pipelines WHERE name = 'good_unqualified';
RESET search_path;

-- ---------------------------------------------------------------- duplicate pipeline name
SELECT pipeline_worker.create_pipeline('good_qualified', '[{"name": "other", "function": "def_ok"}]');
SELECT jsonb_path_query_array(steps, '$[*].name') AS step_names
  FROM pipeline_worker.pipelines WHERE name = 'good_qualified';

-- ---------------------------------------------------------------- no EXECUTE privilege
CREATE ROLE regress_pw_definer;
CREATE FUNCTION public.def_secret(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT ctx $$;
REVOKE EXECUTE ON FUNCTION public.def_secret(jsonb) FROM PUBLIC;
SET ROLE regress_pw_definer;
SELECT pipeline_worker.create_pipeline('bad_no_execute', '[{"name": "a", "function": "public.def_secret"}]');
SELECT pipeline_worker.create_pipeline('bad_no_execute_2',
    '[{"name": "a", "function": "public.def_ok"}, {"name": "b", "function": "public.def_secret"}]');
-- the same role can define pipelines from functions it may execute
SELECT pipeline_worker.create_pipeline('definer_ok', '[{"name": "a", "function": "public.def_ok"}]');
RESET ROLE;
GRANT EXECUTE ON FUNCTION public.def_secret(jsonb) TO regress_pw_definer;
SET ROLE regress_pw_definer;
SELECT pipeline_worker.create_pipeline('definer_granted', '[{"name": "a", "function": "public.def_secret"}]');
RESET ROLE;
SELECT name, owner FROM pipeline_worker.pipelines WHERE name LIKE 'definer%' OR name LIKE 'bad%' ORDER BY name;

-- ---------------------------------------------------------------- create_run
SELECT pipeline_worker.create_run('no_such_pipeline');
SELECT pipeline_worker.create_run(NULL);
SELECT count(*) AS runs_stored FROM pipeline_worker.runs;
SELECT pipeline_worker.create_run('good_multi', '{"k": 1}', '{"m": 2}') IS NOT NULL AS created;
SELECT pipeline, status, input, metadata, result, error, started_at, finished_at, worker_pid,
       submitted_by, created_at <= clock_timestamp() AS created
  FROM pipeline_worker.runs;
SELECT count(*) AS step_rows FROM pipeline_worker.run_steps;

-- ---------------------------------------------------------------- drop_pipeline
SELECT pipeline_worker.drop_pipeline('good_other_schema');
SELECT pipeline_worker.drop_pipeline('good_other_schema');
SELECT pipeline_worker.drop_pipeline('no_such_pipeline');
-- good_multi has a pending run: it cannot be dropped
SELECT pipeline_worker.drop_pipeline('good_multi');
SELECT count(*) AS good_multi_exists FROM pipeline_worker.pipelines WHERE name = 'good_multi';
SELECT pipeline_worker.cancel_run(id) FROM pipeline_worker.runs WHERE pipeline = 'good_multi';
SELECT status FROM pipeline_worker.runs WHERE pipeline = 'good_multi';
-- no pending/running run left: now it can be dropped (the finished run stays)
SELECT pipeline_worker.drop_pipeline('good_multi');
SELECT count(*) AS good_multi_exists FROM pipeline_worker.pipelines WHERE name = 'good_multi';
SELECT pipeline, status FROM pipeline_worker.runs;
-- the name can be used again
SELECT pipeline_worker.create_pipeline('good_multi', '[{"name": "again", "function": "def_ok"}]');
SELECT name, jsonb_path_query_array(steps, '$[*].name') AS step_names FROM pipeline_worker.pipelines
 WHERE name = 'good_multi';

-- ---------------------------------------------------------------- the run tables' CHECK constraints
-- (C functions since 0.2, for their cost per statement; the rules are the same.) Rows written by hand, as the
-- tables' owner, are refused by name (23514); the functions themselves are pure, and NULL passes. (Ids given: the
-- sequence stays where the other files expect it; a refused INSERT leaves nothing behind.)
\set VERBOSITY terse
INSERT INTO pipeline_worker.runs (id, pipeline, pipeline_id, pipeline_owner, submitted_by, status) OVERRIDING SYSTEM VALUE
SELECT -1, name, id, owner, owner, 'done' FROM pipeline_worker.pipelines WHERE name = 'good_multi';
INSERT INTO pipeline_worker.runs (id, pipeline, pipeline_id, pipeline_owner, submitted_by, priority) OVERRIDING SYSTEM VALUE
SELECT -1, name, id, owner, owner, 32768 FROM pipeline_worker.pipelines WHERE name = 'good_multi';
INSERT INTO pipeline_worker.runs (id, pipeline, pipeline_id, pipeline_owner, submitted_by, idempotency_key) OVERRIDING SYSTEM VALUE
SELECT -1, name, id, owner, owner, '' FROM pipeline_worker.pipelines WHERE name = 'good_multi';
INSERT INTO pipeline_worker.runs (id, pipeline, pipeline_id, pipeline_owner, submitted_by, idempotency_key) OVERRIDING SYSTEM VALUE
SELECT -1, name, id, owner, owner, repeat('k', 1001) FROM pipeline_worker.pipelines WHERE name = 'good_multi';
INSERT INTO pipeline_worker.runs (id, pipeline, pipeline_id, pipeline_owner, submitted_by, parked) OVERRIDING SYSTEM VALUE
SELECT -1, name, id, owner, owner, 4 FROM pipeline_worker.pipelines WHERE name = 'good_multi';
INSERT INTO pipeline_worker.run_steps (run_id, name, position, status, started_at) VALUES (1, 'x', 1, 'done', now());
\set VERBOSITY default
-- what they accept: every status, the bounds, NULL
SELECT pipeline_worker.check_run_status(s) AS run_status_ok, s
  FROM unnest(ARRAY['pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled', 'skipped', 'Pending',
                    'pendin', 'pending ', '', NULL]) s;
SELECT pipeline_worker.check_step_status(s) AS step_status_ok, s
  FROM unnest(ARRAY['running', 'waiting', 'succeeded', 'failed', 'skipped', 'pending', 'cancelled', NULL]) s;
SELECT pipeline_worker.check_priority(p) AS priority_ok, p FROM unnest(ARRAY[-32769, -32768, 0, 32767, 32768, NULL]) p;
SELECT pipeline_worker.check_idempotency_key(k) AS key_ok, octet_length(k)
  FROM unnest(ARRAY['', 'k', repeat('k', 1000), repeat('k', 1001), NULL]) k;
SELECT pipeline_worker.check_parked(p) AS parked_ok, p FROM unnest(ARRAY[0, 1, 2, 3, 4, NULL]::smallint[]) p;
-- the insert trigger's WHEN: finished within the 62 minutes pipeline_stats' roll-ups keep
SELECT pipeline_worker.finished_within_rollups(now() - i) AS within, i
  FROM unnest(ARRAY[interval '0', '61 minutes', '62 minutes', '1 day', NULL]) i;

-- leave only what the other files expect: no pipelines, no unfinished runs
SELECT count(pipeline_worker.drop_pipeline(name)) AS dropped FROM pipeline_worker.pipelines;
SELECT count(*) AS pipelines_left FROM pipeline_worker.pipelines;
SELECT count(*) AS unfinished_runs FROM pipeline_worker.runs WHERE status IN ('pending', 'running');
