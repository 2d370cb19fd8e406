"""Training throughput of the tutorial's model on this machine: our trainer, fed
two ways, its compute-only ceiling, and the same model in Keras and PyTorch,
each with its framework's LRN and with our trainer's band-matrix LRN.

  python bench/train_throughput.py [--data_dir=/tmp/cifar10_bench] [--json=out.json]

Rows, each measured in a process of its own, one after the other:
  ceiling     the training step on a constant in-memory batch: compute only
  queue       cifar10_train.py as a user runs it (queue runners), from its log
  dataset     the same with --input_pipeline=dataset (tf.data)
  keras       the same model in Keras 3 model.fit (no XLA), with
              tf.nn.local_response_normalization: steady and whole-epoch
  keras_band  the same with the band-matrix LRN of our trainer (--lrn=band)
  torch       the same model in PyTorch eager, with nn.LocalResponseNorm
              (skipped, as torch_band, if torch is not installed)
  torch_band  the same with the band-matrix LRN
  ceiling_bf16, queue_bf16, ceiling_fp16, queue_fp16
              the ceiling and our trainer with --mixed_precision=bf16 or
              fp16 (the fp16 rows only with --rows: without a GPU they run on
              the CPU's slow float16 kernels)
and the machine's float32 matrix-multiply rate (row matmul), and the CPU
time each input pipeline alone spends per image (no model to feed), shown
as its share of the cores at the ceiling's rate.
Each rate is examples/sec, the median of windows of --window steps after
--warmup_steps (a median leaves out the windows with the trainer's summary
step, one in every 100 steps: the ceiling and our trainer are also measured
over whole hundreds of steps, summary steps included, and that ratio is
printed too); each row is shown against the ceiling, against our trainer
(queue) and, counting common.FLOP_PER_TRAINING_IMAGE (105.3 MFLOP), against
the matmul rate. This machine's speed drifts by 15% for stretches of seconds
(a shared VM), so every row but the input pipelines alone is measured in
each of --rounds rounds, one row after the other: a rate is the median over
the rounds, and a ratio the median of the ratios within each round. For
each peer, our trainer's lead over it splits into the framework (our
trainer / the peer with the band LRN) and the LRN (the peer with the band
LRN / the peer with its framework's LRN). Each --mixed_precision row
measured is shown against its float32 row (the trainer against the
trainer, the ceiling against the ceiling) and the trainer against its own
ceiling, as medians of the ratios within each round.
Without --data_dir a synthetic set of the full size (50,000 + 10,000 records)
is written once to /tmp/cifar10_bench.
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

import common

# The rows, in the order each round measures them, and those measured
# unless --rows says otherwise.
ROWS = ['matmul', 'ceiling', 'queue', 'dataset', 'ceiling_bf16', 'queue_bf16', 'ceiling_fp16',
        'queue_fp16', 'keras', 'keras_band', 'torch', 'torch_band']
DEFAULT_ROWS = [row for row in ROWS if not row.endswith('_fp16')]
# The --mixed_precision of our rows: row -> (the value, its float32 row).
MIXED_PRECISION_ROWS = {
    'ceiling_bf16': ('bf16', 'ceiling'), 'queue_bf16': ('bf16', 'queue'),
    'ceiling_fp16': ('fp16', 'ceiling'), 'queue_fp16': ('fp16', 'queue'),
}
# The peers' rows: row -> (script, its --lrn).
PEERS = {
    'keras': ('peer_keras.py', 'framework'),
    'keras_band': ('peer_keras.py', 'band'),
    'torch': ('peer_torch.py', 'framework'),
    'torch_band': ('peer_torch.py', 'band'),
}
# The table's lines: (row, the key of its rate in the row's result, label).
TABLE = [
    ('ceiling', 'examples_per_sec', 'constant in-memory batch (compute only)'),
    ('queue', 'examples_per_sec', 'cifar10_train.py, queue runners'),
    ('dataset', 'examples_per_sec', 'cifar10_train.py --input_pipeline=dataset'),
    ('ceiling_bf16', 'examples_per_sec', 'constant batch, --mixed_precision=bf16'),
    ('queue_bf16', 'examples_per_sec', 'cifar10_train.py --mixed_precision=bf16'),
    ('ceiling_fp16', 'examples_per_sec', 'constant batch, --mixed_precision=fp16'),
    ('queue_fp16', 'examples_per_sec', 'cifar10_train.py --mixed_precision=fp16'),
    ('keras', 'steady', 'Keras 3 model.fit, tf.nn.lrn, steady within an epoch'),
    ('keras_band', 'steady', 'Keras 3 model.fit, band LRN, steady within an epoch'),
    ('keras', 'whole_epoch', 'Keras 3 model.fit, tf.nn.lrn, whole epochs'),
    ('keras_band', 'whole_epoch', 'Keras 3 model.fit, band LRN, whole epochs'),
    ('torch', 'steady', 'PyTorch eager, nn.LocalResponseNorm'),
    ('torch_band', 'steady', 'PyTorch eager, band LRN'),
]
# Each peer's split of our trainer's lead: (name, row, band row, its LRN).
SPLITS = [('Keras', 'keras', 'keras_band', 'tf.nn.lrn'),
          ('PyTorch', 'torch', 'torch_band', 'nn.LocalResponseNorm')]
# The trainer writes summaries once every this many steps
# (cifar10_support.training.SAVE_SUMMARY_STEPS).
SUMMARY_STEPS = 100
MATMUL_SIZES = [1024, 2048, 4096]
MATMUL_SECONDS_PER_SIZE = 3.0


def whole_hundreds_rate(windows, window):
    """examples/sec over the first windows that make whole hundreds of steps
    (SUMMARY_STEPS), so that a trainer's summary steps count at their share.

    Args:
      windows: back-to-back windows' rates, examples/sec.
      window: steps per window.

    Returns:
      The rate, or None if the windows do not make SUMMARY_STEPS steps.
    """
    count = len(windows) * window // SUMMARY_STEPS * SUMMARY_STEPS // window
    if not count or count * window % SUMMARY_STEPS:
        return None
    return count / sum(1 / rate for rate in windows[:count])


def measure_matmul():
    """The machine's float32 matrix-multiply rate through TensorFlow (oneDNN).

    Returns:
      dict: gflops (the best size's median), and per-size medians.
    """
    sys.path.insert(0, common.REPO_ROOT)
    import numpy as np

    from cifar10 import tf
    per_size = {}
    for n in MATMUL_SIZES:
        with tf.Graph().as_default():
            rng = np.random.default_rng(0)
            a = tf.Variable(rng.normal(size=[n, n]).astype(np.float32))
            b = tf.Variable(rng.normal(size=[n, n]).astype(np.float32))
            product = tf.reduce_sum(tf.matmul(a, b))
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                sess.run(product)
                rates, deadline = [], time.perf_counter() + MATMUL_SECONDS_PER_SIZE
                while time.perf_counter() < deadline or len(rates) < 3:
                    start = time.perf_counter()
                    sess.run(product)
                    rates.append(2 * n ** 3 / (time.perf_counter() - start) / 1e9)
        per_size[n] = statistics.median(rates)
    return {'gflops': max(per_size.values()), 'per_size_gflops': per_size}


def build_ceiling_step(batch_size, mixed_precision='none'):
    """Builds, in the default graph, the full training step (cifar10.train:
    gradients, update, moving averages) on one constant batch held in
    memory: no input pipeline. Run it in a session of
    cifar10.session_config(), which applies --mixed_precision.

    Args:
      batch_size: images in the batch.
      mixed_precision: the --mixed_precision to build it for.

    Returns:
      train_op, loss: the step and the batch's total loss.
    """
    sys.path.insert(0, common.REPO_ROOT)
    import numpy as np

    import cifar10
    from cifar10 import tf
    cifar10.FLAGS(['ceiling', '--batch_size=%d' % batch_size,
                   '--mixed_precision=%s' % mixed_precision])
    global_step = tf.train.get_or_create_global_step()
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=[batch_size, 24, 24, 3]).astype(np.float32))
    labels = tf.constant(rng.integers(0, 10, size=batch_size).astype(np.int32))
    loss = cifar10.loss(cifar10.inference(images), labels)
    return cifar10.train(loss, global_step), loss


def measure_ceiling(batch_size, steps, window, warmup_steps, mixed_precision='none'):
    """The compute-only ceiling: build_ceiling_step's step, timed.

    Returns:
      dict: examples_per_sec (median of windows), windows, and
      whole_hundreds (whole_hundreds_rate).
    """
    sys.path.insert(0, common.REPO_ROOT)
    import cifar10
    from cifar10 import tf
    with tf.Graph().as_default():
        train_op, loss = build_ceiling_step(batch_size, mixed_precision)
        with tf.Session(config=cifar10.session_config()) as sess:
            sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            timestamps = [time.perf_counter()]
            for _ in range(steps):
                sess.run([train_op, loss])
                timestamps.append(time.perf_counter())
    median, windows = common.windows_rate(timestamps, batch_size, window, warmup_steps)
    return {'examples_per_sec': median, 'windows': windows,
            'whole_hundreds': whole_hundreds_rate(windows, window)}


def measure_input_cpu(data_dir, batch_size, input_pipeline, batches=600, warmup_batches=300):
    """The CPU time the training input pipeline alone spends per image:
    batches taken as fast as it makes them, with no model to feed. The
    process's CPU time (every thread, the fetch into numpy included) over
    the images, after warm-up batches that drain the queue's initial fill.

    Returns:
      dict: cpu_us_per_image, examples_per_sec.
    """
    sys.path.insert(0, common.REPO_ROOT)
    import cifar10
    from cifar10 import tf
    cifar10.FLAGS(['input', '--batch_size=%d' % batch_size, '--data_dir=%s' % data_dir,
                   '--input_pipeline=%s' % input_pipeline])
    with tf.Graph().as_default():
        batch = cifar10.distorted_inputs()
        with tf.Session(config=cifar10.session_config()) as sess:
            coord = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(sess, coord=coord)
            for _ in range(warmup_batches):
                sess.run(batch)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(batches):
                sess.run(batch)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            coord.request_stop()
            coord.join(threads)
    images = batches * batch_size
    return {'cpu_us_per_image': 1e6 * cpu / images, 'examples_per_sec': images / wall}


def measure_trainer(data_dir, batch_size, steps, window, warmup_steps, input_pipeline,
                    mixed_precision='none'):
    """cifar10_train.py as a user runs it; the rates are its own log lines,
    one every --window steps (summaries every 100 steps included).

    Returns:
      dict: examples_per_sec (median of the windows after warm-up), windows,
      and whole_hundreds (whole_hundreds_rate: summary steps included).
    """
    with tempfile.TemporaryDirectory() as train_dir:
        result = common.run([sys.executable, 'cifar10_train.py', '--data_dir=%s' % data_dir,
                             '--train_dir=%s' % train_dir, '--batch_size=%d' % batch_size,
                             '--max_steps=%d' % steps, '--log_frequency=%d' % window,
                             '--save_checkpoint_steps=%d' % (10 * steps),
                             '--input_pipeline=%s' % input_pipeline,
                             '--mixed_precision=%s' % mixed_precision])
    if result.returncode:
        raise RuntimeError('cifar10_train.py failed: %s' % result.stderr.strip())
    logged = [float(rate) for rate in re.findall(r'\(([\d.]+) examples/sec', result.stdout)]
    # The first line covers only step 0 (queue fill included): leave it out.
    windows = logged[1 + warmup_steps // window:]
    return {'examples_per_sec': statistics.median(windows), 'windows': windows,
            'whole_hundreds': whole_hundreds_rate(windows, window)}


def measure_peer(row, args):
    """Runs a peer benchmark (peer_keras.py, peer_torch.py) for one of PEERS'
    rows and reads its JSON.

    Args:
      row: a key of PEERS.
      args: the parsed flags (data, batch, timing, --keras_epochs, --torch_steps).

    Returns:
      The peer's result dict, or None if its framework is not installed.
    """
    script, lrn = PEERS[row]
    length = ('--epochs=%d' % args.keras_epochs if script == 'peer_keras.py'
              else '--steps=%d' % args.torch_steps)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'peer.json')
        result = common.run([sys.executable, os.path.join('bench', script),
                             '--data_dir=%s' % args.data_dir,
                             '--batch_size=%d' % args.batch_size,
                             '--window=%d' % args.window,
                             '--warmup_steps=%d' % args.warmup_steps,
                             '--lrn=%s' % lrn, length, '--json=%s' % path])
        if result.returncode == common.EXIT_NOT_INSTALLED:
            print('skipped %s: %s' % (script, result.stdout.strip()), flush=True)
            return None
        if result.returncode:
            raise RuntimeError('%s --lrn=%s failed: %s'
                               % (script, lrn, result.stderr.strip()[-2000:]))
        with open(path) as f:
            return json.load(f)


def measure_in_child(row, args, mixed_precision='none'):
    """Measures one row in a fresh process and returns its result dict."""
    result = common.run([sys.executable, os.path.abspath(__file__), '--measure=%s' % row,
                         '--data_dir=%s' % args.data_dir, '--batch_size=%d' % args.batch_size,
                         '--steps=%d' % args.steps, '--window=%d' % args.window,
                         '--warmup_steps=%d' % args.warmup_steps,
                         '--mixed_precision=%s' % mixed_precision])
    if result.returncode:
        raise RuntimeError('%s failed: %s' % (row, result.stderr.strip()[-2000:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


def rate(measured, row, key=None):
    """A row's rate in one round's results, or None where it was not measured.

    Args:
      measured: one round's dict of row -> result.
      row: the row.
      key: the key of the rate in the row's result (default: a peer's
        steady rate, else examples_per_sec).

    Returns:
      The rate (examples/sec, or GFLOP/s for matmul's 'gflops'), or None.
    """
    key = key or ('steady' if row in PEERS else 'examples_per_sec')
    return (measured.get(row) or {}).get(key)


def of_matmul(measured, row, key=None):
    """A row's rate in one round as a fraction of that round's matmul rate, or None."""
    examples_per_sec = rate(measured, row, key)
    if examples_per_sec is None:
        return None
    return ratio(examples_per_sec * common.FLOP_PER_TRAINING_IMAGE / 1e9,
                 rate(measured, 'matmul', 'gflops'))


def ratio(numerator, denominator):
    """numerator / denominator, or None where either is missing."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def median_over_rounds(rounds, value):
    """The median over the rounds of value(round), leaving out the Nones.

    Args:
      rounds: the list of each round's dict of row -> result.
      value: a function of one round's dict, returning a number or None.

    Returns:
      The median, or None if no round had a value.
    """
    values = [v for v in map(value, rounds) if v is not None]
    return statistics.median(values) if values else None


def percent(fraction):
    """A fraction as a percentage string, '' for None."""
    return '' if fraction is None else '%.1f%%' % (100 * fraction)


def times(value):
    """A ratio as '1.23x', '' for None."""
    return '' if value is None else '%.2fx' % value


def summarize(results):
    """Prints the table and the splits, and adds the summary to results.

    Args:
      results: the dict with 'rounds', 'batch_size', 'cores' and the input
        pipelines' results; 'summary', 'matmul_gflops', 'whole_hundreds',
        'splits' and 'mixed_precision' are added.
    """
    rounds = results['rounds']
    flop = common.FLOP_PER_TRAINING_IMAGE
    matmul_gflops = median_over_rounds(rounds, lambda m: rate(m, 'matmul', 'gflops'))
    ceiling = median_over_rounds(rounds, lambda m: rate(m, 'ceiling'))
    table, summary = [], []
    for row, key, label in TABLE:
        examples_per_sec = median_over_rounds(rounds, lambda m, r=row, k=key: rate(m, r, k))
        if examples_per_sec is None:
            continue
        line = {
            'row': row, 'key': key, 'label': label, 'examples_per_sec': examples_per_sec,
            'vs_ceiling': median_over_rounds(
                rounds, lambda m, r=row, k=key: ratio(rate(m, r, k), rate(m, 'ceiling'))),
            'queue_over_this': median_over_rounds(
                rounds, lambda m, r=row, k=key: ratio(rate(m, 'queue'), rate(m, r, k))),
            'of_matmul_rate': median_over_rounds(
                rounds, lambda m, r=row, k=key: of_matmul(m, r, k)),
        }
        summary.append(line)
        table.append([label, '%.0f' % examples_per_sec,
                      '' if line['vs_ceiling'] is None else '%.3f' % line['vs_ceiling'],
                      times(line['queue_over_this']) if row != 'queue' else '',
                      '%.1f' % (examples_per_sec * flop / 1e9),
                      percent(line['of_matmul_rate'])])
    results['summary'] = summary
    results['matmul_gflops'] = matmul_gflops
    title = ('Training, batch %d, %d cores, %d rounds; float32 matmul rate %s GFLOP/s'
             % (results['batch_size'], results['cores'], len(rounds),
                '%.1f' % matmul_gflops if matmul_gflops else 'not measured'))
    common.print_table(title, ['feed', 'examples/sec', 'x ceiling', 'queue / this',
                               'GFLOP/s', 'of matmul rate'], table)
    results['whole_hundreds'] = {}
    for row in ('queue', 'dataset', 'queue_bf16', 'queue_fp16'):
        own_ceiling = row.replace('queue', 'ceiling').replace('dataset', 'ceiling')
        vs_ceiling = median_over_rounds(
            rounds, lambda m, r=row, c=own_ceiling: ratio(rate(m, r, 'whole_hundreds'),
                                                          rate(m, c, 'whole_hundreds')))
        if vs_ceiling is None:
            continue
        results['whole_hundreds'][row] = {
            'examples_per_sec': median_over_rounds(
                rounds, lambda m, r=row: rate(m, r, 'whole_hundreds')),
            'vs_ceiling': vs_ceiling}
        print('Over whole hundreds of steps, summary steps included: %s %.0f examples/sec, '
              '%.3f x %s over the same steps (medians over rounds).'
              % (row, results['whole_hundreds'][row]['examples_per_sec'], vs_ceiling,
                 own_ceiling))
    for row in ('queue', 'dataset'):
        if ceiling and results.get(row + '_input'):
            cpu_us = results[row + '_input']['cpu_us_per_image']
            share = cpu_us * 1e-6 * ceiling / results['cores']
            results[row + '_input']['share_of_cores_at_ceiling'] = share
            print('The %s input pipeline alone: %.1f us of CPU per image, %s of the %d '
                  'cores at the ceiling\'s rate.' % (row, cpu_us, percent(share),
                                                     results['cores']))
    results['splits'] = {}
    for name, row, band_row, lrn in SPLITS:
        split = {
            'queue_over_peer': median_over_rounds(
                rounds, lambda m, r=row: ratio(rate(m, 'queue'), rate(m, r))),
            'framework': median_over_rounds(
                rounds, lambda m, b=band_row: ratio(rate(m, 'queue'), rate(m, b))),
            'lrn': median_over_rounds(
                rounds, lambda m, r=row, b=band_row: ratio(rate(m, b), rate(m, r))),
        }
        if all(value is None for value in split.values()):
            continue
        results['splits'][row] = split
        print('%s: our trainer (queue) is %s %s with %s = %s from the framework (%s with the '
              'band LRN) x %s from the LRN (what the band LRN gains %s); medians over rounds.'
              % (name, times(split['queue_over_peer']) or 'n/a', name, lrn,
                 times(split['framework']) or 'n/a', name, times(split['lrn']) or 'n/a', name))
    results['mixed_precision'] = {}
    for row, (mixed_precision, float32_row) in MIXED_PRECISION_ROWS.items():
        speedup = median_over_rounds(
            rounds, lambda m, r=row, f=float32_row: ratio(rate(m, r), rate(m, f)))
        if speedup is None:
            continue
        results['mixed_precision'][row] = {'over_float32': speedup}
        line = ('--mixed_precision=%s: %s %.2fx the float32 %s'
                % (mixed_precision, 'the trainer' if row.startswith('queue') else 'the ceiling',
                   speedup, 'trainer' if row.startswith('queue') else 'ceiling'))
        own_ceiling = 'ceiling_' + mixed_precision
        if row.startswith('queue'):
            of_ceiling = median_over_rounds(
                rounds, lambda m, r=row, c=own_ceiling: ratio(rate(m, r), rate(m, c)))
            results['mixed_precision'][row]['vs_own_ceiling'] = of_ceiling
            if of_ceiling is not None:
                line += ', %.3f x its own ceiling' % of_ceiling
        print(line + ' (medians over rounds).')
    for row, lrn in (('keras', 'tf.nn.lrn'), ('keras_band', 'the band LRN')):
        idle = median_over_rounds(rounds, lambda m, r=row: rate(m, r, 'epoch_change_idle_secs'))
        if idle is not None:
            print('Keras with %s idles %.2f s at each epoch change (median over rounds).'
                  % (lrn, idle))


def main():
    """Parses the flags; measures one row for a parent (--measure), or runs
    the rounds, then the input pipelines alone, and prints the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data_dir', default='/tmp/cifar10_bench')
    parser.add_argument('--batch_size', type=int, default=common.BATCH_SIZE)
    parser.add_argument('--steps', type=int, default=340, help='steps per TF row')
    parser.add_argument('--window', type=int, default=common.WINDOW_STEPS)
    parser.add_argument('--warmup_steps', type=int, default=common.WARMUP_STEPS)
    parser.add_argument('--torch_steps', type=int, default=200,
                        help='steps per PyTorch row')
    parser.add_argument('--keras_epochs', type=int, default=3,
                        help='epochs per Keras row (whole epochs need 2 or more)')
    parser.add_argument('--rows', default=','.join(DEFAULT_ROWS),
                        help='which rows, comma-separated, of: %s' % ', '.join(ROWS))
    parser.add_argument('--rounds', type=int, default=5,
                        help='rounds of all the rows but the input pipelines alone')
    parser.add_argument('--json', default=None, help='also write the results here')
    parser.add_argument('--measure', choices=['matmul', 'ceiling', 'queue_input',
                                              'dataset_input'], help=argparse.SUPPRESS)
    parser.add_argument('--mixed_precision', default='none', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure == 'matmul':
        print(json.dumps(measure_matmul()))
        return
    if args.measure == 'ceiling':
        print(json.dumps(measure_ceiling(args.batch_size, args.steps, args.window,
                                         args.warmup_steps, args.mixed_precision)))
        return
    if args.measure in ('queue_input', 'dataset_input'):
        input_pipeline = args.measure.split('_')[0]
        print(json.dumps(measure_input_cpu(args.data_dir, args.batch_size, input_pipeline)))
        return

    rows = args.rows.split(',')
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error('unknown rows %s; the rows are %s' % (', '.join(unknown), ', '.join(ROWS)))
    common.ensure_data(args.data_dir)
    results = {'batch_size': args.batch_size, 'cores': common.usable_cores(),
               'flop_per_training_image': common.FLOP_PER_TRAINING_IMAGE, 'rounds': []}
    not_installed = set()
    for round_index in range(args.rounds):
        measured = {}
        for row in [row for row in ROWS if row in rows and row not in not_installed]:
            print('round %d: measuring %s ...' % (round_index + 1, row), flush=True)
            if row in ('matmul', 'ceiling'):
                measured[row] = measure_in_child(row, args)
            elif row in ('queue', 'dataset'):
                measured[row] = measure_trainer(args.data_dir, args.batch_size, args.steps,
                                                args.window, args.warmup_steps, row)
            elif row.startswith('ceiling_'):
                measured[row] = measure_in_child('ceiling', args, MIXED_PRECISION_ROWS[row][0])
            elif row.startswith('queue_'):
                measured[row] = measure_trainer(args.data_dir, args.batch_size, args.steps,
                                                args.window, args.warmup_steps, 'queue',
                                                MIXED_PRECISION_ROWS[row][0])
            else:
                measured[row] = measure_peer(row, args)
                if measured[row] is None:
                    not_installed.add(row)
        results['rounds'].append(measured)
    for row in [row for row in ('queue', 'dataset') if row in rows]:
        print('measuring the %s input pipeline alone ...' % row, flush=True)
        results[row + '_input'] = measure_in_child(row + '_input', args)
    summarize(results)
    if args.json:
        common.write_json(args.json, results)


if __name__ == '__main__':
    main()
