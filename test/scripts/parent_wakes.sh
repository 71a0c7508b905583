#!/bin/bash
# Child runs and their waiting parents (0.2): cancel_run of a parent cancels its waiting child; a child cancelled wakes
# its parent at once, also while another transaction holds the parent's row (cancel_run does not wait for it: the
# workers wake the parent once the row is free); a child finishing while its parent's row is held elsewhere is
# committed at once and wakes the parent after, no worker waiting on the lock meanwhile. (Split from workflows.sh.)
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up parent_wakes 2 20 || exit 1
source "$(dirname "$0")/../lib/workflows_setup.sh"  # the step functions and pipelines; q, wait_done, ...
# Rows held by another transaction until the script opens hold_gate, not for a fixed time (a slow machine must not
# let them go before the check that needs them held).
q "CREATE TABLE hold_gate (open boolean); INSERT INTO hold_gate VALUES (false)" >/dev/null || pw_fail "hold gate fixture"
# hold IDS : in the background, a transaction locks runs IDS (comma-separated) until hold_gate opens (60 s at most);
# returns once it holds them ($holder: its pid)
hold() {
    q "UPDATE hold_gate SET open = false" >/dev/null
    printf '%s\n' "BEGIN;" "SELECT count(*) FROM (SELECT 1 FROM pipeline_worker.runs WHERE id IN ($1) FOR UPDATE) l;" \
        "DO \$\$ BEGIN WHILE NOT (SELECT open FROM hold_gate) AND clock_timestamp() < now() + interval '60 s'
                      LOOP PERFORM pg_sleep(0.05); END LOOP; END \$\$;" "COMMIT;" | pw_psql >/dev/null &
    holder=$!
    pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active'
                        AND query LIKE 'DO %hold_gate%'" >/dev/null || pw_fail "the holder did not take the rows"
}
release() { q "UPDATE hold_gate SET open = true" >/dev/null; wait "$holder"; }
r=$(q "SELECT pipeline_worker.create_run('parent_of_waiter', '{}')")
pw_wait_sql "waiting waiting" 10 "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || ' ' || (SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r)" >/dev/null
pw_check "a parent waiting for its child is waiting; so is the child (waiting for an event)" "waiting waiting" \
    "$(q "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || ' ' || (SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r)")"
pw_check "cancel_run of the parent cancels its unfinished child" "t|cancelled cancelled" \
    "$(q "SELECT pipeline_worker.cancel_run($r)")|$(q "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || ' ' || (SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r)")"
# cancel_run of the child: its waiting parent looks at it at once (until 2026-12-03: at its once-a-minute look)
q "SELECT pipeline_worker.create_pipeline('parent_of_waiter2', '[{\"name\": \"child\", \"pipeline\": \"kid_waits\",
     \"max_attempts\": 2, \"retry_delay_ms\": 0}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('parent_of_waiter2', '{}')")
pw_wait_sql "waiting waiting" 10 "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || ' ' || (SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r)" >/dev/null
c=$(q "SELECT id FROM pipeline_worker.runs WHERE parent_run_id = $r")
q "SELECT pipeline_worker.cancel_run($c)" >/dev/null
pw_wait_sql 2 10 "SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r" >/dev/null
pw_check "cancel_run of a child wakes its waiting parent: the attempt fails naming the child, the retry starts another" \
    "failed|true|2|waiting" \
    "$(q "SELECT (SELECT status || '|' || (error LIKE 'child run $c (pipeline \"kid_waits\") cancelled%') FROM pipeline_worker.run_steps WHERE run_id = $r AND attempt = 1) || '|' ||
              (SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r) || '|' || (SELECT status FROM pipeline_worker.runs WHERE id = $r)")"
q "SELECT pipeline_worker.cancel_run($r)" >/dev/null
# ... also while another transaction holds the parent's row: cancel_run does not wait for it (the workers wake the
# parent once it is free). Until 2026-12-04 cancel_run locked the parent's row first, waiting for its holder -- and a
# session's execute_run of the same child, taking the rows the other way round, could deadlock with it.
q "SELECT pipeline_worker.create_pipeline('parent_of_waiter3', '[{\"name\": \"child\", \"pipeline\": \"kid_waits\"}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('parent_of_waiter3', '{}')")
pw_wait_sql "waiting waiting" 10 "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || ' ' || (SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r)" >/dev/null
c=$(q "SELECT id FROM pipeline_worker.runs WHERE parent_run_id = $r")
hold "$r"
start=$(pw_now)
out=$(q "SELECT pipeline_worker.cancel_run($c)" 2>&1)
took=$(pw_elapsed "$start")
pw_info "cancel_run of a child whose parent's row is held: returned after $took s"
pw_lt "$took" 1.5 && [ "$out" = t ] && pw_ok "cancel_run of a child does not wait for its parent's row, held elsewhere" \
    || pw_fail "cancel_run of a child whose parent's row is held: '$out' after $took s"
