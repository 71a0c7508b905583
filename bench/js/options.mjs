// The orchestrator's options (main.mjs): their defaults, the checks of their values, and what the names in
// --pw-configs, --peers and --http-figures stand for. A bad value is a usage error: message and exit 2.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from './common.mjs';

const BENCH = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

// A usage error: message and exit 2 (run.sh then removes the unused cluster). The prefix is the program's name.
export function usage(msg) {
  process.stderr.write(`main.mjs: ${msg}\n`);
  process.exit(2);
}

// pipeline_worker configurations (GUCs applied with ALTER SYSTEM + reload before each timed run)
export const PW_CONFIGS = {
  // the extension's defaults (pipeline_worker.claim_batch 64, commit_interval_ms 20: a worker claims up to 64 runs
  // at once and commits their steps and outcomes together, at most every 20 ms; the result line shows both)
  default: { 'pipeline_worker.claim_batch': null, 'pipeline_worker.commit_interval_ms': null },
  // closest to W1's five commits per run: claim one run per transaction, commit after every step
  // (the last step and the run's finish still share one commit: 4 commits per run)
  strict: { 'pipeline_worker.claim_batch': '1', 'pipeline_worker.commit_interval_ms': '0' },
};

export const PEERS = {
  'node-pg': { latency: true, w1: true },
  'graphile-3step': { latency: true, w1: true, task: 'w1' },
  'graphile-noop': { task: 'noop' },
  'graphile-noop-batched': { task: 'noop', batched: true },
  'plpgsql-floor': { w1: true },
  'graphile-3step-batched': { w1: true, task: 'w1', batched: true },
};
export const ALL_PEERS = Object.keys(PEERS);

export const HTTP_FIGURES = ['endpoint', 'live', 'drain', 'delay', 'inflight', 'latency'];

// The options as run.sh passes them (--key value), over the defaults; the numbers and lists derived from them.
export function parseOptions(argv) {
  const o = parseArgs(argv, {
    mode: 'drain', runs: '10000', workers: '10', peers: 'all', 'pw-configs': 'default,strict',
    'step-lang': 'plpgsql', rate: '100', duration: '30', 'poll-ms': '50', reps: '1',
    'quiet-wait': '60', 'quiet-pct': '15', timeout: '900', 'soak-runs': '200000', 'soak-batch': '10000',
    'sweep-workers': '1,2,4,10', out: path.join(BENCH, 'out'), pgdata: '', pglog: '', pgbin: '/usr/lib/postgresql/15/bin',
    'as-pg': '0', 'stall-timeout': '120', 'http-runs': '20000', 'http-figures': 'endpoint,live,drain,delay,inflight,latency',
    'http-endpoint': 'cpp', 'scale-backlogs': '10000,100000,1000000', 'steady-seconds': '1200', 'steady-backlog': '5000', 'steady-submitters': '1',
    'flow-future': '1000000', 'flow-limited': '50000', 'flow-figures': 'all', 'ops-figures': 'all', 'ops-history': '1000000',
    'ops-db-runs': '20000', 'ops-retention-history': '0', 'steady-retention': '', 'steady-submit': 'create_runs',
    'pg-setting': '',   // (run.sh --pg-setting: already in postgresql.conf; here for the results header only)
    'hold-snapshot': '0',
  });
  const N = Number(o.runs);
  const W = Number(o.workers);
  const REPS = Number(o.reps);
  const TIMEOUT = Number(o.timeout);
  const PIPELINE = o['step-lang'] === 'sql' ? 'w1_sql' : 'w1';
  for (const [k, v] of Object.entries({ runs: N, workers: W, reps: REPS, timeout: TIMEOUT,
    rate: Number(o.rate), duration: Number(o.duration), 'http-runs': Number(o['http-runs']) })) {
    if (!Number.isInteger(v) || v < 1) usage(`--${k} must be a positive integer`);
  }
  if (!['plpgsql', 'sql'].includes(o['step-lang'])) usage('--step-lang must be plpgsql or sql');
  const pwConfigs = o['pw-configs'] === 'none' ? [] : o['pw-configs'].split(',');
  for (const c of pwConfigs) if (!PW_CONFIGS[c]) usage(`unknown --pw-configs entry ${c} (default, strict)`);
  const peers = o.peers === 'all' ? ALL_PEERS : o.peers === 'none' ? [] : o.peers.split(',');
  for (const p of peers) if (!PEERS[p]) usage(`unknown peer ${p} (known: ${ALL_PEERS.join(', ')}, all, none)`);
  return { o, N, W, REPS, TIMEOUT, PIPELINE, pwConfigs, peers };
}

// --http-figures, as a list (main.mjs checks it in every mode, once the control connection is open).
export function httpFiguresOption(o) {
  const httpFigures = o['http-figures'].split(',');
  for (const f of httpFigures) if (!HTTP_FIGURES.includes(f)) usage(`unknown --http-figures entry ${f} (${HTTP_FIGURES.join(', ')})`);
  return httpFigures;
}
