#!/bin/bash
# Security and multi-tenancy through the background workers.
#
# Roles: tenant_a and tenant_b (each with its own schema, an RLS-protected table and a step function),
# pipe_owner (owns the pipeline "shared" and grants it to both tenants), attacker, pw_admin (member of
# pipeline_worker_admin). All LOGIN NOSUPERUSER; every psql below connects as the role it tests.
#
# Covered: steps run as the submitter under the submitter's RLS; 1,000 runs of one pipeline alternating
# between the two tenants leak nothing; grants/revokes; EXECUTE re-checked at run time; what each role can
# see; no direct writes or DDL on the extension's tables; HTTP steps need pipeline_worker_http; escalation
# attempts from inside a step; map tasks and independent steps shared with other workers; GUCs set by a step do not leak to the next step/run of the same worker;
# search_path attacks (objects in public -- writable by the attacker, as before PostgreSQL 15 -- and in the
# attacker's own schema first in its search_path); a temporary type created by a step (pg_temp is searched
# first for type names) must not reach later runs of the same worker; pipeline-name reuse.
#
# The attacker's objects record every call in attacker.trap (world-writable), with current_user,
# session_user and backend type: any row written as another role means attacker code ran with that
# role's privileges.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

# the cluster, the roles, their objects and the attacker's, the helpers (q, sqlstate, check_state, submit, ...)
source "$(dirname "$0")/../lib/security_setup.sh"

# ====================================================================== steps run as the submitter, under its RLS
ra=$(submit tenant_a tenant_a_pipe)
rb=$(submit tenant_b tenant_b_pipe)
pw_check "tenant_a's run succeeded" succeeded "$(wait_as tenant_a "$ra")"
pw_check "tenant_b's run succeeded" succeeded "$(wait_as tenant_b "$rb")"
pw_check_sql "tenant_a's step: current_user = tenant_a, only its 5 docs, its RLS on its own table" \
    'tenant_a|["a-doc-1", "a-doc-2", "a-doc-3", "a-doc-4", "a-doc-5"]|["tenant_a"]|4|0' \
    "SELECT concat_ws('|', result->>'user', result->>'docs', result->>'doc_owners', result->>'items', result->>'foreign_items')
       FROM pipeline_worker.runs WHERE id = $ra"
pw_check_sql "tenant_b's step: current_user = tenant_b, only its 7 docs, its RLS on its own table" \
    'tenant_b|7|["tenant_b"]|5|0' \
    "SELECT concat_ws('|', result->>'user', jsonb_array_length(result->'docs'), result->>'doc_owners', result->>'items', result->>'foreign_items')
       FROM pipeline_worker.runs WHERE id = $rb"
pw_check_sql "the runs record their submitters" "tenant_a tenant_b" \
    "SELECT string_agg(submitted_by::text, ' ' ORDER BY id) FROM pipeline_worker.runs WHERE id IN ($ra, $rb)"

# tenant_b and tenant_a's pipeline: not granted, then granted without EXECUTE on the step, then with it
check_state "tenant_b cannot submit to tenant_a's pipeline before a grant (42501)" tenant_b 42501 \
    "SELECT pipeline_worker.create_run('tenant_a_pipe')"
q tenant_a "SELECT pipeline_worker.grant_pipeline('tenant_a_pipe', 'tenant_b')" >/dev/null
rx=$(submit tenant_b tenant_a_pipe)
pw_check "granted pipeline, no EXECUTE on its step function: the run fails" failed "$(wait_as tenant_b "$rx")"
info=$(run_info "$rx")
if echo "$info" | grep -Eiq 'may not execute|permission denied'; then pw_ok "... with a permission error"
else pw_fail "granted pipeline without EXECUTE: expected a permission error, got '$info'"; fi
q tenant_a "GRANT EXECUTE ON FUNCTION tenant_a.step(jsonb) TO tenant_b" >/dev/null
rx2=$(submit tenant_b tenant_a_pipe)
pw_check "with EXECUTE granted: tenant_b's run of tenant_a's pipeline succeeds" succeeded "$(wait_as tenant_b "$rx2")"
pw_check_sql "... it ran as tenant_b: tenant_b's docs, only tenant_b's row of tenant_a.items" 'tenant_b|7|["tenant_b"]|1|0' \
    "SELECT concat_ws('|', result->>'user', jsonb_array_length(result->'docs'), result->>'doc_owners', result->>'items', result->>'foreign_items')
       FROM pipeline_worker.runs WHERE id = $rx2"
pw_check "tenant_a's own table still shows tenant_a only its own 4 rows" 4 "$(q tenant_a "SELECT count(*) FROM tenant_a.items")"
pw_check "tenant_a (the pipeline's owner) sees tenant_b's runs of its pipeline" 2 \
    "$(q tenant_a "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($rx, $rx2)")"
q tenant_a "SELECT pipeline_worker.revoke_pipeline('tenant_a_pipe', 'tenant_b')" >/dev/null
check_state "after revoke_pipeline, tenant_b cannot retry its old failed run instead (42501)" tenant_b 42501 \
    "SELECT pipeline_worker.retry_run($rx)"
check_state "... nor can the owner retry it in tenant_b's name (42501)" tenant_a 42501 \
    "SELECT pipeline_worker.retry_run($rx)"
pw_check "... the run stays failed" failed "$(q tenant_a "SELECT status FROM pipeline_worker.runs WHERE id = $rx")"
q tenant_a "REVOKE EXECUTE ON FUNCTION tenant_a.step(jsonb) FROM tenant_b" >/dev/null
check_state "tenant_b cannot define a pipeline on tenant_a's function without EXECUTE (42501)" tenant_b 42501 \
    "SELECT pipeline_worker.create_pipeline('b_steals', '[{\"name\": \"s\", \"function\": \"tenant_a.step\"}]')"

rg=$(submit tenant_a a_guarded)
pw_check "a_guarded (step function of pipe_owner, EXECUTE granted to tenant_a) succeeds" succeeded "$(wait_as tenant_a "$rg")"
pw_check_sql "... its effect was written as tenant_a" "tenant_a" "SELECT string_agg(who::text, ',') FROM guard_log WHERE run_id = $rg"

