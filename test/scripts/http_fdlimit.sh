#!/bin/bash
# HTTP steps under a low open-file limit (a server started from a shell often gets 1,024, here 256 soft and hard):
# the worker must stay under it -- fewer requests in flight than pipeline_worker.http_max_in_flight asks for --
# log clearly that the limit binds, and fail no request because of it.
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/../lib/http.sh"
trap pw_http_cleanup EXIT
# shellcheck disable=SC2034  # read by srv (test/lib/http.sh)
SRV_MAX_TIME=10
pw_http_start

PW_PGCTL_WRAP="prlimit --nofile=256:256 --" PW_WORKERS=1 pw_cluster_start http_fdlimit \
    "pipeline_worker.http_allowed_hosts = '127.0.0.1'" "pipeline_worker.http_max_in_flight = 1000"
pid=$(head -1 "$PW_DATA/postmaster.pid")
pw_check "the server runs with an open file limit of 256" 256 "$(awk '/Max open files/ {print $4}' /proc/$pid/limits)"

pw_psql <<SQL >/dev/null || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
SELECT pipeline_worker.create_pipeline('slowish', '[{"name": "call", "http": {"url": "http://127.0.0.1:$PORT/delay?ms=100"}}]');
SQL
srv_reset
pw_psql -c "SELECT count(pipeline_worker.create_run('slowish')) FROM generate_series(1, 200)" >/dev/null
left=$(pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')") \
    && pw_ok "200 runs finished under the limit" || pw_fail "runs still unfinished after 30 s: $left"
pw_check_sql "every run succeeded (no request failed because of the limit)" 200 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'"
stats=$(srv /stats)
max=$(srv_stat max_in_flight "$stats")
pw_info "endpoint: $stats"
if [ -n "$max" ] && [ "$max" -ge 1 ] && [ "$max" -lt 100 ]; then
    pw_ok "requests in flight stayed under the file limit (peak $max, not http_max_in_flight = 1000)"
else
    pw_fail "requests in flight: peak '$max'"
fi
pw_check "the endpoint received exactly 200 requests" 200 "$(srv_stat requests "$stats")"
if grep -q "the open file limit (256) holds this worker to [0-9]* HTTP requests in flight instead of pipeline_worker.http_max_in_flight = 1000" "$PW_LOG"; then
    pw_ok "the worker logs that the open file limit binds"
else
    pw_fail "no log line about the open file limit"
fi
pw_check "logged once, not per request" 1 "$(grep -c 'the open file limit' "$PW_LOG")"

# Requests beside a step that opens more files than the limit leaves above Postgres's own share (300 tables): the
# requests' files are reserved out of Postgres's share, which closes cached files to make room. Until 2026-12-07 most
# requests failed to connect, or the client's epoll set could not be made ("Too many open files").
pw_psql <<SQL >/dev/null || pw_die "setup of the many tables failed"
DO \$\$ BEGIN FOR i IN 1..300 LOOP EXECUTE format('CREATE TABLE many_%s (x int); INSERT INTO many_%s VALUES (1)', i, i);
END LOOP; END \$\$;
CREATE FUNCTION touch_all(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE s int := 0; c int;
BEGIN
    FOR i IN 1..300 LOOP EXECUTE format('SELECT count(*) FROM many_%s', i) INTO c; s := s + c; END LOOP;
    RETURN to_jsonb(s);
END \$\$;
SELECT pipeline_worker.create_pipeline('files_and_call', '[{"name": "h", "http": {"url": "http://127.0.0.1:$PORT/delay?ms=300"}, "depends_on": []},
                                                          {"name": "f", "function": "touch_all", "depends_on": []}]');
SQL
srv_reset
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('files_and_call', (SELECT jsonb_agg(i) FROM generate_series(1, 100) i))" >/dev/null
left=$(pw_wait_sql 0 60 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'files_and_call' AND status IN ('pending', 'running')") \
    && pw_ok "100 runs of a request beside a step opening 300 tables finished" || pw_fail "runs still unfinished after 60 s: $left"
pw_check_sql "... every one succeeded" "100|" \
    "SELECT count(*) FILTER (WHERE status = 'succeeded') || '|' || coalesce(min(error) FILTER (WHERE status <> 'succeeded'), '')
       FROM pipeline_worker.runs WHERE pipeline = 'files_and_call'"
pw_check "... the endpoint received 100 requests" 100 "$(srv_stat requests)"
if grep -qiE "too many open files|EMFILE" "$PW_LOG"; then pw_fail "the server ran out of file descriptors"
else pw_ok "no 'too many open files' anywhere in the server log"; fi
pw_finish
