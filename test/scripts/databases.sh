#!/bin/bash
# One installation serving several databases (pipeline_worker.databases): each listed database with the extension
# is served, a run never executes in another database, CREATE EXTENSION in a listed database is served within
# 1 s and DROP EXTENSION releases its workers (metrics() keeps its counters, not its gauges), a backlog in one
# database does not starve another (nor do idle ones hold the workers it could use), max_workers_per_database caps
# one, '*' serves every database with the extension, fewer workers than databases take turns (and a run committed in
# each still starts within 1 s; an idle database's finished runs are deleted within 10 s of passing their retention
# while busy ones keep every worker), and DROP DATABASE, ALTER DATABASE ... RENAME and CREATE DATABASE ... TEMPLATE
# of a served database succeed without FORCE while a run executes there (the run is recovered and finishes later, its
# effect once); after a restart, the runs parked by a limit are put back in every database.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

PW_WORKERS=6 pw_cluster_start databases "pipeline_worker.databases = 'db_a, db_b, db_c'" \
    "pipeline_worker.recovery_interval_ms = 200"

# dbq DB SQL : one value from database DB
dbq() { pw_psql -d "$1" -c "$2"; }
fixtures() {
    pw_psql -d "$1" >/dev/null <<'SQL'
CREATE EXTENSION pipeline_worker;
CREATE TABLE ext_created AS SELECT clock_timestamp() AS at;  -- (just after CREATE EXTENSION's commit)
CREATE TABLE effects (run_id bigint, db text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION where_am_i(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects (run_id, db) VALUES ((ctx->>'run_id')::bigint, current_database());
    IF ctx->'input' ? 'sleep' THEN PERFORM pg_sleep((ctx->'input'->>'sleep')::float8); END IF;
    RETURN jsonb_build_object('db', current_database());
END $$;
SELECT pipeline_worker.create_pipeline('p', '[{"name": "a", "function": "where_am_i"}]');
SQL
}
# workers_in DB : workers serving DB now (workers()' database column)
workers_in() { pw_psql -c "SELECT count(*) FROM pipeline_worker.workers() WHERE database = '$1'"; }

for db in db_a db_b db_c db_x; do pw_psql -c "CREATE DATABASE $db" >/dev/null || pw_die "CREATE DATABASE $db"; done
pw_psql -c "CREATE EXTENSION pipeline_worker" >/dev/null  # in postgres (not listed): for workers()
fixtures db_a || pw_die "fixtures db_a"
fixtures db_b || pw_die "fixtures db_b"
fixtures db_x || pw_die "fixtures db_x"

# ---------------------------------------------------------------- each listed database is served, by its own runs
a=$(dbq db_a "SELECT pipeline_worker.create_run('p', '{}')")
b=$(dbq db_b "SELECT pipeline_worker.create_run('p', '{}')")
x=$(dbq db_x "SELECT pipeline_worker.create_run('p', '{}')")
pw_check "db_a's run succeeds" succeeded "$(dbq db_a "SELECT pipeline_worker.wait_run($a, '10 s')")"
pw_check "db_b's run succeeds" succeeded "$(dbq db_b "SELECT pipeline_worker.wait_run($b, '10 s')")"
pw_check "it ran in db_a" '{"db": "db_a"}' "$(dbq db_a "SELECT result FROM pipeline_worker.runs WHERE id = $a")"
pw_check "it ran in db_b" '{"db": "db_b"}' "$(dbq db_b "SELECT result FROM pipeline_worker.runs WHERE id = $b")"
sleep 1
pw_check "db_x is not listed: its run stays pending" pending "$(dbq db_x "SELECT status FROM pipeline_worker.runs WHERE id = $x")"
pw_check "no worker in db_c (no extension) nor db_x (not listed) nor postgres" "0 0 0" \
    "$(workers_in db_c) $(workers_in db_x) $(workers_in postgres)"

# ---------------------------------------------------------------- CREATE EXTENSION in a listed database: within 1 s
# (timed by the server's clock from CREATE EXTENSION's commit to the run's start: the wall clock around them also
# counts the fixtures' other DDL and three psql start-ups, which a loaded machine can stretch past the bound)
start=$(pw_now)
fixtures db_c || pw_die "fixtures db_c"
c=$(dbq db_c "SELECT pipeline_worker.create_run('p', '{}')")
got=$(dbq db_c "SELECT pipeline_worker.wait_run($c, '5 s')")
took=$(pw_elapsed "$start")
pw_info "CREATE EXTENSION in db_c, then a run: finished $took s after the CREATE EXTENSION began"
pw_check "db_c is served after CREATE EXTENSION, without a restart" succeeded "$got"
pw_check "served within 1 s of CREATE EXTENSION (its commit to the run's start)" t \
    "$(dbq db_c "SELECT started_at - (SELECT at FROM ext_created) < interval '1 s' FROM pipeline_worker.runs WHERE id = $c")"

# ---------------------------------------------------------------- a backlog in one database starves no other
dbq db_a "SELECT count(*) FROM pipeline_worker.create_runs('p', (SELECT jsonb_agg(jsonb_build_object('sleep', 0.01))
                                                               FROM generate_series(1, 3000)))" >/dev/null
sleep 1
start=$(pw_now)
ids=$(dbq db_b "SELECT string_agg(pipeline_worker.create_run('p', '{}')::text, ',') FROM generate_series(1, 20)")
PGDATABASE=db_b pw_wait_sql 20 10 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status = 'succeeded'" >/dev/null
got=$(dbq db_b "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status = 'succeeded'")
took=$(pw_elapsed "$start")
left=$(dbq db_a "SELECT count(*) FROM pipeline_worker.runs WHERE status <> 'succeeded'")
pw_check "db_b's 20 runs finish while db_a has a backlog" 20 "$got"
pw_info "db_b's runs done in $took s; db_a still had $left runs left; workers: db_a $(workers_in db_a), db_b $(workers_in db_b), db_c $(workers_in db_c)"
pw_lt 0 "$left" && pw_ok "db_a's backlog was still there (it did not have to drain first)" \
    || pw_fail "db_a's backlog drained before db_b was served: the test proves nothing"
pw_check "every effect in db_a happened in db_a" 0 "$(dbq db_a "SELECT count(*) FROM effects WHERE db <> 'db_a'")"

# ---------------------------------------------------------------- max_workers_per_database
pw_set_conf pipeline_worker.max_workers_per_database 2 || pw_fail "setting max_workers_per_database"
if got=$(pw_wait_sql 2 10 "SELECT count(*) FROM pipeline_worker.workers() WHERE database = 'db_a'"); then
    pw_ok "max_workers_per_database = 2: db_a has 2 workers"
else pw_fail "max_workers_per_database = 2: db_a has $got workers"; fi
sleep 1
pw_check "... and keeps no more" 2 "$(workers_in db_a)"
pw_reset_conf pipeline_worker.max_workers_per_database
if got=$(pw_wait_sql 4 10 "SELECT count(*) FROM pipeline_worker.workers() WHERE database = 'db_a'"); then
    pw_ok "without the cap, the busy db_a has 4 workers, db_b and db_c one each"
else pw_fail "without the cap: db_a has $got workers ($(workers_in db_b) in db_b, $(workers_in db_c) in db_c)"; fi
PGDATABASE=db_a pw_wait_sql 0 60 "SELECT count(*) FROM pipeline_worker.runs WHERE status <> 'succeeded'" 0.5 >/dev/null
pw_check "db_a's backlog drains" 0 "$(dbq db_a "SELECT count(*) FROM pipeline_worker.runs WHERE status <> 'succeeded'")"

# ---------------------------------------------------------------- DROP EXTENSION releases the database
# (first: a paused run pending in db_c and in db_b, counted by a scrape there -- the gauges that must go with them)
for db in db_c db_b; do
    pw_psql -d $db >/dev/null <<'SQL' || pw_fail "gauged fixtures in $db"
SELECT pipeline_worker.create_pipeline('gauged', '[{"name": "a", "function": "where_am_i"}]');
SELECT pipeline_worker.pause_pipeline('gauged');
SELECT pipeline_worker.create_run('gauged', '{}');
SELECT length(pipeline_worker.metrics());
SQL
done
m=$(dbq db_a "SELECT pipeline_worker.metrics()")
pw_check "metrics() in db_a shows the pending runs counted in db_c and db_b" "yes yes" \
    "$(grep -q '^pipeline_worker_runs{database="db_c",pipeline="gauged",status="pending"} 1$' <<<"$m" && echo yes) $(grep -q '^pipeline_worker_runs{database="db_b",pipeline="gauged",status="pending"} 1$' <<<"$m" && echo yes)"
# Several workers there, idle (a backlog drained first): every one leaves, not only the lead. (Measured 2026-12-07:
# 4 workers gone 0.15-0.21 s after the commit.)
dbq db_c "SELECT count(*) FROM pipeline_worker.create_runs('p', (SELECT jsonb_agg(jsonb_build_object('sleep', 0.01, 'c', 1))
                                                          FROM generate_series(1, 400)))" >/dev/null
