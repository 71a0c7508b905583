#!/usr/bin/env python3
"""Where a run's microseconds go: sorts the workers' samples of a `perf script` dump into the parts of a run.

usage: buckets.py PERF_SCRIPT_TEXT RUNS [FREQUENCY_HZ]

A sample belongs to a worker when its process ever showed pipeline_worker's worker_main on a stack. Each worker
sample goes to exactly one bucket, by the first rule below that matches its stack (a run's parts nest: a WAL record
written while inserting an index entry counts as a WAL record). Microseconds per run = samples / frequency / RUNS.
Stacks through libraries built without frame pointers (libcurl, parts of libc) cannot be followed to their caller:
those samples are listed as such, not guessed. See ../README.md, "Where a run's microseconds go".
"""
import collections
import re
import sys


def read_samples(path):
    samples, cur = [], None
    with open(path, errors='replace') as f:
        for line in f:
            if not line.strip():
                if cur:
                    samples.append(cur)
                cur = None
                continue
            if line[0] not in ' \t':
                head = line.split()
                cur = (head[0], head[1], [])
                continue
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and cur is not None:
                sym, _, dso = parts[1].rpartition(' (')
                sym = re.sub(r'\+0x[0-9a-f]+$', '', sym)
                cur[2].append((sym, dso.rstrip(')').rsplit('/', 1)[-1]))
    if cur:
        samples.append(cur)
    return samples


def any_of(stack, *names):
    return any(n in stack for n in names)


def statement_part(j):
    """Inside one of the engine's SQL statements: which part of the executor's work."""
    if 'XLogInsert' in j:
        return 'WAL records'
    if any_of(j, 'ExecInsertIndexTuples', '_bt_doinsert'):
        return 'index entries'
    if any_of(j, 'heap_update', 'heap_insert', 'heap_lock_tuple', 'heap_delete', 'RelationGetBufferForTuple'):
        return 'heap tuples (and row locks)'
    if 'ExecConstraints' in j:
        return 'CHECK and NOT NULL constraints'
    if any_of(j, 'standard_ExecutorStart', 'ExecInitNode', 'ExecOpenIndices'):
        return 'executor start-up'
    if any_of(j, 'standard_ExecutorEnd', 'ExecEndNode', 'ExecCloseIndices'):
        return 'executor shut-down'
    if any_of(j, 'ExecMakeTableFunctionResult', 'tuplestore', 'array_unnest'):
        return 'unnest of the batch arrays'
    return 'scans, joins, projection (rest of the executor)'


def bucket(j):
    if any_of(j, 'CommitTransactionCommand', 'XLogFlush'):
        return 'commit', 'WAL flush (fdatasync)' if 'XLogFlush' in j else 'rest'
    if 'claim_batch' in j:
        return 'claim (SELECT ... FOR UPDATE SKIP LOCKED)', statement_part(j)
    if 'flush_runs' in j:
        return 'run outcome (runs UPDATE)', statement_part(j)
    if 'flush_steps_kind' in j:
        return 'step rows (run_steps INSERT / upsert)', statement_part(j)
    if 'flush_writes' in j:  # flush_claims is inlined into flush_writes
        return 'claim recorded (runs UPDATE to running)', statement_part(j)
    if 'lock_runs' in j:
        return 'answers: runs locked again (SELECT ... FOR UPDATE)', statement_part(j)
    if any_of(j, 'pw::http::', 'pw::httpq::'):
        return 'HTTP client (our side of libcurl)', ''
    if any_of(j, 'run_function_step', 'build_context'):
        if any_of(j, 'BeginInternalSubTransaction', 'ReleaseCurrentSubTransaction', 'CommitSubTransaction',
                  'RollbackAndReleaseCurrentSubTransaction', 'StartSubTransaction'):
            return 'function steps', 'subtransaction start and end'
        if 'build_context' in j:
            return 'function steps', "the step's input (jsonb building)"
        if any_of(j, 'plpgsql_exec_function', 'plpgsql_call_handler', 'fmgr_sql'):
            return 'function steps', "the step function's body"
        return 'function steps', 'call through the kept plan, output copy'
    if 'http_step' in j:
        return 'HTTP steps: request and answer (jsonb)', ''
    if 'pw::' in j:
        return 'engine bookkeeping (batches, shared memory, metrics)', ''
    return 'no caller known: libcurl, libc (malloc), kernel (sockets)', ''


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, runs = sys.argv[1], float(sys.argv[2])
    hz = float(sys.argv[3]) if len(sys.argv) > 3 else 1999.0
    samples = read_samples(path)
    workers = {pid for _, pid, st in samples if any('worker_main' in s for s, _ in st)}
    mine = [st for _, pid, st in samples if pid in workers]
    if not mine:
        sys.exit('no worker samples in ' + path)
    per = collections.Counter()
    for st in mine:
        top, part = bucket(' '.join(s for s, _ in st))
        if top.startswith('no caller known'):  # at least where the sample itself was
            dso = st[0][1] if st else '?'
            part = ('the kernel' if dso.startswith('[kernel') else
                    dso.split('.so')[0] + ' (its own code)' if '.so' in dso else dso)
        per[(top, part)] += 1
    tops = collections.Counter()
    for (top, _), v in per.items():
        tops[top] += v
    us = lambda v: 1e6 * v / hz / runs
    n = len(mine)
    print(f'{len(workers)} workers, {n} samples at {hz:g} Hz, {runs:g} runs: {us(n):.1f} us of worker CPU per run')
    for top, v in tops.most_common():
        print(f'{100 * v / n:5.1f} %  {us(v):5.1f} us  {top}')
        for (t, part), pv in per.most_common():
            if t == top and part:
                print(f'                    {100 * pv / n:5.1f} %  {us(pv):5.1f} us  {part}')


if __name__ == '__main__':
    main()