release
wait_done "$r" 5
pw_check "... the workers wake the parent once the row is free: it fails naming the cancelled child" "failed|true" \
    "$(q "SELECT status || '|' || (error LIKE '%child run $c (pipeline \"kid_waits\") cancelled%') FROM pipeline_worker.runs WHERE id = $r")"
# ... and when the cancelling session's own transaction goes on after the holder let go: the workers wait for that
# transaction to end before they wake the parent (woken earlier, it would see its child still waiting and sleep on)
r=$(q "SELECT pipeline_worker.create_run('parent_of_waiter3', '{}')")
pw_wait_sql "waiting waiting" 10 "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || ' ' || (SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r)" >/dev/null
c=$(q "SELECT id FROM pipeline_worker.runs WHERE parent_run_id = $r")
hold "$r"
printf '%s\n' "BEGIN;" "SELECT pipeline_worker.cancel_run($c);" "SELECT pg_sleep(2.5);" "COMMIT;" | pw_psql >/dev/null &
canceller=$!
pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE 'SELECT pg_sleep(2.5)%'" \
    >/dev/null || pw_fail "the cancelling transaction did not get to its sleep"
release  # (the holder commits first, while the cancelling transaction sleeps)
wait "$canceller"
wait_done "$r" 5
pw_check "... also when the cancelling transaction commits after the holder's: the parent wakes after it (not at its minute)" \
    "failed|true" \
    "$(q "SELECT status || '|' || (error LIKE '%child run $c (pipeline \"kid_waits\") cancelled%') FROM pipeline_worker.runs WHERE id = $r")"

# A child finishes while another transaction holds its waiting parent's row: the worker commits the child at once
# and wakes the parent once that transaction ends, trying its row again without waiting on it (a batch waits for no
# parent row: two workers each finishing a child of a parent the other held deadlocked --
# test/scripts/workflow_faults.sh)
pw_psql >/dev/null <<'SQL' || pw_fail "gated child fixtures"
CREATE TABLE wf_gate (open boolean);
INSERT INTO wf_gate VALUES (false);
CREATE FUNCTION wf_gated(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    WHILE NOT (SELECT open FROM wf_gate) LOOP PERFORM pg_sleep(0.02); END LOOP;
    RETURN '"through"';
END $$;
SELECT pipeline_worker.create_pipeline('kid_gated', '[{"name": "g", "function": "wf_gated"}]');
SELECT pipeline_worker.create_pipeline('parent_gated', '[{"name": "child", "pipeline": "kid_gated"}]');
SQL
r=$(q "SELECT pipeline_worker.create_run('parent_gated', '{}')")
pw_wait_sql "waiting 1" 10 "SELECT status || ' ' || (SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r)
                             FROM pipeline_worker.runs WHERE id = $r" >/dev/null
hold "$r"
q "UPDATE wf_gate SET open = true" >/dev/null
pw_wait_sql succeeded 10 "SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r" >/dev/null
pw_check "a child finishing while its parent's row is held elsewhere is committed at once; the parent still waits" \
    "succeeded waiting" "$(q "SELECT (SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r) || ' ' || status
                                FROM pipeline_worker.runs WHERE id = $r")"
sleep 0.3  # (the worker has tried the parent's row a few times: 10, 20, 40, ... ms apart)
pw_check "... and no worker waits for that row (a worker waiting on the lock could serve nothing else meanwhile)" 0 \
    "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event_type = 'Lock'")"
release
wait_done "$r" 5
pw_check "... the worker tries it again until the holder commits, and wakes it then (not at its once-a-minute look)" \
    'succeeded|"through"' \
    "$(q "SELECT status || '|' || result FROM pipeline_worker.runs WHERE id = $r")"