PGDATABASE=db_c pw_wait_sql 0 20 "SELECT count(*) FROM pipeline_worker.runs WHERE input ? 'c' AND status <> 'succeeded'" 0.1 >/dev/null \
    || pw_fail "db_c's backlog not drained"
before=$(workers_in db_c)
[ "$before" -ge 2 ] || pw_fail "db_c has $before worker(s) after its backlog, not several"
dbq db_c "DROP EXTENSION pipeline_worker CASCADE" >/dev/null
t0=$(pw_now)
if got=$(pw_wait_sql 0 2 "SELECT count(*) FROM pipeline_worker.workers() WHERE database = 'db_c'" 0.05); then
    pw_ok "DROP EXTENSION in db_c: its workers leave (within 2 s)"
else pw_fail "DROP EXTENSION in db_c: $got of its $before workers still there after 2 s"; fi
pw_info "DROP EXTENSION in db_c: its $before worker(s) gone $(pw_elapsed $t0) s after the commit"
pw_check "... and metrics() shows no workers gauge for db_c any more (no series of zeros)" 0 \
    "$(dbq db_a "SELECT pipeline_worker.metrics()" | grep -c '^pipeline_worker_workers{database="db_c"')"

# ---------------------------------------------------------------- DROP / RENAME / TEMPLATE while a run executes
# in_step DB ID : wait until run ID of DB is executing its (sleeping) step
in_step() {
    pw_wait_sql 1 10 "SELECT count(*) FROM pipeline_worker.workers() w JOIN pg_stat_activity a USING (pid)
                       WHERE w.database = '$1' AND w.run_id = $2 AND a.wait_event = 'PgSleep'" 0.05 >/dev/null
}
slow=$(dbq db_a "SELECT pipeline_worker.create_run('p', '{\"sleep\": 3}')")
in_step db_a "$slow" || pw_fail "the slow run of db_a did not start"
# a role that may not drop or copy db_a cannot make the workers leave it; nor can a command that will fail anyway
pids=$(pw_psql -c "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pipeline_worker.workers() WHERE database = 'db_a'")
pw_psql -c "CREATE ROLE db_mallory LOGIN CREATEDB" >/dev/null
out=$(pw_psql -U db_mallory -c "DROP DATABASE db_a" 2>&1)
case "$out" in *"must be owner"*) pw_ok "DROP DATABASE by a non-owner is refused";; *) pw_fail "DROP by db_mallory: $out";; esac
out=$(pw_psql -U db_mallory -c "CREATE DATABASE db_stolen TEMPLATE db_a" 2>&1)
case "$out" in *"permission denied"*) pw_ok "CREATE DATABASE ... TEMPLATE db_a by a non-owner is refused";;
    *) pw_fail "TEMPLATE by db_mallory: $out";; esac
