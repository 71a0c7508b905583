#!/bin/bash
# Security of the 0.2 flow-control functions (create_run keys, create_runs, alter/pause/resume_pipeline, schedule,
# unschedule, the schedules table) with tenant_a, tenant_b, pipe_owner (owns "shared"), pw_admin and attacker:
# managing another tenant's pipeline is 42501 and answers exactly as for a missing one; idempotency keys are per
# submitting role (no other tenant's run id, error detail or lock wait); schedules are private, cannot be removed,
# replaced or followed into a re-created pipeline, fire as their owner until its grant goes; invalid limits are 22023,
# keys are data; no direct writes. Search-path attacks: the attacker's operators/functions/domains (schema attacker)
# record each call in attacker.trap (a row written as another role = attacker code ran with its privileges); the
# workers connect as postgres, whose search_path here is 'attacker, pg_catalog' (this script's psql use PGOPTIONS).
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

PW_WORKERS=2 pw_cluster_start security_flow
export PGOPTIONS="-c search_path=pg_catalog,public"

# q ROLE SQL : the output of SQL run as ROLE (or the error text)
q() { pw_psql -U "$1" -c "$2" 2>&1; }
# sqlstate ROLE SQL : OK, or the SQLSTATE of the first error
sqlstate() {
    local out
    if out=$(printf '\\set VERBOSITY sqlstate\n%s\n;\n' "$2" | pw_psql -U "$1" 2>&1); then echo OK; else
        out=$(echo "$out" | grep -oE 'ERROR: +[0-9A-Z]{5}' | head -n1 | awk '{print $2}'); echo "${out:-?}"; fi
}
check_state() { pw_check "$1" "$3" "$(sqlstate "$2" "$4")"; }
# err ROLE SQL : "ok" or "SQLSTATE|message|detail|hint" of SQL run as ROLE
err() { q "$1" "SELECT public.err_of(\$q\$$2\$q\$)"; }
set_workers() { pw_set_conf pipeline_worker.workers "$1"; pw_wait_workers "$1" 20 >/dev/null || pw_fail "workers = $1 not reached"; }
is_id() { [[ $1 =~ ^[0-9]+$ ]]; }