# ====================================================================== escalation from inside a step
pids_before=$(pw_worker_pids)
ESC_SQL=(
    "SET ROLE postgres"
    "RESET ROLE"
    "SET SESSION AUTHORIZATION postgres"
    "SELECT pg_catalog.set_config('role', 'none', false)"
    "SELECT pg_catalog.set_config('session_authorization', 'postgres', false)"
    "ALTER SYSTEM SET work_mem = '64MB'"
    "COPY (SELECT 1) TO PROGRAM 'touch $PWNED'"
    "CREATE TEMP TABLE shared_docs (id int, owner name, body text)"
    "LISTEN pw_channel"
    "SELECT pg_catalog.pg_terminate_backend(pid) FROM pipeline_worker.workers() WHERE pid <> pg_catalog.pg_backend_pid()"
    "SELECT pg_catalog.pg_read_file('/etc/passwd')"
    "ALTER ROLE attacker SUPERUSER"
    "GRANT pipeline_worker_admin TO attacker"
    "UPDATE pipeline_worker.runs SET status = 'succeeded'"
    "SELECT pipeline_worker.claim_run()"
)
ESC_PAT=(
    'within security-(restricted operation|definer function)|permission denied to set role'
    'within security-(restricted operation|definer function)'
    'within security-(restricted operation|definer function)|permission denied'
    'within security-(restricted operation|definer function)'
    'within security-(restricted operation|definer function)|permission denied'
    'permission denied|superuser|cannot be executed from a function|cannot run inside a transaction block'
    'pg_execute_server_program|permission denied|superuser'
    'security-restricted'
    'security-restricted'
    'superuser|permission denied'
    'permission denied'
    'permission denied|superuser'
    'permission denied|admin option'
    'permission denied'
    'permission denied'
)
esc_ids=()
for s in "${ESC_SQL[@]}"; do
    esc_ids+=("$(echo "SELECT pipeline_worker.create_run('att_esc', pg_catalog.jsonb_build_object('sql', :'s'))" \
                  | pw_psql -U attacker -v s="$s" 2>&1)")
done
rp=$(submit attacker att_peek)
rr=$(submit attacker att_retry)
for i in "${!ESC_SQL[@]}"; do
    id=${esc_ids[$i]}
    st=$(wait_as attacker "$id")
    info=$(run_info "$id")
    if [ "$st" = failed ] && echo "$info" | grep -Eiq -- "${ESC_PAT[$i]}"; then
        pw_ok "step cannot: ${ESC_SQL[$i]}"
    else
        pw_fail "step cannot: ${ESC_SQL[$i]} (expected a failed run with /${ESC_PAT[$i]}/, got '$st': '$info')"
    fi
done
pw_check "attacker's peek step succeeded" succeeded "$(wait_as attacker "$rp")"
pw_check "attacker's retried step succeeded on its second attempt" "succeeded" "$(wait_as attacker "$rr")"
pw_check_sql "a step of the attacker sees only its own runs/steps/pipelines and no tenant rows" \
    "attacker|0|0|0|0|0|0" \
    "SELECT concat_ws('|', result->>'user', result->>'runs_of_others', result->>'steps_of_others', result->>'pipelines_of_others',
            result->>'items_a', result->>'items_b', result->>'docs')
       FROM pipeline_worker.runs WHERE id = $rp"
pw_check "COPY TO PROGRAM did not run" "absent" "$([ -e "$PWNED" ] && echo present || echo absent)"
pw_check_sql "attacker is still no superuser and no member of pipeline_worker_admin" "false false" \
    "SELECT rolsuper || ' ' || pg_has_role('attacker', 'pipeline_worker_admin', 'MEMBER') FROM pg_roles WHERE rolname = 'attacker'"
pw_check "the workers survived the escalation attempts (same pids)" "$pids_before" "$(pw_worker_pids)"

# ====================================================================== HTTP steps
HTTP_STEP='[{"name": "hook", "http": {"url": "http://127.0.0.1:9/hook", "method": "POST"}}]'
check_state "attacker cannot define an HTTP step (42501)" attacker 42501 \
    "SELECT pipeline_worker.create_pipeline('att_http', '$HTTP_STEP')"
check_state "attacker cannot define a mixed function + HTTP pipeline (42501)" attacker 42501 \
    "SELECT pipeline_worker.create_pipeline('att_http2', '[{\"name\": \"a\", \"function\": \"attacker.peek\"}, {\"name\": \"hook\", \"http\": {\"url\": \"https://example.com/x\"}}]')"
pw_check_sql "nothing was stored" 0 "SELECT count(*) FROM pipeline_worker.pipelines WHERE name IN ('att_http', 'att_http2')"
check_state "attacker cannot grant itself pipeline_worker_http (42501)" attacker 42501 "GRANT pipeline_worker_http TO attacker"
pw_psql -c "GRANT pipeline_worker_http TO tenant_a"
check_state "a member of pipeline_worker_http may define an HTTP step" tenant_a OK \
    "SELECT pipeline_worker.create_pipeline('a_http', '$HTTP_STEP')"
rh=$(submit tenant_a a_http)
pw_check "... its run fails: egress is closed by default" failed "$(wait_as tenant_a "$rh")"
info=$(run_info "$rh")
if echo "$info" | grep -q 'is not allowed by pipeline_worker.http_allowed_hosts (the setting is empty'; then
    pw_ok "... with the allowlist error (nothing is sent while http_allowed_hosts is empty)"
