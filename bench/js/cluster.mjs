// The orchestrator's control connection to the throwaway cluster and what it does with it: queries, the bench's SQL
// files, the verify functions, the extension's workers (how many, their pids, starting and stopping them) and
// settings (--pw-configs), W1 runs inserted, and the wait until a count of unfinished runs is 0 (with a diagnosis of
// the workers when it stalls).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, now, sleep } from './common.mjs';
import { PW_CONFIGS } from './options.mjs';

const BENCH = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

// Cheap progress probe: both counts come from the partial indexes on status.
export const PW_LEFT = `SELECT (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending')
                      + (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'running') AS n`;

// A failed check as the value of a result line's verified=.
export const failText = (msg) => `FAIL(${msg.replace(/\s+/g, '_')})`;

// Opens the control connection; returns it (ctl) and the helpers that use it.
// opts: o, PIPELINE (parseOptions()), log.
export async function openCluster({ o, PIPELINE, log }) {
  const ctl = await connect('pwbench-ctl');
  ctl.on('error', (e) => log(`control connection error: ${e.message}`));
  const q = async (sql, params) => (await ctl.query(sql, params)).rows;
  const val = async (sql, params) => {
    const rows = await q(sql, params);
    return rows.length ? Object.values(rows[0])[0] : null;
  };

  // 'ok' or the problems reported by a verify function (an error in the check itself is a problem too).
  async function check(fn, n) {
    try {
      return await val(`SELECT ${fn}($1)`, [n]);
    } catch (e) {
      return `verify_error: ${e.message}`;
    }
  }

  async function runSqlFile(name) {
    await ctl.query(fs.readFileSync(path.join(BENCH, 'sql', name), 'utf8'));
  }

  async function runSqlFileOn(client, name) {
    await client.query(fs.readFileSync(path.join(BENCH, 'sql', name), 'utf8'));
  }

  async function workerCount() {
    return Number(await val("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'"));
  }

  async function workerPids() {
    return (await q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' ORDER BY pid"))
      .map((r) => r.pid);
  }

  async function reload() {
    await q('SELECT pg_reload_conf()');
  }

  // Set pipeline_worker.workers and wait (up to 30 s) until that many worker backends exist.
  async function setWorkers(n) {
    await q(`ALTER SYSTEM SET pipeline_worker.workers = ${Number(n)}`);
    await reload();
    const t = now();
    for (;;) {
      const c = await workerCount();
      if (c === n) return;
      if (now() - t > 30000) throw new Error(`pipeline_worker.workers=${n}: ${c} workers after 30 s`);
      await sleep(50);
    }
  }

  async function applyConfig(name) {
    for (const [k, v] of Object.entries(PW_CONFIGS[name])) {
      await q(v == null ? `ALTER SYSTEM RESET ${k}` : `ALTER SYSTEM SET ${k} = ${v}`);
    }
    await reload();
    await sleep(200); // let the launcher/workers process the SIGHUP
  }

  async function configDesc() {
    return `claim_batch=${await val('SHOW pipeline_worker.claim_batch')} ` +
      `commit_interval_ms=${(await val('SHOW pipeline_worker.commit_interval_ms')).replace(/ms$/, '')}`;
  }

  async function insertRuns(from, to) {
    await q(`SELECT count(pipeline_worker.create_run($1, jsonb_build_object('value', g)))
               FROM generate_series($2::int, $3::int) AS g`, [PIPELINE, from, to]);
  }

  // Poll `sql` (one count) until it is 0. Fails after timeoutS, or after --stall-timeout s without
  // any change of the count (a stuck runner should not hold the benchmark for the full timeout);
  // `diagnose` (optional) is logged when the count has not moved for 10 s and when giving up.
  async function waitZero(sql, timeoutS, everyMs = 20, diagnose = null) {
    const t = now();
    const stallS = Number(o['stall-timeout']);
    let last = NaN;
    let lastChange = now();
    let reported = 0;
    for (;;) {
      const n = Number(await val(sql));
      if (n === 0) return (now() - t) / 1000;
      if (n !== last) { last = n; lastChange = now(); reported = 0; }
      const still = (now() - lastChange) / 1000;
      if (diagnose && still >= 10 && reported === 0) { reported = 1; await diagnose(n, still); }
      if (now() - t > timeoutS * 1000 || still > stallS) {
        if (diagnose) await diagnose(n, still);
        throw new Error(still > stallS ? `stalled: ${n} left, no progress for ${Math.round(still)} s`
                                       : `timeout: ${n} left after ${timeoutS} s`);
      }
      // The count itself scans the partial indexes: with a large backlog, polling every 20 ms would take a good part
      // of a core from the runner measured. Timed figures come from server timestamps, not from the poll.
      await sleep(n > 20000 ? Math.max(everyMs, 500) : everyMs);
    }
  }

  // What the extension is doing when runs stop finishing: the unfinished runs and the workers.
  async function pwDiagnose(n, still) {
    try {
      log(`${n} runs unfinished, no progress for ${Math.round(still)} s. Unfinished runs (up to 10):`);
      for (const r of await q(`SELECT id, status, worker_pid, started_at, not_before, now() - created_at AS age
                                 FROM pipeline_worker.runs WHERE status IN ('pending', 'running')
                                ORDER BY id LIMIT 10`)) log(`  ${JSON.stringify(r)}`);
      log('workers (pg_stat_activity):');
      for (const r of await q(`SELECT pid, state, wait_event_type, wait_event, left(query, 80) AS query, xact_start
                                 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' ORDER BY pid`)) {
        log(`  ${JSON.stringify(r)}`);
      }
      const w = await q('SELECT * FROM pipeline_worker.workers()').catch(() => []);
      if (w.length) log(`pipeline_worker.workers(): ${JSON.stringify(w)}`);
    } catch (e) {
      log(`diagnosis failed: ${e.message}`);
    }
  }

  return { ctl, q, val, check, runSqlFile, runSqlFileOn, workerCount, workerPids, reload, setWorkers, applyConfig,
    configDesc, insertRuns, waitZero, pwDiagnose };
}
