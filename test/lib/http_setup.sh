# shellcheck shell=bash
# The set-up of the HTTP script tests (test/scripts/http.sh, http_load.sh): the Node test server, a cluster with two
# workers that may call it, the pipelines every section uses, and their helpers. Sourced after cluster.sh and http.sh.
trap pw_http_cleanup EXIT

# ---------------------------------------------------------------- the test server
pw_http_start --host 127.0.0.1,127.0.0.2,127.0.0.3
CLOSED_PORT=$(pw_free_port) || pw_die "no free port for the connection-refused test"
pw_info "test server: $B (pid $SRV_PID); closed port $CLOSED_PORT"

# srv_path_count PATH : requests counted for PATH (0 when none)
srv_path_count() {
    local n
    n=$(srv /stats | sed -n "s|.*\"by_path\":{[^}]*\"$1\":\([0-9][0-9]*\).*|\1|p")
    echo "${n:-0}"
}
# srv_keys_of RUN : "key=count ..." of the Idempotency-Keys of run RUN the server saw, sorted
srv_keys_of() {
    pw_psql -c "SELECT coalesce(string_agg(key || '=' || value, ' ' ORDER BY key), '')
                  FROM jsonb_each_text('$(srv /keys)'::jsonb) WHERE key LIKE '$1:%'"
}
# ge A B : A is a number >= B (false for anything else)
ge() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ]; }
# urlenc STRING : percent-encodes what matters in a query value
urlenc() { printf '%s' "$1" | sed -e 's/%/%25/g' -e 's/:/%3A/g' -e 's|/|%2F|g' -e 's/?/%3F/g' -e 's/&/%26/g' -e 's/=/%3D/g'; }

# ---------------------------------------------------------------- the cluster
pw_cluster_up "$(basename "$0" .sh)" 2 20 "pipeline_worker.http_allowed_hosts = '127.0.0.1, localhost'" \
    "pipeline_worker.recovery_interval_ms = 500" || exit 1
