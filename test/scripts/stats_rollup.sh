#!/bin/bash
# pipeline_stats' per-minute roll-ups of finished runs (finished_minutes): the lead worker seals the minutes no open
# transaction can still add to; the view sums them and counts the rest exactly. Whatever was sealed, the view's
# counts equal a plain count of the runs -- after purge_runs and retention delete recent runs, after retry_run reopens
# one, after a TRUNCATE -- and each role sums only the runs it may see.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up stats_rollup 1 20 "pipeline_worker.retention = '-1'" || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE FUNCTION sr_step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT ctx->'input' $$;
CREATE ROLE sr_user LOGIN;
SELECT pipeline_worker.create_pipeline('sr', '[{"name": "a", "function": "sr_step"}]');
SELECT pipeline_worker.grant_pipeline('sr', 'sr_user');
-- 3,000 finished runs over the last 55 minutes (a third of them sr_user's), 500 older than the hour
INSERT INTO pipeline_worker.runs (pipeline, pipeline_id, pipeline_owner, submitted_by, status, input, created_at,
                                  started_at, finished_at, claims)
SELECT p.name, p.id, p.owner, CASE WHEN g % 3 = 0 THEN 'sr_user'::regrole ELSE p.owner END,
       CASE WHEN g % 10 = 0 THEN 'failed' WHEN g % 17 = 0 THEN 'cancelled' ELSE 'succeeded' END, '{}',
       now() - interval '2 hours', now() - interval '2 hours',
       CASE WHEN g <= 500 THEN now() - interval '90 minutes' ELSE now() - (g % 3300) * interval '1 second' - interval '10 s' END, 1
  FROM pipeline_worker.pipelines p, generate_series(1, 3500) g;
SQL

exact() {  # the view's three counts against plain counts, as a role
    local who=${1:-postgres}
    pw_psql -U "$who" -c "SELECT ((s.succeeded_1h, s.failed_1h, s.cancelled_1h) = (
        (SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'sr' AND status = 'succeeded' AND finished_at > now() - interval '1 hour'),
        (SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'sr' AND status = 'failed' AND finished_at > now() - interval '1 hour'),
        (SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'sr' AND status = 'cancelled' AND finished_at > now() - interval '1 hour')))::text
        || ' ' || s.succeeded_1h FROM pipeline_worker.pipeline_stats s WHERE s.pipeline = 'sr'"
}
sealed() {  # wait until the lead worker sealed up to the current minute
    pw_wait_sql t 15 "SELECT upto >= date_trunc('minute', now()) FROM pipeline_worker.finished_sealed" >/dev/null
}

sealed || pw_fail "the minutes were not sealed within 15 s"
pw_check_sql "the lead worker rolled the hour's finished runs up per minute" t \
    "SELECT count(*) > 10 AND sum(n) <= 3000 FROM pipeline_worker.finished_minutes"
pw_check "pipeline_stats sums the roll-ups and counts the rest: equal to plain counts" "true" "$(exact | cut -d' ' -f1)"
pw_check "... for a grantee too (its own runs only)" "true" "$(exact sr_user | cut -d' ' -f1)"
own=$(pw_psql -U sr_user -c "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded' AND finished_at > now() - interval '1 hour'")
pw_check "... the grantee's count is of its own runs" "$own" "$(exact sr_user | cut -d' ' -f2)"

pw_psql -c "SELECT pipeline_worker.purge_runs('20 minutes', 'sr')" >/dev/null
pw_check "purge_runs of runs finished within the hour: still equal" "true" "$(exact | cut -d' ' -f1)"
sealed
pw_check "... and after sealing again" "true" "$(exact | cut -d' ' -f1)"

id=$(pw_psql -c "SELECT id FROM pipeline_worker.runs WHERE status = 'failed' AND finished_at > now() - interval '15 minutes' ORDER BY id LIMIT 1")
pw_check "retry_run of a run finished 15 minutes ago" t "$(pw_psql -c "SELECT pipeline_worker.retry_run($id)")"
pw_wait_sql succeeded 10 "SELECT status FROM pipeline_worker.runs WHERE id = $id" >/dev/null
sealed
pw_check "... still equal (its old minute no longer counts it; it finished again now)" "true" "$(exact | cut -d' ' -f1)"

