#!/usr/bin/env python3
"""wrk-compare: one side without the agent against one with it, from alternating wrk runs (tests/bench/*-bench.sh).

usage: wrk-compare.py DIR PAIRS PLAIN AGENT TARGET [P99_TARGET_US]
  reads DIR/PLAIN.I.wrk and DIR/AGENT.I.wrk for I = 1..PAIRS (wrk --latency output);
  prints each side's median requests/s, p50 and p99, the ratio of the medians
  against TARGET (%; - for none), each pair's ratio, the p99 latency added (against
  P99_TARGET_US when given), and the agent's span counts from the last
  "spans started" line of DIR/AGENT.PAIRS.err.
"""
import os
import re
import statistics
import sys

UNIT = {'us': 1, 'ms': 1e3, 's': 1e6}


def parse(path):
    text = open(path).read()
    rps = float(re.search(r'Requests/sec:\s*([\d.]+)', text).group(1))
    lat = {}
    for q in ('50', '99'):
        m = re.search(r'^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$' % q, text, re.M)
        lat[q] = float(m.group(1)) * UNIT[m.group(2)] if m else float('nan')
    errs = re.findall(r'Non-2xx or 3xx responses: \d+|Socket errors: .*', text)
    return rps, lat['50'], lat['99'], '; '.join(errs)


def main():
    d, pairs, plain, agent, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    p99_target = ' (target <= %s us)' % sys.argv[6] if len(sys.argv) > 6 else ''
    summary = os.path.join(d, '%s.%d.err' % (agent, pairs))
    runs = {side: [parse(os.path.join(d, '%s.%d.wrk' % (side, i))) for i in range(1, pairs + 1)]
            for side in (plain, agent)}
    med = {side: [statistics.median(r[k] for r in runs[side]) for k in range(3)] for side in runs}
    for side, label in ((plain, 'without agent'), (agent, 'with agent')):
        rps, p50, p99 = med[side]
        errs = '; '.join(sorted({r[3] for r in runs[side] if r[3]}))
        print('%-14s %10.0f requests/s  p50 %8.1f us  p99 %8.1f us   [requests/s: %s]%s' % (
            label + ':', rps, p50, p99, ' '.join('%.0f' % r[0] for r in runs[side]), '  ' + errs if errs else ''))
    ratio = 100 * med[agent][0] / med[plain][0] if med[plain][0] else 0
    pair = ' '.join('%.1f%%' % (100 * a[0] / p[0]) for p, a in zip(runs[plain], runs[agent]) if p[0])
    print('throughput with the agent: %.1f%% of without (%seach pair: %s)' % (
        ratio, 'target >= %s%%; ' % target if target != '-' else '', pair))
    print('p99 latency added: %+.1f us%s' % (med[agent][2] - med[plain][2], p99_target))
    if os.path.exists(summary):
        lines = [l.strip() for l in open(summary) if 'spans started' in l]
        if lines:
            print('agent, last run: ' + re.sub(r'^.*?(spans started)', r'\1', lines[-1]))


main()
