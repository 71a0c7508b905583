# shellcheck shell=bash
# The cluster, roles, tenants' and attacker's objects, and helpers of test/scripts/security.sh (sourced by it after
# test/lib/cluster.sh; see the roles and the trap described there). Starts the cluster "security" with 4 workers.
PW_WORKERS=4 pw_cluster_start security
PWNED=/tmp/pw-security-pwned
rm -f "$PWNED"

# q ROLE SQL : the output of SQL run as ROLE (or the error text)
q() { pw_psql -U "$1" -c "$2" 2>&1; }
# sqlstate ROLE SQL... : OK, or the SQLSTATE of the first error (SQL may hold several statements)
sqlstate() {
    local out
    if out=$(printf '\\set VERBOSITY sqlstate\n%s\n;\n' "$2" | pw_psql -U "$1" 2>&1); then
        echo OK
    else
        out=$(echo "$out" | grep -oE 'ERROR: +[0-9A-Z]{5}' | head -n1 | awk '{print $2}')
        echo "${out:-?}"
    fi
}
# check_state DESC ROLE EXPECTED_SQLSTATE SQL
check_state() { pw_check "$1" "$3" "$(sqlstate "$2" "$4")"; }
# submit ROLE PIPELINE [INPUT] : run id (or the error text)
submit() { q "$1" "SELECT pipeline_worker.create_run('$2', '${3:-{\}}')"; }
# wait_as ROLE ID : final status as ROLE sees it
wait_as() { q "$1" "SELECT pipeline_worker.wait_run($2, '30 s')"; }
# run_info ID : status | error (as superuser)
run_info() { pw_psql -c "SELECT status || ' | ' || coalesce(error, '') FROM pipeline_worker.runs WHERE id = $1" 2>&1; }
set_workers() {
    pw_set_conf pipeline_worker.workers "$1"
    local got
    got=$(pw_wait_workers "$1" 20) || pw_fail "pipeline_worker.workers = $1: $got workers after 20 s"
}

# ====================================================================== setup
pw_psql >/dev/null <<'SQL' || pw_die "superuser setup failed"
CREATE EXTENSION pipeline_worker;
CREATE ROLE tenant_a LOGIN NOSUPERUSER;
CREATE ROLE tenant_b LOGIN NOSUPERUSER;
CREATE ROLE attacker LOGIN NOSUPERUSER;
CREATE ROLE pipe_owner LOGIN NOSUPERUSER;
CREATE ROLE pw_admin LOGIN NOSUPERUSER IN ROLE pipeline_worker_admin;
-- a database where untrusted roles may create objects in public (the default before PostgreSQL 15)
GRANT CREATE ON SCHEMA public TO attacker;
CREATE SCHEMA tenant_a AUTHORIZATION tenant_a;
CREATE SCHEMA tenant_b AUTHORIZATION tenant_b;
CREATE SCHEMA attacker AUTHORIZATION attacker;
CREATE SCHEMA shared AUTHORIZATION pipe_owner;
-- one table shared by everybody, each role sees only its own rows
CREATE TABLE public.shared_docs (id serial PRIMARY KEY, owner name NOT NULL DEFAULT current_user, body text NOT NULL);
ALTER TABLE public.shared_docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.shared_docs FORCE ROW LEVEL SECURITY;
CREATE POLICY own_docs ON public.shared_docs USING (owner = current_user) WITH CHECK (owner = current_user);
GRANT SELECT, INSERT ON public.shared_docs TO PUBLIC;
GRANT USAGE ON SEQUENCE public.shared_docs_id_seq TO PUBLIC;
INSERT INTO public.shared_docs (owner, body)
    SELECT 'tenant_a', 'a-doc-' || i FROM generate_series(1, 5) i
    UNION ALL SELECT 'tenant_b', 'b-doc-' || i FROM generate_series(1, 7) i
    UNION ALL SELECT 'postgres', 'root-doc-' || i FROM generate_series(1, 3) i;
CREATE TABLE public.guard_log (run_id bigint, who name DEFAULT current_user);
GRANT SELECT, INSERT ON public.guard_log TO PUBLIC;
SQL