else pw_fail "HTTP run error: got '$info'"; fi
check_state "attacker cannot submit to the HTTP pipeline (42501)" attacker 42501 "SELECT pipeline_worker.create_run('a_http')"
# secret header values: hidden in every view, kept only where no role can read them
SECRET_STEP='[{"name": "call", "http": {"url": "https://example.com/x", "headers": {"Authorization": "Bearer tok-5ecr3t", "X-Plain": "visible"}, "secret_headers": ["Authorization"]}}]'
check_state "a secret header is accepted" tenant_a OK "SELECT pipeline_worker.create_pipeline('a_secret', '$SECRET_STEP')"
pw_check "secret header value not shown in pipelines.steps (owner's view)" "f t t" \
    "$(q tenant_a "SELECT (steps::text LIKE '%tok-5ecr3t%') || ' ' || (steps::text LIKE '%********%') || ' ' || (steps::text LIKE '%visible%') FROM pipeline_worker.pipelines WHERE name = 'a_secret'" | sed 's/true/t/g; s/false/f/g')"
check_state "the owner cannot read pipeline_secrets (42501)" tenant_a 42501 "SELECT * FROM pipeline_worker.pipeline_secrets"
check_state "the attacker cannot read pipeline_secrets (42501)" attacker 42501 "SELECT * FROM pipeline_worker.pipeline_secrets"
pw_check_sql "the value is kept for execution (extension owner only)" "Authorization|Bearer tok-5ecr3t" \
    "SELECT header || '|' || value FROM pipeline_worker.pipeline_secrets s JOIN pipeline_worker.pipelines p ON p.id = s.pipeline_id WHERE p.name = 'a_secret'"
rs=$(submit tenant_a a_secret)
wait_as tenant_a "$rs" >/dev/null
pw_check_sql "secret not in any run, step row or error" 0 \
    "SELECT count(*) FROM pipeline_worker.runs r LEFT JOIN pipeline_worker.run_steps s ON s.run_id = r.id
      WHERE r::text LIKE '%tok-5ecr3t%' OR s::text LIKE '%tok-5ecr3t%'"

