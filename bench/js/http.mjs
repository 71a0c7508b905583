// --http: pipeline_worker only, one-step HTTP pipelines against a local endpoint (bench/endpoint/endpoint.cpp, or
// with --http-endpoint node the test suite's test/http/server.js), started here on 127.0.0.1 at a random port.
// The figures of --http-figures, each checked against the endpoint's own counts; where the CPU went. See
// ../README.md, "HTTP (--http)".
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CLK_TCK, clusterCpu, fdLimit, fmt, hostBusyPct, median, NCPU, procCpuS, sleep, tcpActiveOpens,
} from './common.mjs';
import { httpLive } from './http_live.mjs';
import { latencyCols, logLines } from './measure.mjs';

const BENCH = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

const HTTP_TARGET_STEPS_PER_S = 5000;   // figure 2
const HTTP_DELAY_RUNS = 10000;          // figure 3: runs against /delay?ms=100 ...
const HTTP_DELAY_TARGET_S = 3;          // ... all finished within this
const HTTP_INFLIGHT_RUNS = 10000;       // figure 4: runs against /delay?ms=2000 ...
const HTTP_INFLIGHT_PER_WORKER = 2500;  // ... with this pipeline_worker.http_max_in_flight

// Where the machine's busy CPU time between two marks (and cpuMarks) went: the endpoint, the
// extension's workers (pids), the cluster's other processes (backends, autovacuum, walwriter, ...;
// processes that exited meanwhile are missed), this orchestrator, and the rest (everything else on the
// machine: other users' processes, the kernel's own threads). Also the TCP connections opened.
function cpuSplit(m0, m1, c0, c1, workerPidList) {
  const machine = (m1.cpu[0] - m0.cpu[0]) / CLK_TCK;
  const endpointS = c1.endpoint - c0.endpoint;
  let workers = 0;
  let pgOther = 0;
  for (const [pid, cpu] of c1.cluster) {
    const d = cpu - (c0.cluster.get(pid) ?? 0);
    if (workerPidList.includes(Number(pid))) workers += d; else pgOther += d;
  }
  const b = process.cpuUsage(c0.bench);
  const bench = (b.user + b.system) / 1e6;
  return { machine, endpoint: endpointS, workers, pgOther, bench, rest: machine - endpointS - workers - pgOther - bench,
    opens: c1.opens - c0.opens };
}

function cpuCols(c, wallS) {
  return `cpu_s_endpoint=${fmt(c.endpoint, 2)} cpu_s_pw_workers=${fmt(c.workers, 2)} ` +
    `cpu_s_pg_other=${fmt(c.pgOther, 2)} cpu_s_bench=${fmt(c.bench, 2)} cpu_s_rest=${fmt(c.rest, 2)} ` +
    `cpu_s_capacity=${fmt(NCPU * wallS, 2)}`;
}

const met = (ok) => (ok ? 'met' : 'MISSED');