# ====================================================================== setup
pw_psql >/dev/null <<'SQL' || pw_die "superuser setup failed"
CREATE EXTENSION pipeline_worker;
CREATE ROLE tenant_a LOGIN; CREATE ROLE tenant_b LOGIN; CREATE ROLE attacker LOGIN; CREATE ROLE pipe_owner LOGIN;
CREATE ROLE pw_admin LOGIN IN ROLE pipeline_worker_admin;
CREATE SCHEMA attacker AUTHORIZATION attacker;
CREATE FUNCTION public.err_of(q text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    RETURN concat_ws('|', st, msg, det, hnt);
END $$;
CREATE FUNCTION public.fstep(ctx jsonb) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog AS
    $$ SELECT jsonb_build_object('user', current_user::text, 'input', ctx -> 'input') $$;
CREATE TABLE public.canary (x int);
SQL
q tenant_a "SELECT pipeline_worker.create_pipeline('tenant_a_pipe', '[{\"name\": \"s\", \"function\": \"public.fstep\"}]', '{\"concurrency\": 3}');
            SELECT pipeline_worker.grant_pipeline('tenant_a_pipe', 'tenant_b')" >/dev/null
q pipe_owner "SELECT pipeline_worker.create_pipeline('shared', '[{\"name\": \"s\", \"function\": \"public.fstep\"}]');
              SELECT pipeline_worker.grant_pipeline('shared', 'tenant_a'); SELECT pipeline_worker.grant_pipeline('shared', 'tenant_b')" >/dev/null

# the attacker: stealthy shadows (right answers, every call recorded) of what the extension's statements use
pw_psql -U attacker >/dev/null <<'SQL' || pw_die "attacker setup failed"
GRANT USAGE ON SCHEMA attacker TO PUBLIC;
CREATE TABLE attacker.trap (at timestamptz DEFAULT clock_timestamp(), tag text, cu name DEFAULT current_user,
                            su name DEFAULT session_user, bt text, phase text, pid int DEFAULT pg_backend_pid());
GRANT SELECT, INSERT ON attacker.trap TO PUBLIC;
CREATE FUNCTION attacker.note(t text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$ BEGIN
    INSERT INTO attacker.trap (tag, bt, phase) VALUES (t,
        (SELECT backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid()), current_setting('app.phase', true));
    RETURN true; END $fn$;
DO $do$
DECLARE r record; i int := 0;  -- operators, then functions, then domains
BEGIN
    FOR r IN SELECT * FROM (VALUES ('=', 'text', 'text', 'boolean'), ('||', 'text', 'text', 'text'),
            ('=', 'jsonb', 'jsonb', 'boolean'), ('<>', 'jsonb', 'jsonb', 'boolean'), ('||', 'jsonb', 'jsonb', 'jsonb'),
            ('=', 'bigint', 'bigint', 'boolean'), ('=', 'smallint', 'integer', 'boolean'),
            ('=', 'smallint', 'smallint', 'boolean'), ('=', 'integer', 'integer', 'boolean'),
            ('+', 'integer', 'integer', 'integer'), ('=', 'oid', 'oid', 'boolean'), ('=', 'regrole', 'regrole', 'boolean'),
            ('>', 'timestamptz', 'timestamptz', 'boolean'), ('<=', 'timestamptz', 'timestamptz', 'boolean'),
            ('-', NULL, 'integer', 'integer')) v(op, l, rt, res)
    LOOP
        i := i + 1;
        EXECUTE format('CREATE FUNCTION attacker.op%s(%s b %s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog'
                       ' AS $f$ BEGIN PERFORM attacker.note(%L); RETURN %s %s b; END $f$',
                       i, CASE WHEN r.l IS NOT NULL THEN 'a ' || r.l || ',' ELSE '' END, r.rt, r.res,
                       r.op || '(' || concat_ws(',', r.l, r.rt) || ')', CASE WHEN r.l IS NOT NULL THEN 'a' ELSE '' END, r.op);
        EXECUTE format('CREATE OPERATOR attacker.%s (%s RIGHTARG = %s, FUNCTION = attacker.op%s)',
                       r.op, CASE WHEN r.l IS NOT NULL THEN 'LEFTARG = ' || r.l || ',' ELSE '' END, r.rt, i);
    END LOOP;
    FOR r IN SELECT * FROM (VALUES ('hashtextextended(t text, s bigint)', 'bigint', 'RETURN hashtextextended(t, s)'),
            ('jsonb_array_elements(j jsonb)', 'SETOF jsonb', 'RETURN QUERY SELECT jsonb_array_elements(j)'),
            ('unnest(a anyarray)', 'SETOF anyelement', 'RETURN QUERY SELECT unnest(a)'),
            ('jsonb_each(j jsonb, OUT key text, OUT value jsonb)', 'SETOF record', 'RETURN QUERY SELECT * FROM jsonb_each(j)'),
            ('to_char(t timestamp, f text)', 'text', 'RETURN to_char(t, f)'), ('to_char(t timestamptz, f text)', 'text', 'RETURN to_char(t, f)'),
            ('clock_timestamp()', 'timestamptz', 'RETURN clock_timestamp()'), ('now()', 'timestamptz', 'RETURN now()'),
            ('jsonb_build_object(a text, b text, c text, d text)', 'jsonb', 'RETURN jsonb_build_object(a, b, c, d)')) v(sig, res, body)
    LOOP
        EXECUTE format('CREATE FUNCTION attacker.%s RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog'
                       ' AS $f$ BEGIN PERFORM attacker.note(%L); %s; END $f$', r.sig, r.res, r.sig, r.body);
    END LOOP;
    -- type names too (a statement writing ::jsonb or ::text would pick these up)
    FOR r IN SELECT unnest(ARRAY['text', 'jsonb', 'oid', 'regrole']) AS t LOOP
        EXECUTE format('CREATE DOMAIN attacker.%I AS pg_catalog.%I CHECK (attacker.note(%L))', r.t, r.t, 'domain ' || r.t);
    END LOOP;
END $do$;
CREATE FUNCTION attacker.whoami(ctx jsonb) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog
    AS $f$ SELECT jsonb_build_object('user', current_user::text) $f$;
-- the attacker's step: reports the search_path it runs with and uses || unqualified (fires the shadow in a hostile session)
CREATE FUNCTION attacker.astep(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM pg_catalog.pg_sleep(COALESCE((ctx->'input'->>'sleep')::float8, 0));
    RETURN pg_catalog.jsonb_build_object('user', current_user::pg_catalog.text, 'sp', pg_catalog.current_setting('search_path'),
                                         'canary', 'a'::pg_catalog.text || 'b'::pg_catalog.text);
END $f$;
SELECT pipeline_worker.create_pipeline('att_pipe', '[{"name": "s", "function": "attacker.astep"}]', '{"concurrency_per_key": 1}');
SQL
# the workers' session (they connect as postgres) gets the hostile search_path too; restart them to take it
pw_psql -c "ALTER ROLE postgres IN DATABASE postgres SET search_path = attacker, pg_catalog" >/dev/null
set_workers 0; set_workers 2

# canary: in a session with that search_path every shadow does win over pg_catalog (so the checks below can bite)
pw_psql -U attacker >/dev/null 2>&1 <<'SQL'
SET search_path = attacker, pg_catalog;
SELECT set_config('app.phase', 'canary', false);
SELECT 'a'::pg_catalog.text = 'b'::pg_catalog.text, 'a'::pg_catalog.text || 'b'::pg_catalog.text,
       '{}'::pg_catalog.jsonb = '{}'::pg_catalog.jsonb, '{}'::pg_catalog.jsonb <> '[]'::pg_catalog.jsonb,
       '{}'::pg_catalog.jsonb || '{}'::pg_catalog.jsonb, 1::bigint = 2::bigint, 1::smallint = 2, 1::smallint = 2::smallint,
       1 = 2, 1 + 2, 1::pg_catalog.oid = 2::pg_catalog.oid, 'attacker'::pg_catalog.regrole = 'attacker'::pg_catalog.regrole,
       now() > clock_timestamp(), statement_timestamp() <= statement_timestamp(), - length('x'),
       hashtextextended('x'::pg_catalog.text, 0), (SELECT count(*) FROM jsonb_array_elements('[1]'::pg_catalog.jsonb)),
       (SELECT count(*) FROM unnest(ARRAY[1])), (SELECT count(*) FROM jsonb_each('{"a": 1}'::pg_catalog.jsonb)),
       to_char(localtimestamp, 'YYYY'), to_char(statement_timestamp(), 'YYYY'),
       jsonb_build_object('a'::pg_catalog.text, 'b'::pg_catalog.text, 'c'::pg_catalog.text, 'd'::pg_catalog.text),
       'x'::text, '{}'::jsonb, 1::oid, 'attacker'::regrole;
SQL
pw_check_sql "canary: all 28 shadows (operators, functions, domains) win in an 'attacker, pg_catalog' session" 28 \
    "SELECT count(DISTINCT tag) FROM attacker.trap WHERE phase = 'canary' AND cu::text = 'attacker'"

# ====================================================================== 1. managing another tenant's pipeline
opts_of() { pw_psql -c "SELECT paused || ' ' || options::text FROM pipeline_worker.pipelines WHERE name = 'tenant_a_pipe'"; }
before=$(opts_of)
MANAGE=("pause_pipeline('@P@')" "resume_pipeline('@P@')" "alter_pipeline('@P@', '{\"concurrency\": 100}')"
        "alter_pipeline('@P@', '{\"concurrency\": \"x\"}')" "schedule('s_@P@', '@P@', '1 seconds')")
for role in attacker tenant_b; do
    for call in "${MANAGE[@]}"; do
        [ "$role" = tenant_b ] && [[ $call == schedule* ]] && continue
        real=$(err "$role" "SELECT pipeline_worker.${call//@P@/tenant_a_pipe}")
        ghost=$(err "$role" "SELECT pipeline_worker.${call//@P@/ghost_pipe}")
        pw_check "$role: ${call%%(*} of tenant_a's pipeline is 42501" 42501 "${real%%|*}"
        pw_check "$role: ... and answers exactly as for a missing pipeline (no existence oracle)" \
            "${ghost//ghost_pipe/@P@}" "${real//tenant_a_pipe/@P@}"
    done
done
pw_check "paused flag and options unchanged after the refused calls" "$before" "$(opts_of)"
pw_check_sql "the refused schedule() stored nothing" 0 "SELECT count(*) FROM pipeline_worker.schedules"
check_state "grantee tenant_b may schedule tenant_a's pipeline" tenant_b OK \
    "SELECT pipeline_worker.schedule('b_on_a', 'tenant_a_pipe', '@daily')"
pw_check "... and remove its schedule" t "$(q tenant_b "SELECT pipeline_worker.unschedule('b_on_a')")"
check_state "pw_admin may pause tenant_a's pipeline" pw_admin OK "SELECT pipeline_worker.pause_pipeline('tenant_a_pipe')"
pw_check "... it is paused" "true ${before#* }" "$(opts_of)"
check_state "pw_admin may resume and alter it" pw_admin OK "SELECT pipeline_worker.resume_pipeline('tenant_a_pipe');
    SELECT pipeline_worker.alter_pipeline('tenant_a_pipe', '{\"concurrency\": 4}')"
pw_check "... resumed, options changed" 'false {"concurrency": 4}' "$(opts_of)"

# ====================================================================== 2. idempotency keys are per submitting role
cr() { q "$1" "SELECT pipeline_worker.create_run('shared', '$2', idempotency_key => '$3')"; }
ka=$(cr tenant_a '{"x": 1}' K); kb=$(cr tenant_b '{"x": 2}' K)
is_id "$ka" && is_id "$kb" && [ "$ka" != "$kb" ] && pw_ok "tenant_b with tenant_a's key (other input): its own new run, no error" \
    || pw_fail "tenant_b with tenant_a's key: a=$ka b=$kb"
pw_check "tenant_b's key works for itself (same run again)" "$kb" "$(cr tenant_b '{"x": 2}' K)"
ka2=$(cr tenant_a '{"x": 1}' K2); kb2=$(cr tenant_b '{"x": 1}' K2)
is_id "$kb2" && [ "$ka2" != "$kb2" ] && pw_ok "tenant_b with tenant_a's key and the same input: a distinct run" \
    || pw_fail "same key, same input: a=$ka2 b=$kb2"
pw_check "tenant_b does not see tenant_a's runs" "0 2" "$(q tenant_b "SELECT count(*) FILTER (WHERE id IN ($ka, $ka2)) || ' ' ||
    count(*) FILTER (WHERE idempotency_key IN ('K', 'K2')) FROM pipeline_worker.runs")"
e=$(err tenant_b "SELECT pipeline_worker.create_run('shared', '{\"x\": 3}', idempotency_key => 'K')")
pw_check "tenant_b reusing its own key with another input: 23505 naming only its own run" "23505 $kb" \
    "$(echo "${e%%|*}") $(echo "$e" | cut -d'|' -f3 | grep -oE '[0-9]+' | tr '\n' ' ' | sed 's/ $//')"
crs() { q "$1" "SELECT string_agg(id::text, ' ') FROM pipeline_worker.create_runs('shared', '$2', idempotency_keys => ARRAY['C1', 'C2']) id"; }
a_ids=$(crs tenant_a '[{"y": 1}, {"y": 2}]'); b_ids=$(crs tenant_b '[{"y": 1}, {"y": 9}]')
overlap=$(comm -12 <(tr ' ' '\n' <<<"$a_ids" | sort) <(tr ' ' '\n' <<<"$b_ids" | sort) | wc -l)
[[ $b_ids =~ ^[0-9]+\ [0-9]+$ ]] && [ "$overlap" = 0 ] && pw_ok "create_runs: tenant_b with tenant_a's keys gets its own runs ($a_ids / $b_ids)" \
    || pw_fail "create_runs with another tenant's keys: a='$a_ids' b='$b_ids'"
pw_check "create_runs: tenant_b's keys return its own runs again" "$b_ids" "$(crs tenant_b '[{"y": 1}, {"y": 9}]')"
pw_check "create_runs: tenant_b sees none of tenant_a's runs" 0 \
    "$(q tenant_b "SELECT count(*) FROM pipeline_worker.runs WHERE id IN (${a_ids// /,}) OR submitted_by::text <> 'tenant_b'")"
e=$(err tenant_b "SELECT pipeline_worker.create_runs('shared', '[{\"y\": 10}]', idempotency_keys => ARRAY['C2'])")
pw_check "create_runs: own key, other input: 23505 naming only its own run" "23505 ${b_ids#* }" \
    "${e%%|*} $(echo "$e" | cut -d'|' -f3 | grep -oE '[0-9]+' | tr '\n' ' ' | sed 's/ $//')"
# no timing oracle: tenant_a's uncommitted run with key H does not make tenant_b's submission with H wait
printf "BEGIN;\nSELECT pipeline_worker.create_run('shared', '{}', idempotency_key => 'H');\nSELECT pg_sleep(30);\n" | pw_psql -U tenant_a >/dev/null 2>&1 &
holder=$!
pw_wait_row 10 "SELECT pid FROM pg_stat_activity WHERE usename = 'tenant_a' AND wait_event = 'PgSleep'" >/dev/null
t0=$(pw_now); hb=$(q tenant_b "SET lock_timeout = '2s'; SELECT pipeline_worker.create_run('shared', '{}', idempotency_key => 'H')"); el=$(pw_elapsed "$t0")
is_id "$hb" && pw_lt "$el" 1.5 && pw_ok "tenant_b's key H while tenant_a's H is uncommitted: no wait (${el} s)" \
    || pw_fail "tenant_b waited on tenant_a's pending key: '$hb' after $el s"
check_state "(the same key from tenant_a's second session does wait: lock timeout)" tenant_a 55P03 \
    "SET lock_timeout = '300ms'; SELECT pipeline_worker.create_run('shared', '{}', idempotency_key => 'H')"
pw_psql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = 'tenant_a' AND wait_event = 'PgSleep'" >/dev/null
wait "$holder"

# ====================================================================== 3. schedules
q tenant_a "SELECT pipeline_worker.schedule('tenant_a_sched', 'shared', '@daily', '{\"s\": 1}')" >/dev/null
for role in tenant_b attacker; do
    pw_check "$role sees no schedule of tenant_a" 0 "$(q $role "SELECT count(*) FROM pipeline_worker.schedules")"
    pw_check "$role: unschedule('tenant_a_sched') is false" f "$(q $role "SELECT pipeline_worker.unschedule('tenant_a_sched')")"
done
pw_check "... as for a missing schedule" f "$(q tenant_b "SELECT pipeline_worker.unschedule('no_such_sched')")"
pw_check "tenant_a and pw_admin see it" "1 1" \
    "$(q tenant_a "SELECT count(*) FROM pipeline_worker.schedules") $(q pw_admin "SELECT count(*) FROM pipeline_worker.schedules")"
check_state "tenant_b cannot replace tenant_a's schedule (42501)" tenant_b 42501 \
    "SELECT pipeline_worker.schedule('tenant_a_sched', 'shared', '1 seconds')"
check_state "attacker cannot hijack it onto its own pipeline (42501)" attacker 42501 \
    "SELECT pipeline_worker.schedule('tenant_a_sched', 'att_pipe', '1 seconds')"
pw_check_sql "tenant_a's schedule is intact" "shared|@daily|tenant_a|t" \
    "SELECT concat_ws('|', pipeline, cron, owner, active) FROM pipeline_worker.schedules WHERE name = 'tenant_a_sched'"
# An admin may replace another role's schedule, and it becomes the admin's: its runs are submitted as the role that
# chose their pipeline and input. (Until 2026-12-05 it kept its owner: an admin could have runs of its choosing
# submitted as any role that owns a schedule, a superuser's included.)
q tenant_a "SELECT pipeline_worker.schedule('a_for_admin', 'shared', '@daily', '{\"s\": 1}')" >/dev/null
check_state "pw_admin may replace tenant_a's schedule" pw_admin OK \
    "SELECT pipeline_worker.schedule('a_for_admin', 'shared', '@hourly', '{\"s\": 2}')"
pw_check_sql "... which then belongs to pw_admin (its runs are pw_admin's)" 'shared|@hourly|{"s": 2}|pw_admin' \
    "SELECT concat_ws('|', pipeline, cron, input, owner) FROM pipeline_worker.schedules WHERE name = 'a_for_admin'"
pw_check "... and tenant_a no longer sees it" 0 "$(q tenant_a "SELECT count(*) FROM pipeline_worker.schedules WHERE name = 'a_for_admin'")"
q pw_admin "SELECT pipeline_worker.unschedule('a_for_admin')" >/dev/null
q tenant_a "SELECT pipeline_worker.schedule('a_every1', 'shared', '1 seconds', '{\"from\": \"cron\"}')" >/dev/null
fired="FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'a_every1'"
pw_wait_sql t 10 "SELECT count(*) >= 2 $fired AND status = 'succeeded'" >/dev/null || pw_fail "a_every1 did not fire twice in 10 s"
pw_check_sql "fired runs are submitted by the schedule's owner and ran as it" "t" \
    "SELECT bool_and(submitted_by::text = 'tenant_a' AND (status <> 'succeeded' OR result->>'user' = 'tenant_a')) $fired"
n=$(pw_psql -c "SELECT count(*) $fired")
pw_check "tenant_a sees the fired runs, tenant_b none" "t 0" \
    "$(q tenant_a "SELECT count(*) >= $n $fired") $(q tenant_b "SELECT count(*) $fired")"
q pipe_owner "SELECT pipeline_worker.revoke_pipeline('shared', 'tenant_a')" >/dev/null
pw_check "after revoking tenant_a's grant the schedule becomes inactive" "false" \
    "$(pw_wait_sql false 5 "SELECT active::text FROM pipeline_worker.schedules WHERE name = 'a_every1'")"
n=$(pw_psql -c "SELECT count(*) $fired"); sleep 2
pw_check_sql "... and fires no more (2 s of a '1 seconds' schedule)" "$n" "SELECT count(*) $fired"
# pipeline-name reuse: tenant_a drops a pipeline but forgets its schedule; the attacker takes the name and grants it to
# tenant_a. Runs are bound to their pipeline (id and owner); a schedule must not follow the name into the attacker's
# pipeline (its steps would run as tenant_a, and the attacker, as the pipeline's owner, would read their results).
pw_psql >/dev/null <<'SQL' || pw_fail "name-reuse setup failed"
BEGIN; SET ROLE tenant_a;
SELECT pipeline_worker.create_pipeline('a_tmp', '[{"name": "s", "function": "public.fstep"}]');
SELECT pipeline_worker.schedule('a_reuse', 'a_tmp', '1 seconds'), pipeline_worker.drop_pipeline('a_tmp');
SET ROLE attacker;
SELECT pipeline_worker.create_pipeline('a_tmp', '[{"name": "s", "function": "attacker.whoami"}]'),
       pipeline_worker.grant_pipeline('a_tmp', 'tenant_a');
COMMIT;
SQL
reuse="FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'a_reuse'"
pw_wait_sql t 4 "SELECT EXISTS (SELECT 1 $reuse AND status <> 'pending')
                    OR NOT coalesce((SELECT active FROM pipeline_worker.schedules WHERE name = 'a_reuse'), false)" >/dev/null
pw_check_sql "tenant_a's schedule never submits to the attacker's pipeline that took its dropped pipeline's name" "0 " \
    "SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT 'run as ' || submitted_by || ' of the pipeline of ' || pipeline_owner
            || ': ' || coalesce(result::text, status), '; '), '') $reuse AND pipeline_owner::text <> 'tenant_a'"
q tenant_a "SELECT pipeline_worker.unschedule('a_reuse')" >/dev/null

# ====================================================================== 4. limits are validated, keys are data
opts=$(opts_of)
for o in '{"concurrency": "5"}' '{"concurrency": 1e12}' '{"concurrency": 99999999999999999999999999}' '{"concurrency": 1e400}' \
         '{"concurrency": {"n": 1}}' '{"concurrency": [1]}' '{"concurrency": 1.5}' '{"concurrency": true}' '{"concurrency": -1}' \
         '{"concurrency_per_key": "1; DROP TABLE public.canary"}' '{"rate_limit": "10/s"}' '{"rate_limit": {"runs": "10", "per_ms": 1000}}' \
         '{"rate_limit": {"runs": 1e30, "per_ms": 1000}}' '{"rate_limit": {"runs": 5, "per_ms": {"ms": 1}}}' \
         '{"rate_limit_per_key": {"runs": 5, "per_ms": -1}}' '{"rate_limit": {"runs": 5, "per_ms": 10, "nested": {"a": [1]}}}'; do
    e=$(err tenant_a "SELECT pipeline_worker.alter_pipeline('tenant_a_pipe', '$o')")
    pw_check "alter_pipeline $o -> 22023" 22023 "${e%%|*}"
done
for o in '{"priority": "high"}' '{"priority": 99999999999}' '{"concurrency_key": {"a": 1}}' '{"catch_up_max": 1e30}' '{"timezone": {"x": 1}}'; do
    e=$(err tenant_a "SELECT pipeline_worker.schedule('weird', 'tenant_a_pipe', '@daily', options => '$o')")
    pw_check "schedule options $o -> 22023" 22023 "${e%%|*}"
done
pw_check "options unchanged, no schedule stored" "$opts 0" "$(opts_of) $(pw_psql -c "SELECT count(*) FROM pipeline_worker.schedules WHERE name = 'weird'")"
SQLISH="x'); DROP TABLE public.canary; --\\%s\$1"
id=$(echo "SELECT pipeline_worker.create_run('tenant_a_pipe', '{}', concurrency_key => :'k', idempotency_key => :'k')" | pw_psql -U tenant_a -v k="$SQLISH" 2>&1)
ids=$(echo "SELECT string_agg(id::text, ' ') FROM pipeline_worker.create_runs('tenant_a_pipe', '[{}, {\"b\": 1}]', concurrency_keys => ARRAY[:'k', :'k' || '\"'], idempotency_keys => ARRAY[:'k' || ';', :'k' || '--']) AS id" | pw_psql -U tenant_a -v k="$SQLISH" 2>&1)
is_id "$id" && [[ $ids =~ ^[0-9]+\ [0-9]+$ ]] && pw_ok "SQL-ish keys accepted as data" || pw_fail "SQL-ish keys: '$id' '$ids'"
pw_check_sql "... stored verbatim, runs succeed, nothing dropped" "3 3 true" \
    "SELECT count(*) FILTER (WHERE concurrency_key LIKE 'x''); DROP TABLE%') || ' ' || count(*) FILTER (WHERE pipeline_worker.wait_run(id, '10 s') = 'succeeded')
            || ' ' || (to_regclass('public.canary') IS NOT NULL) FROM pipeline_worker.runs WHERE id IN (${id:-0}, ${ids// /,})"
pw_check_sql "... the key round-trips exactly" t \
    "SELECT concurrency_key = idempotency_key AND concurrency_key = E'x''); DROP TABLE public.canary; --\\\\%s\$1' FROM pipeline_worker.runs WHERE id = ${id:-0}"

# ====================================================================== 5. hostile search_path: the attacker's session and the workers
out=$(pw_psql -U attacker -v ON_ERROR_STOP=0 2>&1 <<'SQL'
SET search_path = attacker, pg_catalog;
SELECT set_config('app.phase', 'create_run', false);
SELECT pipeline_worker.create_run('att_pipe', '{"i": 1}', '{}', 7, clock_timestamp() + interval '300 ms', 'ik-1', 'ck-1');
SELECT pipeline_worker.create_run('att_pipe', '{"i": 1}', '{}', 7, NULL, 'ik-1', 'ck-1');
SELECT pipeline_worker.create_run('att_pipe', '{"i": 2}', idempotency_key => 'ik-1');
SELECT pipeline_worker.create_run('shared', '{}', idempotency_key => 'ik-1');
SELECT set_config('app.phase', 'create_runs', false);
SELECT pipeline_worker.create_runs('att_pipe', '[{"sleep": 0.2}, {"sleep": 0.2}, {"j": 3}, {"sleep": 0.2}]', '{}', 1, NULL,
                                   ARRAY['ik-2', 'ik-3', NULL, 'ik-2'], ARRAY['ck', 'ck', 'ck2', 'ck']);
SELECT pipeline_worker.create_runs('att_pipe', '[{"sleep": 0.2}, {"sleep": 0.2}]', idempotency_keys => ARRAY['ik-3', 'ik-2']);
SELECT pipeline_worker.create_runs('att_pipe', '[{"x": 0}]', idempotency_keys => ARRAY['ik-3']);
SELECT set_config('app.phase', 'alter_pipeline', false);
SELECT pipeline_worker.alter_pipeline('att_pipe', '{"concurrency": 2, "rate_limit": {"runs": 50, "per_ms": 1000},
                                                  "rate_limit_per_key": {"runs": 20, "per_ms": 1000}}');
SELECT pipeline_worker.alter_pipeline('att_pipe', '{"rate_limit_per_key": null}');
SELECT set_config('app.phase', 'pause/resume_pipeline', false);
SELECT pipeline_worker.pause_pipeline('att_pipe');
SELECT pipeline_worker.create_run('att_pipe', '{"paused": true}', concurrency_key => 'ck');
SELECT pipeline_worker.pause_pipeline('tenant_a_pipe');
SELECT pipeline_worker.resume_pipeline('att_pipe');
SELECT set_config('app.phase', 'schedule/unschedule', false);
SELECT pipeline_worker.schedule('att_sched', 'att_pipe', '1 seconds', '{"from": "cron"}', '{"m": 1}',
                                '{"priority": 2, "concurrency_key": "sk", "catch_up": "all", "timezone": "Europe/Paris"}');
SELECT pipeline_worker.schedule('att_sched', 'att_pipe', '1 seconds', '{"from": "cron"}', '{"m": 2}', '{"priority": 2, "concurrency_key": "sk"}');
SELECT pipeline_worker.schedule('att_tmp', 'att_pipe', '@daily');
SELECT pipeline_worker.unschedule('att_tmp'), pipeline_worker.unschedule('att_nothing'), pipeline_worker.unschedule('tenant_a_sched');
SELECT set_config('app.phase', 'purge_runs', false);
SELECT pipeline_worker.purge_runs('1 hour', 'att_pipe'), pipeline_worker.purge_runs('1 hour');
SQL
)
pw_check "attacker session: only the 4 expected errors (2 key conflicts, 2 permission denied)" "4 2 2" \
    "$(grep -c 'ERROR:' <<<"$out") $(grep -c 'is already used with another input' <<<"$out") $(grep -c 'permission denied' <<<"$out")"
pw_check_sql "... every call took effect: keyed runs, paused run, options, schedules" \
    '3|3|1|{"rate_limit": {"runs": 50, "per_ms": 1000}, "concurrency": 2, "concurrency_per_key": 1}|att_sched,tenant_a_sched' \
    "SELECT concat_ws('|', (SELECT count(*) FROM pipeline_worker.runs WHERE idempotency_key IN ('ik-1', 'ik-2', 'ik-3')),
            (SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'att_pipe' AND concurrency_key = 'ck'),
            (SELECT count(*) FROM pipeline_worker.runs WHERE input ? 'paused'),
            (SELECT options FROM pipeline_worker.pipelines WHERE name = 'att_pipe'),
            (SELECT string_agg(name, ',' ORDER BY name) FROM pipeline_worker.schedules WHERE name IN ('att_sched', 'att_tmp', 'tenant_a_sched')))"
att="FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'att_sched'"
pw_wait_sql t 10 "SELECT count(*) >= 2 $att AND status = 'succeeded'" >/dev/null || pw_fail "att_sched did not fire twice in 10 s"
q attacker "SET search_path = attacker, pg_catalog; SELECT pipeline_worker.unschedule('att_sched')" >/dev/null
pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'att_pipe' AND status IN ('pending', 'running')" >/dev/null \
    || pw_fail "attacker runs still unfinished after 15 s"
pw_check_sql "all attacker runs succeeded; fired ones as attacker, with the new metadata, priority and key" "true true" \
    "SELECT bool_and(status = 'succeeded') || ' ' || (SELECT bool_and(submitted_by::text = 'attacker' AND result->>'user' = 'attacker'
            AND metadata->>'m' = '2' AND priority = 2 AND concurrency_key = 'sk') $att) FROM pipeline_worker.runs WHERE pipeline = 'att_pipe'"
pw_check_sql "the workers' own session had the hostile search_path (the attacker's step saw it, its || shadow fired)" "attacker, pg_catalog true" \
    "SELECT (SELECT max(result->>'sp') $att) || ' ' || EXISTS (SELECT 1 FROM attacker.trap WHERE tag = '||(text,text)'
            AND cu::text = 'attacker' AND pid IN (SELECT worker_pid $att))"
pw_check_sql "no attacker operator/function/domain ever ran as another role (session calls, claims, schedule firings)" "0 " \
    "SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT tag || ' as ' || cu || ' (' || coalesce(bt, '?') || ', '
            || coalesce(phase, '-') || ')', '; '), '') FROM attacker.trap WHERE cu::text <> 'attacker'"

