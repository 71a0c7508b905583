#!/bin/bash
# Workflows (0.2): steps with several dependencies (DAGs) and their context, "if" conditions and skipped steps,
# map steps (a task per element: own rows, attempts, retries; HTTP tasks with their idempotency keys), durable sleeps
# and event waits ("wait_for" + send_event) with the run 'waiting' in between, holding no worker; child pipelines
# (their parents' wake-ups: parent_wakes.sh).
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/../lib/http.sh"
trap pw_http_cleanup EXIT

pw_http_start
pw_cluster_up workflows 2 20 "pipeline_worker.http_allowed_hosts = '127.0.0.1'" || exit 1
source "$(dirname "$0")/../lib/workflows_setup.sh"  # the step functions and pipelines; q, wait_done, ...

# ---------------------------------------------------------------- definitions
definition_error "unknown dependency" 'depends on unknown step "nope"' \
    '[{"name": "a", "function": "wf_num", "depends_on": ["nope"]}]'
definition_error "self-dependency" 'step "a" depends on itself' \
    '[{"name": "a", "function": "wf_num", "depends_on": ["a"]}]'
definition_error "a cycle" 'form a cycle: "c" -> "b" -> "c"' \
    '[{"name": "a", "function": "wf_num"}, {"name": "b", "function": "wf_num", "depends_on": ["a", "c"]}, {"name": "c", "function": "wf_num", "depends_on": ["b"]}]'
definition_error "depends_on not an array" '"depends_on" must be an array' \
    '[{"name": "a", "function": "wf_num", "depends_on": "b"}]'
definition_error "a dependency listed twice" 'twice' \
    '[{"name": "a", "function": "wf_num"}, {"name": "b", "function": "wf_num", "depends_on": ["a", "a"]}]'
definition_error "\"if\" not an object" '"if" must be a JSON object' \
    '[{"name": "a", "function": "wf_num", "if": true}]'
definition_error "a step with two kinds" 'more than one of' \
    '[{"name": "a", "function": "wf_num", "sleep": "1 second"}]'
definition_error "an invalid sleep" 'invalid pipeline definition: step "a": "sleep": invalid interval "soon"' '[{"name": "a", "sleep": "soon"}]'
definition_error "a negative sleep" 'must be an interval from 0 to 365000 days' '[{"name": "a", "sleep": "-5 minutes"}]'
definition_error "a sleep too long to represent" 'interval "400000 years" is too long' '[{"name": "a", "sleep": "400000 years"}]'
definition_error "several unknown dependencies, all named" 'depends on unknown steps "nope", "zz"' \
    '[{"name": "a", "function": "wf_num", "depends_on": ["nope", "zz"]}]'
definition_error "timeout_ms on a sleep" '"timeout_ms" applies to function, http and wait_for steps' \
    '[{"name": "a", "sleep": "1 second", "timeout_ms": 100}]'
definition_error "a step of no kind" 'has none of "function", "http", "pipeline", "sleep", "wait_for"' '[{"name": "a"}]'
definition_error "an empty event name" '"wait_for" must be an event name' '[{"name": "a", "wait_for": ""}]'
definition_error "map on a sleep" '"map" applies to function, http and pipeline steps' '[{"name": "a", "sleep": "1 second", "map": true}]'
definition_error "max_parallel without map" '"max_parallel" applies to map steps only' \
    '[{"name": "a", "function": "wf_num", "max_parallel": 3}]'
definition_error "map on an event wait" '"map" applies to function, http and pipeline steps' \
    '[{"name": "a", "wait_for": "x", "map": true}]'

# ---------------------------------------------------------------- DAGs
r=$(q "SELECT pipeline_worker.create_run('diamond', '{\"k\": 1}')")
wait_done "$r"
pw_check "diamond: succeeded" succeeded "$(q "SELECT status FROM pipeline_worker.runs WHERE id = $r")"
pw_check "diamond: d's prev is {name: output} of its two dependencies" '{"b": 1, "cc": 2}' \
    "$(q "SELECT result->'prev' FROM pipeline_worker.runs WHERE id = $r")"
pw_check "diamond: d's results hold every finished step" '{"a": 1, "b": 1, "cc": 2}' \
    "$(q "SELECT result->'results' FROM pipeline_worker.runs WHERE id = $r")"
# (b and cc are independent: with idle workers they may run at once, on two workers, in either order)
pw_check "diamond: a before b and cc, d last; each once" "a b cc d" \
    "$(q "SELECT string_agg(step, ' ' ORDER BY CASE step WHEN 'a' THEN 0 WHEN 'd' THEN 2 ELSE 1 END, step) || CASE WHEN
              (SELECT at FROM effects WHERE run_id = $r AND step = 'a') < ALL (SELECT at FROM effects WHERE run_id = $r AND step IN ('b', 'cc'))
          AND (SELECT at FROM effects WHERE run_id = $r AND step = 'd') > ALL (SELECT at FROM effects WHERE run_id = $r AND step IN ('b', 'cc'))
          THEN '' ELSE ' (out of order)' END FROM effects WHERE run_id = $r")"
pw_check "diamond: step rows at their array positions" "1:a 2:b 3:cc 4:d" \
    "$(q "SELECT string_agg(position || ':' || name, ' ' ORDER BY position) FROM pipeline_worker.run_steps WHERE run_id = $r")"

r=$(q "SELECT pipeline_worker.create_run('two_sinks', '{}')")
wait_done "$r"
pw_check "two steps nothing depends on: the result is {name: output} of both" '{"x": 1, "yy": 2}' \
    "$(q "SELECT result FROM pipeline_worker.runs WHERE id = $r")"
r=$(q "SELECT pipeline_worker.create_run('backwards', '{\"in\": true}')")
wait_done "$r"
pw_check "a dependency written later in the array runs first; a root's prev is the input" 'first second|{"first": 5}|5' \
    "$(q "SELECT (SELECT string_agg(step, ' ' ORDER BY at) FROM effects WHERE run_id = $r) || '|' || (result->'results')::text || '|' || (result->'prev')::text FROM pipeline_worker.runs WHERE id = $r")"

# ---------------------------------------------------------------- map
r=$(q "SELECT pipeline_worker.create_run('w2', '{\"n\": 100}')")
r0=$(q "SELECT pipeline_worker.create_run('w2', '{\"n\": 0}')")
wait_done "$r"; wait_done "$r0"
pw_check "W2: sum of the squares = n(n+1)(2n+1)/6" "succeeded 338350" "$(q "SELECT status || ' ' || result FROM pipeline_worker.runs WHERE id = $r")"
pw_check "W2: every task's effect exactly once" "100 100 0" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT idx) || ' ' || count(*) FILTER (WHERE v <> (idx + 1) ^ 2) FROM squares WHERE run_id = $r")"
pw_check "W2: one row per task (task = index), the step's own row holds the outputs in element order" \
    "100|0|99|true" \
    "$(q "SELECT count(*) FILTER (WHERE task IS NOT NULL) || '|' || min(task) || '|' || max(task) || '|' ||
                 ((SELECT output FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'square' AND task IS NULL)
                  = (SELECT jsonb_agg(g * g ORDER BY g) FROM generate_series(1, 100) g))
          FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'square'")"
