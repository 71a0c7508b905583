#!/bin/bash
# HTTP steps end to end, against the Node test server test/http/server.js (listening on 127.0.0.1, 127.0.0.2 and
# 127.0.0.3, same port): request bodies and headers (context, Pipeline-Run-Id, Idempotency-Key, user headers),
# methods, response bodies (JSON, text, empty, invalid JSON, binary), HTTP errors and retries (one request and one
# Idempotency-Key per attempt), timeouts, refused and dropped connections, the response size limit, the egress
# allow-list (names, IPs, CIDRs, empty list, redirect hops), redirects, function and HTTP steps mixed, and bad
# definitions. Requests in flight, cancels, SIGTERM and load: http_load.sh. (The set-up: test/lib/http_setup.sh.)
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/../lib/http.sh"
source "$(dirname "$0")/../lib/http_setup.sh"

# ---------------------------------------------------------------- bad definitions, privilege
bad_def() {  # DESC STEPS_JSON FRAGMENT
    local out
    if out=$(pw_psql -c "SELECT pipeline_worker.create_pipeline('bad_def', '$2')" 2>&1); then
        pw_fail "$1: accepted"
    elif [[ "$out" == *"$3"* ]]; then
        pw_ok "$1: rejected by create_pipeline"
    else
        pw_fail "$1: rejected, but the error lacks '$3': $out"
    fi
}
bad_def "method FETCH" "[{\"name\": \"x\", \"http\": {\"url\": \"$B/ok\", \"method\": \"FETCH\"}}]" 'method'
bad_def "url ftp://x" '[{"name": "x", "http": {"url": "ftp://x"}}]' 'http:// or https://'
bad_def "headers not an object" "[{\"name\": \"x\", \"http\": {\"url\": \"$B/ok\", \"headers\": [\"X-A: 1\"]}}]" '"headers"'
bad_def "header value not a string" "[{\"name\": \"x\", \"http\": {\"url\": \"$B/ok\", \"headers\": {\"X-A\": 1}}}]" 'X-A'
pw_check_sql "bad definitions stored nothing" 0 "SELECT count(*) FROM pipeline_worker.pipelines WHERE name = 'bad_def'"
out=$(pw_psql 2>&1 <<SQL
CREATE ROLE no_http;
GRANT USAGE ON SCHEMA pipeline_worker TO no_http;
SET ROLE no_http;
SELECT pipeline_worker.create_pipeline('no_http_p', '[{"name": "x", "http": {"url": "$B/ok"}}]');
SQL
)
if [[ "$out" == *"permission denied"* ]]; then pw_ok "HTTP step needs membership in pipeline_worker_http"
else pw_fail "HTTP step by a role outside pipeline_worker_http: $out"; fi

# ---------------------------------------------------------------- POST /echo: body = context, headers
srv_reset
r=$(pw_run echo_post '{"n": 42}' '{"m": 1}')
pw_check "POST /echo: succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "POST /echo: output is the parsed JSON (default method POST, query seen)" "object POST /echo 1" \
    "SELECT concat_ws(' ', jsonb_typeof(result), result->>'method', result->>'path', result->'query'->>'q')
       FROM pipeline_worker.runs WHERE id = $r"
pw_check_sql "POST /echo: one step row, attempt 1, output = run result" "1 1 succeeded t t" \
    "SELECT concat_ws(' ', count(*), min(s.attempt), min(s.status), bool_and(s.output = r.result),
                      bool_and(s.finished_at IS NOT NULL))
       FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id WHERE r.id = $r"
pw_check_sql "POST /echo: request body has exactly the context keys" \
    "attempt,input,metadata,pipeline,position,prev,results,run_id,step" \
    "SELECT string_agg(k, ',' ORDER BY k) FROM pipeline_worker.runs, jsonb_object_keys(result->'body') k WHERE id = $r"
pw_check_sql "POST /echo: context values (run_id, pipeline, step, position, attempt, input, metadata, prev, results)" \
    "$r|echo_post|call|1|1|{\"n\": 42}|{\"m\": 1}|{\"n\": 42}|{}" \
    "SELECT concat_ws('|', b->>'run_id', b->>'pipeline', b->>'step', b->>'position', b->>'attempt', b->'input',
                      b->'metadata', b->'prev', b->'results')
       FROM (SELECT result->'body' b FROM pipeline_worker.runs WHERE id = $r) s"