out=$(pw_psql -c "BEGIN" -c "DROP DATABASE db_a" 2>&1)
case "$out" in *"cannot run inside a transaction block"*) pw_ok "DROP DATABASE in a transaction block is refused";;
    *) pw_fail "DROP in a block: $out";; esac
pw_check "... and none of them disturbed db_a's workers (same processes)" "$pids" \
    "$(pw_psql -c "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pipeline_worker.workers() WHERE database = 'db_a'")"
pw_check "... nor its executing run" 1 "$(pw_psql -c "SELECT count(*) FROM pipeline_worker.workers() WHERE database = 'db_a' AND run_id = $slow")"
start=$(pw_now)
out=$(pw_psql -c "CREATE DATABASE db_copy TEMPLATE db_a" 2>&1)
pw_check "CREATE DATABASE ... TEMPLATE db_a while db_a's run executes" "" "$out"
pw_info "CREATE DATABASE ... TEMPLATE took $(pw_elapsed "$start") s"
pw_check "the interrupted run is recovered and succeeds" succeeded "$(dbq db_a "SELECT pipeline_worker.wait_run($slow, '20 s')")"
pw_check "its step committed once (the interrupted attempt rolled back)" 1 \
    "$(dbq db_a "SELECT count(*) FROM effects WHERE run_id = $slow")"