# ====================================================================== 6. no direct writes
pw_wait_all_finished 15 >/dev/null
own=$(pw_psql -c "SELECT max(id) FROM pipeline_worker.runs WHERE pipeline = 'att_pipe'")
sum_sql="SELECT md5(coalesce((SELECT string_agg(x::text, '|' ORDER BY x.name) FROM pipeline_worker.schedules x), '')
                 || (SELECT string_agg(concat_ws(',', id, parked, priority, status), '|' ORDER BY id) FROM pipeline_worker.runs)
                 || (SELECT string_agg(concat_ws(',', name, paused, options), '|' ORDER BY name) FROM pipeline_worker.pipelines))"
# a child step follows its pipeline, not any pipeline of that name: tenant_a's "a_parent" names "a_helper"; once
# tenant_a drops a_helper, the attacker creates one of that name (its own steps) and grants it to tenant_a -- a run of
# a_parent must not execute the attacker's steps as tenant_a (until 2026-12-05 it did, and the attacker read the
# child's input and output). tenant_a creating a_helper again itself is followed.
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION public.child_effect(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN INSERT INTO public.canary VALUES (7); RETURN jsonb_build_object('user', current_user::text); END $$;
GRANT INSERT ON public.canary TO PUBLIC;
SQL
q tenant_a "SELECT pipeline_worker.create_pipeline('a_helper', '[{\"name\": \"h\", \"function\": \"public.fstep\"}]');
            SELECT pipeline_worker.create_pipeline('a_parent', '[{\"name\": \"c\", \"pipeline\": \"a_helper\"}]');
            SELECT pipeline_worker.drop_pipeline('a_helper')" >/dev/null
q attacker "SELECT pipeline_worker.create_pipeline('a_helper', '[{\"name\": \"h\", \"function\": \"public.child_effect\"}]');
            SELECT pipeline_worker.grant_pipeline('a_helper', 'tenant_a')" >/dev/null
hj=$(q tenant_a "SELECT pipeline_worker.create_run('a_parent')")
pw_check_sql "a child step does not follow its pipeline's name into another role's pipeline: the run fails, saying why" \
    "failed|t|0" "SELECT pipeline_worker.wait_run($hj, '20 s'), (SELECT error LIKE '%\"a_helper\" was created again by another role%'
                   FROM pipeline_worker.runs WHERE id = $hj), (SELECT count(*) FROM public.canary WHERE x = 7)"
