#!/bin/bash
# Workflows under faults: while 300 runs go through a diamond of function steps, a sleep, an event wait, a child run and
# a map step of 10 tasks, 60 runs fan out 10 HTTP requests each (in flight together) and 60 runs have two HTTP
# branches out together while a function branch runs, and 60 runs map over a child pipeline (10 children each) -- events sent before and while the runs wait -- workers are killed with SIGKILL, terminated with
# pg_terminate_backend, and the server is stopped with -m immediate. Afterwards every run has succeeded; every function
# step's and map task's effect happened exactly once; each run has exactly one child; every event was consumed exactly once, by the right step; every
# sleep lasted its full length.
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/../lib/http.sh"
trap pw_http_cleanup EXIT

RUNS=300
HTTP_RUNS=60
pw_http_start
pw_cluster_up wffaults 4 20 "pipeline_worker.http_allowed_hosts = '127.0.0.1'" || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE effects (run_id bigint, step text);
CREATE FUNCTION wff_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects VALUES ((ctx->>'run_id')::bigint, (ctx->>'step') || COALESCE(ctx->>'index', ''));
    PERFORM pg_sleep(0.002);   -- long enough that kills land inside steps
    RETURN jsonb_build_object('step', ctx->'step', 'prev', ctx->'prev');