n=$(dbq db_a "SELECT pipeline_worker.create_run('p', '{}')")
pw_check "db_a is served again after the copy" succeeded "$(dbq db_a "SELECT pipeline_worker.wait_run($n, '10 s')")"
# A RENAME cancelled (statement_timeout) while it waits for the workers to leave: the database is served again at
# once. (Until 2026-12-05 it stayed marked as being left for 10 minutes: no worker served it.)
slow=$(dbq db_a "SELECT pipeline_worker.create_run('p', '{\"sleep\": 3}')")
in_step db_a "$slow" || pw_fail "the slow run of db_a did not start"
out=$(pw_psql -c "SET statement_timeout = '300ms'" -c "ALTER DATABASE db_a RENAME TO db_a_x" 2>&1)
case "$out" in *"statement timeout"*) pw_ok "a RENAME of db_a cancelled while its workers leave";;
    *) pw_fail "RENAME under statement_timeout: $out";; esac
n=$(dbq db_a "SELECT pipeline_worker.create_run('p', '{}')")
pw_check "... leaves db_a served: a new run succeeds" succeeded "$(dbq db_a "SELECT pipeline_worker.wait_run($n, '10 s')")"
pw_check "... and the slow one too" succeeded "$(dbq db_a "SELECT pipeline_worker.wait_run($slow, '20 s')")"

slow=$(dbq db_b "SELECT pipeline_worker.create_run('p', '{\"sleep\": 3}')")
in_step db_b "$slow" || pw_fail "the slow run of db_b did not start"
out=$(pw_psql -c "ALTER DATABASE db_b RENAME TO db_b2" 2>&1)
pw_check "ALTER DATABASE db_b RENAME while its run executes" "" "$out"
sleep 1
pw_check "db_b2 is not listed: not served" 0 "$(workers_in db_b2)"
out=$(pw_psql -c "ALTER DATABASE db_b2 RENAME TO db_b" 2>&1)
pw_check "renamed back (while not served)" "" "$out"
pw_check "db_b served again: the interrupted run succeeds" succeeded \
    "$(dbq db_b "SELECT pipeline_worker.wait_run($slow, '20 s')")"
pw_check "its step committed once" 1 "$(dbq db_b "SELECT count(*) FROM effects WHERE run_id = $slow")"

slow=$(dbq db_b "SELECT pipeline_worker.create_run('p', '{\"sleep\": 5}')")
in_step db_b "$slow" || pw_fail "the slow run of db_b did not start"
start=$(pw_now)
out=$(pw_psql -c "DROP DATABASE db_b" 2>&1)
pw_check "DROP DATABASE db_b while its run executes, without FORCE" "" "$out"
pw_info "DROP DATABASE took $(pw_elapsed "$start") s"
n=$(dbq db_a "SELECT pipeline_worker.create_run('p', '{}')")
pw_check "db_a is still served" succeeded "$(dbq db_a "SELECT pipeline_worker.wait_run($n, '10 s')")"

# ---------------------------------------------------------------- metrics() covers every database served
m=$(dbq db_a "SELECT pipeline_worker.metrics()")
pw_check "metrics() in db_a counts db_a's and db_c's runs (shared memory)" "yes yes" \
    "$(grep -q '^pipeline_worker_runs_created_total{database="db_a",pipeline="p"} [1-9]' <<<"$m" && echo yes) $(grep -q '^pipeline_worker_runs_created_total{database="db_c",pipeline="p"} 401$' <<<"$m" && echo yes)"
# the counters of a database whose extension was dropped stay; its last count of unfinished runs does not (until
# 2026-12-03 it stayed, an oldest-pending age growing for good), nor that of a database dropped since
pw_check "... but no gauge of db_c (extension dropped) or of db_b (database dropped)" "0 0" \
    "$(grep -c '^pipeline_worker_\(runs\|oldest_pending_seconds\){database="db_c"' <<<"$m") $(grep -c '^pipeline_worker_\(runs\|oldest_pending_seconds\){database="[0-9]*",pipeline="gauged"' <<<"$m")"