pw_check_sql "... and no child run of the attacker's pipeline exists" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $hj"
# claim_run/execute_run in a session: a non-superuser admin cannot take a superuser's run into its own session (its
# temporary tables and their triggers, its search_path would meet the superuser's steps: until 2026-12-05 an admin
# became superuser that way); nor execute one a superuser claimed and handed over with SET ROLE
set_workers 0
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('su_solo', '[{"name": "s", "function": "public.fstep"}]');
SELECT pipeline_worker.create_run('su_solo', priority => 32767);  -- (claimed first)
SQL
pw_check "a non-superuser admin's claim_run() does not take a superuser's run" "" \
    "$(q pw_admin "SELECT pipeline_worker.claim_run()")"
out=$(pw_psql -v VERBOSITY=verbose -c "SELECT pipeline_worker.claim_run() IS NOT NULL AS claimed" \
        -c "SET ROLE pw_admin" -c "SELECT pipeline_worker.execute_run(
              (SELECT id FROM pipeline_worker.runs WHERE pipeline = 'su_solo' AND status = 'running'))" 2>&1)
[[ "$out" == *42501*"permission denied to execute run"* ]] \
    && pw_ok "execute_run as a role without the submitter's privileges: 42501" || pw_fail "execute_run handed over: $out"
set_workers 2
pw_check_sql "the superuser's run, released with that session, is executed by the workers" succeeded \
    "SELECT pipeline_worker.wait_run((SELECT id FROM pipeline_worker.runs WHERE pipeline = 'su_solo'), '20 s')"

