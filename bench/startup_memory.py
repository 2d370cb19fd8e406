"""Start to first training step, and the trainer's peak memory.

  python bench/startup_memory.py [--data_dir=/tmp/cifar10_bench] [--json=out.json]

Runs cifar10_train.py as a user does, with the full-size queue (20,000
images before the first step), and times from the process's start to its
"Filling queue" line and to its first log line, printed once step 0 has run;
the peak resident memory is the process's own (wait4's ru_maxrss). Each
input pipeline, --repeats times; the medians are shown. Without --data_dir a
synthetic set of the full size is written once.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import common

PIPELINES = ['queue', 'dataset']


def run_trainer_once(data_dir, batch_size, steps, input_pipeline):
    """Runs the trainer for a few steps, watching its output.

    Returns:
      dict: secs_to_filling, secs_to_first_step, total_secs, peak_rss_mb.
    """
    with tempfile.TemporaryDirectory() as train_dir:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, 'cifar10_train.py', '--data_dir=%s' % data_dir,
             '--train_dir=%s' % train_dir, '--batch_size=%d' % batch_size,
             '--max_steps=%d' % steps, '--log_frequency=%d' % steps,
             '--input_pipeline=%s' % input_pipeline],
            cwd=common.REPO_ROOT, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED='1'))
        times = {}
        for line in process.stdout:
            now = time.perf_counter() - start
            if line.startswith('Filling queue'):
                times['secs_to_filling'] = now
            elif ': step 0,' in line:
                times['secs_to_first_step'] = now
        _, status, usage = os.wait4(process.pid, 0)
        times['total_secs'] = time.perf_counter() - start
    if status or len(times) != 3:
        raise RuntimeError('cifar10_train.py failed (status %d)' % status)
    times['peak_rss_mb'] = usage.ru_maxrss / 1024.0  # Linux reports KiB.
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data_dir', default='/tmp/cifar10_bench')
    parser.add_argument('--batch_size', type=int, default=common.BATCH_SIZE)
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--json', default=None)
    args = parser.parse_args()

    common.ensure_data(args.data_dir)
    results, table = {}, []
    for pipeline in PIPELINES:
        runs = [run_trainer_once(args.data_dir, args.batch_size, args.steps, pipeline)
                for _ in range(args.repeats)]
        medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        results[pipeline] = {'runs': runs, 'median': medians}
        table.append([pipeline, '%.2f' % medians['secs_to_filling'],
                      '%.2f' % medians['secs_to_first_step'], '%.0f' % medians['peak_rss_mb']])
    common.print_table('cifar10_train.py, full-size queue, batch %d, %d cores (median of %d)'
                       % (args.batch_size, common.usable_cores(), args.repeats),
                       ['input pipeline', 'start to "Filling queue" (s)',
                        'start to first step (s)', 'peak memory (MB)'], table)
    if args.json:
        common.write_json(args.json, results)


if __name__ == '__main__':
    main()