pw_check_sql "POST /echo: Pipeline-Run-Id, Idempotency-Key, user header, Content-Type" \
    "$r|$r:1:1|hello|application/json" \
    "SELECT concat_ws('|', h->>'pipeline-run-id', h->>'idempotency-key', h->>'x-test', h->>'content-type')
       FROM (SELECT result->'headers' h FROM pipeline_worker.runs WHERE id = $r) s"
pw_check "POST /echo: the server got exactly one request, with the key" "$r:1:1=1" "$(srv_keys_of "$r")"
pw_check_sql "POST /echo: User-Agent names the library's version" t \
    "SELECT result->'headers'->>'user-agent' = 'pipeline_worker/' || (SELECT default_version FROM pg_available_extensions
                                                                       WHERE name = 'pipeline_worker')
       FROM pipeline_worker.runs WHERE id = $r"
# a definition stored before create_pipeline refused client-managed headers: they are not sent (a Content-Length
# of 5 would cut the body and corrupt the kept-alive connection), the other headers are
mkpipe echo_legacy '[{"name": "call", "http": {"url": "@B@/echo", "headers": {"X-Kept": "k"}}}]'
pw_psql -c "UPDATE pipeline_worker.pipelines SET steps = jsonb_set(steps, '{0,http,headers}',
              '{\"Content-Length\": \"5\", \"Connection\": \"close\", \"X-Kept\": \"k\"}')
             WHERE name = 'echo_legacy'" >/dev/null || pw_fail "could not store the legacy definition"
r=$(pw_run echo_legacy)
pw_check "legacy definition with Content-Length/Connection headers: succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "... those headers were not sent, the whole body and X-Kept were" "$r|k|t" \
    "SELECT concat_ws('|', result->'body'->>'run_id', result->'headers'->>'x-kept',
                      (result->'headers'->>'content-length')::int > 5 AND result->'headers'->>'connection' IS DISTINCT FROM 'close')
       FROM pipeline_worker.runs WHERE id = $r"
r=$(pw_run echo_empty)
pw_check "empty header value: succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "empty header value: the header is sent, empty" "t" \
    "SELECT result->'headers' ? 'x-empty' AND result->'headers'->>'x-empty' = '' FROM pipeline_worker.runs WHERE id = $r"
r=$(pw_run echo_own)
pw_check "own Content-Type: succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "own Content-Type is sent instead of ours; own Idempotency-Key / Pipeline-Run-Id are not" \
    "application/vnd.api+json|$r:1:1|$r" \
    "SELECT concat_ws('|', h->>'content-type', h->>'idempotency-key', h->>'pipeline-run-id')
       FROM (SELECT result->'headers' h FROM pipeline_worker.runs WHERE id = $r) s"

# ---------------------------------------------------------------- methods
r=$(pw_run methods '{"k": "v"}')
pw_check "GET/DELETE/PUT/PATCH: succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "GET/DELETE send no body, PUT/PATCH send the context; method and key right" \
    "1:GET:null:$r:1:1 2:DELETE:null:$r:2:1 3:PUT:object:$r:3:1 4:PATCH:object:$r:4:1" \
    "SELECT string_agg(concat_ws(':', position, output->>'method', jsonb_typeof(output->'body'),
                                 output->'headers'->>'idempotency-key'), ' ' ORDER BY position)
       FROM pipeline_worker.run_steps WHERE run_id = $r AND status = 'succeeded'"
pw_check_sql "PUT/PATCH: Content-Type application/json, body position and prev (the previous step's output)" \
    "3:application/json:3:DELETE 4:application/json:4:PUT" \
    "SELECT string_agg(concat_ws(':', position, output->'headers'->>'content-type', output->'body'->>'position',
                                 output->'body'->'prev'->>'method'), ' ' ORDER BY position)
       FROM pipeline_worker.run_steps WHERE run_id = $r AND position IN (3, 4)"