# ---------------------------------------------------------------- '*': every database with the extension
pw_set_conf pipeline_worker.databases '*' || pw_fail "setting databases = *"
pw_check "'*': db_x's waiting run is executed" succeeded "$(dbq db_x "SELECT pipeline_worker.wait_run($x, '10 s')")"
n=$(dbq db_copy "SELECT pipeline_worker.create_run('p', '{}')")
pw_check "'*': the copy db_copy is served too" succeeded "$(dbq db_copy "SELECT pipeline_worker.wait_run($n, '10 s')")"
pw_check "'*': db_c (extension dropped) has no worker" 0 "$(workers_in db_c)"
# ---------------------------------------------------------------- fewer workers than busy databases: turns
pw_set_conf pipeline_worker.workers 1 || pw_fail "setting workers = 1"
pw_wait_workers 1 10 >/dev/null || pw_fail "workers = 1: not 1 worker"
# One worker, one busy database and idle ones: the idle ones' upkeep visits (after 4 s without a worker) come from a
# worker no busy database needs -- not from db_a's backlog, which keeps its one worker for its ~6 s. (First, while the
# idle ones lost their workers only now: after 16 s without one they take their turn among the busy.)
dbq db_a "SELECT count(*) FROM pipeline_worker.create_runs('p', (SELECT jsonb_agg(jsonb_build_object('sleep', 0.01, 'keep', 1))
                                                           FROM generate_series(1, 500)))" >/dev/null
PGDATABASE=db_a pw_wait_sql 0 40 "SELECT count(*) FROM pipeline_worker.runs WHERE input ? 'keep' AND status <> 'succeeded'" 0.5 >/dev/null \
    || pw_fail "one worker: db_a's backlog not drained"
# (Measured as the longest pause in the backlog's execution. A second process may go on with it a tenth of a second
# after the first left -- seen in 1 of 5 runs: with log_min_messages = debug1 the worker leaves db_a with its backlog,
# a worker serves postgres (idle, served under '*') for 0.1 s and a third takes db_a back. That is an idle database's starvation turn
# (launcher.cpp kStarveMs: without a worker for 16 s, it gets one even from a busy database, for its upkeep), quick
# because it has nothing to do. What must not happen is db_a waiting for visits: a second or more.)
pw_info "one worker: db_a's backlog executed by $(dbq db_a "SELECT count(DISTINCT worker_pid) FROM pipeline_worker.runs WHERE input ? 'keep'") worker process(es)"
pw_check "one worker: a busy database keeps it while idle ones wait for their visits (no pause of 1 s in its backlog)" t \
    "$(dbq db_a "SELECT coalesce(max(gap) < interval '1 s', true) FROM (SELECT started_at - lag(finished_at) OVER (ORDER BY started_at) AS gap
                 FROM pipeline_worker.runs WHERE input ? 'keep') g")"
for db in db_a db_x db_copy; do
    dbq $db "SELECT count(*) FROM pipeline_worker.create_runs('p', (SELECT jsonb_agg(jsonb_build_object('sleep', 0.01, 'turn', 1))
                                                           FROM generate_series(1, 300)))" >/dev/null
done
start=$(pw_now)
for db in db_a db_x db_copy; do
    PGDATABASE=$db pw_wait_sql 0 60 "SELECT count(*) FROM pipeline_worker.runs WHERE input ? 'turn' AND status <> 'succeeded'" 0.5 >/dev/null \
        || pw_fail "one worker, three busy databases: $db not drained"
done
pw_info "one worker, three databases with 300 runs of 10 ms each: all drained after $(pw_elapsed "$start") s"
pw_ok "one worker takes turns: none of three busy databases is starved"
# Turns of about a second each (kTenureMs), the database waiting longest first: each starts within ~2 s, not after the
# others drained (until 2026-12-04 a database whose worker had just left took it back, being first in the list).
waits=""; worst=0
for db in db_a db_x db_copy; do
    w=$(dbq $db "SELECT round(extract(epoch FROM (SELECT min(e.at) FROM effects e JOIN pipeline_worker.runs r ON r.id = e.run_id
                                                      WHERE r.input ? 'turn') - min(created_at)), 1)
                 FROM pipeline_worker.runs WHERE input ? 'turn'")
    waits="$waits $db:$w"
    pw_lt "$worst" "$w" && worst=$w
done
pw_info "one worker, three busy databases: first run started after$waits s"
pw_lt "$worst" 4 && pw_ok "one worker, three busy databases: each has its turn within 4 s" \
    || pw_fail "one worker, three busy databases: a database waited $worst s for its first turn ($waits)"
