#!/bin/bash
# Security of the 0.2 operations surface: metrics(), metric_samples(), the pipeline_stats view, workers() and its
# database column, purge_runs, the pipeline options "retention" and "notify", the GUCs pipeline_worker.databases /
# max_workers_per_database / retention / enabled, and the DROP / RENAME / SET TABLESPACE / TEMPLATE guard of served
# databases. Attackers: attacker (LOGIN, no grant), creator (LOGIN CREATEDB), mon (pg_monitor), tenant_b (owns b_pipe,
# grantee of tenant_a's a_pipe, attacks tenant_a's pipelines); pw_admin is a member of pipeline_worker_admin.
# Search-path attacks: schema hostile (the attacker's) shadows count(*), min(timestamptz), now(), coalesce(), the
# = and > operators, - (timestamptz) and the tables runs / pipelines; each shadow records its calls in hostile.trap
# (current_user, session_user, phase): a row outside the canary phase means hostile code ran inside our statements.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up security_ops 3 20 "pipeline_worker.recovery_interval_ms = 200" || exit 1
SECRET='S3CR3T-0ps-9f1c'

# q ROLE SQL : the output of SQL run as ROLE in postgres (or the error text); dq ROLE DB SQL : the same in DB
q() { pw_psql -U "$1" -c "$2" 2>&1; }
dq() { pw_psql -U "$1" -d "$2" -c "$3" 2>&1; }
# e ROLE SQL [DB] : "OK", or "SQLSTATE: message" of the first error (SQL may hold several statements; it runs outside a
# function, so ALTER SYSTEM / DROP DATABASE work)
e() {
    local out
    if out=$(printf '\\set VERBOSITY verbose\n%s\n' "$2" | pw_psql -U "$1" -d "${3:-postgres}" 2>&1 >/dev/null); then
        echo OK
    else
        out=$(grep -m1 'ERROR:' <<<"$out" | sed -E 's/^.*ERROR: +//')
        echo "${out:-?}"
    fi
}
# check_err DESC ROLE EXPECTED SQL [DB] : EXPECTED is "SQLSTATE: message" (or a SQLSTATE alone: only the code compared)
check_err() {
    local got
    got=$(e "$2" "$4" "${5:-postgres}")
    [ ${#3} = 5 ] && got=${got%%:*}
    pw_check "$1" "$3" "$got"
}
# err ROLE SQL : "SQLSTATE|message|detail|hint" of SQL run inside a function as ROLE, or "ok"
err() { q "$1" "SELECT public.err_of(\$q\$$2\$q\$)"; }
# the SQL that a psql session with the hostile search_path runs first
HOSTILE="SET search_path = hostile, pg_catalog, public"
phase() { echo "SET app.phase = '$1';"; }
trap_rows() { pw_psql -d "${2:-postgres}" -c "SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT tag || ' as ' || cu || ' (' || coalesce(phase, '-') || ')', '; '), '')
                          FROM hostile.trap WHERE $1"; }

# ====================================================================== setup
pw_psql >/dev/null <<'SQL' || pw_die "superuser setup failed"
CREATE EXTENSION pipeline_worker;
CREATE ROLE tenant_a LOGIN; CREATE ROLE tenant_b LOGIN; CREATE ROLE attacker LOGIN;
CREATE ROLE creator LOGIN CREATEDB; CREATE ROLE mon LOGIN IN ROLE pg_monitor;
CREATE ROLE pw_admin LOGIN IN ROLE pipeline_worker_admin;
CREATE FUNCTION public.err_of(q text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    RETURN concat_ws('|', st, msg, det, hnt);
END $$;
-- the step: fails with the input's "fail" text (message and detail), sleeps, echoes the input
CREATE FUNCTION public.ostep(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF ctx->'input' ? 'fail' THEN
        RAISE EXCEPTION 'failing with %', ctx->'input'->>'fail' USING DETAIL = ctx->'input'->>'fail';
    END IF;
    IF ctx->'input' ? 'sleep' THEN PERFORM pg_sleep((ctx->'input'->>'sleep')::float8); END IF;
    RETURN jsonb_build_object('echo', ctx->'input', 'user', current_user::text);
END $$;
SQL
pw_psql -U tenant_a >/dev/null <<'SQL' || pw_die "tenant_a setup failed"
SELECT pipeline_worker.create_pipeline('a_pipe', '[{"name": "s", "function": "public.ostep"}]', '{"notify": true}');
SELECT pipeline_worker.grant_pipeline('a_pipe', 'tenant_b');
SELECT pipeline_worker.create_pipeline('a_held', '[{"name": "s", "function": "public.ostep"}]');
SELECT pipeline_worker.pause_pipeline('a_held');
SQL
q tenant_b "SELECT pipeline_worker.create_pipeline('b_pipe', '[{\"name\": \"s\", \"function\": \"public.ostep\"}]')" >/dev/null

# hostile_schema DB : the attacker's schema hostile in DB -- shadows that give wrong answers (so a hijack changes
# results) and record every call in hostile.trap
hostile_schema() {
    pw_psql -d "$1" -c "CREATE SCHEMA hostile AUTHORIZATION attacker" >/dev/null || return 1
    pw_psql -U attacker -d "$1" >/dev/null <<'SQL'
GRANT USAGE ON SCHEMA hostile TO PUBLIC;
CREATE TABLE hostile.trap (at timestamptz DEFAULT clock_timestamp(), tag text, cu name DEFAULT current_user,
                           su name DEFAULT session_user, phase text);
GRANT SELECT, INSERT ON hostile.trap TO PUBLIC;
CREATE FUNCTION hostile.note(t text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
BEGIN INSERT INTO hostile.trap (tag, phase) VALUES (t, current_setting('app.phase', true)); END $f$;
CREATE FUNCTION hostile.cnt_sf(s bigint) RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
BEGIN PERFORM hostile.note('count(*)'); RETURN s + 1000; END $f$;
CREATE AGGREGATE hostile.count(*) (SFUNC = hostile.cnt_sf, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION hostile.min_sf(s timestamptz, v timestamptz) RETURNS timestamptz LANGUAGE plpgsql
    SET search_path = pg_catalog AS $f$ BEGIN PERFORM hostile.note('min(timestamptz)'); RETURN '2000-01-01'; END $f$;
CREATE AGGREGATE hostile.min(timestamptz) (SFUNC = hostile.min_sf, STYPE = timestamptz);
CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
BEGIN PERFORM hostile.note('now()'); RETURN '1970-01-01'; END $f$;
CREATE FUNCTION hostile.coalesce(a boolean, b boolean) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog
    AS $f$ BEGIN PERFORM hostile.note('coalesce(boolean,boolean)'); RETURN true; END $f$;
CREATE FUNCTION hostile.eq_text(a text, b text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
BEGIN PERFORM hostile.note('=(text,text)'); RETURN true; END $f$;
CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.eq_text);
CREATE FUNCTION hostile.eq_int8(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
BEGIN PERFORM hostile.note('=(bigint,bigint)'); RETURN true; END $f$;
CREATE OPERATOR hostile.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.eq_int8);
CREATE FUNCTION hostile.gt_tstz(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE plpgsql
    SET search_path = pg_catalog AS $f$ BEGIN PERFORM hostile.note('>(timestamptz,timestamptz)'); RETURN true; END $f$;
CREATE OPERATOR hostile.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.gt_tstz);
CREATE FUNCTION hostile.mi_tstz(a timestamptz, b timestamptz) RETURNS interval LANGUAGE plpgsql
    SET search_path = pg_catalog AS $f$ BEGIN PERFORM hostile.note('-(timestamptz,timestamptz)'); RETURN '1000 years'; END $f$;
CREATE OPERATOR hostile.- (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.mi_tstz);
CREATE TABLE hostile.pipelines (id bigint, name text, paused boolean, owner regrole);
CREATE TABLE hostile.runs (id bigint, pipeline_id bigint, pipeline text, status text, run_at timestamptz,
                           created_at timestamptz, started_at timestamptz, finished_at timestamptz);
INSERT INTO hostile.pipelines VALUES (1, 'FAKE_PIPE', false, 'attacker');
INSERT INTO hostile.runs SELECT i, 1, 'FAKE_PIPE', 'pending', NULL, now(), NULL, NULL FROM generate_series(1, 5) i;
GRANT SELECT ON hostile.pipelines, hostile.runs TO PUBLIC;
-- a non-leakproof probe for the view's WHERE clause
CREATE FUNCTION hostile.peek(t text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 SET search_path = pg_catalog AS $f$
BEGIN PERFORM hostile.note('peek:' || t); RETURN true; END $f$;
SQL
}
# canary DB : in a session with 'hostile, pg_catalog' every shadow does win, so the checks below can bite
canary() {
    pw_psql -U attacker -d "$1" >/dev/null 2>&1 <<SQL
$HOSTILE;
$(phase canary)
SELECT count(*) FROM runs;
SELECT min(x) FROM (VALUES (pg_catalog.now())) v(x);
SELECT now();
SELECT 'a'::text = 'b'::text, 1::bigint = 2::bigint, pg_catalog.now() > pg_catalog.now(), pg_catalog.now() - pg_catalog.now();
SQL
    pw_check "canary in $1: count(*), min, now(), =(text), =(bigint), >, - of the hostile schema win in such a session" 7 \
        "$(pw_psql -d "$1" -c "SELECT count(DISTINCT tag) FROM hostile.trap WHERE phase = 'canary' AND cu::text = 'attacker'")"
    pw_check "canary in $1: unqualified pipelines is the hostile table there" FAKE_PIPE \
        "$(pw_psql -U attacker -d "$1" -c "$HOSTILE; SELECT name FROM pipelines" 2>&1)"
}
hostile_schema postgres || pw_die "hostile schema"

# the attacker's own pipeline: a name that tries to forge Prometheus lines, and a one-second retention
INJ=$'inj"} 1\npipeline_worker_runs_created_total{database="postgres",pipeline="a_pipe"} 999999\n# x\\'
INJ_ESC='inj\"} 1\npipeline_worker_runs_created_total{database=\"postgres\",pipeline=\"a_pipe\"} 999999\n# x\\'
printf '%s\n' "SELECT pipeline_worker.create_pipeline(:'n', '[{\"name\": \"s\", \"function\": \"public.ostep\"}]', '{\"retention\": \"1 second\"}');" \
    "SELECT pipeline_worker.create_run(:'n', '{}');" | pw_psql -U attacker -v n="$INJ" >/dev/null || pw_die "attacker's pipeline"

# the attacker listens on the notify channel while tenant_a's runs (with secrets) finish
LISTEN_OUT=$PW_CLUSTER_DIR/listen.out
pw_psql -U attacker -c "LISTEN pipeline_worker" -c "SELECT pg_sleep(4)" >"$LISTEN_OUT" 2>&1 &
listener=$!
pw_wait_row 5 "SELECT 1 FROM pg_stat_activity WHERE usename = 'attacker' AND wait_event = 'PgSleep'" >/dev/null

# runs carrying the secret in input, metadata, keys, error and result
pw_psql -U tenant_a >/dev/null <<SQL || pw_die "tenant_a's runs"
SELECT pipeline_worker.create_run('a_pipe', '{"k": "$SECRET-input"}', '{"note": "$SECRET-meta"}',
                                  idempotency_key => '$SECRET-idem-' || i, concurrency_key => '$SECRET-ck') FROM generate_series(1, 3) i;
SELECT pipeline_worker.create_run('a_pipe', '{"fail": "$SECRET-error"}', '{"note": "$SECRET-meta"}');
SELECT pipeline_worker.create_run('a_pipe', '{"later": "$SECRET"}', run_at => now() + interval '1 hour') FROM generate_series(1, 2);
SELECT pipeline_worker.create_run('a_held', '{"k": "$SECRET-held"}') FROM generate_series(1, 2);
SQL
pw_psql -U tenant_b >/dev/null <<SQL || pw_die "tenant_b's runs"
SELECT pipeline_worker.create_run('a_pipe', '{"k": "$SECRET-b"}');
SELECT pipeline_worker.create_run('a_pipe', '{}', run_at => now() + interval '1 hour');
SELECT pipeline_worker.create_run('b_pipe', '{}') FROM generate_series(1, 2);
SQL
pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running') AND run_at IS NULL
                  AND pipeline <> 'a_held'" >/dev/null || pw_fail "the setup runs did not finish"
pw_check_sql "(the secret is really in the run tables: input, metadata, keys, result; run and step errors)" "3 1 1" \
    "SELECT (SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'a_pipe' AND status = 'succeeded'
                AND input::text LIKE '%$SECRET%' AND metadata::text LIKE '%$SECRET%' AND result::text LIKE '%$SECRET%'
                AND idempotency_key LIKE '$SECRET%' AND concurrency_key LIKE '$SECRET%')
            || ' ' || (SELECT count(*) FROM pipeline_worker.runs WHERE error LIKE '%$SECRET-error%')
            || ' ' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE error LIKE '%$SECRET-error%')"

# ====================================================================== 1. metrics() and metric_samples()
# (0.1's pipeline_owner was one: 0.2 replaces it with a C function that answers only for pipelines the caller may see)
pw_check_sql "no SECURITY DEFINER function (metrics, metric_samples, workers, purge_runs, pipeline_owner are not)" \
    "0" "SELECT count(*) FROM pg_proc WHERE pronamespace = 'pipeline_worker'::regnamespace AND prosecdef"
pw_check_sql "metrics() and metric_samples() are executable by pg_monitor and pipeline_worker_admin only (and the owner)" \
    "metric_samples:pg_monitor,pipeline_worker_admin,postgres metrics:pg_monitor,pipeline_worker_admin,postgres" \
    "SELECT string_agg(proname || ':' || g, ' ' ORDER BY proname) FROM (
         SELECT p.proname, string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, ','
                                ORDER BY CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END) g
           FROM pg_proc p, aclexplode(p.proacl) a WHERE p.pronamespace = 'pipeline_worker'::regnamespace
            AND p.proname IN ('metrics', 'metric_samples') AND a.privilege_type = 'EXECUTE' GROUP BY p.proname) s"
pw_check_sql "functions PUBLIC may not execute: claim_run, execute_run, metric_samples, metrics, recover_runs, wake_workers" \
    "claim_run,execute_run,metric_samples,metrics,recover_runs,wake_workers" \
    "SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc WHERE pronamespace = 'pipeline_worker'::regnamespace
        AND NOT has_function_privilege('attacker', oid, 'EXECUTE')"
for role in attacker tenant_a creator; do
    pw_check "$role: metrics() is 42501 and says nothing else (no detail, hint, name)" \
        "42501|permission denied for function metrics||" "$(err $role "SELECT pipeline_worker.metrics()")"
    pw_check "$role: metric_samples() is 42501 and says nothing else" \
        "42501|permission denied for function metric_samples||" "$(err $role "SELECT count(*) FROM pipeline_worker.metric_samples()")"
done
check_err "attacker cannot SET ROLE pg_monitor to get them" attacker 42501 "SET ROLE pg_monitor"
m_mon=$(q mon "SELECT pipeline_worker.metrics()")
grep -q '^pipeline_worker_runs_created_total{database="postgres",pipeline="a_pipe"} 8$' <<<"$m_mon" \
    && pw_ok "mon (pg_monitor) may call metrics(): a_pipe's 8 created runs" || pw_fail "metrics() as mon: ${m_mon:0:200}"
pw_check "pw_admin (pipeline_worker_admin) may call metric_samples(): a_pipe's 1 failed run" 1 \
    "$(q pw_admin "SELECT value FROM pipeline_worker.metric_samples() WHERE metric = 'pipeline_worker_runs_finished_total'
                   AND pipeline = 'a_pipe' AND status = 'failed'")"
m_su=$(pw_psql -c "SELECT pipeline_worker.metrics()")
s_mon=$(q mon "SELECT * FROM pipeline_worker.metric_samples()")
pw_check "no run content in metrics() / metric_samples(): input, metadata, keys, error, result (secret occurrences)" "0 0 0" \
    "$(grep -c "$SECRET" <<<"$m_mon") $(grep -c "$SECRET" <<<"$m_su") $(grep -c "$SECRET" <<<"$s_mon")"
pw_check "no role names either (submitters, owners)" 0 "$(grep -Ec 'tenant_a|tenant_b|attacker|pw_admin' <<<"$m_su$s_mon")"
pw_check_sql "labels are only names and fixed words: pipelines of this database, its name, known statuses/kinds/outcomes" 0 \
    "SELECT count(*) FROM pipeline_worker.metric_samples()
      WHERE (pipeline IS NOT NULL AND pipeline NOT IN (SELECT name FROM pipeline_worker.pipelines))
         OR database <> 'postgres'
         OR status NOT IN ('succeeded', 'failed', 'cancelled', 'pending', 'scheduled', 'running', 'waiting', 'idle', 'busy')
         OR kind NOT IN ('function', 'http')
         OR outcome NOT IN ('success', 'client_error', 'server_error', 'timeout', 'network_error', 'cancelled')
         OR metric NOT LIKE 'pipeline_worker\_%'"
# the attacker's pipeline name tries to forge a sample of a_pipe
pw_check "a forged pipeline name cannot add a line: one runs_created_total line for a_pipe, value 8" \
    'pipeline_worker_runs_created_total{database="postgres",pipeline="a_pipe"} 8' \
    "$(grep '^pipeline_worker_runs_created_total{database="postgres",pipeline="a_pipe"}' <<<"$m_su")"
pw_check "... its label is escaped (\\\", \\n, \\\\) on one line" 1 \
    "$(grep -cxF "pipeline_worker_runs_created_total{database=\"postgres\",pipeline=\"$INJ_ESC\"} 1" <<<"$m_su")"
pw_check "... every line of metrics() is a HELP/TYPE comment or a well-formed sample" 0 \
    "$(grep -Evc '^(# (HELP|TYPE) pipeline_worker_[a-z_]+ .+|pipeline_worker_[a-z_]+\{[a-z]+="([^"\\]|\\[\\"n])*"(,[a-z]+="([^"\\]|\\[\\"n])*")*\} -?[0-9.e+]+)$' <<<"$m_su")"

# notifications: they bypass row-level security (documented), so their payload holds ids and status only
wait "$listener"
pw_check "attacker LISTENing gets a_pipe's notifications (documented), with run_id, pipeline, status only" "5 5 0" \
    "$(grep -c '^Asynchronous notification "pipeline_worker"' "$LISTEN_OUT") $(grep -cE 'payload "\{"run_id": [0-9]+, "pipeline": "a_pipe", "status": "(succeeded|failed)"\}"' "$LISTEN_OUT") $(grep -c "$SECRET" "$LISTEN_OUT")"

# hostile search_path. metrics() counts the gauges of its own database itself only when that database was never
# counted or its last count was cheap: each hostile scrape runs in a fresh copy of ops_m, a database that no worker
# serves, so its gauges there can only come from the scrape's own statement, parsed under the hostile search_path.
pw_psql -c "CREATE DATABASE ops_m" >/dev/null || pw_die "CREATE DATABASE ops_m"
pw_psql -d ops_m >/dev/null <<'SQL' || pw_die "ops_m fixtures"
CREATE EXTENSION pipeline_worker;
SELECT pipeline_worker.create_pipeline('m_pipe', '[{"name": "s", "function": "pg_catalog.jsonb_strip_nulls"}]');
SELECT pipeline_worker.create_run('m_pipe', '{}') FROM generate_series(1, 2);
SELECT pipeline_worker.create_run('m_pipe', '{}', run_at => now() + interval '1 hour');
SQL
hostile_schema ops_m || pw_die "hostile schema in ops_m"
canary ops_m
n=0
for call in "mon|metrics()" "postgres|metrics()" "mon|* FROM pipeline_worker.metric_samples()" "postgres|* FROM pipeline_worker.metric_samples()"; do
    n=$((n + 1)) who=${call%%|*} fn=${call#*|}
    [ "$fn" = "metrics()" ] && fn="pipeline_worker.metrics()"
    pw_psql -c "CREATE DATABASE ops_m$n TEMPLATE ops_m" >/dev/null || pw_fail "CREATE DATABASE ops_m$n"
    printf '%s\n' "$HOSTILE;" "$(phase "scrape")" "SELECT $fn;" | pw_psql -U "$who" -d "ops_m$n" >"$PW_CLUSTER_DIR/hostile_$n" 2>&1
done
m_clean=$(q mon "SELECT pipeline_worker.metrics()")
s_clean=$(q mon "SELECT * FROM pipeline_worker.metric_samples()")
# (workers' states and the oldest pending age move by themselves, ops_m* are compared with the truth)
stable() { grep -Ev '^pipeline_worker_(workers|oldest_pending_seconds)[{|]|ops_m' "$@"; }
n=0
for call in "mon|metrics()" "postgres|metrics()" "mon|metric_samples()" "postgres|metric_samples()"; do
    n=$((n + 1)) who=${call%%|*} fn=${call#*|}
    f=$PW_CLUSTER_DIR/hostile_$n
    clean=$m_clean
    [ "$fn" = "metric_samples()" ] && clean=$s_clean
    if [ "$fn" = "metrics()" ]; then
        got=$(for st in pending scheduled running; do
                  grep "^pipeline_worker_runs{database=\"ops_m$n\",pipeline=\"m_pipe\",status=\"$st\"}" "$f" | awk '{print $2}'
              done | xargs)
        age=$(grep "^pipeline_worker_oldest_pending_seconds{database=\"ops_m$n\",pipeline=\"m_pipe\"}" "$f" | awk '{print $2}')
    else
        got=$(for st in pending scheduled running; do
                  grep "^pipeline_worker_runs|ops_m$n|m_pipe|$st|" "$f" | awk -F'|' '{print $NF}'
              done | xargs)
        age=$(grep "^pipeline_worker_oldest_pending_seconds|ops_m$n|m_pipe|" "$f" | awk -F'|' '{print $NF}')
    fi
    pw_check "hostile search_path, $who, $fn: the scrape counted ops_m$n's runs right (2 pending, 1 scheduled, 0 running)" \
        "2 1 0" "$got"
    pw_lt 0 "${age:-0}" && pw_lt "${age:-0}" 300 && pw_ok "... and the oldest pending age is sane ($age s)" \
        || pw_fail "... oldest pending age '$age'"
    pw_check "... counters and gauges of postgres unchanged" "$(stable <<<"$clean")" "$(stable "$f")"
    pw_check "... no hostile function or operator ran inside it" "0 " "$(trap_rows "phase IS DISTINCT FROM 'canary'" "ops_m$n")"
done

# ====================================================================== 2. pipeline_stats
pw_check_sql "pipeline_stats is security_invoker" "{security_invoker=true}" \
    "SELECT reloptions::text FROM pg_class WHERE oid = 'pipeline_worker.pipeline_stats'::regclass"
# (the attacker's pipeline: its name only, its one run is deleted by its one-second retention at any moment)
STATS="SELECT coalesce(string_agg(CASE WHEN pipeline LIKE 'inj%' THEN 'inj' ELSE concat_ws(':', pipeline, pending,
              scheduled, running, succeeded_1h, failed_1h, paused, oldest_pending_age IS NOT NULL) END, ' ' ORDER BY pipeline), '-')
         FROM pipeline_worker.pipeline_stats"
pw_check "tenant_a (owner) sees a_pipe with every run (tenant_b's too), a_held; not b_pipe" \
    "a_held:2:0:0:0:0:t:t a_pipe:0:3:0:4:1:f:f" "$(q tenant_a "$STATS")"
pw_check "tenant_b (grantee of a_pipe) sees only its own runs' counts there: 1 succeeded, 1 scheduled; b_pipe" \
    "a_pipe:0:1:0:1:0:f:f b_pipe:0:0:0:2:0:f:f" "$(q tenant_b "$STATS")"
pw_check "attacker sees its own pipeline only" "inj" "$(q attacker "$STATS")"
pw_check "mon (pg_monitor) sees no pipeline through the view" "-" "$(q mon "$STATS")"
pw_check "pw_admin sees every pipeline and run" \
    "a_held:2:0:0:0:0:t:t a_pipe:0:3:0:4:1:f:f b_pipe:0:0:0:2:0:f:f inj" \
    "$(q pw_admin "$STATS")"
for name in a_pipe a_held b_pipe; do
    pw_check "attacker: pipeline_stats WHERE pipeline = '$name' answers as for a missing one (no existence oracle)" \
        "$(q attacker "SELECT count(*), coalesce(sum(pending + scheduled + succeeded_1h), -1) FROM pipeline_worker.pipeline_stats WHERE pipeline = 'no_such'")" \
        "$(q attacker "SELECT count(*), coalesce(sum(pending + scheduled + succeeded_1h), -1) FROM pipeline_worker.pipeline_stats WHERE pipeline = '$name'")"
done
q attacker "$(phase peek) SELECT count(*) FROM pipeline_worker.pipeline_stats WHERE hostile.peek(pipeline)
            AND hostile.peek(pipeline || ':' || pending || ':' || succeeded_1h)" >/dev/null
pw_check "a non-leakproof function in WHERE sees only the attacker's own rows" "2 0" \
    "$(pw_psql -c "SELECT count(*) || ' ' || count(*) FILTER (WHERE tag NOT LIKE 'peek:inj%') FROM hostile.trap WHERE phase = 'peek'")"
ex=$(q attacker "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM pipeline_worker.pipeline_stats WHERE pipeline = 'a_pipe'")
grep -q 'Rows Removed by Filter' <<<"$ex" && pw_info "note: EXPLAIN ANALYZE on pipeline_stats (as on the pipelines table) shows 'Rows Removed by Filter' for another role's pipeline name: PostgreSQL's row-level security does not hide that"
# (the rewriter refuses before the privilege check: not automatically updatable, for every role)
for w in "insert into|INSERT INTO pipeline_worker.pipeline_stats (pipeline) VALUES ('x')" \
         "update|UPDATE pipeline_worker.pipeline_stats SET paused = true" "delete from|DELETE FROM pipeline_worker.pipeline_stats"; do
    for role in attacker pw_admin postgres; do
        check_err "$role cannot ${w%%|*} the view" "$role" "55000: cannot ${w%%|*} view \"pipeline_stats\"" "BEGIN; ${w#*|}; ROLLBACK"
    done
done
check_err "attacker cannot turn security_invoker off" attacker "42501: must be owner of view pipeline_stats" \
    "ALTER VIEW pipeline_worker.pipeline_stats SET (security_invoker = false)"
check_err "attacker cannot attach a rule to the view" attacker "42501: must be owner of view pipeline_stats" \
    "CREATE RULE r AS ON INSERT TO pipeline_worker.pipeline_stats DO INSTEAD NOTHING"
check_err "attacker cannot replace the view" attacker "42501: permission denied for schema pipeline_worker" \
    "CREATE OR REPLACE VIEW pipeline_worker.pipeline_stats AS SELECT 1"
pw_check_sql "the view is intact (security_invoker, same columns)" "{security_invoker=true} 12" \
    "SELECT reloptions::text || ' ' || (SELECT count(*) FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0)
       FROM pg_class c WHERE oid = 'pipeline_worker.pipeline_stats'::regclass"
canary postgres
STATS_ALL="SELECT pipeline, pending, scheduled, running, waiting, succeeded_1h, failed_1h, cancelled_1h, p50_duration_1h,
                  p95_duration_1h, paused, oldest_pending_age IS NULL FROM pipeline_worker.pipeline_stats ORDER BY pipeline;"
for who in tenant_a postgres; do
    hostile=$(printf '%s\n' "$HOSTILE;" "$(phase "stats-$who")" "$STATS_ALL" | pw_psql -U $who 2>&1)
    pw_check "hostile search_path, $who: pipeline_stats unchanged" "$(q $who "$STATS_ALL")" "$hostile"
done
pw_check "no hostile function or operator ran inside pipeline_stats" "0 " "$(trap_rows "phase LIKE 'stats-%'")"

# ====================================================================== 3. GUCs of 0.2
conf_now() { pw_psql -c "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings
                          WHERE name IN ('pipeline_worker.databases', 'pipeline_worker.max_workers_per_database',
                                         'pipeline_worker.retention', 'pipeline_worker.enabled',
                                         'pipeline_worker.vacuum_interval_ms')"; }
conf_before=$(conf_now)
for g in "databases:'attacker_db'" "max_workers_per_database:'1'" "retention:'1 second'" "enabled:'off'" \
         "vacuum_interval_ms:'1'"; do
    n=pipeline_worker.${g%%:*} v=${g#*:}
    for role in attacker creator mon; do
        check_err "$role: SET $n (reload-only)" $role "55P02: parameter \"$n\" cannot be changed now" "SET $n = $v"
    done
    check_err "attacker: set_config('$n')" attacker "55P02: parameter \"$n\" cannot be changed now" \
        "SELECT set_config('$n', $v::text, false)"
    check_err "attacker: RESET $n" attacker "55P02: parameter \"$n\" cannot be changed now" "RESET $n"
    check_err "attacker: ALTER SYSTEM SET $n" attacker "42501: permission denied to set parameter \"$n\"" "ALTER SYSTEM SET $n = $v"
    check_err "creator: ALTER SYSTEM RESET $n" creator "42501: permission denied to set parameter \"$n\"" "ALTER SYSTEM RESET $n"
    check_err "attacker: ALTER ROLE attacker SET $n" attacker "55P02: parameter \"$n\" cannot be changed now" \
        "ALTER ROLE attacker SET $n = $v"
    check_err "attacker: ALTER ROLE tenant_a SET $n" attacker "42501: permission denied" "ALTER ROLE tenant_a SET $n = $v"
    check_err "attacker: ALTER DATABASE postgres SET $n" attacker "42501: must be owner of database postgres" \
        "ALTER DATABASE postgres SET $n = $v"
done
for bad in "databases:a,,b" "databases:a,*" "databases: , " "databases:$(printf 'x%.0s' {1..64})" \
           "retention:0" "retention:abc" "retention:-5 days"; do
    n=pipeline_worker.${bad%%:*} v=${bad#*:}
    check_err "superuser: ALTER SYSTEM SET $n = '${v:0:20}' is refused" postgres \
        "22023: invalid value for parameter \"$n\": \"$v\"" "ALTER SYSTEM SET $n = '$v'"
done
check_err "superuser: max_workers_per_database = 0 is refused" postgres \
    "22023: invalid value for parameter \"pipeline_worker.max_workers_per_database\": 0" \
    "ALTER SYSTEM SET pipeline_worker.max_workers_per_database = 0"
check_err "superuser: max_workers_per_database = -2 is refused" postgres 22023 "ALTER SYSTEM SET pipeline_worker.max_workers_per_database = -2"
check_err "superuser: enabled = 'maybe' is refused" postgres 22023 "ALTER SYSTEM SET pipeline_worker.enabled = 'maybe'"
check_err "superuser: vacuum_interval_ms = -1 is refused" postgres 22023 "ALTER SYSTEM SET pipeline_worker.vacuum_interval_ms = -1"
check_err "even a superuser cannot SET databases in a session" postgres 55P02 "SET pipeline_worker.databases = 'x'"
pw_psql -c "SELECT pg_reload_conf()" >/dev/null; sleep 0.2
pw_check "settings unchanged, nothing written to postgresql.auto.conf" "$conf_before 0" \
    "$(conf_now) $(grep -c pipeline_worker "$PW_DATA/postgresql.auto.conf")"

# ====================================================================== 4. retention option and purge_runs
check_err "tenant_b cannot set a retention on tenant_a's pipeline" tenant_b 42501 \
    "SELECT pipeline_worker.alter_pipeline('a_pipe', '{\"retention\": \"1 second\"}')"
a_finished="SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'a_pipe' AND status IN ('succeeded', 'failed')"
pw_check "the attacker's one-second retention deletes its own finished run (the retention pass ran)" 0 \
    "$(pw_wait_sql 0 15 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline LIKE 'inj%'" 0.2)"
pw_check "... and no other pipeline's finished run (pipeline_worker.retention is 7 days)" "5 2" \
    "$(pw_psql -c "$a_finished") $(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'b_pipe'")"
for role in tenant_b attacker; do
    real=$(err $role "SELECT pipeline_worker.purge_runs('0', 'a_pipe')")
    ghost=$(err $role "SELECT pipeline_worker.purge_runs('0', 'ghost_pipe')")
    pw_check "$role: purge_runs of tenant_a's pipeline is 42501" 42501 "${real%%|*}"
    pw_check "$role: ... and answers exactly as for a missing pipeline" "${ghost//ghost_pipe/@}" "${real//a_pipe/@}"
done
pw_check "... nothing of a_pipe was deleted" 5 "$(pw_psql -c "$a_finished")"
pw_check "tenant_b: purge_runs('0') (every pipeline it owns) deletes b_pipe's 2 runs only" 2 \
    "$(q tenant_b "SELECT pipeline_worker.purge_runs('0')")"
pw_check "... tenant_b's own run on a_pipe and tenant_a's runs are kept; b_pipe is empty" "5 1 0" \
    "$(pw_psql -c "$a_finished") $(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'a_pipe' AND submitted_by = 'tenant_b'::regrole AND status = 'succeeded'") $(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'b_pipe'")"
pw_check "attacker: purge_runs('0') deletes nothing of others" "0 5" \
    "$(q attacker "SELECT pipeline_worker.purge_runs('0')") $(pw_psql -c "$a_finished")"
# name reuse: tenant_a drops a pipeline with a finished run; the attacker takes the name and purges it
pw_psql >/dev/null <<'SQL' || pw_fail "name-reuse setup failed"
SET ROLE tenant_a;
SELECT pipeline_worker.create_pipeline('reuse_p', '[{"name": "s", "function": "public.ostep"}]');
SELECT pipeline_worker.create_run('reuse_p', '{}');
SQL
reuse_id=$(pw_psql -c "SELECT max(id) FROM pipeline_worker.runs WHERE pipeline = 'reuse_p'")
pw_check "(tenant_a's reuse_p run succeeded)" succeeded "$(pw_wait_run "$reuse_id" 10)"
q tenant_a "SELECT pipeline_worker.drop_pipeline('reuse_p')" >/dev/null
q attacker "SELECT pipeline_worker.create_pipeline('reuse_p', '[{\"name\": \"s\", \"function\": \"public.ostep\"}]')" >/dev/null
pw_check "attacker owning a new reuse_p: purge_runs('0', 'reuse_p') deletes 0, tenant_a's old run stays" "0 1" \
    "$(q attacker "SELECT pipeline_worker.purge_runs('0', 'reuse_p')") $(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE id = $reuse_id")"
pw_check "pw_admin may purge a_pipe (its 5 finished runs)" 5 "$(q pw_admin "SELECT pipeline_worker.purge_runs('0', 'a_pipe')")"

# ====================================================================== 5. served databases: guard, workers()
# dbq DB SQL : a value from DB (superuser)
dbq() { pw_psql -d "$1" -c "$2"; }
fixtures() {
    pw_psql -d "$1" >/dev/null <<'SQL'
CREATE EXTENSION pipeline_worker;
CREATE TABLE public.effects (run_id bigint, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.slow(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.effects (run_id) VALUES ((ctx->>'run_id')::bigint);
    PERFORM pg_sleep(COALESCE((ctx->'input'->>'sleep')::float8, 0));
    RETURN jsonb_build_object('db', current_database());
END $$;
SELECT pipeline_worker.create_pipeline('p', '[{"name": "a", "function": "public.slow"}]');
SQL
}
# pids_in DB : pids of the workers connected to DB (pg_stat_activity); wpids_in DB : the same from workers()
pids_in() { pw_psql -c "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_stat_activity
                        WHERE backend_type = 'pipeline_worker' AND datname = '$1'"; }
wpids_in() { pw_psql -c "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pipeline_worker.workers()
                         WHERE database = '$1'"; }
# in_step DB ID : wait until run ID of DB is executing its sleep
in_step() {
    pw_wait_sql 1 10 "SELECT count(*) FROM pipeline_worker.workers() w JOIN pg_stat_activity a USING (pid)
                       WHERE w.database = '$1' AND w.run_id = $2 AND a.wait_event = 'PgSleep'" 0.05 >/dev/null
}
# subset A B : every pid of the comma list A is in B
subset() { local p; for p in ${1//,/ }; do [[ ,$2, == *,$p,* ]] || return 1; done; }
# executor DB ID : pid of the worker executing run ID of DB now
executor() { pw_psql -c "SELECT pid FROM pipeline_worker.workers() WHERE database = '$1' AND run_id = $2"; }
# run_ok DB ID PID : "status claims same-worker effects" of run ID in DB, after waiting for it; same-worker: finished by
# PID, the worker that was executing it (a worker keeps its claim uncommitted while a step runs: a run re-executed
# after its worker was terminated may still show claims = 1, never the same worker)
run_ok() { echo "$(dbq "$1" "SELECT pipeline_worker.wait_run($2, '20 s')") $(dbq "$1" "SELECT claims || ' ' || (worker_pid = ${3:-0}) FROM pipeline_worker.runs WHERE id = $2") $(dbq "$1" "SELECT count(*) FROM effects WHERE run_id = $2")"; }

pw_psql -c "CREATE DATABASE ops_b" >/dev/null || pw_die "CREATE DATABASE ops_b"
fixtures ops_b || pw_die "fixtures ops_b"
mkdir -p "$PW_CLUSTER_DIR/ts" && chown "$PW_OS_USER": "$PW_CLUSTER_DIR/ts"
pw_psql -c "CREATE TABLESPACE ops_ts LOCATION '$PW_CLUSTER_DIR/ts'" -c "GRANT CREATE ON TABLESPACE ops_ts TO creator" >/dev/null \
    || pw_die "tablespace"
pw_set_conf pipeline_worker.databases 'postgres, ops_b' || pw_fail "databases = 'postgres, ops_b'"
pw_wait_sql t 10 "SELECT count(*) FILTER (WHERE database = 'ops_b') > 0 AND count(*) FILTER (WHERE database = 'postgres') > 0
                  FROM pipeline_worker.workers()" >/dev/null || pw_fail "ops_b and postgres are not both served"

slow=$(dbq ops_b "SELECT pipeline_worker.create_run('p', '{\"sleep\": 10}')")
in_step ops_b "$slow" || pw_fail "the slow run of ops_b did not start"
sleep 0.3
log_from=$(pw_log_size)
b_pids=$(pids_in ops_b) pg_pids=$(pids_in postgres) exec_pid=$(executor ops_b "$slow")
pw_check "workers().database matches pg_stat_activity.datname for every worker (both databases shown)" "0 2" \
    "$(pw_psql -c "SELECT count(*) FILTER (WHERE a.datname IS DISTINCT FROM w.database) || ' ' || count(DISTINCT w.database)
                   FROM pipeline_worker.workers() w LEFT JOIN pg_stat_activity a USING (pid) WHERE w.pid <> 0")"
pw_check "workers() is executable by PUBLIC (docs/GUIDE.md: no restriction; readable on standbys)" t \
    "$(pw_psql -c "SELECT has_function_privilege('attacker', 'pipeline_worker.workers()', 'EXECUTE')")"
pw_check "... so the attacker, from postgres, sees ops_b's worker and the id of the run it executes" "ops_b|$slow" \
    "$(q attacker "SELECT database, run_id FROM pipeline_worker.workers() WHERE run_id = $slow")"
pw_check "... and every worker of every database" "$(pw_psql -c "SELECT count(*) FROM pipeline_worker.workers()")" \
    "$(q attacker "SELECT count(*) FROM pipeline_worker.workers()")"
pw_info "note: pipeline_worker.databases is readable by every role (SHOW as attacker: '$(q attacker "SHOW pipeline_worker.databases")')"
GUARD=("42501: must be owner of database ops_b|DROP DATABASE ops_b"
       "42501: must be owner of database ops_b|DROP DATABASE IF EXISTS ops_b WITH (FORCE)"
       "42501: must be owner of database ops_b|ALTER DATABASE ops_b RENAME TO ops_b_stolen"
       "42501: must be owner of database ops_b|BEGIN; ALTER DATABASE ops_b RENAME TO ops_b_stolen"
       "42501: must be owner of database ops_b|ALTER DATABASE ops_b SET TABLESPACE ops_ts"
       "42501: permission denied to copy database \"ops_b\"|CREATE DATABASE ops_copy TEMPLATE ops_b"
       "42501: permission denied to copy database \"ops_b\"|CREATE DATABASE ops_copy TEMPLATE ops_b STRATEGY FILE_COPY")
for g in "${GUARD[@]}"; do
    t0=$(pw_now)
    got=$(e creator "${g#*|}")
    el=$(pw_elapsed "$t0")
    pw_check "creator (CREATEDB, not owner): ${g#*|}" "${g%%|*}" "$got"
    pw_lt "$el" 0.8 && pw_ok "... refused at once ($el s: no wait for the workers to leave)" || pw_fail "... took $el s"
done
check_err "attacker (no CREATEDB): CREATE DATABASE ... TEMPLATE ops_b" attacker "42501: permission denied to create database" \
    "CREATE DATABASE ops_copy TEMPLATE ops_b"
pw_check "ops_b's workers are the same processes (pg_stat_activity, workers())" "$b_pids $b_pids" \
    "$(pids_in ops_b) $(wpids_in ops_b)"
pw_check "postgres's workers too" "$pg_pids" "$(pids_in postgres)"
pw_check "the same worker still executes the slow run" "$exec_pid" "$(executor ops_b "$slow")"
pw_check "the slow run finishes, claimed once, by that worker, its effect once" "succeeded 1 true 1" "$(run_ok ops_b "$slow" "$exec_pid")"
pw_check "no worker was terminated for a database command" "" \
    "$(tail -c +$((log_from + 1)) "$PW_LOG" | grep 'terminating the workers of database')"
pw_check_sql "ops_b still exists, not renamed, not copied, in pg_default" "ops_b|pg_default" \
    "SELECT string_agg(d.datname || '|' || t.spcname, ' ') FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
      WHERE d.datname IN ('ops_b', 'ops_b_stolen', 'ops_copy')"

# a served database owned by the attacker (creator): dropping it is its right; nobody else is disturbed
out=$(e creator "CREATE DATABASE att_db")
pw_check "creator creates att_db" OK "$out"
fixtures att_db || pw_die "fixtures att_db"
pw_set_conf pipeline_worker.databases 'postgres, ops_b, att_db' || pw_fail "databases += att_db"
r=$(dbq att_db "SELECT pipeline_worker.create_run('p', '{}')")
pw_check "att_db is served" succeeded "$(dbq att_db "SELECT pipeline_worker.wait_run($r, '10 s')")"
for n in databases max_workers_per_database; do
    check_err "creator, owner of att_db: ALTER DATABASE att_db SET pipeline_worker.$n (reload-only)" creator \
        "55P02: parameter \"pipeline_worker.$n\" cannot be changed now" "ALTER DATABASE att_db SET pipeline_worker.$n = '2'"
done
# docs/GUIDE.md: "Only a command that may succeed does this" -- the owner without CREATEDB may not rename att_db, without
# CREATE on ops_ts may not move it: a run executing there must not be interrupted
pw_psql -c "ALTER ROLE creator NOCREATEDB" -c "REVOKE CREATE ON TABLESPACE ops_ts FROM creator" >/dev/null
for c in "permission denied to rename database|ALTER DATABASE att_db RENAME TO att_db2|without CREATEDB" \
         "permission denied for tablespace ops_ts|ALTER DATABASE att_db SET TABLESPACE ops_ts|without CREATE on ops_ts"; do
    IFS='|' read -r msg cmd who <<<"$c"
    slow=$(dbq att_db "SELECT pipeline_worker.create_run('p', '{\"sleep\": 2}')")
    in_step att_db "$slow" || pw_fail "the slow run of att_db did not start"
    att_pids=$(pids_in att_db) exec_pid=$(executor att_db "$slow") log_from=$(pw_log_size) t0=$(pw_now)
    got=$(e creator "$cmd")
    el=$(pw_elapsed "$t0")
    pw_check "owner $who: $cmd is refused" "42501: $msg" "$got"
    pw_check "... and leaves att_db's workers alone (docs/GUIDE.md: only a command that may succeed moves them; took $el s)" \
        "$att_pids" "$(pids_in att_db)"
    pw_check "... its executing run is not interrupted: finishes claimed once, by the same worker" "succeeded 1 true 1" \
        "$(run_ok att_db "$slow" "$exec_pid")"
    pw_check "... no worker terminated" "" "$(tail -c +$((log_from + 1)) "$PW_LOG" | grep 'terminating the workers of database')"
done
pw_psql -c "ALTER ROLE creator CREATEDB" >/dev/null
pw_wait_sql t 10 "SELECT count(*) > 0 FROM pipeline_worker.workers() WHERE database = 'att_db'" >/dev/null

slow=$(dbq ops_b "SELECT pipeline_worker.create_run('p', '{\"sleep\": 10}')")
in_step ops_b "$slow" || pw_fail "the second slow run of ops_b did not start"
sleep 0.3
b_pids=$(pids_in ops_b) pg_pids=$(pids_in postgres) exec_pid=$(executor ops_b "$slow")
[ -n "$(pids_in att_db)" ] && pw_ok "(att_db has a worker before the DROP: $(pids_in att_db))" || pw_fail "att_db has no worker before the DROP"
t0=$(pw_now)
pw_check "creator drops its own served att_db (without FORCE)" OK "$(e creator "DROP DATABASE att_db")"
pw_info "DROP DATABASE att_db took $(pw_elapsed "$t0") s"
pw_check "att_db is gone and has no worker" "0 0" \
    "$(pw_psql -c "SELECT count(*) FROM pg_database WHERE datname = 'att_db'") $(pw_psql -c "SELECT count(*) FROM pipeline_worker.workers() WHERE database = 'att_db'")"
now_b=$(pids_in ops_b) now_pg=$(pids_in postgres)
subset "$b_pids" "$now_b" && pw_ok "ops_b's workers were not disturbed ($b_pids still there: $now_b)" \
    || pw_fail "ops_b's workers changed: $b_pids -> $now_b"
subset "$pg_pids" "$now_pg" && pw_ok "postgres's workers were not disturbed ($pg_pids still there: $now_pg)" \
    || pw_fail "postgres's workers changed: $pg_pids -> $now_pg"
pw_check "ops_b's slow run finishes, claimed once, by the same worker, its effect once" "succeeded 1 true 1" \
    "$(run_ok ops_b "$slow" "$exec_pid")"

pw_check "no crash in the server log" "" "$(grep -E 'terminated by signal|server process .* was terminated|PANIC' "$PW_LOG" || true)"
pw_finish