pw_check_sql "GET/DELETE: Pipeline-Run-Id sent" "$r $r" \
    "SELECT string_agg(output->'headers'->>'pipeline-run-id', ' ' ORDER BY position)
       FROM pipeline_worker.run_steps WHERE run_id = $r AND position IN (1, 2)"

# ---------------------------------------------------------------- response bodies
r=$(pw_run text)
pw_check "/text: succeeded" succeeded "$(wait_status "$r")"
jsonb_is "/text: output is the JSON string \"hello, world\"" "$r" '"hello, world"'
r=$(pw_run empty)
pw_check "/empty: succeeded" succeeded "$(wait_status "$r")"
jsonb_is "/empty: output is JSON null" "$r" 'null'
pw_check_sql "/empty: step output is JSON null too" "null" \
    "SELECT jsonb_typeof(output) FROM pipeline_worker.run_steps WHERE run_id = $r"
r=$(pw_run badjson)
pw_check "/badjson: succeeded" succeeded "$(wait_status "$r")"
jsonb_is "/badjson: stored as a JSON string" "$r" '"{\"unterminated\": "'
r=$(pw_run binary)
check_failed "/binary" "$r" "1.1:failed" "not valid JSON or text"
r=$(pw_run deep300)
pw_check "/deep?n=300 (deeper than the pre-check's 256): succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "/deep?n=300: stored as JSON arrays, not as a string" "array" \
    "SELECT jsonb_typeof(result) FROM pipeline_worker.runs WHERE id = $r"
r=$(pw_run bomjson)
pw_check "/bomjson (JSON after a UTF-8 byte order mark): succeeded" succeeded "$(wait_status "$r")"
jsonb_is "/bomjson: parsed as JSON, the mark left out" "$r" '{"a": 1}'
r=$(pw_run nuljson)
check_failed "/nuljson (JSON with \\u0000)" "$r" "1.1:failed" "jsonb cannot store it: unsupported Unicode escape sequence"
# (until 2026-12-05 the JSON grammar's check let it through, and jsonb_in stored the invalid byte as it came)
r=$(pw_run badutf8json)
check_failed "/badutf8json (JSON with a byte that is not UTF-8)" "$r" "1.1:failed" "not valid JSON or text"
r=$(pw_run utf8error)
check_failed "/utf8error (HTTP 500, a 200-byte cut inside a character)" "$r" "1.1:failed" "HTTP 500: aéé"
pw_check_sql "/utf8error: the error keeps its text (no '?')" "false 199" \
    "SELECT (error LIKE '%?%') || ' ' || octet_length(substr(error, strpos(error, 'HTTP 500: ') + 10))
       FROM pipeline_worker.run_steps WHERE run_id = $r"

# ---------------------------------------------------------------- HTTP errors, retries
r=$(pw_run s404)
check_failed "/status/404 (max_attempts 3)" "$r" "1.1:failed" "HTTP 404" "status 404 body"
pw_check_sql "/status/404: 'HTTP 404: <body>'" t \
    "SELECT error LIKE '%HTTP 404: status 404 body%' FROM pipeline_worker.runs WHERE id = $r"

srv_reset
r=$(pw_run s500)
check_failed "/status/500 (max_attempts 3)" "$r" "1.1:failed 1.2:failed 1.3:failed" "HTTP 500" "status 500 body"
pw_check "/status/500: exactly 3 requests reached the server" 3 "$(srv_stat requests)"
pw_check "/status/500: one new Idempotency-Key per attempt" "$r:1:1=1 $r:1:2=1 $r:1:3=1" "$(srv_keys_of "$r")"
pw_check_sql "/status/500: every attempt's error says HTTP 500" 3 \
    "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND error LIKE '%HTTP 500: status 500 body%'"

r=$(pw_run flaky)
pw_check "/flaky?fail=2 (max_attempts 3): succeeded" succeeded "$(wait_status "$r")"
pw_check "/flaky: succeeded on attempt 3" "1.1:failed 1.2:failed 1.3:succeeded" "$(attempts_of "$r")"
pw_check_sql "/flaky: failed attempts say 'HTTP 500: flaky failure k of 2'" 2 \
    "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r
        AND error LIKE '%HTTP 500: flaky failure ' || attempt || ' of 2%'"