# One worker kept busy by db_a's backlog, and a finished run in db_x that passes its retention meanwhile: it is gone
# within 10 s of that (the issue's bound) -- the last worker to leave db_x noted when, and the launcher sends one
# back then. Until 2026-12-04 db_x waited for its turn among the busy databases: 16 s without a worker.
dbq db_x "SELECT pipeline_worker.create_pipeline('brief', '[{\"name\": \"a\", \"function\": \"where_am_i\"}]', '{\"retention\": \"3 seconds\"}')" >/dev/null
dbq db_x "SELECT pipeline_worker.create_pipeline('later', '[{\"name\": \"a\", \"function\": \"where_am_i\"}]', '{\"retention\": \"1 hour\"}')" >/dev/null
dbq db_x "SELECT pipeline_worker.create_run('brief', '{}'), pipeline_worker.create_run('later', '{}')" >/dev/null
PGDATABASE=db_x pw_wait_sql 2 15 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline IN ('brief', 'later') AND status = 'succeeded'" 0.2 >/dev/null \
    || pw_fail "one worker: db_x's run did not finish"
eligible=$(dbq db_x "SELECT finished_at + interval '3 seconds' FROM pipeline_worker.runs WHERE pipeline = 'brief'")
dbq db_a "SELECT count(*) FROM pipeline_worker.create_runs('p', (SELECT jsonb_agg(jsonb_build_object('sleep', 0.01, 'hog', 1))
                                                           FROM generate_series(1, 4000)))" >/dev/null
if PGDATABASE=db_x pw_wait_sql 0 25 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'brief'" 0.2 >/dev/null; then
    late=$(dbq db_x "SELECT round(extract(epoch FROM clock_timestamp() - '$eligible'::timestamptz), 1)")
    left=$(dbq db_a "SELECT count(*) FROM pipeline_worker.runs WHERE input ? 'hog' AND status = 'pending'")
    pw_info "one worker busy in db_a ($left runs still queued there): db_x's run deleted $late s after passing its retention"
    pw_lt "$late" 10 && [ "$left" -gt 0 ] \
        && pw_ok "one worker busy elsewhere: an idle database's finished run is deleted within 10 s of passing its retention" \
        || pw_fail "an idle database's run was deleted $late s after passing its retention ($left runs left in db_a)"
else
    pw_fail "one worker busy elsewhere: db_x's run not deleted 25 s after it finished"
fi
# ... and one made older by hand once the last worker left (no moment noted for it, nothing woken): db_x's turn among
# the busy databases (after 16 s without a worker) deletes it. Until 2026-12-04 that turn did nothing: the worker sent
# there was asked to leave before its first round, db_x being idle and db_a waiting -- until db_a had drained.
sleep 1
dbq db_x "UPDATE pipeline_worker.runs SET finished_at = finished_at - interval '2 hours' WHERE pipeline = 'later'" >/dev/null
start=$(pw_now)
if PGDATABASE=db_x pw_wait_sql 0 25 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'later'" 0.2 >/dev/null; then
    took=$(pw_elapsed "$start")
    left=$(dbq db_a "SELECT count(*) FROM pipeline_worker.runs WHERE input ? 'hog' AND status = 'pending'")
    pw_info "one worker busy in db_a ($left runs still queued there): a run past its retention by hand deleted in db_x after $took s"
    pw_lt "$took" 20 && [ "$left" -gt 0 ] \
        && pw_ok "an idle database without a worker gets its turn among the busy ones (16 s): its upkeep runs" \
        || pw_fail "an idle database's turn came after $took s ($left runs left in db_a)"
else
    pw_fail "an idle database without a worker did not get its turn among the busy ones within 25 s"
fi
dbq db_a "SELECT count(pipeline_worker.cancel_run(id)) FROM pipeline_worker.runs WHERE input ? 'hog' AND status = 'pending'" >/dev/null
PGDATABASE=db_a pw_wait_sql 0 20 "SELECT count(*) FROM pipeline_worker.runs WHERE input ? 'hog' AND status NOT IN ('succeeded', 'cancelled')" 0.5 >/dev/null \
    || pw_fail "db_a's backlog not cancelled"