# ====================================================================== no direct writes, no DDL on the extension's objects
checksum_sql="SELECT md5(coalesce((SELECT string_agg(x::text, '|' ORDER BY x::text) FROM pipeline_worker.runs x), '')
                      || coalesce((SELECT string_agg(x::text, '|' ORDER BY x::text) FROM pipeline_worker.run_steps x), '')
                      || coalesce((SELECT string_agg(x::text, '|' ORDER BY x::text) FROM pipeline_worker.pipelines x), '')
                      || coalesce((SELECT string_agg(x::text, '|' ORDER BY x::text) FROM pipeline_worker.pipeline_grants x), ''))
                 || ' ' || (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pipeline_worker')
                 || ' ' || (SELECT count(*) FROM pg_rules WHERE schemaname = 'pipeline_worker')
                 || ' ' || (SELECT count(*) FROM pg_policies WHERE schemaname = 'pipeline_worker')
                 || ' ' || (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pipeline_worker')
                 || ' ' || (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pipeline_worker')"
pw_wait_all_finished 20 >/dev/null
before=$(pw_psql -c "$checksum_sql")
own_run=$rp
FORBIDDEN=(
    "INSERT INTO pipeline_worker.runs (pipeline, submitted_by, status) VALUES ('shared', 'tenant_a', 'succeeded')"
    "UPDATE pipeline_worker.runs SET status = 'succeeded', result = '{\"forged\": true}'"
    "UPDATE pipeline_worker.runs SET submitted_by = 'tenant_a' WHERE id = $own_run"
    "DELETE FROM pipeline_worker.runs"
    "TRUNCATE pipeline_worker.runs"
    "SELECT id FROM pipeline_worker.runs FOR UPDATE"
    "BEGIN; LOCK TABLE pipeline_worker.runs IN ACCESS EXCLUSIVE MODE; COMMIT"
    "INSERT INTO pipeline_worker.run_steps (run_id, position, name, status, started_at) VALUES ($ra, 9, 'forged', 'succeeded', now())"
    "UPDATE pipeline_worker.run_steps SET output = '\"forged\"'"
    "DELETE FROM pipeline_worker.run_steps"
    "INSERT INTO pipeline_worker.pipelines (name, steps, owner) VALUES ('forged', '[]', 'attacker')"
    "UPDATE pipeline_worker.pipelines SET owner = 'attacker'"
    "DELETE FROM pipeline_worker.pipelines"
    "INSERT INTO pipeline_worker.pipeline_grants VALUES ('shared', 'attacker')"
    "UPDATE pipeline_worker.pipeline_grants SET grantee = 'attacker'"
    "DELETE FROM pipeline_worker.pipeline_grants"
    "SELECT * FROM pipeline_worker.cancel_requests"
    "INSERT INTO pipeline_worker.cancel_requests (run_id, error) VALUES ($ra, 'x')"
    "DELETE FROM pipeline_worker.cancel_requests"
    "CREATE TRIGGER t BEFORE INSERT OR UPDATE ON pipeline_worker.runs FOR EACH ROW EXECUTE FUNCTION attacker.trg()"
    "CREATE TRIGGER t AFTER INSERT ON pipeline_worker.run_steps FOR EACH ROW EXECUTE FUNCTION attacker.trg()"
    "CREATE RULE r AS ON UPDATE TO pipeline_worker.runs DO ALSO INSERT INTO attacker.trap (tag) VALUES ('rule')"
    "CREATE RULE r AS ON INSERT TO pipeline_worker.pipeline_grants DO INSTEAD NOTHING"
    "CREATE POLICY p ON pipeline_worker.runs FOR SELECT USING (true)"
    "ALTER TABLE pipeline_worker.runs DISABLE ROW LEVEL SECURITY"
    "CREATE INDEX ON pipeline_worker.runs (id)"
    "CREATE TABLE pipeline_worker.evil (i int)"
    "CREATE FUNCTION pipeline_worker.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'"
    "CREATE OR REPLACE FUNCTION pipeline_worker.pipeline_owner(pipeline text) RETURNS regrole LANGUAGE sql AS 'SELECT ''attacker''::regrole'"
    "CREATE EVENT TRIGGER e ON ddl_command_end EXECUTE FUNCTION attacker.trg()"
    "SELECT pipeline_worker.claim_run()"
    "SELECT pipeline_worker.execute_run($ra)"
    "SELECT pipeline_worker.recover_runs()"
    "SELECT pipeline_worker.wake_workers()"
    "GRANT pipeline_worker_admin TO attacker"
    "SELECT pipeline_worker.grant_pipeline('shared', 'attacker')"
    "SELECT pipeline_worker.revoke_pipeline('shared', 'tenant_a')"
    "SELECT pipeline_worker.drop_pipeline('shared')"
    "SELECT pipeline_worker.create_run('shared')"
    "SELECT pipeline_worker.create_run('tenant_a_pipe')"
)
for s in "${FORBIDDEN[@]}"; do
    check_state "attacker refused (42501): $s" attacker 42501 "$s"
done
pw_check "the extension's tables, triggers, rules, policies and objects are unchanged" "$before" "$(pw_psql -c "$checksum_sql")"

# ====================================================================== attacker's schema first in its own search_path
# Extension functions called from such a session must not resolve anything through it: the attacker's
# operators record the phase (app.phase) and the role they ran as.
pw_psql -U attacker >/dev/null 2>&1 <<'SQL'
SET search_path = attacker, pg_catalog;
SELECT set_config('app.phase', 'create_pipeline', false);
SELECT pipeline_worker.create_pipeline('att_sp', '[{"name": "zz", "function": "attacker.sleepy"}]');
SELECT set_config('app.phase', 'grant_pipeline', false);
SELECT pipeline_worker.grant_pipeline('att_sp', 'tenant_a');
SELECT set_config('app.phase', 'revoke_pipeline', false);
SELECT pipeline_worker.revoke_pipeline('att_sp', 'tenant_a');
SELECT set_config('app.phase', 'create_run', false);
SELECT pipeline_worker.create_run('att_sp') AS r \gset
SELECT set_config('app.phase', 'cancel_run', false);
SELECT pipeline_worker.cancel_run(:r);
SELECT set_config('app.phase', 'wait_run', false);
SELECT pipeline_worker.wait_run(:r, '10 s');
SELECT set_config('app.phase', 'retry_run', false);
SELECT pipeline_worker.retry_run(:r);
SELECT set_config('app.phase', 'cancel_run', false);
SELECT pipeline_worker.cancel_run(:r);
SELECT set_config('app.phase', 'drop_pipeline', false);
SELECT pipeline_worker.wait_run(:r, '10 s');
SELECT pipeline_worker.drop_pipeline('att_sp');
SQL
pw_check_sql "attacker session (search_path attacker, pg_catalog) exercised the extension functions" 0 \
    "SELECT count(*) FROM pipeline_worker.pipelines WHERE name = 'att_sp'"
pw_check_sql "extension functions never ran the attacker's operators with elevated privileges" "0 " \
    "SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT tag || ' as ' || cu || ' in ' || coalesce(detail, '?'), '; '), '')
       FROM attacker.trap WHERE su::text = 'attacker' AND cu::text <> 'attacker'"

# ====================================================================== one worker: GUC leaks, EXECUTE revoked after submission
set_workers 0
t1=$(submit attacker att_temp)
g1=$(submit attacker att_guc)
p1=$(submit tenant_a shared '{"i": -1}')
g2=$(submit attacker att_guc '{"fail": true}')
p2=$(submit tenant_b shared '{"i": -2}')
rv=$(submit tenant_a a_guarded)
# while they are pending: the attacker can neither see, wait for nor cancel them
pw_check "attacker: wait_run on tenant_a's run says it does not exist" "ERROR:  run $p1 does not exist" \
    "$(q attacker "SELECT pipeline_worker.wait_run($p1, '1 s')")"
check_state "attacker cannot cancel tenant_b's pending run" attacker 42704 "SELECT pipeline_worker.cancel_run($p2)"
q pipe_owner "REVOKE EXECUTE ON FUNCTION shared.guarded(jsonb) FROM tenant_a" >/dev/null
pw_check_sql "six runs pending, no worker" "6" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($t1, $g1, $p1, $g2, $p2, $rv) AND status = 'pending'"
set_workers 1
for id in $t1 $g1 $p1 $g2 $p2 $rv; do pw_psql -c "SELECT pipeline_worker.wait_run($id, '30 s')" >/dev/null; done
pw_check_sql "one worker executed all six, in order" "1 succeeded succeeded failed succeeded failed" \
    "SELECT count(DISTINCT worker_pid) || ' ' || string_agg(status, ' ' ORDER BY id) FROM pipeline_worker.runs
      WHERE id IN ($t1, $g1, $p1, $g2, $p2, $rv) AND id <> $t1"
pw_check_sql "... the same worker as the attacker's temp-type step ($(run_info "$t1"))" 1 \
    "SELECT count(DISTINCT worker_pid) FROM pipeline_worker.runs WHERE id IN ($t1, $g1, $p1, $g2, $p2, $rv)"
pw_check_sql "a temporary type created by the attacker's step never reaches later tenant runs in the same worker" "0 " \
    "SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT cu::text, ','), '') FROM attacker.trap
      WHERE tag = 'pg_temp.text domain check' AND cu::text <> 'attacker'"
pw_check_sql "the attacker's step did change its GUCs (and its own canary fired)" \
    'attacker, pg_catalog|1234kB|pwned' \
    "SELECT concat_ws('|', output->>'search_path', output->>'work_mem', output->>'lower')
       FROM pipeline_worker.run_steps WHERE run_id = $g1 AND position = 1"
expect_defaults='"$user", public|4MB|||abc'
pw_check_sql "GUCs of a step do not leak into the next step of the run" "$expect_defaults" \
    "SELECT concat_ws('|', result->>'search_path', result->>'work_mem', result->>'app_tenant', result->>'app_local', result->>'lower')
       FROM pipeline_worker.runs WHERE id = $g1"
pw_check_sql "... nor into the next run (tenant_a's, same worker)" "tenant_a|$expect_defaults|5|[\"tenant_a\"]" \
    "SELECT concat_ws('|', result->>'user', result->>'search_path', result->>'work_mem', result->>'app_tenant', result->>'app_local',
            result->>'lower', result->'read'->>'n', result->'read'->>'owners')
       FROM pipeline_worker.runs WHERE id = $p1"
pw_check_sql "a failed step's GUCs do not leak either (tenant_b's next run)" "tenant_b|$expect_defaults|7|[\"tenant_b\"]" \
    "SELECT concat_ws('|', result->>'user', result->>'search_path', result->>'work_mem', result->>'app_tenant', result->>'app_local',
            result->>'lower', result->'read'->>'n', result->'read'->>'owners')
       FROM pipeline_worker.runs WHERE id = $p2"
info=$(run_info "$rv")
if echo "$info" | grep -Eiq '^failed \| .*(may not execute|permission denied)'; then
    pw_ok "EXECUTE revoked after submission: the run fails with a permission error"
else pw_fail "EXECUTE revoked after submission: expected a permission error, got '$info'"; fi
pw_check_sql "... and the step function never ran" 0 "SELECT count(*) FROM guard_log WHERE run_id = $rv"

# ====================================================================== one worker: sequences a step used
# lastval() in a later step of the same worker (another role's) knows nothing of them: not their value, not their name
pw_psql >/dev/null <<'SQL'
CREATE SEQUENCE public.a_secret_seq START 4242;
GRANT USAGE ON SEQUENCE public.a_secret_seq TO tenant_a;
CREATE FUNCTION public.seq_step(ctx jsonb) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog AS
    $$ SELECT pg_catalog.jsonb_build_object('v', pg_catalog.nextval('public.a_secret_seq')) $$;
CREATE FUNCTION public.lastval_probe(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN RETURN pg_catalog.jsonb_build_object('lastval', pg_catalog.lastval());
EXCEPTION WHEN OTHERS THEN RETURN pg_catalog.jsonb_build_object('error', SQLERRM); END $$;
SQL
q tenant_a "SELECT pipeline_worker.create_pipeline('a_seq', '[{\"name\": \"s\", \"function\": \"public.seq_step\"}]')" >/dev/null
q attacker "SELECT pipeline_worker.create_pipeline('att_lastval', '[{\"name\": \"s\", \"function\": \"public.lastval_probe\"}]')" >/dev/null
set_workers 0
s1=$(submit tenant_a a_seq)
s2=$(submit attacker att_lastval)
set_workers 1
for id in $s1 $s2; do pw_psql -c "SELECT pipeline_worker.wait_run($id, '30 s')" >/dev/null; done
pw_check_sql "tenant_a's step used its sequence, then the attacker's ran on the same worker" "4242|1" \
    "SELECT (SELECT result->>'v' FROM pipeline_worker.runs WHERE id = $s1),
            (SELECT count(DISTINCT worker_pid) FROM pipeline_worker.runs WHERE id IN ($s1, $s2))"
pw_check_sql "... whose lastval() knows nothing of it" "lastval is not yet defined in this session" \
    "SELECT concat_ws('|', result->>'lastval', result->>'error') FROM pipeline_worker.runs WHERE id = $s2"

# ====================================================================== one worker: random()'s seed, temporary objects
# A step's setseed() does not make the next role's random() predictable, and a temporary object (a function in
# pg_temp: temporary tables were refused already) cannot be planted for the next role: that step fails.
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION public.seed_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF ctx->'input' ? 'temp' THEN
        EXECUTE 'CREATE FUNCTION pg_temp.planted() RETURNS text LANGUAGE sql AS $b$ SELECT current_user::text $b$';
    END IF;
    PERFORM pg_catalog.setseed(0.42);
    RETURN '{}';
END $$;
CREATE FUNCTION public.seed_probe(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN RETURN pg_catalog.jsonb_build_object('r', pg_catalog.random(),
    'planted', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc WHERE proname = 'planted'),
    'temp_schema', pg_catalog.pg_my_temp_schema()::pg_catalog.regnamespace::text); END $$;
SQL
q tenant_a "SELECT pipeline_worker.create_pipeline('a_seed', '[{\"name\": \"s\", \"function\": \"public.seed_step\"}]')" >/dev/null
q attacker "SELECT pipeline_worker.create_pipeline('att_seed', '[{\"name\": \"s\", \"function\": \"public.seed_probe\"}]')" >/dev/null
seeded=$(pw_psql -c "SELECT setseed(0.42)" -c "SELECT random()" | tail -1)
set_workers 0
r1=$(submit tenant_a a_seed)
r2=$(submit attacker att_seed)
r3=$(submit tenant_a a_seed '{"temp": true}')
r4=$(submit attacker att_seed)
set_workers 1
for id in $r1 $r2 $r3 $r4; do pw_psql -c "SELECT pipeline_worker.wait_run($id, '30 s')" >/dev/null; done
pw_check_sql "tenant_a's setseed() step, then the attacker's, on one worker" "succeeded|1|t" \
    "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r1),
            (SELECT count(DISTINCT worker_pid) FROM pipeline_worker.runs WHERE id IN ($r1, $r2, $r3, $r4)),
            (SELECT finished_at FROM pipeline_worker.runs WHERE id = $r1)
              <= (SELECT finished_at FROM pipeline_worker.runs WHERE id = $r2)"
got=$(pw_psql -c "SELECT result->>'r' FROM pipeline_worker.runs WHERE id = $r2")
[ -n "$got" ] && [ "$got" != "$seeded" ] && pw_ok "... whose random() is not the one tenant_a's seed gives ($seeded)" \
    || pw_fail "the attacker's random() after tenant_a's setseed(0.42): '$got' (that seed gives $seeded)"
case "$(run_info "$r3")" in
    "failed | "*"cannot create temporary objects"*) pw_ok "a step creating a function in pg_temp fails (not left for the next role)";;
    *) pw_fail "a step creating a function in pg_temp: $(run_info "$r3")";;