pw_check_sql "/flaky: the output is the third request's echo (attempt 3 in body and key)" "3 $r:1:3" \
    "SELECT (result->'body'->>'attempt') || ' ' || (result->'headers'->>'idempotency-key')
       FROM pipeline_worker.runs WHERE id = $r"

r=$(pw_run flaky429)
pw_check "429 is retried: succeeded" succeeded "$(wait_status "$r")"
pw_check "429 is retried: attempts" "1.1:failed 1.2:succeeded" "$(attempts_of "$r")"
pw_check_sql "429 is retried: first attempt says HTTP 429" t \
    "SELECT error LIKE '%HTTP 429%' FROM pipeline_worker.run_steps WHERE run_id = $r AND attempt = 1"
# Retry-After: 1 s outweighs the step's 10 ms back-off
r=$(pw_run after429)
check_failed "429 with Retry-After: 1 (max_attempts 2)" "$r" "1.1:failed 1.2:failed" "HTTP 429"
pw_check_sql "429 with Retry-After: 1: the second attempt waited about a second" t \
    "SELECT s2.started_at - s1.finished_at >= interval '900 milliseconds'
       FROM pipeline_worker.run_steps s1 JOIN pipeline_worker.run_steps s2 ON s2.run_id = s1.run_id
      WHERE s1.run_id = $r AND s1.attempt = 1 AND s2.attempt = 2"
# ... also while another branch's request is out: its answer resumes the run before the back-off is over, and the
# retry still waits (until 2026-12-07 it went then: after 0.7 s here). The step's own back-off the same way.
mkpipe branch_after '[{"name": "a", "http": {"url": "@B@/status/429?retry_after=2"}, "max_attempts": 2, "retry_delay_ms": 10, "depends_on": []},
                      {"name": "b", "http": {"url": "@B@/delay?ms=700"}, "depends_on": []}]'
mkpipe map_backoff '[{"name": "m", "map": true, "http": {"url": "@B@/flaky?fail=1&status=503"}, "max_attempts": 2, "retry_delay_ms": 2400, "depends_on": []},
                     {"name": "b", "http": {"url": "@B@/delay?ms=700"}, "depends_on": []}]'
mkpipe map_after '[{"name": "m", "map": true, "http": {"url": "@B@/status/429?retry_after=2"}, "max_attempts": 2, "retry_delay_ms": 10, "depends_on": []},
                   {"name": "b", "http": {"url": "@B@/delay?ms=700"}, "depends_on": []}]'
mkpipe branch_backoff '[{"name": "a", "http": {"url": "@B@/flaky?fail=1&status=503"}, "max_attempts": 2, "retry_delay_ms": 2400, "depends_on": []},
                        {"name": "b", "http": {"url": "@B@/delay?ms=700"}, "depends_on": []}]'
ra=$(pw_run branch_after)
rb=$(pw_run branch_backoff)
rm=$(pw_run map_backoff '[1]')
rn=$(pw_run map_after '[1]')
for r in $ra $rb $rm $rn; do wait_status "$r" >/dev/null; done
gap_sql() {
    echo "SELECT extract(epoch FROM s2.started_at - s1.finished_at)::numeric(6,1) >= $2
            FROM pipeline_worker.run_steps s1 JOIN pipeline_worker.run_steps s2 ON s2.run_id = s1.run_id AND s2.position = s1.position
                 AND s2.task IS NOT DISTINCT FROM s1.task
           WHERE s1.run_id = $1 AND s1.position = 1 AND s1.attempt = 1 AND s2.attempt = 2 AND s1.task IS NOT DISTINCT FROM $3"
}
pw_check_sql "a branch's Retry-After (2 s) holds while another branch's answer resumes the run" t "$(gap_sql "$ra" 1.9 NULL)"
pw_check_sql "a branch's back-off (2.4 s, at least 1.8 s with its jitter) the same" t "$(gap_sql "$rb" 1.7 NULL)"
pw_check_sql "... and a map task's" t "$(gap_sql "$rm" 1.7 0)"
pw_check_sql "... and a map task's Retry-After (2 s), the map looked at before the branch whose answer resumed the run" t \
    "$(gap_sql "$rn" 1.9 0)"