# Two workers, three idle databases, one run committed in each at once: each starts within 1 s (the issue's bound;
# ~0.25 s at most here). Until 2026-12-03 the third took 1-4 s: a run whose wake-up went to a worker just asked to
# leave waited for the database's next turn, and a database that had just claimed stayed busy for 2 s.
# Fewer workers than databases, a backlog in one: the idle ones keep at most half of the workers it leaves (at least
# one, free to move at once) -- 4 workers, 6 databases: db_a gets 3. (Until 2026-12-07 every idle one came before a
# busy one's second: db_a had 1 while three sat idle elsewhere.) With as many workers as databases each keeps one.
for db in db_y db_z; do
    pw_psql -c "CREATE DATABASE $db" >/dev/null && fixtures $db || pw_fail "fixtures $db"
done
pw_set_conf pipeline_worker.workers 4 || pw_fail "setting workers = 4"
pw_wait_workers 4 10 >/dev/null || pw_fail "workers = 4: not 4 workers"
dbq db_a "SELECT count(*) FROM pipeline_worker.create_runs('p', (SELECT jsonb_agg(jsonb_build_object('sleep', 0.05, 'most', 1))
                                                           FROM generate_series(1, 1200)))" >/dev/null
if got=$(pw_wait_sql 3 15 "SELECT count(*) FROM pipeline_worker.workers() WHERE database = 'db_a'" 0.2); then
    pw_ok "4 workers, a backlog in db_a and five idle databases: db_a gets 3"
else pw_fail "4 workers, a backlog in db_a and five idle databases: db_a has $got"; fi
dbq db_a "SELECT count(pipeline_worker.cancel_run(id)) FROM pipeline_worker.runs WHERE input ? 'most' AND status = 'pending'" >/dev/null
PGDATABASE=db_a pw_wait_sql 0 20 "SELECT count(*) FROM pipeline_worker.runs WHERE input ? 'most' AND status NOT IN ('succeeded', 'cancelled')" 0.5 >/dev/null \
    || pw_fail "db_a's backlog of 1200 not cancelled"