esac
pw_check_sql "... and the attacker's next step finds no such function, nor a temporary schema" "0|-" \
    "SELECT concat_ws('|', result->>'planted', result->>'temp_schema') FROM pipeline_worker.runs WHERE id = $r4"

# ====================================================================== one worker's transaction: cursors, large objects
# Runs of a batch share the worker's transaction: a cursor or a large-object descriptor a step left open was there for
# the next run -- another role's -- to read (until 2026-12-07; acceptance walk-through), and SET CONSTRAINTS lasted
# over the later runs. Each step's are closed when it ends; SET CONSTRAINTS fails the step.
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION public.leave_open(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE c refcursor := 'left_open';
BEGIN
    IF ctx->'input' ? 'constraints' THEN SET CONSTRAINTS ALL DEFERRED; END IF;
    OPEN c FOR SELECT 'a-secret';
    RETURN pg_catalog.jsonb_build_object('fd', pg_catalog.lo_open((ctx->'input'->>'lo')::oid, 262144));
END $$;
CREATE FUNCTION public.read_left(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE c refcursor := 'left_open'; v text; l text;
BEGIN
    BEGIN FETCH c INTO v; EXCEPTION WHEN OTHERS THEN v := 'none'; END;
    BEGIN l := pg_catalog.convert_from(pg_catalog.loread(0, 100), 'UTF8'); EXCEPTION WHEN OTHERS THEN l := 'none'; END;
    RETURN pg_catalog.jsonb_build_object('fetched', v, 'lo', l);
END $$;
SQL
lo=$(q tenant_a "SELECT lo_from_bytea(0, 'a-lo-secret')")
q tenant_a "SELECT pipeline_worker.create_pipeline('a_open', '[{\"name\": \"s\", \"function\": \"public.leave_open\"}]')" >/dev/null
q attacker "SELECT pipeline_worker.create_pipeline('att_read', '[{\"name\": \"s\", \"function\": \"public.read_left\"}]')" >/dev/null
pw_set_conf pipeline_worker.commit_interval_ms 5000 || pw_fail "set commit_interval_ms"
set_workers 0
owners=(); readers=()
for i in 1 2 3 4 5; do
    owners+=("$(submit tenant_a a_open "{\"lo\": $lo}")"); readers+=("$(submit attacker att_read)")
done
r4=$(submit tenant_a a_open "{\"lo\": $lo, \"constraints\": true}")
set_workers 1
for id in "${owners[@]}" "${readers[@]}" $r4; do pw_psql -c "SELECT pipeline_worker.wait_run($id, '30 s')" >/dev/null; done
pw_set_conf pipeline_worker.commit_interval_ms 20 || pw_fail "reset commit_interval_ms"
own=$(IFS=,; echo "${owners[*]}"); read=$(IFS=,; echo "${readers[*]}")
pw_check_sql "tenant_a's steps leaving a cursor and a large object open, and the attacker's, in shared transactions" t \
    "SELECT EXISTS (SELECT 1 FROM pipeline_worker.runs a JOIN pipeline_worker.runs b ON a.xmin::text = b.xmin::text
                     WHERE a.id IN ($own) AND b.id IN ($read) AND a.finished_at <= b.finished_at)"
pw_check_sql "... the attacker's steps find neither" "5|0" \
    "SELECT count(*) FILTER (WHERE status = 'succeeded') || '|' ||
            count(*) FILTER (WHERE result->>'fetched' <> 'none' OR result->>'lo' <> 'none')
       FROM pipeline_worker.runs WHERE id IN ($read)"
pw_check_sql "... and tenant_a's same step again in a transaction succeeds (its cursor's name is free)" 5 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($own) AND status = 'succeeded'"
case "$(run_info "$r4")" in
    "failed | "*"cannot use SET CONSTRAINTS"*) pw_ok "a step using SET CONSTRAINTS fails (it would last over the batch)";;
    *) pw_fail "a step using SET CONSTRAINTS: $(run_info "$r4")";;
