// --http figure "live": HTTP steps the way users run them. The workers are already running (idle) when a
// transaction commits N one-step HTTP runs; timed from just before that commit until every run finished, in
// --reps drains one after the other on the same tables (no truncation between them), on a cluster whose run
// tables are as young as the benchmark leaves them. Targets: >= 10,000 steps/s against the C++ endpoint, >= 80 %
// of the endpoint's own keep-alive capacity (figure "endpoint") against the Node one. See ../README.md.
import { fmt } from './common.mjs';

export const HTTP_LIVE_TARGET_CPP = 10000;
export const HTTP_LIVE_TARGET_NODE_PCT = 80;

// h: the orchestrator's helpers (from http.mjs); capacity: the endpoint's own req/s (figure "endpoint"), or null.
export async function httpLive(h, n, w, capacity) {
  const { q, val, log, emit, srv, reps } = h;
  await h.setWorkers(0);
  await q('ALTER SYSTEM RESET pipeline_worker.http_max_in_flight');
  await q('TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs RESTART IDENTITY');
  await h.reload();
  await srv('/reset', 'POST');
  await h.setWorkers(w);
  const rates = [];
  for (let rep = 1; rep <= reps; rep++) {
    // The clock starts at the commit, not before the inserts: the 10,000 create_run calls take a third of a
    // second on this VM, and no worker can see a run before the commit anyway (timed from before the INSERT until
    // 2026-12-02 16:00; those figures were low by that third of a second).
    await q('BEGIN');
    let t0srv;
    try {
      await q(`SELECT count(pipeline_worker.create_run('http_ok', jsonb_build_object('i', g)))
                 FROM generate_series(1, $1::int) AS g`, [n]);
      t0srv = await val('SELECT clock_timestamp()::text');
      await q('COMMIT');
    } catch (e) {
      await q('ROLLBACK').catch(() => {});  // the control connection must not stay in an aborted transaction
      throw e;
    }
    let error = null;
    try {
      await h.waitZero(h.PW_LEFT, Number(h.o.timeout), 20, h.pwDiagnose);
    } catch (e) {
      error = e.message;
    }
    const secs = Number(await val(`SELECT extract(epoch FROM max(finished_at) - $1::timestamptz)
                                     FROM pipeline_worker.runs WHERE id > $2`, [t0srv, (rep - 1) * n]));
    rates.push(n / secs);
    log(`http live rep ${rep}: ${n} runs in ${fmt(secs, 3)} s${error ? ` (${error})` : ''}`);
  }
  const st = await srv('/stats');
  await h.setWorkers(0);
  const problems = [];
  const v = await h.checkHttp(n * reps, { ok: true });
  if (v !== 'ok') problems.push(v);
  problems.push(...await h.endpointProblems(n * reps, st));
  const verified = problems.length ? h.failText(problems.join(';')) : 'ok';
  h.results.push({ runner: 'http', config: 'live', mode: 'http', verified });
  const node = h.o['http-endpoint'] === 'node';
  const last = rates.at(-1);
  const target = node
    ? (capacity ? `>=${HTTP_LIVE_TARGET_NODE_PCT}%_of_endpoint_${fmt(capacity)}_req/s ` +
        `${last >= (HTTP_LIVE_TARGET_NODE_PCT / 100) * capacity ? 'met' : 'MISSED'}` : 'endpoint_capacity_not_measured')
    : `>=${HTTP_LIVE_TARGET_CPP}_steps/s ${last >= HTTP_LIVE_TARGET_CPP ? 'met' : 'MISSED'}`;
  emit(`http live (workers running, ${n} runs committed at once, ${reps} drains in a row): ` +
    `endpoint=${node ? 'node' : 'cpp'} workers=${w} steps_per_s_reps=${rates.map((r) => fmt(r)).join(',')} ` +
    `requests=${st.requests} duplicates=${st.duplicates} max_connections=${st.max_connections} ` +
    `target(last drain)=${target} so=${h.BUILD.so} verified=${verified}`);
}
