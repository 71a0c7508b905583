// Helpers shared by the orchestrator (main.mjs and its modules) and the child drivers (peer-*.mjs, submit.mjs).
// Connections: libpq-style environment (PGHOST = the throwaway cluster's socket directory, PGPORT,
// PGUSER, PGDATABASE) set by run.sh; `pg` reads it, and connString() builds the same as a URI.
import fs from 'node:fs';
import pg from 'pg';

export const now = () => performance.now();
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --key value pairs; flags listed in `bools` take no value.
export function parseArgs(argv, defaults = {}, bools = []) {
  const o = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const k = a.slice(2);
    if (bools.includes(k)) { o[k] = true; continue; }
    if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
    o[k] = argv[++i];
  }
  return o;
}

// Local servers only: a socket directory or a loopback address.
export function assertLocal() {
  const h = process.env.PGHOST ?? '';
  if (!(h === '' || h.startsWith('/') || h === 'localhost' || /^127\./.test(h) || h === '::1')) {
    throw new Error(`refusing non-local PGHOST '${h}'`);
  }
}

export function connString() {
  assertLocal();
  const e = process.env;
  const q = new URLSearchParams({ host: e.PGHOST ?? '/tmp', port: e.PGPORT ?? '5432' });
  return `postgresql://${encodeURIComponent(e.PGUSER ?? 'postgres')}@/${encodeURIComponent(e.PGDATABASE ?? 'postgres')}?${q}`;
}

export async function connect(appName = 'pwbench') {
  assertLocal();
  const c = new pg.Client({ application_name: appName });
  await c.connect();
  return c;
}

// W1 step k: receives the previous output (the run input for k = 1).
export const w1Step = (k, prev) => ({ value: prev.value + k });

// W1's statements for the client-side peers (schema w1_peer, see sql/peer.sql).
export const PEER_SQL = {
  claimNext: `UPDATE w1_peer.runs
                 SET status = 'running', started_at = clock_timestamp(), attempts = attempts + 1
               WHERE id = (SELECT id FROM w1_peer.runs WHERE status = 'pending'
                            ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING id, input`,
  claimById: `UPDATE w1_peer.runs
                 SET status = 'running', started_at = clock_timestamp(), attempts = attempts + 1
               WHERE id = $1 AND status = 'pending'
           RETURNING id, input`,
  insertStep: `INSERT INTO w1_peer.step_results (run_id, step, output) VALUES ($1, $2, $3)`,
  finish: `UPDATE w1_peer.runs SET status = 'succeeded', finished_at = clock_timestamp(), result = $2
            WHERE id = $1 AND status = 'running'`,
};

// Steps 1..3 and the finish of a claimed run, each its own autocommit statement (= transaction).
export async function executeW1(query, run) {
  let v = run.input;
  for (let k = 1; k <= 3; k++) {
    v = w1Step(k, v);
    await query(PEER_SQL.insertStep, [run.id, k, v]);
  }
  const r = await query(PEER_SQL.finish, [run.id, v]);
  if (r.rowCount !== 1) throw new Error(`run ${run.id}: finish touched ${r.rowCount} rows`);
}

// Child drivers talk to main.mjs over the fork() IPC channel.
export function send(msg) {
  if (process.send) process.send(msg);
  else console.log(JSON.stringify(msg));
}

// A child that hangs must not hang the benchmark: exit 3 after `seconds`.
export function watchdog(seconds, what) {
  setTimeout(() => {
    console.error(`[${what}] watchdog: still running after ${seconds} s, exiting`);
    process.exit(3);
  }, seconds * 1000).unref();
}

// Resolves when the parent sends {type: 'stop'} (or disconnects).
export function stopSignal() {
  return new Promise((resolve) => {
    process.on('message', (m) => { if (m?.type === 'stop') resolve(); });
    process.on('disconnect', resolve);
  });
}

// ------------------------------------------------------------------ machine measurements

// [busy, total] jiffies of all CPUs since boot (busy excludes idle and iowait).
export function cpuJiffies() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return [total - f[3] - f[4], total];
}

export const CLK_TCK = 100; // USER_HZ on Linux
export const NCPU = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length;

// A process's parent pid and CPU seconds (user + system) so far, or null when it is gone.
export function procStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuS: (Number(f[11]) + Number(f[12])) / CLK_TCK };
  } catch {
    return null;
  }
}

// CPU seconds of a postmaster and each of its children (a cluster's processes), by pid (a string).
export function clusterCpu(postmaster) {
  const m = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = procStat(d);
    if (st && (Number(d) === postmaster || st.ppid === postmaster)) m.set(d, st.cpuS);
  }
  return m;
}

// % of the machine's CPUs busy over the next `ms` milliseconds.
export async function hostBusyPct(ms = 1000) {
  const [b0, t0] = cpuJiffies();
  await sleep(ms);
  const [b1, t1] = cpuJiffies();
  return Math.round((100 * (b1 - b0)) / Math.max(1, t1 - t0));
}

// CPU seconds (user + system) a process has used, or 0 when it is gone
export const procCpuS = (pid) => procStat(pid)?.cpuS ?? 0;

// "soft/hard" open file limit of a process
export function fdLimit(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/limits`, 'utf8').match(/^Max open files\s+(\S+)\s+(\S+)/m);
    return m ? `${m[1]}/${m[2]}` : '?';
  } catch {
    return '?';
  }
}

// TCP connections opened on this machine (all processes): ActiveOpens of /proc/net/snmp
export function tcpActiveOpens() {
  const l = fs.readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((x) => x.startsWith('Tcp:'));
  const k = l[0].split(/\s+/);
  return Number(l[1].split(/\s+/)[k.indexOf('ActiveOpens')]);
}

// VmRSS and RssAnon (kB) of a process, or null if it is gone.
export function procMem(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number((s.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) ?? [])[1] ?? NaN);
    return { rss: kb('VmRSS'), anon: kb('RssAnon') };
  } catch {
    return null;
  }
}

export const fmt = (x, d = 1) => (x == null || Number.isNaN(x) ? 'nan' : Number(x).toFixed(d));
// Median of a list of numbers (NaN for an empty list).
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