// h: the orchestrator's helpers (main.mjs); returns the mode and the endpoint's stop (run at the end of every mode).
export function createHttp(h) {
  const { o, W, REPS, TIMEOUT, BUILD, httpFigures, log, emit, results, q, val, setWorkers, applyConfig, configDesc,
    workerPids, reload, waitZero, PW_LEFT, pwDiagnose, failText, settle, mark, between, latencies, commitLatencies,
    timedWorkers, childResult } = h;

  let endpoint = null;   // { child, pid, port, base }

  async function startEndpoint() {
    // cpp (default): bench/endpoint/endpoint.cpp, built by run.sh -- a few µs of CPU per request, so that on 2 cores
    // the endpoint does not eat the CPU the database needs; node: the test suite's endpoint test/http/server.js.
    const cpp = o['http-endpoint'] !== 'node';
    const js = cpp ? process.env.PWBENCH_ENDPOINT_BIN : path.join(path.dirname(BENCH), 'test', 'http', 'server.js');
    if (!js || !fs.existsSync(js)) throw new Error(`endpoint ${js} not found`);
    const child = cpp ? spawn(js, ['--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, [js, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr.on('data', (d) => process.stderr.write(`[endpoint] ${d}`));
    const port = await new Promise((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error('the endpoint printed no PORT line within 10 s')), 10000);
      child.stdout.on('data', (d) => {
        buf += d;
        const m = buf.match(/^PORT (\d+)$/m);
        if (m) { clearTimeout(timer); resolve(Number(m[1])); }
      });
      child.on('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`the endpoint exited (${code ?? sig})`)); });
    });
    endpoint = { child, pid: child.pid, port, base: `http://127.0.0.1:${port}` };
    log(`endpoint: ${cpp ? 'C++ bench/endpoint' : 'node test/http/server.js'} pid ${child.pid} on ${endpoint.base}, ` +
      `open files ${fdLimit(child.pid)}`);
  }

  function stopEndpoint() {
    if (endpoint && endpoint.child.exitCode == null) endpoint.child.kill('SIGTERM');
  }

  let POSTMASTER = 0;   // the cluster's postmaster pid (httpSetup)

  // CPU and connection counters at one instant, for the split of a timed phase (cpuSplit)
  function cpuMark() {
    return { endpoint: procCpuS(endpoint.pid), bench: process.cpuUsage(), cluster: clusterCpu(POSTMASTER), opens: tcpActiveOpens() };
  }

  // a request to the endpoint's statistics (not counted by it)
  async function srv(p, method = 'GET') {
    const r = await fetch(endpoint.base + p, { method, signal: AbortSignal.timeout(15000) });
    if (!r.ok) throw new Error(`endpoint ${method} ${p}: HTTP ${r.status}`);
    return r.json();
  }

  async function httpSetup() {
    await startEndpoint();
    await setWorkers(0);
    await applyConfig('default');   // the extension's claim_batch / commit_interval_ms defaults
    await q("ALTER SYSTEM SET pipeline_worker.http_allowed_hosts = '127.0.0.1'");
    await q('ALTER SYSTEM RESET pipeline_worker.http_max_in_flight');
    await reload();
    const defs = { http_ok: '/ok', http_delay100: '/delay?ms=100', http_delay2000: '/delay?ms=2000' };
    for (const [name, p] of Object.entries(defs)) {
      if (Number(await val('SELECT count(*) FROM pipeline_worker.pipelines WHERE name = $1', [name]))) {
        await q('SELECT pipeline_worker.drop_pipeline($1)', [name]);
      }
      await q('SELECT pipeline_worker.create_pipeline($1, $2::jsonb)',
        [name, JSON.stringify([{ name: 'call', http: { url: `${endpoint.base}${p}` } }])]);
    }
    POSTMASTER = Number(fs.readFileSync(path.join(o.pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
    log(`http: endpoint ${endpoint.base}; http_allowed_hosts=${await val('SHOW pipeline_worker.http_allowed_hosts')}; ` +
      `open files: postmaster ${fdLimit(POSTMASTER)}, endpoint ${fdLimit(endpoint.pid)}; ${NCPU} CPUs; ` +
      `${await configDesc()}`);
  }

  // The endpoint saw every run's request exactly once: requests = keys = n, no duplicate, no request
  // without a key, and for every run the key "<run id>:1:1" exactly once. Returns a list of problems.
  async function endpointProblems(n, stats) {
    const p = [];
    if (stats.requests !== n) p.push(`endpoint_requests=${stats.requests}_expected_${n}`);
    if (stats.keys !== n) p.push(`endpoint_keys=${stats.keys}_expected_${n}`);
    if (stats.duplicates !== 0) p.push(`endpoint_duplicates=${stats.duplicates}`);
    if (stats.no_key !== 0) p.push(`endpoint_no_key=${stats.no_key}`);
    const keys = await srv('/keys');
    const ids = (await q('SELECT id FROM pipeline_worker.runs')).map((r) => r.id);
    const notOnce = ids.filter((id) => keys[`${id}:1:1`] !== 1).length;
    if (notOnce) p.push(`${notOnce}_runs_whose_key_<id>:1:1_was_not_seen_exactly_once`);
    return p;
  }

  // Figure 1: the endpoint alone, driven by js/http-load.mjs (keep-alive, 64 sockets).
  async function httpEndpointAlone() {
    const n = 20000;
    const conc = 64;
    const busyBefore = await settle();
    await srv('/reset', 'POST');
    log(`http endpoint alone: ${n} POST /ok, keep-alive, ${conc} sockets (js/http-load.mjs)`);
    const c0 = cpuMark();
    const m0 = await mark();
    let res = {};
    const problems = [];
    try {
      res = await childResult('http-load.mjs', ['--url', `${endpoint.base}/ok`, '--requests', n, '--concurrency', conc,
        '--timeout', TIMEOUT]);
    } catch (e) {
      problems.push(e.message);
    }
    const m1 = await mark();
    const cpu = cpuSplit(m0, m1, c0, cpuMark(), []);
    const cpuE = cpu.endpoint;
    const busyAfter = await hostBusyPct();
    const st = await srv('/stats');
    if (res.errors) problems.push(`${res.errors}_errors:${res.first_error}`);
    const total = n + (res.warmup ?? 0);
    if (st.requests !== total) problems.push(`endpoint_requests=${st.requests}_expected_${total}`);
    if (st.duplicates !== 0) problems.push(`endpoint_duplicates=${st.duplicates}`);
    const verified = problems.length ? failText(problems.join(';')) : 'ok';
    const machineS = (m1.cpu[0] - m0.cpu[0]) / CLK_TCK;   // includes the warm-up
    results.push({ runner: 'http', config: 'endpoint', mode: 'http', verified });
    emit(`http endpoint alone: endpoint=${o["http-endpoint"] === "node" ? "node" : "cpp"} requests=${n} warmup=${res.warmup ?? 'nan'} method=POST path=/ok keepalive=yes sockets=${conc} ` +
      `seconds=${fmt(res.seconds, 3)} req_per_s=${fmt(res.req_per_s)} endpoint_cpu_s=${fmt(cpuE, 2)} ` +
      `endpoint_req_per_cpu_s=${fmt(total / cpuE)} loadgen_cpu_s=${fmt(res.client_cpu_s, 2)} ` +
      `machine_busy_cpu_s=${fmt(machineS, 2)} max_connections=${st.max_connections} ` +
      `verified=${verified} host_busy_pct=${busyBefore}/${busyAfter}`);
    return res.req_per_s;
  }

  // n pre-inserted runs of `pipeline`, w workers started at the clock start, timed until all finished;
  // then the extension's tables (pwbench.verify_http) and the endpoint's statistics are checked.
  async function httpDrain(what, pipeline, n, w, expect, maxInFlight = null) {
    await setWorkers(0);
    await q(maxInFlight == null ? 'ALTER SYSTEM RESET pipeline_worker.http_max_in_flight'
      : `ALTER SYSTEM SET pipeline_worker.http_max_in_flight = ${Number(maxInFlight)}`);
    await reload();
    await sleep(200);
    const mif = await val('SHOW pipeline_worker.http_max_in_flight');
    await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
    await q(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('i', g)))
               FROM generate_series(1, $2::int) AS g`, [pipeline, n]);
    const busyBefore = await settle();
    await srv('/reset', 'POST');
    log(`${what}: ${n} runs of ${pipeline}, ${w} workers, http_max_in_flight=${mif}`);
    const c0 = cpuMark();
    const { m0, t0srv, error, pollSeconds } = await timedWorkers(w);
    const problems = error ? [error] : [];
    const m1 = await mark();
    const c1 = cpuMark();
    const cpu = cpuSplit(m0, m1, c0, c1, await workerPids());
    const busyAfter = await hostBusyPct();
    const st = await srv('/stats');
    const t = (await q(`SELECT extract(epoch FROM max(finished_at) - $1::timestamptz) AS secs,
                               extract(epoch FROM min(started_at) - $1::timestamptz) * 1000 AS first_ms,
                               count(DISTINCT worker_pid) AS used,
                               count(*) FILTER (WHERE status <> 'succeeded') AS lost,
                               (SELECT extract(epoch FROM max(started_at) - $1::timestamptz)
                                  FROM pipeline_worker.run_steps) AS last_step_s
                          FROM pipeline_worker.runs`, [t0srv]))[0];
    await setWorkers(0);
    const v = await checkHttp(n, expect);
    if (v !== 'ok') problems.push(v);
    problems.push(...await endpointProblems(n, st));
    const verified = problems.length ? failText(problems.join(';')) : 'ok';
    const x = await between(m0, m1, n);
    const fdCapped = logLines(o.pglog, m0, m1, /holds this worker to \d+ HTTP requests/);
    for (const l of fdCapped.slice(0, 2)) log(`server log: ${l}`);
    const seconds = Number(t.secs);
    const rec = { runner: 'http', config: what, mode: 'http', seconds, sps: n / seconds, verified, stats: st,
      lost: Number(t.lost) };
    results.push(rec);
    rec.cols = `runs=${n} workers=${w} http_max_in_flight=${mif} seconds=${fmt(seconds, 3)} ` +
      `steps_per_s=${fmt(rec.sps)} poll_seconds=${fmt(pollSeconds, 3)} first_claim_ms=${fmt(Number(t.first_ms))} ` +
      `last_step_started_s=${fmt(Number(t.last_step_s), 3)} workers_used=${t.used} lost=${rec.lost} requests=${st.requests} keys=${st.keys} duplicates=${st.duplicates} ` +
      `max_in_flight=${st.max_in_flight} max_connections=${st.max_connections} tcp_connects=${cpu.opens} ` +
      `${cpuCols(cpu, pollSeconds)} ` +
      `commits_per_run=${fmt(x.commits_per_run, 2)} wal_kb_per_run=${fmt(x.wal_kb_per_run, 2)} ` +
      `fd_capped_workers=${fdCapped.length} so=${BUILD.so} verified=${verified} log_errors=${x.log_errors} ` +
      `host_busy_pct=${busyBefore}/${busyAfter}`;
    return rec;
  }

  async function checkHttp(n, expect) {
    try {
      return await val('SELECT pwbench.verify_http($1, $2::jsonb)', [n, JSON.stringify(expect)]);
    } catch (e) {
      return `verify_error: ${e.message}`;
    }
  }

  async function httpLatency(w) {
    await setWorkers(0);
    await q('ALTER SYSTEM RESET pipeline_worker.http_max_in_flight');
    await reload();
    await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
    await setWorkers(w);
    const busyBefore = await settle();
    await srv('/reset', 'POST');
    log(`http latency: ${o.rate} runs/s of http_ok for ${o.duration} s, ${w} workers (js/submit.mjs)`);
    const m0 = await mark();
    const problems = [];
    let sub = { submitted: 0 };
    try {
      sub = await childResult('submit.mjs', ['--rate', o.rate, '--duration', o.duration, '--timeout', TIMEOUT,
        '--sql', "SELECT pipeline_worker.create_run('http_ok', jsonb_build_object('i', $1::int)),"
          + ' pg_catalog.xid(pg_catalog.pg_current_xact_id())::text']);
      await waitZero(PW_LEFT, TIMEOUT, 20, pwDiagnose);
    } catch (e) {
      problems.push(e.message);
    }
    const m1 = await mark();
    const busyAfter = await hostBusyPct();
    const st = await srv('/stats');
    await setWorkers(0);
    const v = await checkHttp(sub.submitted, { ok: true });
    if (v !== 'ok') problems.push(v);
    problems.push(...await endpointProblems(sub.submitted, st));
    const verified = problems.length ? failText(problems.join(';')) : 'ok';
    const lat = await latencies('pipeline_worker.runs');
    const clat = await commitLatencies('pipeline_worker.runs', sub.commits);
    const x = await between(m0, m1, Math.max(1, sub.submitted));
    results.push({ runner: 'http', config: 'latency', mode: 'http', verified });
    emit(`http latency: path=/ok rate=${o.rate} duration_s=${o.duration} runs=${sub.submitted} workers=${w} ` +
      `${latencyCols(lat)} (finished_at-created_at) ` +
      (clat ? `commit_to_commit: p50_ms=${fmt(clat.p50, 2)} p90_ms=${fmt(clat.p90, 2)} p99_ms=${fmt(clat.p99, 2)} max_ms=${fmt(clat.max, 2)} ` : '') +
      `submit_lag_p99_ms=${fmt(sub.p99_lag_ms)} requests=${st.requests} ` +
      `duplicates=${st.duplicates} commits_per_run=${fmt(x.commits_per_run, 2)} ` +
      `cpu_ms_per_run=${fmt(x.cpu_ms_per_run, 3)} so=${BUILD.so} verified=${verified} log_errors=${x.log_errors} ` +
      `host_busy_pct=${busyBefore}/${busyAfter}`);
  }

  async function httpMode() {
    await httpSetup();
    const n = Number(o['http-runs']);
    const capacity = httpFigures.includes('endpoint') ? await httpEndpointAlone() : null;
    // First: on run tables as young as a new installation's (the case users met first).
    if (httpFigures.includes('live')) {
      await httpLive({ q, val, log, emit, srv, reps: Math.max(REPS, 3), o, results, BUILD, setWorkers, reload,
        waitZero, PW_LEFT, pwDiagnose, failText, checkHttp, endpointProblems }, Math.min(n, 10000), W, capacity);
    }
    if (httpFigures.includes('drain')) {
      const reps = [];
      for (let rep = 1; rep <= REPS; rep++) {
        const r = await httpDrain('http drain /ok', 'http_ok', n, W, { ok: true });
        emit(`http drain /ok rep=${rep}/${REPS}: ${r.cols}`);
        reps.push(r);
      }
      const ok = reps.filter((r) => r.verified === 'ok');
      const sps = median(ok.map((r) => r.sps));
      emit(`http drain /ok: runs=${n} workers=${W} reps=${REPS} verified_reps=${ok.length} ` +
        `steps_per_s_median=${fmt(sps)} seconds_median=${fmt(median(ok.map((r) => r.seconds)), 3)} ` +
        `steps_per_s_reps=${reps.map((r) => fmt(r.sps)).join(',')} target=>=${HTTP_TARGET_STEPS_PER_S}_steps/s ` +
        `${met(sps >= HTTP_TARGET_STEPS_PER_S)}`);
    }
    if (httpFigures.includes('delay')) {
      const r = await httpDrain('http 100ms endpoint', 'http_delay100', HTTP_DELAY_RUNS, W, { delayed: 100 });
      emit(`http 100ms endpoint: path=/delay?ms=100 ${r.cols} target=<=${HTTP_DELAY_TARGET_S}_s ` +
        `${met(r.verified === 'ok' && r.seconds <= HTTP_DELAY_TARGET_S)}`);
    }
    if (httpFigures.includes('inflight')) {
      const r = await httpDrain('http 10k in flight', 'http_delay2000', HTTP_INFLIGHT_RUNS, W, { delayed: 2000 },
        HTTP_INFLIGHT_PER_WORKER);
      emit(`http 10k in flight: path=/delay?ms=2000 max_in_flight=${r.stats.max_in_flight}/${HTTP_INFLIGHT_RUNS} ` +
        `total_seconds=${fmt(r.seconds, 3)} lost=${r.lost} duplicated=${r.stats.duplicates} ` +
        `requests=${r.stats.requests} | ${r.cols}`);
      await q('ALTER SYSTEM RESET pipeline_worker.http_max_in_flight');
      await reload();
    }
    if (httpFigures.includes('latency')) await httpLatency(W);
    emit('reference (quoted from the issue, NOT measured here): pg_net finishes 1,000 calls to a 100 ms endpoint ' +
      'in ~4.9 s at defaults / ~0.8 s tuned');
    emit('reference (quoted from the issue, NOT measured here): pg_net makes ~190 / ~700 calls/s against an ' +
      'immediate endpoint (defaults / tuned)');
  }

  return { httpMode, stopEndpoint };
}