END $$;
CREATE FUNCTION wff_list(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_agg(g) FROM generate_series(1, 10) g $$;
SELECT pipeline_worker.create_pipeline('wff_kid', '[{"name": "k", "function": "wff_step"}]');
SELECT pipeline_worker.create_pipeline('wff', '[
  {"name": "a", "function": "wff_step"},
  {"name": "b", "function": "wff_step", "depends_on": ["a"]},
  {"name": "c", "function": "wff_step", "depends_on": ["a"]},
  {"name": "nap", "sleep": "1 second", "depends_on": ["b", "c"]},
  {"name": "ev", "wait_for": "go"},
  {"name": "kid", "pipeline": "wff_kid"},
  {"name": "d", "function": "wff_step"},
  {"name": "list", "function": "wff_list"},
  {"name": "sq", "function": "wff_step", "map": true}]');
SQL
psql_retry() { pw_retry 20 pw_psql "$@"; }
# HTTP map tasks in flight together when the kills come
pw_psql -c "SELECT pipeline_worker.create_pipeline('wff_http', '[{\"name\": \"list\", \"function\": \"wff_list\"},
    {\"name\": \"call\", \"map\": true, \"http\": {\"url\": \"$B/delay?ms=300\"}}]')" >/dev/null \
    || pw_die "wff_http fixture failed"
pw_psql -c "SELECT pipeline_worker.create_pipeline('wff_branch', '[
    {\"name\": \"h1\", \"http\": {\"url\": \"$B/delay?ms=300\"}, \"depends_on\": []},
    {\"name\": \"h2\", \"http\": {\"url\": \"$B/delay?ms=300\"}, \"depends_on\": []},
    {\"name\": \"f\", \"function\": \"wff_step\", \"depends_on\": []},
    {\"name\": \"j\", \"function\": \"wff_step\", \"depends_on\": [\"h1\", \"h2\", \"f\"]}]')" >/dev/null \
    || pw_die "wff_branch fixture failed"
psql_retry -c "SELECT count(pipeline_worker.create_run('wff_http', '{}')) FROM generate_series(1, $HTTP_RUNS)" >/dev/null
# map over a child pipeline: 10 children per run, at most 4 unfinished at once
pw_psql -c "SELECT pipeline_worker.create_pipeline('wff_kids', '[{\"name\": \"list\", \"function\": \"wff_list\"},
    {\"name\": \"kids\", \"pipeline\": \"wff_kid\", \"map\": true, \"max_parallel\": 4}]')" >/dev/null \
    || pw_die "wff_kids fixture failed"
psql_retry -c "SELECT count(pipeline_worker.create_run('wff_kids', '{}')) FROM generate_series(1, $HTTP_RUNS)" >/dev/null
psql_retry -c "SELECT count(pipeline_worker.create_run('wff_branch', '{}')) FROM generate_series(1, $HTTP_RUNS)" >/dev/null

# half the runs get their event before they reach the wait (mailbox), half while they wait
psql_retry -c "SELECT count(pipeline_worker.create_run('wff', jsonb_build_object('i', g), idempotency_key => 'k' || g))
               FROM generate_series(1, $RUNS) g" >/dev/null || pw_die "submit failed"
psql_retry -c "SELECT count(pipeline_worker.send_event('wff', 'k' || g, 'go', jsonb_build_object('i', g)))
               FROM generate_series(1, $RUNS, 2) g" >/dev/null || pw_die "early events failed"

kills=0
for i in 1 2 3; do
    sleep 0.3
    pid=$(psql_retry -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND state = 'active' LIMIT 1")
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
done
terms=$(psql_retry -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'")
pw_info "$kills SIGKILLs, $terms terminated"
# the other half's events while the runs sleep or wait, with an immediate stop in the middle
psql_retry -c "SELECT count(pipeline_worker.send_event('wff', 'k' || g, 'go', jsonb_build_object('i', g)))
               FROM generate_series(2, $RUNS, 2) g WHERE g < $RUNS / 2" >/dev/null
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" stop -m immediate -w >/dev/null 2>&1
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >/dev/null 2>&1 || pw_die "restart failed"
psql_retry -c "SELECT count(pipeline_worker.send_event('wff', 'k' || g, 'go', jsonb_build_object('i', g)))
               FROM generate_series(2, $RUNS, 2) g WHERE g >= $RUNS / 2" >/dev/null
[ "$kills" -ge 1 ] && pw_ok "killed workers mid-load ($kills SIGKILLs), terminated $terms, stopped -m immediate" \
    || pw_fail "could not kill workers"

pw_wait_sql "$((RUNS * 2 + HTTP_RUNS * 13))" 120 "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'" 0.5 >/dev/null
pw_check_sql "every run succeeded (and its child)" "$((RUNS * 2))" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded' AND pipeline NOT IN ('wff_http', 'wff_branch', 'wff_kids')
       AND (parent_run_id IS NULL OR parent_run_id IN (SELECT id FROM pipeline_worker.runs WHERE pipeline = 'wff'))"
pw_check_sql "map over a child pipeline: every run succeeded with exactly 10 children, each child's effect once" "$HTTP_RUNS 10 10 0" \
    "SELECT count(*) FILTER (WHERE p.status = 'succeeded') || ' ' || min(k.n) || ' ' || max(k.n) || ' ' ||
            (SELECT count(*) FROM (SELECT e.run_id FROM effects e JOIN pipeline_worker.runs c ON c.id = e.run_id
               JOIN pipeline_worker.runs pp ON pp.id = c.parent_run_id WHERE pp.pipeline = 'wff_kids'
               GROUP BY e.run_id HAVING count(*) <> 1) x)
       FROM pipeline_worker.runs p
       JOIN LATERAL (SELECT count(*) AS n FROM pipeline_worker.runs c WHERE c.parent_run_id = p.id) k ON true
      WHERE p.pipeline = 'wff_kids'"
pw_check_sql "every run with two HTTP branches and a function branch succeeded; f and j once each" "$HTTP_RUNS $((HTTP_RUNS * 2)) 0" \
    "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' ||
            (SELECT count(*) FROM effects e JOIN pipeline_worker.runs b ON b.id = e.run_id WHERE b.pipeline = 'wff_branch') || ' ' ||
            count(*) FILTER (WHERE result->'prev'->'h1'->>'delayed' IS DISTINCT FROM '300'
                               OR result->'prev'->'h2'->>'delayed' IS DISTINCT FROM '300')
       FROM pipeline_worker.runs WHERE pipeline = 'wff_branch'"
pw_check_sql "every HTTP fan-out run succeeded with its 10 answers in order" "$HTTP_RUNS 0" \
    "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' || count(*) FILTER (WHERE jsonb_array_length(result) <> 10
            OR result->9->>'delayed' IS DISTINCT FROM '300') FROM pipeline_worker.runs WHERE pipeline = 'wff_http'"
st=$(srv /stats)
pw_check "every HTTP task and step reached the endpoint under its own idempotency key (repeats after a kill reuse it)" \
    "$((HTTP_RUNS * 12))" "$(srv_stat keys "$st")"
pw_info "HTTP requests: $(srv_stat requests "$st") for $((HTTP_RUNS * 12)) tasks and steps"
pw_check_sql "exactly one child run per run" "$RUNS 1 1" \
    "SELECT count(*) || ' ' || min(n) || ' ' || max(n) FROM (SELECT count(c.id) AS n FROM pipeline_worker.runs p
       LEFT JOIN pipeline_worker.runs c ON c.parent_run_id = p.id WHERE p.pipeline = 'wff' GROUP BY p.id) x"
pw_check_sql "every function step's and map task's effect exactly once (a, b, c, the child's k, d, 10 tasks per run)" "$((RUNS * 15 + HTTP_RUNS * 12)) 0" \
    "SELECT count(*) || ' ' || (SELECT count(*) FROM (SELECT run_id, step FROM effects GROUP BY 1, 2 HAVING count(*) > 1) x)
     FROM effects"
pw_check_sql "every event consumed exactly once, by step ev, its payload the run's" "$RUNS $RUNS 0" \
    "SELECT count(*) || ' ' || count(*) FILTER (WHERE e.position = 5 AND e.consumed_at IS NOT NULL) || ' ' ||
            count(*) FILTER (WHERE s.output IS DISTINCT FROM e.payload)
     FROM pipeline_worker.events e JOIN pipeline_worker.runs r ON r.id = e.run_id
     JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.name = 'ev' AND s.status = 'succeeded'"
pw_check_sql "d got the event's payload as prev" 0 \
    "SELECT count(*) FROM pipeline_worker.runs r JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.name = 'd'
     WHERE s.output->'prev'->'prev' IS DISTINCT FROM jsonb_build_object('i', (r.input->>'i')::int)"
pw_check_sql "every map step's output holds its 10 tasks in order" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'wff' AND jsonb_array_length(result) <> 10 OR pipeline = 'wff' AND result->9->'prev' IS DISTINCT FROM (SELECT jsonb_agg(g) FROM generate_series(1, 10) g)"
pw_check_sql "every sleep lasted at least its second, and succeeded once" "$RUNS 0" \
    "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' ||
            count(*) FILTER (WHERE status = 'succeeded' AND finished_at - started_at < interval '1 second')
     FROM pipeline_worker.run_steps WHERE name = 'nap'"
pw_check_sql "no step row left waiting or running" 0 \
    "SELECT count(*) FROM pipeline_worker.run_steps WHERE status IN ('waiting', 'running')"

# ---------------------------------------------------------------- steps taken up by helpers, under faults
# A step made ready while another branch of the wave runs is taken up by a helper (exec/shared_tasks.cpp,
# extend_help): workers killed while helpers execute such steps, while owners wait for them, and an immediate stop
# lose nothing and repeat no effect. r0 -> {long, b}; b -> {c, d}; {c, d} -> e; {long, e} -> f.
ROUNDS=6
pw_psql >/dev/null <<'SQL' || pw_die "wave fixture failed"
CREATE FUNCTION wff_nap(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects VALUES ((ctx->>'run_id')::bigint, 'wave-' || (ctx->>'step'));
    PERFORM pg_sleep(coalesce((ctx->'input'->>(ctx->>'step'))::float8, 0));
    RETURN jsonb_build_object('step', ctx->'step', 'prev', ctx->'prev');
END $$;
SELECT pipeline_worker.create_pipeline('wff_wave', '[
  {"name": "r0", "function": "wff_nap"},
  {"name": "long", "function": "wff_nap", "depends_on": ["r0"]},
  {"name": "b", "function": "wff_nap", "depends_on": ["r0"]},
  {"name": "c", "function": "wff_nap", "depends_on": ["b"]},
  {"name": "d", "function": "wff_nap", "depends_on": ["b"]},
  {"name": "e", "function": "wff_nap", "depends_on": ["c", "d"]},
  {"name": "f", "function": "wff_nap", "depends_on": ["long", "e"]}]');
SQL
wave_log=$(pw_log_size)
wave_kills=0
WAVES=0
for round in $(seq 1 $ROUNDS); do
    # (one run at a time: the other workers are idle, and help; two in rounds 2 and 5: each owner takes up steps too)
    n=1; [ "$round" = 2 ] || [ "$round" = 5 ] && n=2
    WAVES=$((WAVES + n))
    psql_retry -c "SELECT count(pipeline_worker.create_run('wff_wave', '{\"long\": 0.6, \"b\": 0.05, \"c\": 0.15, \"d\": 0.15, \"e\": 0.05}'))
                   FROM generate_series(1, $n)" >/dev/null
    sleep 0.15  # (b done, c and d under way on helpers, long on its owner)
    case $round in
        1 | 2 | 3)  # a helper executing a step it took up (else any worker executing a step)
            pid=$(psql_retry -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND state = 'active'
                                  ORDER BY query LIKE '%helping%' DESC LIMIT 1")
            [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && wave_kills=$((wave_kills + 1)) ;;
        4) psql_retry -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'" >/dev/null ;;
        5) pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" stop -m immediate -w >/dev/null 2>&1
           pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >/dev/null 2>&1 || pw_die "restart failed" ;;
    esac
    pw_wait_sql "$WAVES" 60 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'wff_wave' AND status = 'succeeded'" 0.2 >/dev/null
done
[ "$wave_kills" -ge 1 ] && pw_ok "waves: $wave_kills SIGKILLs, a pg_terminate_backend of every worker, an immediate stop" \
    || pw_fail "waves: could not kill workers"
pw_wait_sql "$WAVES" 120 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'wff_wave' AND status = 'succeeded'" 0.5 >/dev/null
pw_check_sql "waves: every run succeeded, f with both branches' outputs" "$WAVES $WAVES" \
    "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' ||
            count(*) FILTER (WHERE result->>'step' = 'f' AND result->'prev' ? 'long' AND result->'prev' ? 'e')
       FROM pipeline_worker.runs WHERE pipeline = 'wff_wave'"
pw_info "waves: runs whose c started before their long step ended (taken up by a helper): $(pw_psql -c "
    SELECT count(*) FROM pipeline_worker.run_steps c JOIN pipeline_worker.run_steps l ON l.run_id = c.run_id
     WHERE c.name = 'c' AND l.name = 'long' AND c.status = 'succeeded' AND l.status = 'succeeded'
       AND c.started_at < l.finished_at")"
pw_check "waves: no process crashed (only the kills' own terminations in the log)" "" \
    "$(pw_log_problems "$wave_log" | grep -E 'signal (6|7|11)|Segmentation|Aborted|PANIC' || true)"
pw_check_sql "waves: every step's effect exactly once (7 per run)" "$((WAVES * 7)) 0" \
    "SELECT count(*) || ' ' || (SELECT count(*) FROM (SELECT run_id, step FROM effects WHERE step LIKE 'wave-%'
                                  GROUP BY 1, 2 HAVING count(*) > 1) x)
       FROM effects WHERE step LIKE 'wave-%'"
pw_finish