pw_set_conf pipeline_worker.retention '5 minutes' || pw_fail "set retention"
pw_wait_sql 0 20 "SELECT count(*) FROM pipeline_worker.runs WHERE finished_at < now() - interval '5 minutes' - interval '30 seconds'" >/dev/null \
    || pw_fail "retention did not delete the runs"
sealed
pw_check "retention deleting runs finished within the hour: still equal" "true" "$(exact | cut -d' ' -f1)"
# ... by taking the deleted runs off the sealed minutes' roll-ups, not by counting those minutes again (which, with a
# retention under an hour, recounted a minute's worth of runs every second): their rows stay, at 0.
pw_check_sql "... the roll-ups of the minutes retention emptied are kept at 0, not counted again" "t" \
    "SELECT count(*) > 0 AND bool_and(n = 0) FROM pipeline_worker.finished_minutes
      WHERE minute < now() - interval '7 minutes' AND minute > now() - interval '55 minutes'"
pw_reset_conf pipeline_worker.retention

# Runs inserted already finished (a restore, a hand-made history) into minutes sealed before: the insert trigger
# (WHEN finished_within_rollups(finished_at), a C function since 2026-12-05) has those minutes counted again; one
# finished two hours ago, outside the roll-ups, leaves the seal where it was.
sealed
# (each in one transaction: the trigger's change is seen there, and no sealing by the lead worker comes in between)
got=$(pw_psql <<'SQL'
BEGIN;
CREATE TEMP TABLE before_insert AS SELECT upto FROM pipeline_worker.finished_sealed;
INSERT INTO pipeline_worker.runs (pipeline, pipeline_id, pipeline_owner, submitted_by, status, input, created_at,
                                  started_at, finished_at, claims)
SELECT name, id, owner, owner, 'succeeded', '{}', now() - interval '3 hours', now() - interval '3 hours',
       now() - interval '2 hours', 1 FROM pipeline_worker.pipelines WHERE name = 'sr';
SELECT (SELECT upto FROM pipeline_worker.finished_sealed) = (SELECT upto FROM before_insert);
COMMIT;
SQL
)
pw_check "a run inserted finished 2 hours ago leaves the sealed minutes alone" t "$got"
got=$(pw_psql <<'SQL'
BEGIN;
INSERT INTO pipeline_worker.runs (pipeline, pipeline_id, pipeline_owner, submitted_by, status, input, created_at,
                                  started_at, finished_at, claims)
SELECT name, id, owner, owner, s, '{}', now() - interval '1 hour', now() - interval '1 hour',
       now() - interval '20 minutes', 1
  FROM pipeline_worker.pipelines, unnest(ARRAY['succeeded', 'succeeded', 'failed', 'cancelled']) s WHERE name = 'sr';
SELECT upto <= date_trunc('minute', now() - interval '20 minutes') FROM pipeline_worker.finished_sealed;
COMMIT;
SQL
)
pw_check "runs inserted finished 20 minutes ago move the seal back before their minute" t "$got"
pw_check "... and pipeline_stats counts them: still equal" "true" "$(exact | cut -d' ' -f1)"
sealed
pw_check "... and after sealing again" "true" "$(exact | cut -d' ' -f1)"

pw_psql -c "TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs" >/dev/null
pw_check_sql "TRUNCATE of the runs empties the roll-ups" "0 0" \
    "SELECT (SELECT count(*) FROM pipeline_worker.finished_minutes) || ' ' || (SELECT succeeded_1h FROM pipeline_worker.pipeline_stats WHERE pipeline = 'sr')"
pw_psql -c "SELECT pipeline_worker.create_run('sr', '{}') FROM generate_series(1, 5)" >/dev/null
pw_wait_sql 5 10 "SELECT succeeded_1h FROM pipeline_worker.pipeline_stats WHERE pipeline = 'sr'" >/dev/null
pw_check "runs finishing after it are counted" "true" "$(exact | cut -d' ' -f1)"
pw_check_sql "the roll-ups are readable only through row-level security (a stranger sees none)" "0" \
    "SET ROLE sr_user; SELECT count(*) FROM pipeline_worker.finished_minutes WHERE submitted_by <> 'sr_user'::regrole"
pw_finish