pw_check "... and those runs then succeed" "succeeded succeeded" \
    "$(pw_psql -c "SELECT string_agg(status, ' ') FROM pipeline_worker.runs WHERE id IN ($rb, $rm)")"

# ---------------------------------------------------------------- timeouts, connection failures
start=$(pw_now)
r=$(pw_run tmo)
check_failed "/delay?ms=3000 with timeout_ms 300 (max_attempts 2: retried)" "$r" "1.1:failed 1.2:failed" \
    "request timed out after 300 ms"
t=$(pw_elapsed "$start")
pw_lt "$t" 2.5 && pw_ok "timeout: two attempts took ${t} s" || pw_fail "timeout: two 300 ms attempts took ${t} s"

r=$(pw_run tmo_step)
check_failed "step-level timeout_ms 300 bounds an HTTP step (no http timeout_ms)" "$r" "1.1:failed" \
    "timed out after 300 ms"
r=$(pw_run tmo_both)
check_failed "step-level timeout_ms 300 bounds an HTTP step whose http timeout_ms is 5000" "$r" "1.1:failed" \
    "timed out after 300 ms"
r=$(pw_run refused)
check_failed "closed port (max_attempts 2: retried)" "$r" "1.1:failed 1.2:failed" "connection failed" \
    "(Connection refused)"

# https to a plain-HTTP port: the TLS handshake fails; not retried (a configuration problem, not a transient one)
r=$(pw_run tls)
check_failed "https to a plain-HTTP server (TLS failure, max_attempts 3: not retried)" "$r" "1.1:failed" "TLS error"

srv_reset
r=$(pw_run closer)
check_failed "/close (max_attempts 3: retried)" "$r" "1.1:failed 1.2:failed 1.3:failed" "connection error"
pw_check "/close: exactly one request per attempt, one Idempotency-Key each" "3 $r:1:1=1 $r:1:2=1 $r:1:3=1" \
    "$(srv_path_count /close) $(srv_keys_of "$r")"
# kept-alive connections in the pool: libcurl would send a request again on a fresh connection when a reused one
# dies without an answer (up to 5 times); the endpoint must see each attempt once
pw_psql -c "SELECT count(pipeline_worker.create_run('okp')) FROM generate_series(1, 40)" >/dev/null
pw_wait_all_finished 15 || pw_fail "/close on reused connections: 40 /ok runs did not finish"
srv_reset
base_id=$(pw_psql -c "SELECT coalesce(max(id), 0) FROM pipeline_worker.runs")
pw_psql -c "SELECT count(pipeline_worker.create_run('closer1')) FROM generate_series(1, 20)" >/dev/null
pw_wait_all_finished 15 || pw_fail "/close on reused connections: 20 runs did not finish"
pw_check_sql "/close on reused connections: 20 runs failed after one attempt each" "20 20" \
    "SELECT count(*) FILTER (WHERE r.status = 'failed') || ' ' || count(s.*)
       FROM pipeline_worker.runs r JOIN pipeline_worker.run_steps s ON s.run_id = r.id WHERE r.id > $base_id"
pw_check "/close on reused connections: the server saw 20 requests, no duplicate key" "20 0" \
    "$(srv_path_count /close) $(srv_stat duplicates)"

# ---------------------------------------------------------------- response size limit
r=$(pw_run huge)
check_failed "/huge 2,000,000 bytes with the default limit" "$r" "1.1:failed" \
    "exceeds pipeline_worker.http_max_response_bytes"
# an error answer is one whatever its size: its status decides (503 retried, 404 not), its body's first part shown
r=$(pw_run huge503)
check_failed "/huge 2,000,000 bytes with status 503 (Content-Length): retried as a 503" "$r" "1.1:failed 1.2:failed" \
    "HTTP 503: (its body, longer than pipeline_worker.http_max_response_bytes, not read)"
r=$(pw_run huge404c)
check_failed "/huge 2,000,000 bytes with status 404 (chunked): a 404, its body's first part" "$r" "1.1:failed" \
    "HTTP 404: xxxxxxxxxx"