# ... and when the workers leave the database while that row is still held (here: pipeline_worker.workers = 0): the
# parents they still had to wake are handed back to the database's shared list, and the next worker there wakes them
# once the row is free (not the parent's once-a-minute look; untested until 2026-12-04). The row is held until the
# script opens hold_gate, not for a fixed time: a slow machine must not let it go before the workers have left.
q "UPDATE wf_gate SET open = false" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('parent_gated', '{}')")
pw_wait_sql "waiting 1" 10 "SELECT status || ' ' || (SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r)
                             FROM pipeline_worker.runs WHERE id = $r" >/dev/null
hold "$r"
q "UPDATE wf_gate SET open = true" >/dev/null
pw_wait_sql succeeded 10 "SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r" >/dev/null \
    || pw_fail "the gated child did not succeed"
pw_set_conf pipeline_worker.workers 0 || pw_fail "pipeline_worker.workers = 0"
pw_wait_workers 0 20 >/dev/null || pw_fail "the workers did not leave at pipeline_worker.workers = 0"
pw_check "workers gone while the parent's row is still held: its child has succeeded, the parent still waits" \
    "succeeded waiting" "$(q "SELECT (SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r) || ' ' || status
                                FROM pipeline_worker.runs WHERE id = $r")"
pw_set_conf pipeline_worker.workers 2 || pw_fail "pipeline_worker.workers = 2"
pw_wait_workers 2 20 >/dev/null || pw_fail "the workers did not come back at pipeline_worker.workers = 2"
release
wait_done "$r" 10
pw_check "... the next worker wakes it once the row is free (handed back by the workers that left)" \
    'succeeded|"through"' "$(q "SELECT status || '|' || result FROM pipeline_worker.runs WHERE id = $r")"

# The shared list of parents handed to the workers is short (32). With it full -- both workers busy in steps that
# wait for wf_gate (runs of kid_gated), not taking it -- a session's cancel_run waits for the parent's row instead (as without workers):
# no parent is dropped to wait for its once-a-minute look. (untested until 2026-12-04)
q "SELECT count(pipeline_worker.create_run('parent_of_waiter3', '{}')) FROM generate_series(1, 33)" >/dev/null
pw_wait_sql 66 20 "SELECT count(*) FROM pipeline_worker.runs r WHERE status = 'waiting' AND (pipeline = 'kid_waits'
                     AND parent_run_id IS NOT NULL OR pipeline = 'parent_of_waiter3')" >/dev/null
parents=$(q "SELECT string_agg(id::text, ',' ORDER BY id) FROM pipeline_worker.runs WHERE pipeline = 'parent_of_waiter3' AND status = 'waiting'")
pw_check "33 parents waiting for their waiting children" 33 "$(awk -F, '{print NF}' <<<"$parents")"
# (one at a time: a worker claims a batch, and would run both itself)
q "UPDATE wf_gate SET open = false" >/dev/null
q "SELECT pipeline_worker.create_run('kid_gated', '{}')" >/dev/null
pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run % step 1 (g)'" >/dev/null
q "SELECT pipeline_worker.create_run('kid_gated', '{}')" >/dev/null
pw_wait_sql 2 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run % step 1 (g)'" \
    >/dev/null || pw_fail "both workers are not busy in a gated step: $(q "SELECT string_agg(pid || ' ' || coalesce(wait_event, '-') || ' ' || left(query, 40), '; ') FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'")"