# each tenant: its own table (FORCE RLS: even the other tenant, who may SELECT/INSERT, sees only its own
# rows), its own step function (EXECUTE only for the tenant), its own pipeline
tenant_setup() {
    sed "s/@T@/$1/g; s/@N@/$2/g" <<'SQL' | pw_psql -U "$1" >/dev/null || pw_die "setup of $1 failed"
GRANT USAGE ON SCHEMA @T@ TO PUBLIC;
CREATE TABLE @T@.items (id serial PRIMARY KEY, who name NOT NULL DEFAULT current_user, note text);
ALTER TABLE @T@.items ENABLE ROW LEVEL SECURITY;
ALTER TABLE @T@.items FORCE ROW LEVEL SECURITY;
CREATE POLICY own_items ON @T@.items USING (who = current_user) WITH CHECK (who = current_user);
GRANT SELECT, INSERT ON @T@.items TO PUBLIC;
GRANT USAGE ON SEQUENCE @T@.items_id_seq TO PUBLIC;
INSERT INTO @T@.items (note) SELECT '@T@ item ' || i FROM generate_series(1, @N@) i;
CREATE FUNCTION @T@.step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO @T@.items (note) VALUES ('run ' || (ctx->>'run_id'));
    IF ctx->'input' ? 'boom' THEN RAISE EXCEPTION 'boom requested'; END IF;
    RETURN pg_catalog.jsonb_build_object(
        'user', current_user::text,
        'items', (SELECT count(*) FROM @T@.items),
        'foreign_items', (SELECT count(*) FROM @T@.items WHERE who <> current_user),
        'docs', (SELECT coalesce(jsonb_agg(body ORDER BY body), '[]') FROM public.shared_docs),
        'doc_owners', (SELECT coalesce(jsonb_agg(DISTINCT owner::text), '[]') FROM public.shared_docs));
END $fn$;
REVOKE EXECUTE ON FUNCTION @T@.step(jsonb) FROM PUBLIC;
SELECT pipeline_worker.create_pipeline('@T@_pipe', '[{"name": "step", "function": "@T@.step"}]');
SQL
}
tenant_setup tenant_a 3
tenant_setup tenant_b 4