esac

# ====================================================================== 1,000 runs of one pipeline, alternating tenants
set_workers 0
set_workers 4
pw_psql -U attacker -c "DO \$d\$ BEGIN
    FOR i IN 1..100 LOOP
        PERFORM pipeline_worker.create_run('att_guc', pg_catalog.jsonb_build_object('fail', i % 2 = 0, 'bulk', true));
        COMMIT;
        PERFORM pg_catalog.pg_sleep(0.02);
    END LOOP; END \$d\$" >/dev/null 2>&1 &
attacker_job=$!
start=$(pw_now)
pw_psql >/dev/null <<'SQL' || pw_fail "submitting the 1,000 runs failed"
DO $d$
BEGIN
    FOR i IN 1..1000 LOOP
        IF i % 2 = 1 THEN SET ROLE tenant_a; ELSE SET ROLE tenant_b; END IF;
        PERFORM pipeline_worker.create_run('shared', pg_catalog.jsonb_build_object('i', i));
        RESET ROLE;
        IF i % 10 = 0 THEN COMMIT; PERFORM pg_catalog.pg_sleep(0.02); END IF;
    END LOOP;
END $d$;
SQL
wait "$attacker_job"
pw_wait_all_finished 45
pw_info "1,000 alternating runs + 100 attacker GUC runs finished in $(pw_elapsed "$start") s"
res=$(pw_psql <<'SQL'
WITH s AS (
    SELECT r.*, r.submitted_by::text AS sb,
           CASE WHEN (r.input->>'i')::int % 2 = 1 THEN 'tenant_a' ELSE 'tenant_b' END AS expected_sb
      FROM pipeline_worker.runs r
     WHERE r.pipeline = 'shared' AND (r.input->>'i')::int BETWEEN 1 AND 1000)
SELECT concat_ws(' ',
    count(*),
    count(*) FILTER (WHERE status = 'succeeded'),
    count(*) FILTER (WHERE sb <> expected_sb),
    count(*) FILTER (WHERE result->>'user' IS DISTINCT FROM sb OR result->'read'->>'user' IS DISTINCT FROM sb),
    count(*) FILTER (WHERE result->'read'->'owners' IS DISTINCT FROM jsonb_build_array(sb)
                        OR result->'read'->'docs' IS DISTINCT FROM
                           (SELECT jsonb_agg(d.body ORDER BY d.body) FROM public.shared_docs d WHERE d.owner::text = sb)),
    count(*) FILTER (WHERE result->>'search_path' IS DISTINCT FROM '"$user", public' OR result->>'work_mem' IS DISTINCT FROM '4MB'
                        OR result->>'app_tenant' <> '' OR result->>'app_local' <> '' OR result->>'lower' IS DISTINCT FROM 'abc'),
    count(*) FILTER (WHERE result->>'i' IS DISTINCT FROM input->>'i'))
  FROM s;
SQL
)
pw_check "1,000 runs: total, succeeded, wrong submitter, wrong current_user, foreign/missing rows, leaked GUCs, crossed inputs" \
    "1000 1000 0 0 0 0 0" "$res"
