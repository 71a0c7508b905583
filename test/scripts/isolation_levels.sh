#!/bin/bash
# The workers in a database whose default_transaction_isolation is REPEATABLE READ or SERIALIZABLE: the workers'
# transactions take that default (ALTER DATABASE ... SET applies to them as to any session), so their claims see the
# transaction's snapshot and a serializable commit may fail. Every run still finishes, every step's effect happens
# exactly once, and the steps see the level the database asked for. (The claim keeps no memory of where the queue ended
# under these levels: docs/ARCHITECTURE.md, "Claim".)
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up isolevels 4 20 || pw_die "the workers did not start"
# This script's own sessions stay at READ COMMITTED: a serializable submitter may see its create_runs fail with 40001
# and have to retry it, which is not what is tested here.
export PGOPTIONS='-c default_transaction_isolation=read\ committed'
pw_psql >/dev/null <<'SQL' || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE public.effects (run_id bigint, step text, iso text, PRIMARY KEY (run_id, step));
CREATE FUNCTION public.effect(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.effects VALUES ((ctx->>'run_id')::bigint, ctx->>'step', current_setting('transaction_isolation'));
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('iso3', '[{"name": "a", "function": "public.effect"},
    {"name": "b", "function": "public.effect"}, {"name": "c", "function": "public.effect"}]');
SELECT pipeline_worker.create_pipeline('iso_limited', '[{"name": "a", "function": "public.effect"}]', '{"concurrency": 2}');
CREATE FUNCTION public.effect_5ms(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.005); RETURN public.effect(ctx); END $$;
SELECT pipeline_worker.create_pipeline('iso_order', '[{"name": "a", "function": "public.effect_5ms"}]', '{"concurrency": 1}');
SQL

for level in 'repeatable read' 'serializable'; do
    pw_psql -c "ALTER DATABASE postgres SET default_transaction_isolation = '$level'" >/dev/null || pw_die "ALTER DATABASE failed"
    # (new workers: a database's settings apply when a backend connects)
    pw_set_conf pipeline_worker.workers 0
    pw_wait_workers 0 30 >/dev/null || pw_die "the workers did not leave"
    pw_psql -c "TRUNCATE public.effects; TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs" >/dev/null
    pw_set_conf pipeline_worker.workers 4
    pw_wait_workers 4 30 >/dev/null || pw_die "the workers did not come back"
    pw_psql >/dev/null <<'SQL' || pw_die "create_runs failed"
SELECT count(*) FROM pipeline_worker.create_runs('iso3', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 2000) g));
SELECT count(*) FROM pipeline_worker.create_runs('iso_limited', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 200) g));
SELECT count(*) FROM pipeline_worker.create_runs('iso3', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 100) g),
                                                 priority => 5);
SQL
    # runs created one by one while the others drain
    for _ in $(seq 1 50); do echo "SELECT pipeline_worker.create_run('iso3', '{\"late\": 1}');"; done | pw_psql >/dev/null \
        || pw_die "create_run failed"
    left=$(pw_wait_sql 0 120 "SELECT count(*) FROM pipeline_worker.runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')" 0.3)
    pw_check "$level: all 2,350 runs finish" "0" "$left"
    [ "$left" = 0 ] || pw_info "$level: unfinished: $(pw_psql -c "SELECT string_agg(pipeline || ' ' || status || ' parked=' || coalesce(parked::text, '-') || ' nb=' || coalesce(not_before::text, '-') || ' claims=' || claims, '; ') FROM pipeline_worker.runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')")"
    pw_check_sql "$level: every run succeeded" "2350" "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'"
    pw_check_sql "$level: every step's effect happened exactly once" "6650|6650" \
        "SELECT count(*) || '|' || count(DISTINCT (run_id, step)) FROM public.effects"
    pw_check_sql "$level: the steps ran at the database's default level" "$level" \
        "SELECT string_agg(DISTINCT iso, ',') FROM public.effects"
    # A burst into a full lane (its runs parked, put back one at a time): the put-backs, whose snapshot is the
    # transaction's, conclude nothing about the lane's parked runs at this level. The queued runs behind the lane's
    # parked ones used to wait for an order bound that no put-back moved: 27 to 30 of 30 runs never started.
    pw_psql >/dev/null <<'SQL' || pw_die "the burst failed"
SELECT pipeline_worker.pause_pipeline('iso_order');
SELECT count(pipeline_worker.create_run('iso_order', '{}', priority => g % 4)) FROM generate_series(1, 30) g;
SELECT pipeline_worker.resume_pipeline('iso_order');
SQL
    left=$(pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'iso_order' AND status NOT IN ('succeeded', 'failed', 'cancelled')" 0.3)
    pw_check "$level: 30 runs released at once into a lane of one all finish" "0" "$left"
    pw_psql -c "SELECT count(pipeline_worker.cancel_run(id)) FROM pipeline_worker.runs WHERE pipeline = 'iso_order'" >/dev/null
done

# A pipeline changed while a worker's transaction (its snapshot taken before the change) executes one of its runs:
# a lookup of the pipeline in that transaction after the change (the run's outcome asks whether it notifies) read the
# old definition, and until 2026-12-07 cached it under the new generation -- every later run of the pipeline kept
# the old definition until the next change.
pw_set_conf pipeline_worker.workers 1
pw_wait_workers 1 30 >/dev/null || pw_die "the workers did not come down to 1"
pw_psql >/dev/null <<'SQL' || pw_die "setup of the changed pipeline failed"
CREATE FUNCTION public.napper(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep((ctx->'input'->>'s')::float8); RETURN '{}'; END $$;
SELECT pipeline_worker.create_pipeline('iso_changed', '[{"name": "a", "function": "public.napper"}]');
SQL
first=$(pw_psql -c "SELECT pipeline_worker.create_run('iso_changed', '{\"s\": 1.5}')")
pw_wait_sql running 20 "SELECT status FROM pipeline_worker.runs WHERE id = $first" >/dev/null || pw_fail "the first run did not start"
pw_psql -c "SELECT pipeline_worker.alter_pipeline('iso_changed', '{\"timeout_ms\": 100}')" >/dev/null
pw_check "serializable: the run under way when its pipeline changed ends as it began" succeeded "$(pw_wait_run "$first" 20)"
later=$(pw_psql -c "SELECT pipeline_worker.create_run('iso_changed', '{\"s\": 0.3}')")
pw_check "serializable: a run submitted after the change gets the new definition (its step times out)" "failed|t" \
    "$(pw_wait_run "$later" 20)|$(pw_psql -c "SELECT error LIKE '%timed out%' FROM pipeline_worker.runs WHERE id = $later")"
pw_psql -c "ALTER DATABASE postgres RESET default_transaction_isolation" >/dev/null
pw_finish