# the pipeline owner: two steps, the first reads the shared table (unqualified: resolved through the
# worker's search_path), the second reports the GUCs it sees
pw_psql -U pipe_owner >/dev/null <<'SQL' || pw_die "setup of pipe_owner failed"
GRANT USAGE ON SCHEMA shared TO PUBLIC;
CREATE FUNCTION shared.read_docs(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN pg_catalog.jsonb_build_object(
        'user', current_user::text,
        'n', (SELECT count(*) FROM shared_docs),
        'owners', (SELECT coalesce(jsonb_agg(DISTINCT owner::text), '[]') FROM shared_docs),
        'docs', (SELECT coalesce(jsonb_agg(body ORDER BY body), '[]') FROM shared_docs));
END $fn$;
CREATE FUNCTION shared.report(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN pg_catalog.jsonb_build_object(
        'user', current_user::text,
        'read', ctx->'prev',
        'i', ctx->'input'->'i',
        'search_path', current_setting('search_path'),
        'work_mem', current_setting('work_mem'),
        'app_tenant', coalesce(current_setting('app.tenant', true), ''),
        'app_local', coalesce(current_setting('app.local', true), ''),
        'lower', lower('ABC'::text));
END $fn$;
CREATE FUNCTION shared.guarded(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO public.guard_log (run_id) VALUES ((ctx->>'run_id')::bigint);
    RETURN '{"guarded": true}';
END $fn$;
REVOKE EXECUTE ON FUNCTION shared.read_docs(jsonb), shared.report(jsonb), shared.guarded(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shared.read_docs(jsonb), shared.report(jsonb) TO tenant_a, tenant_b;
GRANT EXECUTE ON FUNCTION shared.guarded(jsonb) TO tenant_a;
SELECT pipeline_worker.create_pipeline('shared', '[{"name": "read", "function": "shared.read_docs"},
                                                   {"name": "report", "function": "shared.report"}]');
SELECT pipeline_worker.grant_pipeline('shared', 'tenant_a');
SELECT pipeline_worker.grant_pipeline('shared', 'tenant_b');
SQL
q tenant_a "SELECT pipeline_worker.create_pipeline('a_guarded', '[{\"name\": \"g\", \"function\": \"shared.guarded\"}]')" >/dev/null

# the attacker: a trap table, canaries in its own schema (only reachable with that schema before
# pg_catalog), better-matching operators/functions in public for what the extension's own SQL compares
# (oid = integer, regrole = regrole, integer * interval), its step functions and pipelines
pw_psql -U attacker >/dev/null <<'SQL' || pw_die "setup of attacker failed"
GRANT USAGE ON SCHEMA attacker TO PUBLIC;
CREATE TABLE attacker.trap (at timestamptz DEFAULT clock_timestamp(), tag text, cu name DEFAULT current_user,
                            su name DEFAULT session_user, bt text, detail text);
GRANT SELECT, INSERT ON attacker.trap TO PUBLIC;
CREATE FUNCTION attacker.note(t text) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO attacker.trap (tag, bt, detail) VALUES (t,
        (SELECT a.backend_type FROM pg_catalog.pg_stat_activity a
          WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()),
        pg_catalog.current_setting('app.phase', true));
END $fn$;

-- shadows in the attacker's schema
CREATE TABLE attacker.shared_docs (id int, owner name, body text);
INSERT INTO attacker.shared_docs VALUES (1, 'attacker', 'FAKE-DOC');
GRANT SELECT ON attacker.shared_docs TO PUBLIC;
CREATE FUNCTION attacker.lower(t text) RETURNS text LANGUAGE plpgsql AS $fn$
BEGIN PERFORM attacker.note('attacker.lower(text)'); RETURN 'pwned'; END $fn$;
CREATE FUNCTION attacker.eq_text(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN PERFORM attacker.note('attacker.=(text,text)'); RETURN a OPERATOR(pg_catalog.=) b; END $fn$;
CREATE OPERATOR attacker.= (LEFTARG = text, RIGHTARG = text, FUNCTION = attacker.eq_text);
CREATE FUNCTION attacker.eq_int8(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN PERFORM attacker.note('attacker.=(bigint,bigint)'); RETURN a OPERATOR(pg_catalog.=) b; END $fn$;
CREATE OPERATOR attacker.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = attacker.eq_int8);

-- shadows in public (they return the right answers: a stealthy attack)
CREATE FUNCTION public.eq_oid_int4(a oid, b integer) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN PERFORM attacker.note('public.=(oid,integer)'); RETURN a OPERATOR(pg_catalog.=) b::oid; END $fn$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.eq_oid_int4);
CREATE FUNCTION public.eq_regrole(a regrole, b regrole) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN PERFORM attacker.note('public.=(regrole,regrole)'); RETURN a::oid OPERATOR(pg_catalog.=) b::oid; END $fn$;
CREATE OPERATOR public.= (LEFTARG = regrole, RIGHTARG = regrole, FUNCTION = public.eq_regrole);
CREATE FUNCTION public.mul_int4_interval(a integer, b interval) RETURNS interval LANGUAGE plpgsql AS $fn$
BEGIN PERFORM attacker.note('public.*(integer,interval)'); RETURN a::float8 OPERATOR(pg_catalog.*) b; END $fn$;
CREATE OPERATOR public.* (LEFTARG = integer, RIGHTARG = interval, FUNCTION = public.mul_int4_interval);
CREATE FUNCTION public.jsonb_build_object(k text, v text) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN PERFORM attacker.note('public.jsonb_build_object(text,text)'); RETURN pg_catalog.jsonb_build_object(k, v); END $fn$;
CREATE FUNCTION public.lower(t text) RETURNS text LANGUAGE plpgsql AS $fn$
BEGIN PERFORM attacker.note('public.lower(text)'); RETURN 'pwned'; END $fn$;

-- step functions
CREATE FUNCTION attacker.esc(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE ctx->'input'->>'sql';
    PERFORM attacker.note('escalation statement succeeded: ' || (ctx->'input'->>'sql'));
    RETURN pg_catalog.jsonb_build_object('user', current_user::text, 'session_user', session_user::text);
END $fn$;
CREATE FUNCTION attacker.peek(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN pg_catalog.jsonb_build_object(
        'user', current_user::text,
        'runs_of_others', (SELECT count(*) FROM pipeline_worker.runs WHERE submitted_by::text <> current_user::text),
        'steps_of_others', (SELECT count(*) FROM pipeline_worker.run_steps s WHERE NOT EXISTS (
             SELECT 1 FROM pipeline_worker.runs r WHERE r.id = s.run_id AND r.submitted_by::text = current_user::text)),
        'pipelines_of_others', (SELECT count(*) FROM pipeline_worker.pipelines WHERE owner::text <> current_user::text),
        'items_a', (SELECT count(*) FROM tenant_a.items),
        'items_b', (SELECT count(*) FROM tenant_b.items),
        'docs', (SELECT count(*) FROM public.shared_docs));
END $fn$;
CREATE FUNCTION attacker.set_gucs(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE res jsonb;
BEGIN
    SET search_path = attacker, pg_catalog;
    SET work_mem = '1234kB';
    PERFORM pg_catalog.set_config('app.tenant', 'attacker', false);
    PERFORM pg_catalog.set_config('app.local', 'attacker-local', true);
    res := pg_catalog.jsonb_build_object('search_path', pg_catalog.current_setting('search_path'),
             'work_mem', pg_catalog.current_setting('work_mem'), 'lower', lower('ABC'::text));
    IF (ctx->'input'->>'fail')::boolean THEN RAISE EXCEPTION 'failing after setting GUCs'; END IF;
    RETURN res;
END $fn$;
CREATE FUNCTION attacker.report(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN pg_catalog.jsonb_build_object(
        'user', current_user::text,
        'search_path', current_setting('search_path'),
        'work_mem', current_setting('work_mem'),
        'app_tenant', coalesce(current_setting('app.tenant', true), ''),
        'app_local', coalesce(current_setting('app.local', true), ''),
        'lower', lower('ABC'::text));
END $fn$;
CREATE FUNCTION attacker.sleepy(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN PERFORM pg_catalog.pg_sleep(1); RETURN '{}'; END $fn$;
CREATE FUNCTION attacker.evil(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM attacker.note('evil step ran, input ' || (ctx->'input')::text);
    RETURN pg_catalog.jsonb_build_object('user', current_user::text,
        'stolen', (SELECT pg_catalog.jsonb_agg(note) FROM tenant_a.items));
END $fn$;
CREATE FUNCTION attacker.flaky(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    IF (ctx->>'attempt')::int < 2 THEN RAISE EXCEPTION 'first attempt fails'; END IF;
    RETURN '{}';
END $fn$;
-- a temporary type outlives the step in the worker's session, and pg_temp is searched first for type names
CREATE FUNCTION attacker.spy_text(v text) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN PERFORM attacker.note('pg_temp.text domain check'); RETURN true; END $fn$;
CREATE FUNCTION attacker.temp_trick(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE 'CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (attacker.spy_text(VALUE))';
    RETURN '{}';
END $fn$;
CREATE FUNCTION attacker.trg() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN PERFORM attacker.note('trigger'); RETURN NEW; END $fn$;
SELECT pipeline_worker.create_pipeline('att_esc', '[{"name": "esc", "function": "attacker.esc"}]');
SELECT pipeline_worker.create_pipeline('att_retry', '[{"name": "f", "function": "attacker.flaky", "max_attempts": 2, "retry_delay_ms": 0}]');
SELECT pipeline_worker.create_pipeline('att_temp', '[{"name": "tmp", "function": "attacker.temp_trick"}]');
SELECT pipeline_worker.create_pipeline('att_peek', '[{"name": "peek", "function": "attacker.peek"}]');
SELECT pipeline_worker.create_pipeline('att_guc', '[{"name": "set", "function": "attacker.set_gucs"},
                                                    {"name": "report", "function": "attacker.report"}]');
SQL

# the workers prepared their SQL when CREATE EXTENSION committed: restart them so that everything they
# prepare from now on sees the attacker's objects
set_workers 0
set_workers 4
pw_info "setup done; attacker objects in place; workers restarted"