set_guc pipeline_worker.http_max_response_bytes 4194304
r=$(pw_run huge)
pw_check "/huge 2,000,000 bytes after raising the limit (reload): succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "/huge: output is the 2,000,000-character string" "string 2000000 t" \
    "SELECT concat_ws(' ', jsonb_typeof(result), length(result #>> '{}'), (result #>> '{}') ~ '^x+\$')
       FROM pipeline_worker.runs WHERE id = $r"

# ---------------------------------------------------------------- egress allow-list
srv_reset
r=$(pw_run ip2)
check_failed "127.0.0.2 (loopback, not listed)" "$r" "1.1:failed" "is not allowed by pipeline_worker.http_allowed_hosts"
pw_check "127.0.0.2: the server received nothing" 0 "$(srv_stat requests)"
r=$(pw_run byname)
pw_check "http://localhost:<port> with 'localhost' listed: succeeded" succeeded "$(wait_status "$r")"
jsonb_is "http://localhost: output" "$r" '{"ok": true}'

set_guc pipeline_worker.http_allowed_hosts ''
srv_reset
r=$(pw_run okp)
check_failed "empty allow-list: 127.0.0.1 denied" "$r" "1.1:failed" "is not allowed"
r=$(pw_run byname)
check_failed "empty allow-list: localhost denied" "$r" "1.1:failed" "is not allowed"
pw_check "empty allow-list: the server received nothing" 0 "$(srv_stat requests)"

set_guc pipeline_worker.http_allowed_hosts '127.0.0.0/8'
r=$(pw_run ip2)
pw_check "CIDR 127.0.0.0/8 allows 127.0.0.2: succeeded" succeeded "$(wait_status "$r")"
jsonb_is "CIDR: output" "$r" '{"ok": true}'

# A list of names only: a name not on it is refused before it is looked up (the lookup alone would carry the name
# out), once -- not a DNS failure, retried
set_guc pipeline_worker.http_allowed_hosts 'localhost'
pw_psql -c "SELECT pipeline_worker.create_pipeline('dns_unlisted', '[{\"name\": \"c\", \"max_attempts\": 3, \"retry_delay_ms\": 10, \"http\": {\"url\": \"http://not-listed-name.invalid/x\", \"method\": \"GET\"}}]')" >/dev/null
r=$(pw_run dns_unlisted)
check_failed "names-only allow-list: an unlisted name refused before any lookup (max_attempts 3)" "$r" "1.1:failed" \
    "host \"not-listed-name.invalid\" is not allowed"
r=$(pw_run byname)
pw_check "names-only allow-list: a listed name still resolves and succeeds" succeeded "$(wait_status "$r")"

# ---------------------------------------------------------------- redirects
set_guc pipeline_worker.http_allowed_hosts '127.0.0.1'
srv_reset
r=$(pw_run redir)
check_failed "302 without follow_redirects (max_attempts 3: not retried)" "$r" "1.1:failed" "HTTP 302" "follow_redirects"
pw_check "302 without follow_redirects: the target was not requested" "1 0" \
    "$(srv_path_count /redirect) $(srv_path_count /ok)"
r=$(pw_run redir_follow)
pw_check "302 with follow_redirects: succeeded" succeeded "$(wait_status "$r")"
jsonb_is "302 with follow_redirects: /ok's output" "$r" '{"ok": true}'
r=$(pw_run redir_follow_step)
pw_check "302 with follow_redirects at the step level: succeeded" succeeded "$(wait_status "$r")"
srv_reset
r=$(pw_run redir_denied)
check_failed "redirect to a denied host (127.0.0.3)" "$r" "1.1:failed" "is not allowed"
pw_check "redirect to a denied host: the target was not requested" "1 0" \
    "$(srv_path_count /redirect) $(srv_path_count /ok)"
set_guc pipeline_worker.http_allowed_hosts '127.0.0.1, localhost'
r=$(pw_run redir_cred_same)
pw_check "redirect on the same host: succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "redirect on the same host: all headers follow" "s3|Bearer t|p" \
    "SELECT concat_ws('|', result->'headers'->>'x-secret', result->'headers'->>'authorization', result->'headers'->>'x-plain') FROM pipeline_worker.runs WHERE id = $r"
r=$(pw_run step_secret_same)
pw_check "step-level secret_headers: succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "step-level secret_headers: the secret value is sent" "s3|p" \
    "SELECT concat_ws('|', result->'headers'->>'x-secret', result->'headers'->>'x-plain') FROM pipeline_worker.runs WHERE id = $r"
pw_check_sql "step-level secret_headers: masked in the stored definition" "********" \
    "SELECT steps->0->'http'->'headers'->>'X-Secret' FROM pipeline_worker.pipelines WHERE name = 'step_secret_same'"
r=$(pw_run step_secret)
pw_check "step-level secret_headers, redirect to another host: succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "step-level secret_headers, redirect to another host: the secret is not sent there" "|p" \
    "SELECT concat_ws('|', coalesce(result->'headers'->>'x-secret', ''), result->'headers'->>'x-plain') FROM pipeline_worker.runs WHERE id = $r"
# Another port of the same host is another origin (another service, perhaps): the credentials stay behind, as for
# another host. (Until 2026-12-05 only a change of host name dropped them.)
SRV2_DIR=$(mktemp -d /tmp/pw-http-server2.XXXXXX)
node "$PW_LIB_DIR/../http/server.js" >"$SRV2_DIR/stdout" 2>"$SRV2_DIR/stderr" &
SRV2_PID=$!
_port2() { PORT2=$(awk '$1 == "PORT" { print $2; exit }' "$SRV2_DIR/stdout" 2>/dev/null); [ -n "$PORT2" ]; }
PORT2=; pw_wait_until 10 0.1 _port2
[ -n "$PORT2" ] || pw_fail "second test server did not start"
steps='[{"name": "call", "http": {"url": "@B@/redirect?to='"$(urlenc "http://127.0.0.1:$PORT2/echo")"'", "follow_redirects": true, "headers": {"X-Secret": "s3", "Authorization": "Bearer t", "X-Plain": "p"}, "secret_headers": ["X-Secret"]}}]'
mkpipe redir_cred_port "$steps"
r=$(pw_run redir_cred_port)
pw_check "redirect to another port of the same host: succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "redirect to another port: secret header and Authorization are not sent there, others are" "||p" \
    "SELECT concat_ws('|', coalesce(result->'headers'->>'x-secret', ''), coalesce(result->'headers'->>'authorization', ''), result->'headers'->>'x-plain') FROM pipeline_worker.runs WHERE id = $r"
kill "$SRV2_PID" 2>/dev/null; wait "$SRV2_PID" 2>/dev/null; rm -rf "$SRV2_DIR"
r=$(pw_run redir_cred_other)
pw_check "redirect to another host: succeeded" succeeded "$(wait_status "$r")"
pw_check_sql "redirect to another host: secret header and Authorization are not sent there, others are" "||p" \
    "SELECT concat_ws('|', coalesce(result->'headers'->>'x-secret', ''), coalesce(result->'headers'->>'authorization', ''), result->'headers'->>'x-plain') FROM pipeline_worker.runs WHERE id = $r"

# ---------------------------------------------------------------- mixed function -> http -> function
r=$(pw_run mixed '{"x": 5}')
pw_check "function -> http -> function: succeeded" succeeded "$(wait_status "$r")"
jsonb_is "function -> http -> function: outputs passed along (prev and results)" "$r" \
    '{"http_method": "POST", "http_saw_prev": {"a": 5, "from": "first"}, "results_call_path": "/echo"}'
pw_check_sql "function -> http -> function: the HTTP request's key has position 2" "$r:2:1" \
    "SELECT output->'headers'->>'idempotency-key' FROM pipeline_worker.run_steps WHERE run_id = $r AND position = 2"

# ---------------------------------------------------------------- the workers never crashed
crashes=$(grep -c 'terminated by signal' "$PW_LOG")
pw_check "no worker crashed (no 'terminated by signal' in the log)" 0 "$crashes"
kill -0 "$SRV_PID" 2>/dev/null && pw_ok "test server still up" || pw_fail "test server died"
pw_finish
