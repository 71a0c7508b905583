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

# A cancel request waits in shared memory for whoever holds the run, also when many come after it: with a ring of
# the 64 latest requests, a parent cancelling hundreds of held children pushed the first ones' requests out, and
# those children ran to their end. Here: a session holds a claimed run in an open transaction; cancel_run of it
# waits for its row; 300 other runs are cancelled meanwhile; then the session executes the run.
h=$(pw_psql -c "SELECT pipeline_worker.create_run('quick', '{\"held\": true}')")
(pw_psql >"$OUT" 2>&1 <<SQL
BEGIN;
SELECT pipeline_worker.claim_run();
DO \$\$ BEGIN
    WHILE (SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'quick' AND metadata ? 'flood'
             AND status = 'cancelled') < 300 LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
END \$\$;
SELECT pipeline_worker.execute_run($h);
COMMIT;
SQL
) &
bg=$!
pw_wait_row 10 "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'DO %flood%' AND state = 'active'" 0.05 >/dev/null \
    || pw_fail "the session did not claim the run"
(pw_psql -c "SELECT pipeline_worker.cancel_run($h)" >"$OUT.cancel" 2>&1) &
bgc=$!
pw_wait_row 10 "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pipeline_worker.cancel_run($h)%' AND wait_event_type = 'Lock'" \
    0.05 >/dev/null || pw_fail "cancel_run did not wait for the held run"
pw_psql -c "SELECT count(pipeline_worker.cancel_run(id)) FROM pipeline_worker.create_runs('quick',
              (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 300)), metadata => '{\"flood\": true}') id" >/dev/null
wait "$bg"
wait "$bgc"
pw_check "the held run's execution saw its cancel request after 300 others" cancelled "$(grep -x 'cancelled\|succeeded' "$OUT" | tail -1)"
pw_check_sql "... it is cancelled, its step never ran" "cancelled 0" \
    "SELECT status || ' ' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $h AND status = 'succeeded')
       FROM pipeline_worker.runs WHERE id = $h"
pw_check "... and cancel_run returned true" t "$(tail -1 "$OUT.cancel")"
rm -f "$OUT" "$OUT.cancel"
pw_finish