pw_check "an empty array maps to [] at once" "succeeded|[]|0" \
    "$(q "SELECT r.status || '|' || s.output::text || '|' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r0 AND task IS NOT NULL)
          FROM pipeline_worker.runs r JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.name = 'square' WHERE r.id = $r0")"

r=$(q "SELECT pipeline_worker.create_run('flaky_map', '[\"a\", \"b\", \"c\", {\"d\": 1}]')")
wait_done "$r"
pw_check "map: each task has its own attempts (odd ones retried); outputs in element order with item and index" \
    'succeeded|[{"i": 0, "item": "a", "attempt": 1}, {"i": 1, "item": "b", "attempt": 2}, {"i": 2, "item": "c", "attempt": 1}, {"i": 3, "item": {"d": 1}, "attempt": 2}]|6|4' \
    "$(q "SELECT status || '|' || result::text || '|' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND task IS NOT NULL) || '|' || (SELECT count(*) FROM tries WHERE run_id = $r) FROM pipeline_worker.runs WHERE id = $r")"
r=$(q "SELECT pipeline_worker.create_run('flaky_map', '[\"a\", \"never\", \"c\"]')")
wait_done "$r"
pw_check "map: a task failing with no attempts left fails the step and the run, naming the task" "failed|true|failed" \
    "$(q "SELECT status || '|' || (error LIKE 'step \"m\" failed: task 1: %element 1 never works%') || '|' || (SELECT status FROM pipeline_worker.run_steps WHERE run_id = $r AND task IS NULL) FROM pipeline_worker.runs WHERE id = $r")"
r=$(q "SELECT pipeline_worker.create_run('flaky_map', '{\"not\": \"an array\"}')")
wait_done "$r"
pw_check "map over something else than an array fails the step saying what it got" "failed|true" \
    "$(q "SELECT status || '|' || (error LIKE '%needs a JSON array as prev, got object%') FROM pipeline_worker.runs WHERE id = $r")"
pw_set_conf pipeline_worker.max_map_tasks 3 || pw_fail "set max_map_tasks"
r=$(q "SELECT pipeline_worker.create_run('w2', '{\"n\": 4}')")
wait_done "$r"
pw_check "more elements than pipeline_worker.max_map_tasks fail the step clearly" "failed|true" \
    "$(q "SELECT status || '|' || (error LIKE '%at most 3 elements (pipeline_worker.max_map_tasks), got 4%') FROM pipeline_worker.runs WHERE id = $r")"
pw_reset_conf pipeline_worker.max_map_tasks >/dev/null

q "SELECT pipeline_worker.create_pipeline('http_map', '[
  {\"name\": \"list\", \"function\": \"wf_split\"},
  {\"name\": \"call\", \"map\": true, \"http\": {\"url\": \"$B/echo\"}}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('http_map', '{\"n\": 3}')")
wait_done "$r"
pw_check "HTTP map: one request per element, Idempotency-Key <run>:<position>.<index>:<attempt>, item and index sent" \
    "succeeded|$r:2.0:1 $r:2.1:1 $r:2.2:1|1 2 3|0 1 2" \
    "$(q "SELECT status || '|' || (SELECT string_agg(e->'headers'->>'idempotency-key', ' ' ORDER BY o) FROM jsonb_array_elements(result) WITH ORDINALITY x(e, o))
                 || '|' || (SELECT string_agg(e->'body'->>'item', ' ' ORDER BY o) FROM jsonb_array_elements(result) WITH ORDINALITY x(e, o))
                 || '|' || (SELECT string_agg(e->'body'->>'index', ' ' ORDER BY o) FROM jsonb_array_elements(result) WITH ORDINALITY x(e, o))
          FROM pipeline_worker.runs WHERE id = $r")"

# ---------------------------------------------------------------- child pipelines
r=$(q "SELECT pipeline_worker.create_run('parent', '{\"x\": 1}', '{\"trace\": \"t-1\"}')")
wait_done "$r"
c=$(q "SELECT id FROM pipeline_worker.runs WHERE parent_run_id = $r")
pw_check "child pipeline: one child run, parent_run_id set, metadata = the parent's plus parent_run_id and parent_step" \
    "succeeded|{\"trace\": \"t-1\", \"parent_step\": \"child\", \"parent_run_id\": $r}" \
    "$(q "SELECT status || '|' || metadata::text FROM pipeline_worker.runs WHERE id = $c")"
pw_check "the child's input is the step's prev; the step's output is the child's result" "2|true" \
    "$(q "SELECT (c.input)::text || '|' || (s.output = c.result) FROM pipeline_worker.runs c, pipeline_worker.run_steps s
          WHERE c.id = $c AND s.run_id = $r AND s.name = 'child' AND s.status = 'succeeded'")"
pw_check "the parent goes on with it" "succeeded|true" \
    "$(q "SELECT status || '|' || ((result->'prev') = (SELECT result FROM pipeline_worker.runs WHERE id = $c)) FROM pipeline_worker.runs WHERE id = $r")"

# map over a child pipeline: a child run per element, at most max_parallel unfinished at once
q "CREATE FUNCTION wf_sq1(ctx jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT to_jsonb((ctx->>'input')::int * (ctx->>'input')::int) \$\$" >/dev/null
q "SELECT pipeline_worker.create_pipeline('sq_kid', '[{\"name\": \"sq\", \"function\": \"wf_sq1\"}]')" >/dev/null
q "SELECT pipeline_worker.create_pipeline('w2_kids', '[{\"name\": \"split\", \"function\": \"wf_split\"},
    {\"name\": \"sq\", \"pipeline\": \"sq_kid\", \"map\": true, \"max_parallel\": 3}, {\"name\": \"sum\", \"function\": \"wf_sum\"}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('w2_kids', '{\"n\": 10}')")
wait_done "$r" 30
pw_check "map over a child pipeline: one child per element (input = item), results in order, the sum right" \
    "succeeded 385|10|1 2 3 4 5 6 7 8 9 10|10" \
    "$(q "SELECT status || ' ' || result FROM pipeline_worker.runs WHERE id = $r")|$(q "SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r")|$(q "SELECT string_agg(input::text, ' ' ORDER BY input::int) FROM pipeline_worker.runs WHERE parent_run_id = $r")|$(q "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'sq' AND task IS NOT NULL AND status = 'succeeded'")"
pw_check "... never more than max_parallel (3) children unfinished at once" t \
    "$(q "SELECT max(n) <= 3 FROM (SELECT (SELECT count(*) FROM pipeline_worker.runs d WHERE d.parent_run_id = $r
                                            AND d.created_at <= c.created_at AND d.finished_at > c.created_at) AS n
                                  FROM pipeline_worker.runs c WHERE c.parent_run_id = $r) x")"

# a child map whose child fails for good fails the step; the other tasks' waiting rows are closed with the run
q "CREATE FUNCTION wf_fail_on_2(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
   BEGIN IF ctx->>'input' = '2' THEN RAISE EXCEPTION 'two'; END IF; RETURN ctx->'input'; END \$\$" >/dev/null
q "SELECT pipeline_worker.create_pipeline('kid_mixed', '[{\"name\": \"f\", \"function\": \"wf_fail_on_2\"},
    {\"name\": \"w\", \"wait_for\": \"never\"}]')" >/dev/null
q "SELECT pipeline_worker.create_pipeline('kids_fail', '[{\"name\": \"l\", \"function\": \"wf_split\"},
    {\"name\": \"k\", \"pipeline\": \"kid_mixed\", \"map\": true}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('kids_fail', '{\"n\": 3}')")
pw_wait_sql failed 20 "SELECT status FROM pipeline_worker.runs WHERE id = $r" >/dev/null
pw_check "a failed child run fails its parent; no step or task row of the parent is left waiting or running" "failed|0" \
    "$(q "SELECT status || '|' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND status IN ('running', 'waiting')) FROM pipeline_worker.runs WHERE id = $r")"

r=$(q "SELECT pipeline_worker.create_run('parent_retries', '{}')")
wait_done "$r"
pw_check "a failed child fails the attempt; the retry starts a new child (one per attempt); the error names the child" \
    "failed|2|2|true" \
    "$(q "SELECT status || '|' || (SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r) || '|' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND status = 'failed') || '|' || (error LIKE 'step \"child\" failed: child run % (pipeline \"kid_fails\") failed: %') FROM pipeline_worker.runs WHERE id = $r")"

