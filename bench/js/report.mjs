// What the orchestrator reports: progress and diagnostics (log, stderr), the result lines (stdout, and the results
// file in --out), the results kept for the summaries and the exit status, the ratio lines, the sweep's charts
// (gnuplot), and which build of the extension is measured.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, median, NCPU } from './common.mjs';
import { CURVE } from './measure.mjs';
import { PEERS } from './options.mjs';

const BENCH = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

export const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);
export const label = (r) => (r.config ? `${r.runner}/${r.config}` : r.runner);

// Which build of the extension is measured (it is rebuilt often): md5 of the installed library
// (loaded by the postmaster when run.sh started the cluster) and the work tree's commit.
export function buildId(o) {
  let so = 'unknown';
  let tree = 'unknown';
  try {
    const lib = execFileSync(path.join(o.pgbin, 'pg_config'), ['--pkglibdir'], { encoding: 'utf8' }).trim();
    so = crypto.createHash('md5').update(fs.readFileSync(path.join(lib, 'pipeline_worker.so'))).digest('hex').slice(0, 8);
  } catch { /* reported as unknown */ }
  try {
    tree = execFileSync('git', ['-C', path.dirname(BENCH), 'describe', '--always', '--dirty'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch { /* not a git checkout */ }
  return { so, tree };
}

// The results and the result lines of one benchmark run. opts: o, N, pwConfigs, peers (parseOptions()).
export function createReport({ o, N, pwConfigs, peers }) {
  const results = [];
  const outLines = [];
  function emit(line) {
    console.log(line);
    outLines.push(line);
  }
  function emitHeader(line) {   // context for the results file; stderr only
    process.stderr.write(`${line}\n`);
    outLines.push(line);
  }

  // Median runs/s of verified drain results, by label and worker count.
  function drainTable() {
    const t = new Map();
    for (const r of results.filter((x) => x.mode === 'drain' && x.verified === 'ok')) {
      const k = `${label(r)}@${r.workers}`;
      if (!t.has(k)) t.set(k, []);
      t.get(k).push(r.rps);
    }
    return (lbl, w) => median(t.get(`${lbl}@${w}`) ?? []);
  }

  function printRatios(workersList) {
    const rps = drainTable();
    for (const w of workersList) {
      for (const cfg of pwConfigs) {
        const ours = rps(`pipeline_worker/${cfg}`, w);
        for (const peer of peers) {
          const theirs = rps(peer, w);
          emit(`ratio runner=pipeline_worker config=${cfg} vs=${peer} workers=${w} ours_runs_per_s=${fmt(ours)} ` +
            `peer_runs_per_s=${fmt(theirs)} ratio=${fmt(ours / theirs, 2)}` +
            `${PEERS[peer].w1 ? '' : ' note=peer_is_noop_jobs'}`);
        }
      }
    }
  }

  function writeOut(name, text) {
    fs.mkdirSync(o.out, { recursive: true });
    fs.writeFileSync(path.join(o.out, name), text);
    return path.join(o.out, name);
  }

  function gnuplot(script, name) {
    const f = writeOut(name, script);
    try {
      execFileSync('gnuplot', [f], { cwd: o.out, timeout: 60000, stdio: ['ignore', 2, 2] });
    } catch (e) {
      log(`gnuplot failed for ${name}: ${e.message} (data files are in ${o.out})`);
    }
  }

  function charts(workersList) {
    const rps = drainTable();
    const labels = [...pwConfigs.map((c) => `pipeline_worker/${c}`), ...peers];
    let dat = `workers ${labels.map((l) => (PEERS[l] && !PEERS[l].w1 ? `${l}(noop)` : l)).join(' ')}\n`;
    for (const w of workersList) dat += `${w} ${labels.map((l) => fmt(rps(l, w))).join(' ')}\n`;
    writeOut('throughput.dat', dat);
    const host = `${NCPU} CPUs`;
    gnuplot(`set terminal pngcairo size 1000,640 noenhanced font ',10'
set output 'throughput.png'
set title "W1 drain throughput, ${N} runs per point (${host}, PostgreSQL 15, synchronous_commit=on)"
set xlabel 'workers (W)'
set ylabel 'runs/s, log scale (no-op peers: jobs/s)'
set logscale x 2
set logscale y
set xrange [0.8:${Math.max(...workersList) * 1.25}]
set xtics (${workersList.join(',')})
set grid
set key outside right top
set datafile missing 'nan'
plot for [i=2:${labels.length + 1}] 'throughput.dat' using 1:i with linespoints lw 2 pt 7 title columnheader(i)
`, 'throughput.gp');

    const lat = results.filter((r) => r.mode === 'latency' && r.lat?.curve?.length);
    if (lat.length) {
      const names = lat.map((r) => `${label(r)}(W=${r.workers})`);
      let ld = `percentile ${names.join(' ')}\n`;
      CURVE.forEach((p, i) => { ld += `p${(p * 100).toString()} ${lat.map((r) => fmt(r.lat.curve[i], 2)).join(' ')}\n`; });
      writeOut('latency.dat', ld);
      gnuplot(`set terminal pngcairo size 1000,640 noenhanced font ',10'
set output 'latency.png'
set title "W1 latency (finished_at - created_at), open-loop submission at ${o.rate} runs/s for ${o.duration} s"
set xlabel 'percentile'
set ylabel 'ms (log scale)'
set logscale y
set grid
set key outside right top
set datafile missing 'nan'
plot for [i=2:${names.length + 1}] 'latency.dat' using 0:i:xtic(1) with linespoints lw 2 pt 7 title columnheader(i)
`, 'latency.gp');
    }
  }

  return { results, outLines, emit, emitHeader, writeOut, printRatios, charts };
}