for db in db_y db_z; do pw_psql -c "DROP DATABASE $db" >/dev/null || pw_fail "DROP DATABASE $db"; done
pw_set_conf pipeline_worker.workers 2 || pw_fail "setting workers = 2"
pw_wait_workers 2 10 >/dev/null || pw_fail "workers = 2: not 2 workers"
worst=0
for trial in 1 2 3; do
    sleep 2
    for db in db_a db_x db_copy; do dbq $db "SELECT pipeline_worker.create_run('p', '{\"burst\": $trial}')" >/dev/null & done
    wait
    for db in db_a db_x db_copy; do
        PGDATABASE=$db pw_wait_sql 0 10 "SELECT count(*) FROM pipeline_worker.runs WHERE input ? 'burst' AND status <> 'succeeded'" 0.2 >/dev/null
        ms=$(dbq $db "SELECT coalesce(max(round(extract(epoch FROM started_at - created_at) * 1000)), 99999)::int
                      FROM pipeline_worker.runs WHERE input->>'burst' = '$trial'")
        [ "$ms" -gt "$worst" ] && worst=$ms
        all="$all $db:$ms"
    done
done
pw_info "two workers, three databases given a run each at once (3 times): the slowest started after $worst ms ($all)"
[ "$worst" -lt 1000 ] && pw_ok "each of three databases with a run gets a worker within 1 s (two workers)" \
    || pw_fail "a run waited $worst ms for a worker in its database (two workers, three databases)"
# Two workers busy with backlogs in db_a and db_x, then a new database with CREATE EXTENSION and a run: one of them
# yields its worker at once. Until 2026-12-07 it took 1.4-2 s (acceptance walk-through): CREATE EXTENSION woke the
# launcher only for a database it had seen (the new one waited for its next pass), and the busy database that had just
# given its worker up ranked with the new one (waits compared in tenths of a second) and took it back by its place in
# the list, and so did the other.
# Trials 4 and 5: the launcher looks at the new database before its CREATE EXTENSION (woken by wake_workers() in
# db_a; in trials 1-3 its one-second pass may too, as in CI). The worker it sends there leaves for want of the
# extension, and the busy databases get their workers back -- until 2026-12-07 with their tenure begun again: for a
# second neither yielded, and the run waited 0.97-1.05 s in CI (0.85-0.86 s here, where the look is forced 0.15 s
# before CREATE EXTENSION). Now the one given back the worker the look took keeps its tenure, and yields at once.
worst=0
all=
looked=
for trial in 1 2 3 4 5; do
    for db in db_a db_x; do
        dbq $db "SELECT count(*) FROM pipeline_worker.create_runs('p', (SELECT jsonb_agg(jsonb_build_object('sleep', 0.005, 'hog2', 1))
                                                                 FROM generate_series(1, 600)))" >/dev/null
    done
    sleep 1.5
    pw_psql -c "CREATE DATABASE db_new$trial" >/dev/null || pw_fail "CREATE DATABASE db_new$trial"
    if [ $trial -ge 4 ]; then
        dbq db_a "SELECT pipeline_worker.wake_workers()" >/dev/null
        sleep 0.15
    fi
    fixtures db_new$trial || pw_fail "fixtures db_new$trial"
    dbq db_new$trial "SELECT pipeline_worker.create_run('p', '{}')" >/dev/null
    PGDATABASE=db_new$trial pw_wait_sql 0 10 "SELECT count(*) FROM pipeline_worker.runs WHERE status <> 'succeeded'" 0.1 >/dev/null
    ms=$(dbq db_new$trial "SELECT coalesce(max(round(extract(epoch FROM r.started_at - e.at) * 1000)), 99999)::int
                           FROM pipeline_worker.runs r, ext_created e")
    [ "$ms" -gt "$worst" ] && worst=$ms
    all="$all $ms"
    [ $trial -ge 4 ] && looked="$looked $ms"
    for db in db_a db_x; do
        dbq $db "SELECT count(pipeline_worker.cancel_run(id)) FROM pipeline_worker.runs WHERE input ? 'hog2' AND status = 'pending'" >/dev/null
    done
    pw_psql -c "DROP DATABASE db_new$trial" >/dev/null || pw_fail "DROP DATABASE db_new$trial"
done
pw_info "two workers busy in two databases, CREATE EXTENSION and a run in a new one (5 times; 4 and 5 looked at first): started after$all ms"
[ "$worst" -lt 1000 ] && pw_ok "a new database's run starts within 1 s of CREATE EXTENSION while every worker is busy elsewhere" \
    || pw_fail "a new database's run started $worst ms after CREATE EXTENSION (every worker busy elsewhere)"
# (A bound of 0.5 s for the two looked at first: the build before took 0.85-0.86 s there, this one 38-43 ms.)
slow=$(echo $looked | tr ' ' '\n' | sort -n | tail -1)
[ "${slow:-99999}" -lt 500 ] && pw_ok "... also when the launcher looked there before CREATE EXTENSION: the busy databases keep their turns (within 0.5 s)" \
    || pw_fail "a new database looked at before CREATE EXTENSION: its run started $slow ms after it (the busy databases' turns began again)"
pw_reset_conf pipeline_worker.workers

# ---------------------------------------------------------------- runs parked by a limit before a restart, every database
# After a restart the lanes (shared memory) know of no parked run: each database's first worker puts back every run
# parked by a limit. With one flag for the server, only the database whose worker came first did; the other's parked
# runs stayed parked for good (faults.sh, two databases, an immediate stop: seen once in CI). Runs parked in the
# transaction that creates them stand for runs parked before a restart.
for db in db_a db_x; do
    pw_parked_runs lim where_am_i 5 -d $db || pw_fail "$db: parked runs not set up"
done
pw_cluster_restart || pw_fail "restart failed"
for db in db_a db_x; do
    if PGDATABASE=$db pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'lim' AND status <> 'succeeded'" 0.2 >/dev/null; then
        pw_ok "$db: the runs parked before the restart were put back and ran"
    else
        pw_fail "$db: runs parked before the restart stayed parked ($(dbq $db "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'lim' AND parked IS NOT NULL") left)"
    fi
done

out=$(pw_psql -c "ALTER SYSTEM SET pipeline_worker.databases = 'a,,b'" 2>&1)
case "$out" in *"invalid value"*) pw_ok "an empty name in the list is refused";; *) pw_fail "databases = 'a,,b': $out";; esac
# (blanks only named no database, and served none; '' stays the default: pipeline_worker.database)
out=$(pw_psql -c "ALTER SYSTEM SET pipeline_worker.databases = ' '" 2>&1)
case "$out" in *"invalid value"*"names no database"*) pw_ok "a value of blanks only is refused, saying why";;
    *) pw_fail "databases = ' ': $out";; esac
pw_check "no worker ended abnormally" "" "$(grep -E 'PANIC|terminated by signal|exited with exit code [^01]' "$PW_LOG" | head -3)"
pw_finish