pw_check_sql "1,000 runs: every step row ran as the run's submitter" "2000 0" \
    "SELECT count(*) || ' ' || count(*) FILTER (WHERE s.output->>'user' IS DISTINCT FROM r.submitted_by::text)
       FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id
      WHERE r.pipeline = 'shared' AND (r.input->>'i')::int BETWEEN 1 AND 1000"
pw_check_sql "100 attacker GUC runs: 50 succeeded, 50 failed, none leaked into their own second step" "50 50 0" \
    "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' || count(*) FILTER (WHERE status = 'failed') || ' ' ||
            count(*) FILTER (WHERE status = 'succeeded' AND (result->>'work_mem' <> '4MB' OR result->>'lower' <> 'abc'))
       FROM pipeline_worker.runs WHERE pipeline = 'att_guc' AND input ? 'bulk'"
overlap=$(pw_psql -c "SELECT count(DISTINCT worker_pid) FROM pipeline_worker.runs WHERE pipeline = 'att_guc' AND input ? 'bulk'
                        AND worker_pid IN (SELECT worker_pid FROM pipeline_worker.runs WHERE pipeline = 'shared')")
if [ "${overlap:-0}" -ge 1 ] 2>/dev/null; then pw_ok "attacker GUC runs and tenant runs shared $overlap worker(s)"
else pw_fail "attacker GUC runs and tenant runs shared no worker ($overlap): the leak check proves little"; fi
pw_check "tenant_a sees its 501 runs of 'shared', tenant_b its 501" "501 501" \
    "$(q tenant_a "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'shared'") $(q tenant_b "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'shared'")"

# ====================================================================== visibility, per role
visible_expected() {
    pw_psql -c "WITH v AS (SELECT id FROM pipeline_worker.runs
                            WHERE submitted_by::text = '$1'
                               OR pipeline IN (SELECT name FROM pipeline_worker.pipelines WHERE owner::text = '$1'))
                SELECT (SELECT count(*) || '/' || coalesce(sum(id), 0) FROM v) || ' steps '
                    || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id IN (SELECT id FROM v))"
}
visible_got() {
    q "$1" "SELECT (SELECT count(*) || '/' || coalesce(sum(id), 0) FROM pipeline_worker.runs) || ' steps '
                || (SELECT count(*) FROM pipeline_worker.run_steps)"
}
for role in tenant_a tenant_b pipe_owner attacker; do
    pw_check "$role sees exactly the runs (and steps) it submitted or of its pipelines" "$(visible_expected $role)" "$(visible_got $role)"
done
pw_check "pw_admin (pipeline_worker_admin) sees every run and step" \
    "$(pw_psql -c "SELECT (SELECT count(*) || '/' || coalesce(sum(id), 0) FROM pipeline_worker.runs) || ' steps ' || (SELECT count(*) FROM pipeline_worker.run_steps)")" \
    "$(visible_got pw_admin)"
pw_check "attacker reads no other role's runs, outputs, errors, pipelines or grants" "0 0 0 0 0" \
    "$(q attacker "SELECT concat_ws(' ',
        (SELECT count(*) FROM pipeline_worker.runs WHERE submitted_by::text <> 'attacker'),
        (SELECT count(*) FROM pipeline_worker.runs WHERE result::text LIKE '%doc-%' OR input::text LIKE '%\"i\"%' OR error LIKE '%guarded%'),
        (SELECT count(*) FROM pipeline_worker.run_steps WHERE output::text LIKE '%doc-%' OR error LIKE '%may not execute%'),
        (SELECT count(*) FROM pipeline_worker.pipelines WHERE owner::text <> 'attacker'),
        (SELECT count(*) FROM pipeline_worker.pipeline_grants))")"
check_state "attacker cannot retry tenant_a's failed run" attacker 42704 "SELECT pipeline_worker.retry_run($rv)"
pw_check_sql "... it stays failed" failed "SELECT status FROM pipeline_worker.runs WHERE id = $rv"
check_state "pw_admin may manage any pipeline (grant)" pw_admin OK "SELECT pipeline_worker.grant_pipeline('tenant_b_pipe', 'pipe_owner')"
check_state "pw_admin may manage any pipeline (revoke)" pw_admin OK "SELECT pipeline_worker.revoke_pipeline('tenant_b_pipe', 'pipe_owner')"

# ====================================================================== revoke_pipeline
q pipe_owner "SELECT pipeline_worker.revoke_pipeline('shared', 'tenant_b')" >/dev/null
check_state "after revoke_pipeline, tenant_b cannot submit to 'shared' (42501)" tenant_b 42501 "SELECT pipeline_worker.create_run('shared')"
rs=$(submit tenant_a shared '{"i": 0}')
pw_check "tenant_a still can" succeeded "$(wait_as tenant_a "$rs")"
pw_check "tenant_b still sees the runs it submitted" 501 "$(q tenant_b "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'shared'")"

# ====================================================================== pipeline-name reuse
# tenant_a's failed run of a pipeline it then drops; the attacker creates a pipeline with the same name.
q tenant_a "SELECT pipeline_worker.create_pipeline('a_tmp', '[{\"name\": \"step\", \"function\": \"tenant_a.step\"}]')" >/dev/null
rt=$(submit tenant_a a_tmp '{"boom": true, "secret": "a-secret-42"}')
pw_check "tenant_a's run of a_tmp failed" failed "$(wait_as tenant_a "$rt")"
q tenant_a "SELECT pipeline_worker.drop_pipeline('a_tmp')" >/dev/null
check_state "attacker may create a pipeline named like tenant_a's dropped one" attacker OK \
    "SELECT pipeline_worker.create_pipeline('a_tmp', '[{\"name\": \"step\", \"function\": \"attacker.evil\"}]')"