r=$(q "SELECT pipeline_worker.create_run('rec', '{\"n\": 4}')")
wait_done "$r" 30
pw_check "a pipeline may name itself: 4 levels, the innermost skips its child step" "succeeded|4|skipped" \
    "$(q "WITH RECURSIVE t(id) AS (SELECT $r::bigint UNION ALL SELECT r.id FROM pipeline_worker.runs r JOIN t ON r.parent_run_id = t.id)
          SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || '|' || count(*) || '|' ||
                 (SELECT s.status FROM pipeline_worker.run_steps s WHERE s.run_id = max(t.id) AND s.name = 'again') FROM t")"
pw_set_conf pipeline_worker.max_child_depth 2 || pw_fail "set max_child_depth"
r=$(q "SELECT pipeline_worker.create_run('rec', '{\"n\": 6}')")
wait_done "$r" 30
pw_check "nesting deeper than pipeline_worker.max_child_depth fails the step (and so the ancestors)" "failed|true" \
    "$(q "SELECT status || '|' || (error LIKE '%max_child_depth (2)%') FROM pipeline_worker.runs WHERE id = $r")"
pw_reset_conf pipeline_worker.max_child_depth

out=$(pw_psql -v VERBOSITY=verbose -c "SELECT pipeline_worker.create_pipeline('bad', '[{\"name\": \"c\", \"pipeline\": \"no_such\"}]')" 2>&1)
[[ "$out" == *22023*'step "c": pipeline "no_such" does not exist'*HINT* ]] \
    && pw_ok "a child step naming an unknown pipeline is an invalid definition (22023, the step named, a hint)" \
    || pw_fail "unknown child pipeline: $out"
out=$(pw_psql -U wf_user -v VERBOSITY=verbose -c "SELECT pipeline_worker.create_pipeline('bad_u', '[{\"name\": \"c\", \"pipeline\": \"kid\"}]')" 2>&1)
[[ "$out" == *42501* ]] && pw_ok "defining a child step without the right to submit to that pipeline is 42501" \
    || pw_fail "child step without the right: $out"
# the right is checked again when the child starts: granted at definition, revoked before the run
q "SELECT pipeline_worker.grant_pipeline('kid', 'wf_user')" >/dev/null
pw_psql -U wf_user -c "SELECT pipeline_worker.create_pipeline('u_parent', '[{\"name\": \"c\", \"pipeline\": \"kid\"}]')" >/dev/null \
    || pw_fail "wf_user could not define a child step after the grant"
q "SELECT pipeline_worker.revoke_pipeline('kid', 'wf_user')" >/dev/null
r=$(pw_psql -U wf_user -c "SELECT pipeline_worker.create_run('u_parent', '{}')")
wait_done "$r"
pw_check "at run time the submitter's right is checked again: revoked, the step fails and no child exists" "failed|true|0" \
    "$(q "SELECT status || '|' || (error LIKE '%may not submit runs to pipeline \"kid\"%') || '|' || (SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r) FROM pipeline_worker.runs WHERE id = $r")"

# A graph run failing in one branch cancels the child run another branch has under way (nobody takes its result)
q "SELECT pipeline_worker.create_pipeline('branch_fails', '[{\"name\": \"waits\", \"pipeline\": \"kid_waits\", \"depends_on\": []},
   {\"name\": \"slow_fail\", \"function\": \"wf_slow_fail\", \"depends_on\": []}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('branch_fails', '{}')")
wait_done "$r"
pw_check "a branch fails: the run fails naming it, its other branch's child is cancelled, no row left waiting" \
    "failed|true|cancelled|cancelled: its parent run failed|0" \
    "$(q "SELECT r.status || '|' || (r.error LIKE 'step \"slow_fail\" failed%') || '|' || c.status || '|' || c.error || '|' ||
              (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id IN (r.id, c.id) AND status = 'waiting')
          FROM pipeline_worker.runs r JOIN pipeline_worker.runs c ON c.parent_run_id = r.id WHERE r.id = $r")"

# cancel_run of a parent waiting for a child that is executing a step: no deadlock with the worker that finishes the
# child and wakes the parent, no wait for the child's step -- the child's worker is told and records the cancel
q "SELECT pipeline_worker.create_pipeline('slow_kid', '[{\"name\": \"s\", \"function\": \"wf_sleep\"}]')" >/dev/null
q "SELECT pipeline_worker.create_pipeline('waits_for_slow', '[{\"name\": \"c\", \"pipeline\": \"slow_kid\"}, {\"name\": \"after\", \"function\": \"wf_num\"}]')" >/dev/null
bad=""
for i in 1 2 3 4 5; do
    r=$(q "SELECT pipeline_worker.create_run('waits_for_slow', '{\"sleep\": 1.5}')")
    pw_wait_row 10 "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run % step 1 (s)'" >/dev/null
    out=$(q "SELECT pipeline_worker.cancel_run($r)" 2>&1)
    wait_done "$r"
    c=$(q "SELECT id FROM pipeline_worker.runs WHERE parent_run_id = $r")
    wait_done "$c"
    got="$out $(q "SELECT status FROM pipeline_worker.runs WHERE id = $r") $(q "SELECT status FROM pipeline_worker.runs WHERE id = $c")"
    [ "$got" = "t cancelled cancelled" ] || bad="$bad [$i: $got]"
done
pw_check "cancel_run of a parent whose child is executing a step, 5 times: t, both cancelled, no error" "" "$bad"
pw_check "no deadlock in the server log" 0 "$(grep -c 'deadlock detected' "$PW_LOG")"