# the same with a superuser's parent (has_privs_of_role would have let a superuser "have" the attacker's privileges)
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('su_helper', '[{"name": "h", "function": "public.fstep"}]');
SELECT pipeline_worker.create_pipeline('su_parent', '[{"name": "c", "pipeline": "su_helper"}]');
SELECT pipeline_worker.grant_pipeline('su_parent', 'tenant_a');
SELECT pipeline_worker.grant_pipeline('su_helper', 'tenant_a');
SELECT pipeline_worker.drop_pipeline('su_helper');
SQL
q attacker "SELECT pipeline_worker.create_pipeline('su_helper', '[{\"name\": \"h\", \"function\": \"public.child_effect\"}]');
            SELECT pipeline_worker.grant_pipeline('su_helper', 'tenant_a')" >/dev/null
hj=$(q tenant_a "SELECT pipeline_worker.create_run('su_parent')")
pw_check_sql "... nor, from a superuser's pipeline, into another role's" "failed|t|0" \
    "SELECT pipeline_worker.wait_run($hj, '20 s'), (SELECT error LIKE '%\"su_helper\" was created again by another role%'
                   FROM pipeline_worker.runs WHERE id = $hj), (SELECT count(*) FROM public.canary WHERE x = 7)"
q attacker "SELECT pipeline_worker.drop_pipeline('a_helper')" >/dev/null
q tenant_a "SELECT pipeline_worker.create_pipeline('a_helper', '[{\"name\": \"h\", \"function\": \"public.fstep\"}]')" >/dev/null
ok_run=$(q tenant_a "SELECT pipeline_worker.create_run('a_parent')")
pw_check_sql "tenant_a's own a_helper created again is followed" "succeeded|tenant_a" \
    "SELECT pipeline_worker.wait_run($ok_run, '20 s'), (SELECT result->>'user' FROM pipeline_worker.runs WHERE id = $ok_run)"