export PGOPTIONS="-c statement_timeout=30s"   # no statement of this script may hang (wait_run waits <= 15 s)
pw_psql <<'SQL' >/dev/null || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
CREATE FUNCTION f_first(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN jsonb_build_object('a', ctx->'input'->'x', 'from', 'first');
END $$;
CREATE FUNCTION f_nap(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(3);
    RETURN '{"napped": true}';
END $$;
CREATE FUNCTION f_last(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN jsonb_build_object('http_method', ctx->'prev'->'method', 'http_saw_prev', ctx->'prev'->'body'->'prev',
                              'results_call_path', ctx->'results'->'call'->'path');
END $$;
SQL

# definitions: @B@ is the server's base URL, @P@ its port, @C@ a closed port, @TO_OK@ / @TO_DENIED@ url-encoded
# redirect targets (/ok on 127.0.0.1, /ok on 127.0.0.3)
TO_OK=$(urlenc "$B/ok")
TO_DENIED=$(urlenc "http://127.0.0.3:$PORT/ok")
TO_ECHO=$(urlenc "$B/echo")
TO_ECHO_OTHER=$(urlenc "http://localhost:$PORT/echo")
mkpipe() {  # NAME STEPS_JSON
    local steps=$2
    steps=${steps//@B@/$B}
    steps=${steps//@P@/$PORT}
    steps=${steps//@C@/$CLOSED_PORT}
    steps=${steps//@TO_OK@/$TO_OK}
    steps=${steps//@TO_DENIED@/$TO_DENIED}
    steps=${steps//@TO_ECHO@/$TO_ECHO}
    steps=${steps//@TO_ECHO_OTHER@/$TO_ECHO_OTHER}
    pw_psql -c "SELECT pipeline_worker.create_pipeline('$1', '$steps')" >/dev/null 2>"$SRV_DIR/mkpipe.err" \
        || pw_die "create_pipeline $1 failed: $(cat "$SRV_DIR/mkpipe.err")"
}
R3='"max_attempts": 3, "retry_delay_ms": 50'
R2='"max_attempts": 2, "retry_delay_ms": 50'
mkpipe echo_post  '[{"name": "call", "http": {"url": "@B@/echo?q=1", "headers": {"X-Test": "hello"}}}]'
mkpipe echo_empty '[{"name": "call", "http": {"url": "@B@/echo", "headers": {"X-Empty": ""}}}]'
mkpipe tmo_step   '[{"name": "call", "http": {"url": "@B@/delay?ms=3000"}, "timeout_ms": 300}]'
# both limits apply, the shorter wins: the request's 5,000 ms and the attempt's 300 ms
mkpipe tmo_both   '[{"name": "call", "http": {"url": "@B@/delay?ms=3000", "timeout_ms": 5000}, "timeout_ms": 300}]'
mkpipe echo_own   '[{"name": "call", "http": {"url": "@B@/echo", "headers": {"Content-Type": "application/vnd.api+json", "Idempotency-Key": "mine", "pipeline-run-id": "0"}}}]'
mkpipe methods    '[{"name": "get", "http": {"url": "@B@/echo", "method": "GET"}},
                    {"name": "delete", "http": {"url": "@B@/echo", "method": "DELETE"}},
                    {"name": "put", "http": {"url": "@B@/echo", "method": "PUT"}},
                    {"name": "patch", "http": {"url": "@B@/echo", "method": "PATCH"}}]'
mkpipe text       '[{"name": "call", "http": {"url": "@B@/text"}}]'
mkpipe empty      '[{"name": "call", "http": {"url": "@B@/empty"}}]'
mkpipe badjson    '[{"name": "call", "http": {"url": "@B@/badjson"}}]'
mkpipe binary     '[{"name": "call", "http": {"url": "@B@/binary"}}]'
mkpipe deep300    '[{"name": "call", "http": {"url": "@B@/deep?n=300"}}]'
mkpipe nuljson    '[{"name": "call", "http": {"url": "@B@/nuljson"}}]'
mkpipe bomjson    '[{"name": "call", "http": {"url": "@B@/bomjson"}}]'
mkpipe badutf8json '[{"name": "call", "http": {"url": "@B@/badutf8json"}}]'
mkpipe utf8error  '[{"name": "call", "http": {"url": "@B@/utf8error"}}]'
mkpipe s404       '[{"name": "call", "http": {"url": "@B@/status/404"}, '"$R3"'}]'
mkpipe s500       '[{"name": "call", "http": {"url": "@B@/status/500"}, '"$R3"'}]'
mkpipe flaky      '[{"name": "call", "http": {"url": "@B@/flaky?fail=2"}, '"$R3"'}]'
mkpipe flaky429   '[{"name": "call", "http": {"url": "@B@/flaky?fail=1&status=429"}, '"$R2"'}]'
mkpipe after429   '[{"name": "call", "http": {"url": "@B@/status/429?retry_after=1"}, "max_attempts": 2, "retry_delay_ms": 10}]'
mkpipe tmo        '[{"name": "call", "http": {"url": "@B@/delay?ms=3000", "timeout_ms": 300}, '"$R2"'}]'
mkpipe refused    '[{"name": "call", "http": {"url": "http://127.0.0.1:@C@/ok"}, '"$R2"'}]'
mkpipe closer     '[{"name": "call", "http": {"url": "@B@/close"}, '"$R3"'}]'
mkpipe closer1    '[{"name": "call", "http": {"url": "@B@/close"}}]'
mkpipe tls        '[{"name": "call", "http": {"url": "https://127.0.0.1:@P@/ok"}, '"$R3"'}]'
mkpipe huge       '[{"name": "call", "http": {"url": "@B@/huge?bytes=2000000"}}]'
mkpipe huge503    '[{"name": "call", "http": {"url": "@B@/huge?bytes=2000000&status=503"}, '"$R2"'}]'
mkpipe huge404c   '[{"name": "call", "http": {"url": "@B@/huge?bytes=2000000&status=404&chunked=1"}, '"$R2"'}]'
mkpipe ip2        '[{"name": "call", "http": {"url": "http://127.0.0.2:@P@/ok"}}]'
mkpipe byname     '[{"name": "call", "http": {"url": "http://localhost:@P@/ok"}}]'
mkpipe okp        '[{"name": "call", "http": {"url": "@B@/ok"}}]'
mkpipe redir      '[{"name": "call", "http": {"url": "@B@/redirect?to=@TO_OK@"}, '"$R3"'}]'
mkpipe redir_follow '[{"name": "call", "http": {"url": "@B@/redirect?to=@TO_OK@", "follow_redirects": true}}]'
# "follow_redirects" at the step level behaves as inside "http"
mkpipe redir_follow_step '[{"name": "call", "follow_redirects": true, "http": {"url": "@B@/redirect?to=@TO_OK@"}}]'
mkpipe redir_denied '[{"name": "call", "http": {"url": "@B@/redirect?to=@TO_DENIED@", "follow_redirects": true}}]'
# the same host, and another host (localhost) that is allowed: credentials go to the first only
# "secret_headers" at the step level (as the security issue specified it) behaves as inside "http"
mkpipe step_secret '[{"name": "call", "secret_headers": ["X-Secret"], "http": {"url": "@B@/redirect?to=@TO_ECHO_OTHER@", "follow_redirects": true, "headers": {"X-Secret": "s3", "X-Plain": "p"}}}]'
mkpipe step_secret_same '[{"name": "call", "secret_headers": ["X-Secret"], "http": {"url": "@B@/echo", "headers": {"X-Secret": "s3", "X-Plain": "p"}}}]'
mkpipe redir_cred_same  '[{"name": "call", "http": {"url": "@B@/redirect?to=@TO_ECHO@", "follow_redirects": true, "headers": {"X-Secret": "s3", "Authorization": "Bearer t", "X-Plain": "p"}, "secret_headers": ["X-Secret"]}}]'
mkpipe redir_cred_other '[{"name": "call", "http": {"url": "@B@/redirect?to=@TO_ECHO_OTHER@", "follow_redirects": true, "headers": {"X-Secret": "s3", "Authorization": "Bearer t", "X-Plain": "p"}, "secret_headers": ["X-Secret"]}}]'
mkpipe slow1s     '[{"name": "call", "http": {"url": "@B@/delay?ms=3000"}}]'
mkpipe slow30s    '[{"name": "call", "http": {"url": "@B@/delay?ms=30000", "timeout_ms": 60000}}]'
mkpipe term       '[{"name": "call", "http": {"url": "@B@/delay?ms=2000"}}]'
mkpipe lateread   '[{"name": "call", "http": {"url": "@B@/delay?ms=2000", "timeout_ms": 2500}, '"$R2"'}]'
mkpipe sleeper    '[{"name": "nap", "function": "f_nap"}]'
mkpipe mixed      '[{"name": "first", "function": "f_first"}, {"name": "call", "http": {"url": "@B@/echo"}},
                    {"name": "last", "function": "f_last"}]'

wait_status() { pw_wait_run "$1" "${2:-15}"; }
attempts_of() {  # "attempt:status ..." of run $1's step rows
    pw_psql -c "SELECT coalesce(string_agg(position || '.' || attempt || ':' || status, ' ' ORDER BY position, attempt), '')
                  FROM pipeline_worker.run_steps WHERE run_id = $1"
}
# check_failed DESC RUN ATTEMPTS FRAGMENT... : the run failed with ATTEMPTS step rows ("1.1:failed ..."), runs.error
# is 'step "call" failed: ' + the last attempt's error, and contains every FRAGMENT
check_failed() {
    local desc=$1 r=$2 attempts=$3 st err stepok frag missing=
    shift 3
    st=$(wait_status "$r")
    pw_check "$desc: run failed" failed "$st"
    pw_check "$desc: step attempts" "$attempts" "$(attempts_of "$r")"
    err=$(pw_psql -c "SELECT error FROM pipeline_worker.runs WHERE id = $r")
    stepok=$(pw_psql -c "SELECT r.error = 'step \"' || s.name || '\" failed: ' || s.error
                           FROM pipeline_worker.runs r JOIN pipeline_worker.run_steps s ON s.run_id = r.id
                          WHERE r.id = $r ORDER BY s.position DESC, s.attempt DESC LIMIT 1")
    [ "$stepok" = t ] || missing="runs.error is not 'step \"<name>\" failed: <last attempt's error>'"
    for frag in "$@"; do
        [[ "$err" == *"$frag"* ]] || missing="$missing [no '$frag']"
    done
    if [ -z "$missing" ]; then pw_ok "$desc: error says so"; else pw_fail "$desc: error '$err': $missing"; fi
}
# jsonb_is DESC RUN JSON : runs.result = JSON (shows the actual result when not)
jsonb_is() {
    pw_check_sql "$1" ok "SELECT CASE WHEN result = '$3'::jsonb THEN 'ok' ELSE coalesce(result::text, 'SQL NULL') END
                            FROM pipeline_worker.runs WHERE id = $2"
}

# set_guc NAME VALUE : ALTER SYSTEM + reload; waits until new sessions see it, then gives the workers a moment
set_guc() {
    local err
    err=$(pw_set_conf "$1" "$2" 2>&1) || { pw_fail "$err"; return 1; }
    sleep 0.3
}
