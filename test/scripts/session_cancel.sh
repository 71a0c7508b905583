#!/bin/bash
# cancel_run of a run that an ordinary session executes (claim_run + execute_run, no background workers): the
# step running in that session is interrupted at once and rolled back, execute_run returns 'cancelled'; the
# session's own cancels (pg_cancel_backend) keep working afterwards.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT
PW_WORKERS=0 pw_cluster_start session_cancel
pw_psql <<'SQL' >/dev/null || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE fx (run_id bigint, step text);
CREATE FUNCTION slow(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fx VALUES ((ctx->>'run_id')::bigint, ctx->>'step');
    PERFORM pg_sleep(30);
    RETURN '{}';
END $$;
CREATE FUNCTION quick(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"quick": true}'::jsonb $$;
SELECT pipeline_worker.create_pipeline('slow', '[{"name": "s", "function": "slow"}, {"name": "after", "function": "quick"}]');
SELECT pipeline_worker.create_pipeline('quick', '[{"name": "q", "function": "quick"}]');
SQL
OUT=$(mktemp /tmp/pw-session-cancel.XXXXXX)

r=$(pw_psql -c "SELECT pipeline_worker.create_run('slow')")
# the executing session: claims (committed), then executes in its own statement
(pw_psql -c "SELECT pipeline_worker.claim_run()" -c "SELECT pipeline_worker.execute_run($r)" >"$OUT" 2>&1) &
bg=$!
pw_wait_sql 1 5 "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pipeline_worker.execute_run($r)%'
                   AND wait_event = 'PgSleep'" 0.05 >/dev/null \
    && pw_ok "the session is inside the 30 s step" || pw_fail "the session never reached the step"
start=$(pw_now)
pw_check_sql "cancel_run returns true" t "SELECT pipeline_worker.cancel_run($r)"
wait "$bg"
t=$(pw_elapsed "$start")
pw_lt "$t" 3 && pw_ok "execute_run ended $t s after cancel_run (the step slept 30 s)" \
    || pw_fail "execute_run ended $t s after cancel_run"
pw_check "execute_run returned 'cancelled'" "cancelled" "$(tail -1 "$OUT")"
pw_check_sql "the run is cancelled; the step's effects rolled back; the next step never ran" "cancelled 0 1.1:failed" \
    "SELECT status || ' ' || (SELECT count(*) FROM fx) || ' ' ||
            (SELECT string_agg(position || '.' || attempt || ':' || status, ' ') FROM pipeline_worker.run_steps
              WHERE run_id = $r)
       FROM pipeline_worker.runs WHERE id = $r"

# a session that executed runs keeps PostgreSQL's cancel: pg_cancel_backend interrupts its next statement
q=$(pw_psql -c "SELECT pipeline_worker.create_run('quick')")
(pw_psql -c "SELECT pipeline_worker.claim_run()" -c "SELECT pipeline_worker.execute_run($q)" \
         -c "SELECT pg_sleep(20)" >"$OUT" 2>&1) &
bg=$!
pid=$(pw_wait_row 5 "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' AND state = 'active'" 0.05)
start=$(pw_now)
pw_check_sql "pg_cancel_backend on that session" t "SELECT pg_cancel_backend($pid)"
wait "$bg"
t=$(pw_elapsed "$start")
pw_lt "$t" 3 && pw_ok "its statement was cancelled after $t s" || pw_fail "its statement ran $t s after the cancel"
grep -q 'canceling statement due to user request' "$OUT" && pw_ok "... with PostgreSQL's usual message" \
    || pw_fail "no cancel message: $(cat "$OUT")"
pw_check_sql "the quick run it executed succeeded" succeeded "SELECT status FROM pipeline_worker.runs WHERE id = $q"
rm -f "$OUT"
pw_finish