hold "$parents"
last=${parents##*,}
out=$(for id in ${parents//,/ }; do
          [ "$id" = "$last" ] || q "SELECT pipeline_worker.cancel_run(id) FROM pipeline_worker.runs WHERE parent_run_id = $id"
      done | sort | uniq -c | awk '{print $1 " " $2}')
pw_check "32 children cancelled while their parents' rows are held and both workers are busy: each cancel_run returned true" \
    "32 t" "$out"
q "SELECT pipeline_worker.cancel_run(id) FROM pipeline_worker.runs WHERE parent_run_id = $last" >/tmp/pw_parent_wakes_33 2>&1 &
canceller=$!
pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock'
                    AND query LIKE '%cancel_run%'" >/dev/null \
    && pw_ok "... the 33rd, past the full list, waits for its parent's row" \
    || pw_fail "the 33rd cancel_run did not wait for its parent's row (list full)"
release
wait "$canceller"
pw_check "... and returns true once the row is free" t "$(cat /tmp/pw_parent_wakes_33)"
rm -f /tmp/pw_parent_wakes_33
q "UPDATE wf_gate SET open = true" >/dev/null
pw_wait_sql 33 15 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($parents) AND status = 'failed'
                     AND error LIKE '%child run % (pipeline \"kid_waits\") cancelled%'" >/dev/null
pw_check "... and every parent woke, failing naming its child: none dropped when the list was full" 33 \
    "$(q "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($parents) AND status = 'failed'
            AND error LIKE '%child run % (pipeline \"kid_waits\") cancelled%'")"

# ---------------------------------------------------------------- a sibling's child succeeded before the run failed
# Two branches start a child each; both children end while the parent's row is held, one failed, one succeeded. The
# parent, woken once the row is free, fails (that child's step has no attempts left) and records the other step as
# the success it was: until 2026-12-07 its row was closed as failed ("its run failed meanwhile"), and retry_run then
# started a second child for it. Children that wait for an event, so that both end inside the hold.
q "SELECT pipeline_worker.create_pipeline('kid_then_fails', '[{\"name\": \"w\", \"wait_for\": \"go\"}, {\"name\": \"f\", \"function\": \"wf_fail\"}]')" >/dev/null
q "SELECT pipeline_worker.create_pipeline('kid_then_ok', '[{\"name\": \"w\", \"wait_for\": \"go\"}, {\"name\": \"e\", \"function\": \"wf_echo\"}]')" >/dev/null
q "SELECT pipeline_worker.create_pipeline('two_kids', '[{\"name\": \"x\", \"pipeline\": \"kid_then_fails\", \"depends_on\": []},
     {\"name\": \"y\", \"pipeline\": \"kid_then_ok\", \"depends_on\": []}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('two_kids', '{}')")
pw_wait_sql "waiting 2" 10 "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || ' ' ||
                              (SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r AND status = 'waiting')" >/dev/null \
    || pw_fail "two_kids: the parent and its two children are not waiting"
hold "$r"
q "SELECT count(pipeline_worker.send_event(id, 'go')) FROM pipeline_worker.runs WHERE parent_run_id = $r" >/dev/null
pw_wait_sql "failed succeeded" 10 "SELECT string_agg(status, ' ' ORDER BY pipeline) FROM pipeline_worker.runs WHERE parent_run_id = $r" >/dev/null \
    || pw_fail "two_kids: the children did not end while the parent's row was held"
release
wait_done "$r"
pw_check "a child failed and its sibling's child succeeded while the parent's row was held: the run fails, the sibling's step is recorded succeeded with the child's result" \
    'failed|x:failed|y:succeeded:"e"' \
    "$(q "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || '|' ||
              (SELECT string_agg(name || ':' || status || CASE WHEN status = 'succeeded' THEN ':' || (output->'step')::text
                                                                ELSE '' END, '|' ORDER BY name)
                 FROM pipeline_worker.run_steps WHERE run_id = $r)")"
q "SELECT pipeline_worker.retry_run($r)" >/dev/null
pw_wait_sql 3 10 "SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r" >/dev/null
pw_check "... and retry_run starts a child for the failed step only" "2 1" \
    "$(q "SELECT (SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r AND pipeline = 'kid_then_fails') || ' ' ||
              (SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r AND pipeline = 'kid_then_ok')")"
q "SELECT pipeline_worker.cancel_run($r)" >/dev/null
# ... and a parent cancelled before it woke to its child's success: cancel_run's close keeps that step too
q "SELECT pipeline_worker.create_pipeline('kid_pair', '[{\"name\": \"y\", \"pipeline\": \"kid_then_ok\", \"depends_on\": []},
     {\"name\": \"z\", \"pipeline\": \"kid_waits\", \"depends_on\": []}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('kid_pair', '{}')")
pw_wait_sql "waiting 2" 10 "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || ' ' ||
                              (SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r AND status = 'waiting')" >/dev/null \
    || pw_fail "kid_pair: the parent and its two children are not waiting"
hold "$r"
q "SELECT pipeline_worker.send_event(id, 'go') FROM pipeline_worker.runs WHERE parent_run_id = $r AND pipeline = 'kid_then_ok'" >/dev/null
pw_wait_sql succeeded 10 "SELECT status FROM pipeline_worker.runs WHERE parent_run_id = $r AND pipeline = 'kid_then_ok'" >/dev/null \
    || pw_fail "kid_pair: the child did not succeed while the parent's row was held"
q "SELECT pipeline_worker.cancel_run($r)" >/dev/null 2>&1 &
canceller=$!
pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock'
                    AND query LIKE '%cancel_run($r)%'" >/dev/null || pw_info "kid_pair: cancel_run did not wait for the row"
release
wait "$canceller"
pw_wait_sql cancelled 10 "SELECT status FROM pipeline_worker.runs WHERE id = $r" >/dev/null
pw_check "a parent cancelled before it woke to its child's success: that step is recorded succeeded" \
    'cancelled|y:succeeded|z:failed' \
    "$(q "SELECT (SELECT status FROM pipeline_worker.runs WHERE id = $r) || '|' ||
              (SELECT string_agg(name || ':' || status, '|' ORDER BY name) FROM pipeline_worker.run_steps WHERE run_id = $r)")"


# ---------------------------------------------------------------- branches that start something go first
# A function step written first does not hold back the other branches' sleep and child run: they begin before it
# runs (until 2026-12-07 they began only once it ended).
q "SELECT pipeline_worker.create_pipeline('starters', '[{\"name\": \"slow\", \"function\": \"wf_sleep\", \"depends_on\": []},
     {\"name\": \"nap\", \"sleep\": \"100 milliseconds\", \"depends_on\": []},
     {\"name\": \"kid\", \"pipeline\": \"kid_waits\", \"depends_on\": []}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('starters', '{\"sleep\": 1.5}')")
pw_wait_sql "1 1" 10 "SELECT (SELECT count(*) FROM pipeline_worker.runs WHERE parent_run_id = $r) || ' ' ||
                       (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'slow')" >/dev/null \
    || pw_fail "starters: no child run, or the function step did not end"
pw_check "a child run and a sleep written after a function step began before it ended" "true|true" \
    "$(q "SELECT ((SELECT min(created_at) FROM pipeline_worker.runs WHERE parent_run_id = $r)
                    < (SELECT started_at FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'slow') + interval '1 second')
              || '|' || ((SELECT started_at FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'nap')
                    < (SELECT started_at FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'slow') + interval '1 second')")"
q "SELECT pipeline_worker.send_event(id, 'never') FROM pipeline_worker.runs WHERE parent_run_id = $r" >/dev/null
wait_done "$r"
pw_check "... and the run then succeeds: the sleep over, the child's result taken" "succeeded" \
    "$(q "SELECT status FROM pipeline_worker.runs WHERE id = $r")"
# ---------------------------------------------------------------- commits between steps while a wait is noted
# A commit after each step (commit_interval_ms = 0) once an event wait is noted: the event sent while the function
# steps run finds the run running (its row no longer locked) and wakes nothing -- the run goes back to the queue at
# the end of the walk instead of waiting, and its next look takes the event (until 2026-12-07 there was no commit
# between steps once a step waited).
pw_set_conf pipeline_worker.commit_interval_ms 0 || pw_fail "set commit_interval_ms"
q "SELECT pipeline_worker.create_pipeline('wait_then_chain', '[{\"name\": \"a\", \"function\": \"wf_sleep\", \"depends_on\": []},
     {\"name\": \"b\", \"function\": \"wf_sleep\", \"depends_on\": [\"a\"]},
     {\"name\": \"approve\", \"wait_for\": \"go\", \"depends_on\": []}]')" >/dev/null
r=$(q "SELECT pipeline_worker.create_run('wait_then_chain', '{\"sleep\": 0.6}')")
pw_wait_sql 1 10 "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND name = 'a'" >/dev/null \
    || pw_fail "wait_then_chain: step a did not end"
pw_check "... the event sent between the steps' commits is delivered" t \
    "$(q "SELECT pipeline_worker.send_event($r, 'go', '{\"n\": 7}')")"
wait_done "$r" 10
pw_check "... the run takes it: succeeded, the wait's output the payload" 'succeeded|{"n": 7}' \
    "$(q "SELECT status || '|' || (result->'approve')::text FROM pipeline_worker.runs WHERE id = $r")"
pw_set_conf pipeline_worker.commit_interval_ms 20 || pw_fail "reset commit_interval_ms"
pw_finish