pw_check "... but does not see tenant_a's old runs of that name (input, errors)" "0" \
    "$(q attacker "SELECT count(*) FROM pipeline_worker.runs WHERE submitted_by::text <> 'attacker' OR input::text LIKE '%a-secret%'")"
check_state "... and cannot retry tenant_a's old run under its own definition" attacker 42704 "SELECT pipeline_worker.retry_run($rt)"
pw_wait_all_finished 20 >/dev/null
pw_check_sql "tenant_a's old run was not re-executed" "failed 1" \
    "SELECT status || ' ' || claims FROM pipeline_worker.runs WHERE id = $rt"

# ====================================================================== work shared across workers
# A map's tasks and a graph's independent steps run on idle workers other than the run's own (exec/shared_tasks.cpp):
# there too every task runs as the submitter, under its RLS, with nothing of another tenant visible.
pw_psql -U tenant_a >/dev/null <<'SQL' || pw_fail "tenant_a's shared-work pipelines could not be defined"
CREATE FUNCTION tenant_a.list(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $fn$ SELECT '[1,2,3,4,5,6,7,8]'::jsonb $fn$;
CREATE FUNCTION tenant_a.slow_item(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_sleep(0.1);
    INSERT INTO tenant_a.items (note) VALUES ('shared ' || (ctx->>'run_id'));
    RETURN pg_catalog.jsonb_build_object('user', current_user::text, 'pid', pg_backend_pid(),
        'foreign_items', (SELECT count(*) FROM tenant_b.items) + (SELECT count(*) FROM tenant_a.items WHERE who <> current_user),
        'doc_owners', (SELECT coalesce(jsonb_agg(DISTINCT owner::text), '[]') FROM public.shared_docs));
END $fn$;
REVOKE EXECUTE ON FUNCTION tenant_a.list(jsonb), tenant_a.slow_item(jsonb) FROM PUBLIC;
SELECT pipeline_worker.create_pipeline('a_map', '[{"name": "list", "function": "tenant_a.list"},
  {"name": "each", "function": "tenant_a.slow_item", "map": true}]');
SELECT pipeline_worker.create_pipeline('a_fan', '[{"name": "r", "function": "tenant_a.list"},
  {"name": "x", "function": "tenant_a.slow_item", "depends_on": ["r"]},
  {"name": "y", "function": "tenant_a.slow_item", "depends_on": ["r"]},
  {"name": "z", "function": "tenant_a.slow_item", "depends_on": ["r"]}]');
SQL
pw_wait_sql 4 20 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND state = 'idle'" >/dev/null
rm_=$(submit tenant_a a_map)
pw_check "tenant_a's map run succeeded" succeeded "$(wait_as tenant_a "$rm_")"
pw_check_sql "its 8 tasks ran as tenant_a on several workers, saw none of tenant_b's rows or other owners' docs" \
    "8 tenant_a true 0 [\"tenant_a\"]" \
    "SELECT count(*) || ' ' || string_agg(DISTINCT e->>'user', ',') || ' ' || (count(DISTINCT e->>'pid') > 1) || ' ' ||
            sum((e->>'foreign_items')::int) || ' ' || string_agg(DISTINCT e->>'doc_owners', ',')
       FROM pipeline_worker.runs, jsonb_array_elements(result) e WHERE id = $rm_"
pw_wait_sql 4 20 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND state = 'idle'" >/dev/null
rf=$(submit tenant_a a_fan)
pw_check "tenant_a's graph run succeeded" succeeded "$(wait_as tenant_a "$rf")"
pw_check_sql "its independent steps ran as tenant_a, saw nothing of tenant_b" "tenant_a 0" \
    "SELECT string_agg(DISTINCT v->>'user', ',') || ' ' || sum((v->>'foreign_items')::int)
       FROM pipeline_worker.runs, jsonb_each(result) AS x(k, v) WHERE id = $rf"
pw_check "tenant_b sees none of tenant_a's shared work" 0 \
    "$(q tenant_b "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id IN ($rm_, $rf)")"

# ====================================================================== the trap
pw_check_sql "worker bookkeeping never called the attacker's operators/functions (they would run as superuser)" "0 " \
    "SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT tag || ' as ' || cu, '; '), '')
       FROM attacker.trap WHERE bt = 'pipeline_worker' AND cu::text NOT IN ('attacker', 'tenant_a', 'tenant_b')"
pw_check_sql "extension functions called by other roles (default search_path) never ran attacker code" "0 " \
    "SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT tag || ' as ' || cu || ' in a session of ' || su, '; '), '')
       FROM attacker.trap WHERE bt = 'client backend' AND su::text <> 'attacker'"
pw_check_sql "no tenant step ever ran attacker code through shadowed names or a leaked search_path" "0 " \
    "SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT tag || ' as ' || cu, '; '), '')
       FROM attacker.trap WHERE cu::text IN ('tenant_a', 'tenant_b')
        AND tag NOT LIKE 'evil step ran%' AND tag <> 'pg_temp.text domain check'"
pw_check_sql "no escalation statement ever succeeded inside a step" 0 \
    "SELECT count(*) FROM attacker.trap WHERE tag LIKE 'escalation statement succeeded%'"
pw_info "trap rows by tag/role/backend: $(pw_psql -c "SELECT string_agg(x, '; ') FROM (SELECT tag || ' as ' || cu || ' (' || coalesce(bt, '?') || ') x' || count(*) AS x FROM attacker.trap GROUP BY tag, cu, bt ORDER BY 1) s")"
pw_check "secret header value never in the server log" 0 "$(grep -c 'tok-5ecr3t' "$PW_LOG")"
crashes=$(grep -E 'terminated by signal|server process .* was terminated|PANIC' "$PW_LOG" || true)
pw_check "no crash in the server log" "" "$crashes"
pw_finish