# HTTP tasks of one run are in flight together (at most max_parallel)
hm() {  # NAME URL_PATH EXTRA_STEP_KEYS : an HTTP map pipeline over [1..n]
    q "SELECT pipeline_worker.create_pipeline('$1', '[{\"name\": \"list\", \"function\": \"wf_split\"},
       {\"name\": \"call\", \"map\": true, \"http\": {\"url\": \"$B$2\"}$3}]')" >/dev/null
}
hm fan_all "/delay?ms=300" ""
hm fan_three "/delay?ms=200" ", \"max_parallel\": 3"
hm fan_flaky "/flaky?fail=2" ", \"max_attempts\": 2, \"retry_delay_ms\": 0"
hm fan_slow "/delay?ms=5000" ""
hm fan_bad "/flaky?fail=1&status=400" ""
# An HTTP branch and a function branch ready together: the request is in flight while the function step runs
q "SELECT pipeline_worker.create_pipeline('http_and_fn', '[{\"name\": \"h\", \"http\": {\"url\": \"$B/delay?ms=300\"}, \"depends_on\": []},
   {\"name\": \"s\", \"function\": \"wf_sleep\", \"depends_on\": []},
   {\"name\": \"j\", \"function\": \"wf_num\", \"depends_on\": [\"h\", \"s\"]}]')" >/dev/null
srv_reset
r=$(q "SELECT pipeline_worker.create_run('http_and_fn', '{\"sleep\": 1.5}')")
pw_wait_row 10 "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query = 'run $r step 2 (s)'" >/dev/null
pw_check "the HTTP branch's request reached the endpoint while the function branch ran" 1 "$(srv_stat requests)"
wait_done "$r"
pw_check "... and the run succeeded with both" succeeded "$(q "SELECT status FROM pipeline_worker.runs WHERE id = $r")"

# A child-pipeline branch and a function branch ready together: the child runs while the function step runs
q "SELECT pipeline_worker.create_pipeline('child_and_fn', '[{\"name\": \"c\", \"pipeline\": \"slow_kid\", \"depends_on\": []},
   {\"name\": \"s\", \"function\": \"wf_sleep\", \"depends_on\": []},
   {\"name\": \"j\", \"function\": \"wf_num\", \"depends_on\": [\"c\", \"s\"]}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('child_and_fn', '{\"sleep\": 1}')")
wait_done "$r" 30
pw_check "a child branch and a function branch overlap: the child started before the function step ended; the run succeeded" \
    "succeeded true" \
    "$(q "SELECT r.status || ' ' || (c.started_at < s.finished_at) FROM pipeline_worker.runs r
          JOIN pipeline_worker.runs c ON c.parent_run_id = r.id
          JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.name = 's' WHERE r.id = $r")"

# A map task retried while another branch's request (sent early) is out: the run waits for the answer, the request is
# sent once
q "SELECT pipeline_worker.create_pipeline('http_and_flaky_map', '[{\"name\": \"h\", \"http\": {\"url\": \"$B/delay?ms=600\"}, \"depends_on\": []},
   {\"name\": \"f\", \"function\": \"wf_split\", \"depends_on\": []},
   {\"name\": \"m\", \"function\": \"wf_flaky\", \"map\": true, \"max_attempts\": 2, \"retry_delay_ms\": 0, \"depends_on\": [\"f\"]}]')" >/dev/null
srv_reset
r=$(q "SELECT pipeline_worker.create_run('http_and_flaky_map', '{\"n\": 3}')")
wait_done "$r"
st=$(srv /stats)
pw_check "a map task retried while the other branch's request is out: the run succeeds, the request went out once" \
    "succeeded 1 1" "$(q "SELECT status FROM pipeline_worker.runs WHERE id = $r") $(srv_stat requests "$st") $(srv_stat keys "$st")"

# A branch fails while another branch's request is out: that request finishes and is recorded as it ended
q "SELECT pipeline_worker.create_pipeline('http_branch_fails', '[{\"name\": \"slow\", \"http\": {\"url\": \"$B/delay?ms=800\"}, \"depends_on\": []},
   {\"name\": \"bad\", \"http\": {\"url\": \"$B/flaky?fail=1&status=400\"}, \"depends_on\": []},
   {\"name\": \"after\", \"function\": \"wf_num\", \"depends_on\": [\"slow\"]}]')" >/dev/null
srv_reset
r=$(q "SELECT pipeline_worker.create_run('http_branch_fails', '{}')")
wait_done "$r"
pw_check "a failing HTTP branch fails the run, naming it" "failed true" \
    "$(q "SELECT status || ' ' || (error LIKE 'step \"bad\" failed%') FROM pipeline_worker.runs WHERE id = $r")"
pw_check "... the other branch's request in flight is recorded as it ended (succeeded, its answer), 'after' never ran" "succeeded true 0" \
    "$(pw_wait_sql "succeeded true 0" 10 "SELECT s.status || ' ' || (s.output IS NOT NULL) || ' ' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'after')
        FROM pipeline_worker.run_steps s WHERE s.run_id = $r AND s.name = 'slow'")"

# A late answer writes its step row only over the row of its own issuance: after a retry_run and a new claim the same
# attempt can be issued again, and that newer row must win over the old request's answer. The newer issuance is
# simulated by moving the row's started_at while the old request is out; a run left alone is the control.
q "SELECT pipeline_worker.create_pipeline('http_branch_fails_slow', '[{\"name\": \"slow\", \"http\": {\"url\": \"$B/delay?ms=2500\"}, \"depends_on\": []},
   {\"name\": \"bad\", \"http\": {\"url\": \"$B/flaky?fail=2&status=400\"}, \"depends_on\": []}]')" >/dev/null
srv_reset
r=$(q "SELECT pipeline_worker.create_run('http_branch_fails_slow', '{}')")
r2=$(q "SELECT pipeline_worker.create_run('http_branch_fails_slow', '{}')")
wait_done "$r"
q "UPDATE pipeline_worker.run_steps SET started_at = started_at + interval '1 hour', status = 'running', output = NULL,
       error = NULL, finished_at = NULL WHERE run_id = $r AND name = 'slow'" >/dev/null
wait_done "$r2"
pw_check "late answers: the control run's request in flight is recorded as it ended" "succeeded" \
    "$(pw_wait_sql succeeded 15 "SELECT status FROM pipeline_worker.run_steps WHERE run_id = $r2 AND name = 'slow'")"
sleep 1
pw_check "late answers: the answer of an older issuance does not overwrite the newer row of the same attempt" \
    "running true true" \
    "$(q "SELECT status || ' ' || (started_at > now() + interval '30 minutes') || ' ' || (output IS NULL)
          FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'slow'")"
q "DELETE FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'slow'" >/dev/null

srv_reset
r=$(q "SELECT pipeline_worker.create_run('fan_all', '{\"n\": 8}')")
wait_done "$r"
st=$(srv /stats)
pw_check "HTTP map: the 8 requests of one run were in flight together, each task once" "succeeded 8 8 8 8" \
    "$(q "SELECT status || ' ' || jsonb_array_length(result) FROM pipeline_worker.runs WHERE id = $r") $(srv_stat max_in_flight "$st") $(srv_stat requests "$st") $(srv_stat keys "$st")"
srv_reset
r=$(q "SELECT pipeline_worker.create_run('fan_three', '{\"n\": 7}')")
wait_done "$r"
st=$(srv /stats)
pw_check "HTTP map with max_parallel 3: never more than 3 in flight" "succeeded 3 7" \
    "$(q "SELECT status FROM pipeline_worker.runs WHERE id = $r") $(srv_stat max_in_flight "$st") $(srv_stat requests "$st")"
r=$(q "SELECT pipeline_worker.create_run('fan_flaky', '{\"n\": 5}')")
wait_done "$r"
pw_check "HTTP map: failed tasks (500) retried while the others are in flight; outputs in order" "succeeded|5|2|1 2 3 4 5" \
    "$(q "SELECT status || '|' || jsonb_array_length(result) || '|' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND task IS NOT NULL AND status = 'failed') || '|' || (SELECT string_agg(e->'body'->>'item', ' ' ORDER BY o) FROM jsonb_array_elements(result) WITH ORDINALITY x(e, o)) FROM pipeline_worker.runs WHERE id = $r")"
r=$(q "SELECT pipeline_worker.create_run('fan_slow', '{\"n\": 4}')")
pw_wait_sql 4 10 "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND task IS NOT NULL AND status = 'running'" >/dev/null
pw_check "cancel_run while 4 HTTP tasks are in flight: cancelled, every task row closed as cancelled" "t|cancelled" \
    "$(q "SELECT pipeline_worker.cancel_run($r)")|$(q "SELECT status FROM pipeline_worker.runs WHERE id = $r")"
pw_wait_sql "0 4" 10 "SELECT count(*) FILTER (WHERE status = 'running') || ' ' || count(*) FILTER (WHERE status = 'failed' AND error = 'cancelled') FROM pipeline_worker.run_steps WHERE run_id = $r AND task IS NOT NULL" >/dev/null \
    && pw_ok "... none left running" || pw_fail "... task rows after the cancel: $(q "SELECT string_agg(task || ':' || status || ':' || coalesce(error, ''), ' ') FROM pipeline_worker.run_steps WHERE run_id = $r AND task IS NOT NULL")"
r=$(q "SELECT pipeline_worker.create_run('fan_bad', '{\"n\": 4}')")
wait_done "$r"
pw_wait_sql 0 10 "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND status = 'running'" >/dev/null
pw_check "an HTTP task failing for good (400) fails the run; no task row is left running" "failed|0" \
    "$(q "SELECT status || '|' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND status = 'running') FROM pipeline_worker.runs WHERE id = $r")"

# independent HTTP steps of one run are in flight together; a function branch goes on meanwhile
q "SELECT pipeline_worker.create_pipeline('branches', '[
    {\"name\": \"h1\", \"http\": {\"url\": \"$B/delay?ms=400\"}, \"depends_on\": []},
    {\"name\": \"h2\", \"http\": {\"url\": \"$B/delay?ms=400\"}, \"depends_on\": []},
    {\"name\": \"f\", \"function\": \"wf_num\", \"depends_on\": []},
    {\"name\": \"nap\", \"sleep\": \"100 milliseconds\", \"depends_on\": [\"f\"]},
    {\"name\": \"join\", \"function\": \"wf_echo\", \"depends_on\": [\"h1\", \"h2\", \"nap\"]}]')" >/dev/null
srv_reset
r=$(q "SELECT pipeline_worker.create_run('branches', '{}')")
wait_done "$r"
st=$(srv /stats)
pw_check "DAG: two independent HTTP steps in flight together; the function branch and its sleep went on; the join got all" \
    'succeeded 2 2|{"f": 1, "h1": {"delayed": 400}, "h2": {"delayed": 400}, "nap": 1}' \
    "$(q "SELECT status FROM pipeline_worker.runs WHERE id = $r") $(srv_stat max_in_flight "$st") $(srv_stat requests "$st")|$(q "SELECT result->'results' FROM pipeline_worker.runs WHERE id = $r")"

# a branch's wait does not begin while another branch's requests are out: no answer is lost or sent twice
q "SELECT pipeline_worker.create_pipeline('mixed_out', '[
    {\"name\": \"f\", \"http\": {\"url\": \"$B/delay?ms=50\"}, \"depends_on\": []},
    {\"name\": \"w\", \"sleep\": \"10 milliseconds\", \"depends_on\": [\"f\"]},
    {\"name\": \"l\", \"function\": \"wf_split\", \"depends_on\": []},
    {\"name\": \"m\", \"map\": true, \"http\": {\"url\": \"$B/delay?ms=700\"}, \"depends_on\": [\"l\"]}]')" >/dev/null
srv_reset
r=$(q "SELECT pipeline_worker.create_run('mixed_out', '{\"n\": 4}')")
wait_done "$r"
st=$(srv /stats)
pw_check "a sleep waits until the other branch's 4 requests are back: all succeed, 5 requests, none twice, no row open" \
    "succeeded 5 5 0" \
    "$(q "SELECT status FROM pipeline_worker.runs WHERE id = $r") $(srv_stat requests "$st") $(srv_stat keys "$st") $(q "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND status IN ('running', 'waiting')")"
# a map's output survives the commits between the following steps (commit_interval_ms = 0: a commit after each)
pw_set_conf pipeline_worker.commit_interval_ms 0 || pw_fail "set commit_interval_ms"
q "SELECT pipeline_worker.create_pipeline('map_then', '[{\"name\": \"l\", \"function\": \"wf_split\"},
    {\"name\": \"sq\", \"function\": \"wf_square\", \"map\": true}, {\"name\": \"a\", \"function\": \"wf_num\"},
    {\"name\": \"b\", \"function\": \"wf_echo\"}, {\"name\": \"c\", \"function\": \"wf_num\", \"depends_on\": [\"sq\"]}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('map_then', '{\"n\": 5}')")
wait_done "$r"
pw_check "with a commit after every step, later steps and the run's result still see the map's output" \
    'succeeded|[1, 4, 9, 16, 25]|[1, 4, 9, 16, 25]' \
    "$(q "SELECT status || '|' || (result->'b'->'results'->'sq')::text || '|' || (SELECT output::text FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'sq' AND task IS NULL) FROM pipeline_worker.runs WHERE id = $r")"
pw_reset_conf pipeline_worker.commit_interval_ms

# ---------------------------------------------------------------- if
r1=$(q "SELECT pipeline_worker.create_run('cond', '{\"paid\": true}')")
r2=$(q "SELECT pipeline_worker.create_run('cond', '{\"paid\": false}')")
wait_done "$r1"; wait_done "$r2"
pw_check "if met: the step runs" "succeeded a paid_only after" \
    "$(q "SELECT status || ' ' || (SELECT string_agg(step, ' ' ORDER BY at) FROM effects WHERE run_id = $r1) FROM pipeline_worker.runs WHERE id = $r1")"
pw_check "if not met: skipped (row 'skipped', output null), its dependent proceeds with prev null" \
    "succeeded|skipped||null|a after" \
    "$(q "SELECT r.status || '|' || s.status || '|' || coalesce(s.output::text, '') || '|' || (r.result->'prev')::text || '|' || (SELECT string_agg(step, ' ' ORDER BY at) FROM effects WHERE run_id = $r2)
          FROM pipeline_worker.runs r JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.name = 'paid_only' WHERE r.id = $r2")"

# ---------------------------------------------------------------- failure
r=$(q "SELECT pipeline_worker.create_run('failing', '{}')")
wait_done "$r"
pw_check "a step failing with no attempts left fails the run, names the step; nothing after it starts" \
    "failed|true|a" \
    "$(q "SELECT status || '|' || (error LIKE 'step \"boom\" failed: %wf_fail always fails%')::text || '|' || (SELECT string_agg(step, ' ') FROM effects WHERE run_id = $r) FROM pipeline_worker.runs WHERE id = $r")"

# ---------------------------------------------------------------- sleep
busy() { q "SELECT count(*) FROM pipeline_worker.workers() WHERE state NOT IN ('idle', 'starting')"; }
r=$(q "SELECT pipeline_worker.create_run('nap', '{}')")
t0=$(pw_now)
pw_wait_sql waiting 10 "SELECT status FROM pipeline_worker.runs WHERE id = $r" >/dev/null
pw_check "sleep: the run is waiting, its step row says waiting, no worker busy" "waiting|waiting|0" \
    "$(q "SELECT r.status || '|' || s.status || '|' FROM pipeline_worker.runs r JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.name = 'zz' WHERE r.id = $r")$(busy)"
pw_check "sleep: pipeline_stats counts it waiting" 1 "$(q "SELECT waiting FROM pipeline_worker.pipeline_stats WHERE pipeline = 'nap'")"
pw_check "sleep: wait_run keeps waiting (returns the status at its timeout)" waiting \
    "$(q "SELECT pipeline_worker.wait_run($r, interval '300 milliseconds')")"
wait_done "$r"
el=$(pw_elapsed "$t0")
pw_lt 1.5 "$el" && pw_ok "sleep: the run resumed after its sleep ($el s after submission)" || pw_fail "sleep ended after $el s"
pw_check "sleep: output = prev; step row succeeded; each function step once" "succeeded|1|succeeded|a after" \
    "$(q "SELECT r.status || '|' || s.output::text || '|' || s.status || '|' || (SELECT string_agg(step, ' ' ORDER BY at) FROM effects WHERE run_id = $r)
          FROM pipeline_worker.runs r JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.name = 'zz' WHERE r.id = $r")"
pw_check "sleep: the step took its time (finished_at - started_at >= 2 s)" t \
    "$(q "SELECT finished_at - started_at >= interval '2 seconds' FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'zz'")"

# a sleep ends by the calendar, as timestamptz + interval: a year is a year, a month a month (until 2026-12-08 a month
# counted as 30 days and a year as 360; acceptance walk-through)
q "SELECT pipeline_worker.create_pipeline('year_nap', '[{\"name\": \"y\", \"sleep\": \"1 year\"}]')" >/dev/null
q "SELECT pipeline_worker.create_pipeline('month_nap', '[{\"name\": \"m\", \"sleep\": \"1 month 2 days 3 hours\"}]')" >/dev/null
ry=$(q "SELECT pipeline_worker.create_run('year_nap', '{}')")
rm=$(q "SELECT pipeline_worker.create_run('month_nap', '{}')")
pw_wait_sql 2 10 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ry, $rm) AND status = 'waiting'" >/dev/null
pw_check "sleep: '1 year' and '1 month 2 days 3 hours' end where timestamptz + interval says, from the step's start" "true|true" \
    "$(q "SELECT (SELECT r.not_before = s.started_at + interval '1 year' FROM pipeline_worker.runs r
                    JOIN pipeline_worker.run_steps s ON s.run_id = r.id WHERE r.id = $ry) || '|' ||
                 (SELECT r.not_before = s.started_at + interval '1 month 2 days 3 hours' FROM pipeline_worker.runs r
                    JOIN pipeline_worker.run_steps s ON s.run_id = r.id WHERE r.id = $rm)")"
q "SELECT pipeline_worker.cancel_run($ry), pipeline_worker.cancel_run($rm)" >/dev/null

# ---------------------------------------------------------------- wait_for + send_event
r=$(q "SELECT pipeline_worker.create_run('pay', '{}')")
pw_wait_sql waiting 10 "SELECT status FROM pipeline_worker.runs WHERE id = $r" >/dev/null
pw_check "wait_for: the run waits for its event (status waiting, waiting_for payment)" "waiting|payment" \
    "$(q "SELECT status || '|' || waiting_for FROM pipeline_worker.runs WHERE id = $r")"
pw_check "send_event of another event: stored, the run still waits" "t|waiting" \
    "$(q "SELECT pipeline_worker.send_event($r, 'other', '{}')")|$(sleep 0.3; q "SELECT status FROM pipeline_worker.runs WHERE id = $r")"
pw_check "send_event(run_id, event, payload) returns true" t "$(q "SELECT pipeline_worker.send_event($r, 'payment', '{\"amount\": 42}')")"
wait_done "$r"
pw_check "the waiting step's output is the payload, the next step gets it as prev" 'succeeded|{"amount": 42}|{"amount": 42}' \
    "$(q "SELECT r.status || '|' || s.output::text || '|' || (r.result->'prev')::text FROM pipeline_worker.runs r JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.name = 'paid' WHERE r.id = $r")"
pw_check "the event is marked consumed by that step; the other one is not" "other||payment|2" \
    "$(q "SELECT string_agg(event || '|' || coalesce(position::text, ''), '|' ORDER BY id) FROM pipeline_worker.events WHERE run_id = $r")"
pw_check "send_event to a finished run returns false and stores nothing" "f|2" \
    "$(q "SELECT pipeline_worker.send_event($r, 'payment', '{}')")|$(q "SELECT count(*) FROM pipeline_worker.events WHERE run_id = $r")"
# A run woken while its pipeline is paused waits for resume_pipeline; one woken while a resume is in flight is parked
# by the wake (which does not wait for the resume) and put back by the lead worker's look within seconds.
q "SELECT pipeline_worker.create_pipeline('pay_paused', '[{\"name\": \"w\", \"wait_for\": \"payment\"}, {\"name\": \"f\", \"function\": \"wf_num\"}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('pay_paused', '{\"n\": 1}')")
pw_wait_sql waiting 10 "SELECT status FROM pipeline_worker.runs WHERE id = $r" >/dev/null
q "SELECT pipeline_worker.pause_pipeline('pay_paused')" >/dev/null
q "SELECT pipeline_worker.send_event($r, 'payment', '{}')" >/dev/null
sleep 1.5
pw_check "woken while paused: pending and parked, not run" "pending|3" \
    "$(q "SELECT status || '|' || parked FROM pipeline_worker.runs WHERE id = $r")"
q "SELECT pipeline_worker.resume_pipeline('pay_paused')" >/dev/null
pw_check "... runs once resumed" succeeded "$(q "SELECT pipeline_worker.wait_run($r, '10 s')")"
r=$(q "SELECT pipeline_worker.create_run('pay_paused', '{\"n\": 2}')")
pw_wait_sql waiting 10 "SELECT status FROM pipeline_worker.runs WHERE id = $r" >/dev/null
q "SELECT pipeline_worker.pause_pipeline('pay_paused')" >/dev/null
pw_psql >/dev/null 2>&1 <<SQL &
BEGIN;
SELECT pipeline_worker.resume_pipeline('pay_paused');
SELECT pg_sleep(2);
COMMIT;
SQL
resumer=$!
sleep 0.5
q "SELECT pipeline_worker.send_event($r, 'payment', '{}')" >/dev/null
pw_check "woken while a resume is in flight: parked by the wake" "pending|3" \
    "$(q "SELECT status || '|' || parked FROM pipeline_worker.runs WHERE id = $r")"
wait "$resumer"
pw_check "... and run once the resume committed (the lead worker's look)" succeeded "$(q "SELECT pipeline_worker.wait_run($r, '10 s')")"

# events sent before the run reaches the step wait in the mailbox, consumed once each, oldest first
r=$(pw_psql <<'SQL'
BEGIN;
SELECT pipeline_worker.create_run('twice', '{}') AS id \gset
SELECT pipeline_worker.send_event(:id, 'tick', '{"n": 1}');
SELECT pipeline_worker.send_event(:id, 'tick', '{"n": 2}');
SELECT pipeline_worker.send_event(:id, 'tick', '{"n": 3}');
COMMIT;
SELECT :id;
SQL
)
r=$(tail -1 <<<"$r")
wait_done "$r"
pw_check "mailbox: events sent before the steps are consumed one each, oldest first; the third stays" \
    'succeeded|{"w1": {"n": 1}, "w2": {"n": 2}}|1' \
    "$(q "SELECT status || '|' || ((result->'results') - 'done'::text)::text || '|' || (SELECT count(*) FROM pipeline_worker.events WHERE run_id = $r AND consumed_at IS NULL) FROM pipeline_worker.runs WHERE id = $r")"

# timeouts fail the attempt (retried per max_attempts)
r=$(q "SELECT pipeline_worker.create_run('deadline', '{}')")
wait_done "$r" 20
pw_check "an event wait times out: the attempt fails naming the event and the timeout; retried, then the run fails" \
    "failed|2|true" \
    "$(q "SELECT status || '|' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND status = 'failed') || '|' || (error LIKE '%no event \"never_sent\" arrived within 500 ms%') FROM pipeline_worker.runs WHERE id = $r")"

# cancel_run of a waiting run: at once
r=$(q "SELECT pipeline_worker.create_run('pay', '{}')")
pw_wait_sql waiting 10 "SELECT status FROM pipeline_worker.runs WHERE id = $r" >/dev/null
pw_check "cancel_run of a waiting run cancels it at once; its waiting step ends" "t|cancelled|failed:cancelled" \
    "$(q "SELECT pipeline_worker.cancel_run($r)")|$(q "SELECT status || '|' || (SELECT status || ':' || error FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'paid') FROM pipeline_worker.runs WHERE id = $r")"

# who may send: the submitter, the pipeline's owner, admins; anyone else 42501, whether or not the run exists
r=$(pw_psql -U wf_user -c "SELECT pipeline_worker.create_run('tenant', '{}', idempotency_key => 'order-7')")
pw_wait_sql waiting 10 "SELECT status FROM pipeline_worker.runs WHERE id = $r" >/dev/null
e1=$(pw_psql -U wf_other -v VERBOSITY=verbose -c "SELECT pipeline_worker.send_event($r, 'go')" 2>&1 | grep -v LOCATION)
e2=$(pw_psql -U wf_other -v VERBOSITY=verbose -c "SELECT pipeline_worker.send_event(987654321, 'go')" 2>&1 | grep -v LOCATION)
if [[ "$e1" == *42501* && "$e2" == *42501* && "${e1//$r/N}" == "${e2//987654321/N}" ]]; then
    pw_ok "another role: 42501 for an existing and a missing run alike"
else pw_fail "another role: '$e1' vs '$e2'"; fi
pw_check "... and nothing was stored" 0 "$(q "SELECT count(*) FROM pipeline_worker.events WHERE run_id = $r")"
e4=$(pw_psql -v VERBOSITY=verbose -c "SELECT pipeline_worker.send_event(987654321, 'go')" 2>&1)
[[ "$e4" == *42704*'run 987654321 does not exist'* ]] && pw_ok "an admin, who sees every run, is told a missing one does not exist (42704)" \
    || pw_fail "admin, missing run: $e4"
# ... and a run created earlier in the same statement is there for its sender (not hidden by the statement's
# snapshot): for an admin, for its submitter, and by idempotency key (until 2026-12-07: 42501 / "no run")
pw_check "an admin's send_event to a run created in the same statement is stored; the run consumes it" "t|succeeded" \
    "$(q "SELECT pipeline_worker.send_event(id, 'go') FROM pipeline_worker.create_runs('tenant', '[{\"same\": 1}]') id")|$(
       q "SELECT pipeline_worker.wait_run(max(id), '10 s') FROM pipeline_worker.runs WHERE pipeline = 'tenant' AND input ? 'same'")"
pw_check "the submitter's send_event to its run created in the same statement is stored" "t|succeeded" \
    "$(pw_psql -U wf_user -c "SELECT pipeline_worker.send_event(id, 'go') FROM pipeline_worker.create_runs('tenant', '[{\"same\": 2}]') id")|$(
       q "SELECT pipeline_worker.wait_run(max(id), '10 s') FROM pipeline_worker.runs WHERE pipeline = 'tenant' AND input->>'same' = '2'")"
pw_check "... and by idempotency key in the same statement" "t|succeeded" \
    "$(pw_psql -U wf_user -c "SELECT pipeline_worker.send_event('tenant', 'same-3', 'go') FROM pipeline_worker.create_runs('tenant', '[{\"same\": 3}]', idempotency_keys => ARRAY['same-3'])")|$(
       q "SELECT pipeline_worker.wait_run(max(id), '10 s') FROM pipeline_worker.runs WHERE pipeline = 'tenant' AND input->>'same' = '3'")"
e3=$(pw_psql -U wf_other -v VERBOSITY=verbose -c "SELECT pipeline_worker.send_event('tenant', 'order-7', 'go')" 2>&1)
[[ "$e3" == *42704* ]] && pw_ok "by idempotency key, another role does not reach wf_user's run (42704: none of its own)" \
    || pw_fail "by key as another role: $e3"
pw_check "the submitter sends by idempotency key: the run resumes" "t" \
    "$(pw_psql -U wf_user -c "SELECT pipeline_worker.send_event('tenant', 'order-7', 'go', '{\"by\": \"key\"}')")"
wait_done "$r"
pw_check "... with that payload" '{"by": "key"}' "$(q "SELECT result->'prev' FROM pipeline_worker.runs WHERE id = $r")"
pw_check "metrics count the new kinds of steps (sleep in nap, wait_for in pay, pipeline in parent)" "1 1 1" \
    "$(q "SELECT (SELECT value > 0 FROM pipeline_worker.metric_samples() WHERE metric = 'pipeline_worker_steps_total' AND pipeline = 'nap' AND kind = 'sleep' AND status = 'succeeded')::int || ' ' ||
                 (SELECT value > 0 FROM pipeline_worker.metric_samples() WHERE metric = 'pipeline_worker_steps_total' AND pipeline = 'pay' AND kind = 'wait_for' AND status = 'succeeded')::int || ' ' ||
                 (SELECT value > 0 FROM pipeline_worker.metric_samples() WHERE metric = 'pipeline_worker_steps_total' AND pipeline = 'parent' AND kind = 'pipeline' AND status = 'succeeded')::int")"

# attacker: the mailbox is read through the run's visibility and written only through send_event
pw_check "wf_other sees no event of wf_user's run; wf_user sees its own" "0 1" \
    "$(pw_psql -U wf_other -c "SELECT count(*) FROM pipeline_worker.events WHERE run_id = $r") $(pw_psql -U wf_user -c "SELECT count(*) FROM pipeline_worker.events WHERE run_id = $r")"
for stmt in "INSERT INTO pipeline_worker.events (run_id, event, sent_by) VALUES ($r, 'go', 'wf_other')" \
            "UPDATE pipeline_worker.events SET consumed_at = NULL" "DELETE FROM pipeline_worker.events" \
            "UPDATE pipeline_worker.runs SET status = 'pending' WHERE id = $r"; do
    out=$(pw_psql -U wf_user -v VERBOSITY=verbose -c "$stmt" 2>&1)
    [[ "$out" == *42501* ]] && pw_ok "direct writes refused even to the run's submitter: ${stmt%% *} ${stmt#* }" \
        || pw_fail "direct write '$stmt': $out"
done
pw_check "a hostile search_path does not change send_event: it refuses another role's run the same way" 42501 \
    "$(pw_psql -U wf_other -v VERBOSITY=verbose -c "SET search_path = public, pg_catalog" -c "SELECT pipeline_worker.send_event($r, 'go')" 2>&1 | grep -o 42501 | head -1)"
# a child run runs as the parent's submitter, never as the pipelines' owner
q "CREATE FUNCTION wf_who(ctx jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT to_jsonb(current_user::text) \$\$" >/dev/null
q "SELECT pipeline_worker.create_pipeline('kid_who', '[{\"name\": \"who\", \"function\": \"wf_who\"}]')" >/dev/null
q "SELECT pipeline_worker.grant_pipeline('kid_who', 'wf_user')" >/dev/null
pw_psql -U wf_user -c "SELECT pipeline_worker.create_pipeline('u_who', '[{\"name\": \"c\", \"pipeline\": \"kid_who\"}]')" >/dev/null \
    || pw_fail "wf_user could not define u_who"
r=$(pw_psql -U wf_user -c "SELECT pipeline_worker.create_run('u_who', '{}')")
wait_done "$r"
pw_check "a child run is submitted by, and its steps run as, the parent's submitter" 'wf_user|"wf_user"|"wf_user"' \
    "$(q "SELECT c.submitted_by::text || '|' || c.result::text || '|' || p.result::text FROM pipeline_worker.runs p JOIN pipeline_worker.runs c ON c.parent_run_id = p.id WHERE p.id = $r")"
pw_check "wf_other sees neither the parent nor the child" 0 \
    "$(pw_psql -U wf_other -c "SELECT count(*) FROM pipeline_worker.runs WHERE id = $r OR parent_run_id = $r")"
out=$(pw_psql -c "SELECT pipeline_worker.send_event($r, NULL)" 2>&1)
[[ "$out" == *"event must not be null"* ]] && pw_ok "a null event is refused" || pw_fail "null event: $out"

# ---------------------------------------------------------------- waiting branches
# a branch waiting for an event does not hold the others back; two events awaited at once, either wakes the run
q "SELECT pipeline_worker.create_pipeline('wait_branches', '[
    {\"name\": \"pay\", \"wait_for\": \"paid\", \"depends_on\": []},
    {\"name\": \"ship\", \"wait_for\": \"shipped\", \"depends_on\": []},
    {\"name\": \"mail\", \"function\": \"wf_num\", \"depends_on\": []},
    {\"name\": \"pause\", \"sleep\": \"200 milliseconds\", \"depends_on\": [\"mail\"]},
    {\"name\": \"after_mail\", \"function\": \"wf_num\", \"depends_on\": [\"pause\"]},
    {\"name\": \"done\", \"function\": \"wf_echo\", \"depends_on\": [\"pay\", \"ship\", \"after_mail\"]}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('wait_branches', '{}')")
pw_wait_sql "waiting mail after_mail" 10 "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || ' ' || coalesce((SELECT string_agg(step, ' ' ORDER BY at) FROM effects WHERE run_id = $r), '')" >/dev/null
pw_check "while two branches wait for events, the third (a step, a sleep, a step) went through; the run waits for either event" \
    "waiting|*|mail after_mail" \
    "$(q "SELECT status || '|' || waiting_for || '|' || (SELECT string_agg(step, ' ' ORDER BY at) FROM effects WHERE run_id = $r) FROM pipeline_worker.runs WHERE id = $r")"
q "SELECT pipeline_worker.send_event($r, 'shipped', '{\"box\": 1}')" >/dev/null
pw_wait_sql "waiting paid" 10 "SELECT status || ' ' || coalesce(waiting_for, '') FROM pipeline_worker.runs WHERE id = $r" >/dev/null
pw_check "one event resumed it; it waits for the other now" "waiting paid" \
    "$(q "SELECT status || ' ' || waiting_for FROM pipeline_worker.runs WHERE id = $r")"
q "SELECT pipeline_worker.send_event($r, 'paid', '{\"eur\": 5}')" >/dev/null
wait_done "$r"
pw_check "the second event finished it; the join got both payloads" 'succeeded|{"box": 1}|{"eur": 5}' \
    "$(q "SELECT status || '|' || (result->'prev'->'ship')::text || '|' || (result->'prev'->'pay')::text FROM pipeline_worker.runs WHERE id = $r")"

# ---------------------------------------------------------------- retention and workflows
# a finished child is kept while its parent is unfinished; events go with their run
q "SELECT pipeline_worker.create_pipeline('keep_kid', '[{\"name\": \"c\", \"pipeline\": \"kid\"},
    {\"name\": \"w\", \"wait_for\": \"done\"}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('keep_kid', '{}')")
pw_wait_sql "waiting succeeded" 15 "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || ' ' || (SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r)" >/dev/null
q "SELECT pipeline_worker.send_event($r, 'other', '{}')" >/dev/null
pw_set_conf pipeline_worker.retention '1 second' || pw_fail "set retention"
sleep 3
pw_check "retention keeps a finished child run while its parent waits" "1" \
    "$(q "SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r AND status = 'succeeded'")"
q "SELECT pipeline_worker.send_event($r, 'done', '{}')" >/dev/null
pw_wait_sql 0 20 "SELECT count(*) FROM pipeline_worker.runs WHERE id = $r OR parent_run_id = $r" >/dev/null \
    && pw_ok "once the parent finished, retention deletes both" || pw_fail "parent and child still there"
pw_check "... and the parent's events with it" 0 "$(q "SELECT count(*) FROM pipeline_worker.events WHERE run_id = $r")"
pw_reset_conf pipeline_worker.retention

pw_finish
