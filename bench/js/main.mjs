// Orchestrator of the pipeline_worker benchmark (started by run.sh against its throwaway cluster).
// Runs workload W1 on the extension and on the peers, verifies every timed run, prints one result
// line per figure on stdout (everything else goes to stderr) and, for --mode sweep, writes charts.
// See ../README.md for what each mode measures. This file is the entry point: it reads the options, opens the control
// connection, puts the modules' helpers together (h) and runs the mode. The modules:
//   options.mjs   option defaults and checks; the --pw-configs, --peers and --http-figures names
//   report.mjs    log, result lines and the results file, ratio lines, charts, the build measured
//   cluster.mjs   the control connection: queries, SQL files, verify, the extension's workers and settings, waits
//   measure.mjs   settle, marks and what happened between two (commits, WAL, CPU, server log), latencies,
//                 --hold-snapshot, the timed start of the workers
//   children.mjs  forked child drivers (result over IPC)
//   w1.mjs        pipeline_worker's W1 drain and latency runs; --mode drain, latency, sweep
//   peers.mjs     the peers' W1 drain and latency runs
//   soak.mjs, scale.mjs, http.mjs, steady.mjs, flow.mjs, ops.mjs, workflows.mjs: the other modes
import path from 'node:path';

import { children } from './children.mjs';
import { failText, openCluster, PW_LEFT } from './cluster.mjs';
import { flowMode } from './flow.mjs';
import { createHttp } from './http.mjs';
import { measures } from './measure.mjs';
import { opsMode } from './ops.mjs';
import { httpFiguresOption, parseOptions } from './options.mjs';
import { peerRunners } from './peers.mjs';
import { buildId, createReport, label, log } from './report.mjs';
import { scaleMode } from './scale.mjs';
import { soakMode } from './soak.mjs';
import { steadyMode } from './steady.mjs';
import { drainMode, latencyMode, pwRunners, sweepMode } from './w1.mjs';
import { workflowsMode } from './workflows.mjs';

const opts = parseOptions(process.argv.slice(2));
const { o, N, W, PIPELINE, pwConfigs, peers } = opts;
const report = createReport(opts);
const { results, outLines, emit, emitHeader, writeOut } = report;

const cluster = await openCluster({ o, PIPELINE, log });
const { ctl, q, val, check, runSqlFile, runSqlFileOn, setWorkers, applyConfig, waitZero, pwDiagnose } = cluster;
const httpFigures = httpFiguresOption(o);

const watchdogS = Number(o['max-seconds'] ?? 0);
if (watchdogS > 0) setTimeout(() => { log(`overall limit of ${watchdogS} s reached, giving up`); process.exit(3); }, watchdogS * 1000).unref();

// Which build of the extension is measured (report.mjs).
const BUILD = buildId(o);

// h: everything the modes use (options, report, cluster, measures, child drivers, the W1 runners).
const h = { ...opts, log, ...report, ...cluster, PW_LEFT, failText, httpFigures, BUILD };
Object.assign(h, measures(h), children(h));
Object.assign(h, pwRunners(h), peerRunners(h));
const { pwDrain, peerDrain } = h;
const { httpMode, stopEndpoint } = createHttp(h);

try {
  await runSqlFile('pw.sql');
  emitHeader(`# pipeline_worker.so md5 ${BUILD.so}, work tree ${BUILD.tree}, ${new Date().toISOString()}, ` +
    `args: ${process.argv.slice(2).filter((a, i, all) => !['--pgdata', '--pglog', '--pgbin', '--as-pg'].includes(a) &&
      !['--pgdata', '--pglog', '--pgbin', '--as-pg'].includes(all[i - 1])).join(' ')}`);
  await setWorkers(0);
  log(`server ${await val('SHOW server_version')}, synchronous_commit=${await val('SHOW synchronous_commit')}, ` +
    `shared_buffers=${await val('SHOW shared_buffers')}, pipeline '${PIPELINE}' (${o['step-lang']} steps)`);
  if (o.mode === 'drain') {
    await drainMode(h);
  } else if (o.mode === 'latency') {
    await latencyMode(h);
  } else if (o.mode === 'sweep') {
    await sweepMode(h);
  } else if (o.mode === 'soak') {
    await soakMode(h);
  } else if (o.mode === 'scale') {
    await scaleMode(h);
  } else if (o.mode === 'http') {
    await httpMode();
  } else if (o.mode === 'flow') {
    await flowMode({ q, val, log, emit, o, W, N, PIPELINE, results, peers, setWorkers, applyConfig, waitZero, PW_LEFT,
      pwDiagnose, failText, check, peerDrain, holdSnapshot: h.holdSnapshot });
  } else if (o.mode === 'ops') {
    await opsMode({ q, val, log, emit, o, W, N, PIPELINE, results, setWorkers, waitZero, PW_LEFT, pwDiagnose, failText,
      runSqlFileOn });
  } else if (o.mode === 'workflows') {
    await workflowsMode({ q, val, log, emit, o, W, N, PIPELINE, results, setWorkers, waitZero, PW_LEFT, pwDiagnose,
      failText, runSqlFileOn, ctl });
  } else if (o.mode === 'steady') {
    await steadyMode({ q, val, log, emit, o, W, N, PIPELINE, results, pwConfigs, BUILD, pwDrain, setWorkers,
      applyConfig, waitZero, PW_LEFT, pwDiagnose, failText, check });
  } else {
    throw new Error(`unknown --mode ${o.mode}`);
  }
} finally {
  await setWorkers(0).catch(() => {});
  stopEndpoint();
  await q('DROP SCHEMA IF EXISTS graphile_worker CASCADE').catch(() => {});
  await ctl.end().catch(() => {});
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  // (named relative to the working directory: a copy of this output in bench/results names no path of the machine)
  if (outLines.length) {
    const file = writeOut(`results-${o.mode}-${stamp}.txt`, `${outLines.join('\n')}\n`);
    log(`result lines also in ${path.relative(process.cwd(), file) || file}`);
  }
}

const failed = results.filter((r) => r.verified !== 'ok');
if (failed.length) {
  log(`VERIFICATION FAILED for ${failed.length} result(s): ${failed.map(label).join(', ')}`);
  process.exit(1);
}
process.exit(0);