before=$(pw_psql -c "$sum_sql")
FORBIDDEN=(
    "INSERT INTO pipeline_worker.schedules (name, pipeline, cron, owner) VALUES ('forged', 'shared', '1 seconds', 'tenant_a')"
    "UPDATE pipeline_worker.schedules SET owner = 'attacker'"
    "UPDATE pipeline_worker.schedules SET active = true, next_run_at = now()"
    "DELETE FROM pipeline_worker.schedules"
    "TRUNCATE pipeline_worker.schedules"
    "SELECT name FROM pipeline_worker.schedules FOR UPDATE"
    "UPDATE pipeline_worker.runs SET parked = NULL WHERE id = $own"
    "UPDATE pipeline_worker.runs SET priority = 32767 WHERE id = $own"
    "UPDATE pipeline_worker.pipelines SET paused = true"
    "CREATE POLICY p ON pipeline_worker.schedules FOR SELECT USING (true)"
    "ALTER TABLE pipeline_worker.schedules DISABLE ROW LEVEL SECURITY"
)
for s in "${FORBIDDEN[@]}"; do check_state "attacker refused (42501): $s" attacker 42501 "$s"; done
check_state "the owner cannot edit its own schedule row either (42501)" tenant_a 42501 \
    "UPDATE pipeline_worker.schedules SET pipeline = 'tenant_a_pipe' WHERE name = 'tenant_a_sched'"
pw_check "schedules, run priorities/parking and pipeline flags unchanged" "$before" "$(pw_psql -c "$sum_sql")"
pw_check "no crash in the server log" "" "$(grep -E 'terminated by signal|server process .* was terminated|PANIC' "$PW_LOG" || true)"
pw_finish
