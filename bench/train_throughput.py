"""Training throughput of the tutorial's model, fed five ways, on this machine.

  python bench/train_throughput.py [--data_dir=/tmp/cifar10_bench] [--json=out.json]

Rows, each measured in a process of its own, one after the other:
  ceiling   the training step on a constant in-memory batch: compute only
  queue     cifar10_train.py as a user runs it (queue runners), from its log
  dataset   the same with --input_pipeline=dataset (tf.data)
  keras     the same model in Keras 3 model.fit (no XLA): steady and whole-epoch
  torch     the same model in PyTorch eager (skipped if torch is not installed)
and the machine's float32 matrix-multiply rate, measured in the same run,
and the CPU time each input pipeline alone spends per image (no model to
feed), shown as its share of the cores at the ceiling's rate.
Each rate is examples/sec, the median of windows of --window steps after
--warmup_steps; each row is shown against the ceiling and, counting
common.FLOP_PER_TRAINING_IMAGE (105.3 MFLOP), against the matmul rate.
This machine's speed drifts by 15% for stretches of seconds (a shared VM),
so matmul, ceiling, queue and dataset are measured in --rounds rounds one
after the other: a rate is the median over the rounds, and a ratio the
median of the ratios within each round.
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

ROWS = ['matmul', 'ceiling', 'queue', 'dataset', 'keras', 'torch']
MATMUL_SIZES = [1024, 2048, 4096]
MATMUL_SECONDS_PER_SIZE = 3.0


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


def build_ceiling_step(batch_size):
    """Builds, in the default graph, the full training step (cifar10.train:
    gradients, update, moving averages) on one constant batch held in
    memory: no input pipeline.

    Args:
      batch_size: images in the batch.

    Returns:
      train_op, loss: the step and the batch's total loss.
    """
    sys.path.insert(0, common.REPO_ROOT)
    import numpy as np

    import cifar10
    from cifar10 import tf
    cifar10.FLAGS(['ceiling', '--batch_size=%d' % batch_size])
    global_step = tf.train.get_or_create_global_step()
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=[batch_size, 24, 24, 3]).astype(np.float32))
    labels = tf.constant(rng.integers(0, 10, size=batch_size).astype(np.int32))
    loss = cifar10.loss(cifar10.inference(images), labels)
    return cifar10.train(loss, global_step), loss


def measure_ceiling(batch_size, steps, window, warmup_steps):
    """The compute-only ceiling: build_ceiling_step's step, timed.

    Returns:
      dict: examples_per_sec (median of windows) and windows.
    """
    sys.path.insert(0, common.REPO_ROOT)
    import cifar10
    from cifar10 import tf
    with tf.Graph().as_default():
        train_op, loss = build_ceiling_step(batch_size)
        with tf.Session(config=cifar10.session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            timestamps = [time.perf_counter()]
            for _ in range(steps):
                sess.run([train_op, loss])
                timestamps.append(time.perf_counter())
    median, windows = common.windows_rate(timestamps, batch_size, window, warmup_steps)
    return {'examples_per_sec': median, 'windows': windows}


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


def measure_trainer(data_dir, batch_size, steps, window, warmup_steps, input_pipeline):
    """cifar10_train.py as a user runs it; the rates are its own log lines,
    one every --window steps (summaries every 100 steps included).

    Returns:
      dict: examples_per_sec (median of the windows after warm-up), windows.
    """
    with tempfile.TemporaryDirectory() as train_dir:
        result = common.run([sys.executable, 'cifar10_train.py', '--data_dir=%s' % data_dir,
                             '--train_dir=%s' % train_dir, '--batch_size=%d' % batch_size,
                             '--max_steps=%d' % steps, '--log_frequency=%d' % window,
                             '--save_checkpoint_steps=%d' % (10 * steps),
                             '--input_pipeline=%s' % input_pipeline])
    if result.returncode:
        raise RuntimeError('cifar10_train.py failed: %s' % result.stderr.strip())
    logged = [float(rate) for rate in re.findall(r'\(([\d.]+) examples/sec', result.stdout)]
    # The first line covers only step 0 (queue fill included): leave it out.
    windows = logged[1 + warmup_steps // window:]
    return {'examples_per_sec': statistics.median(windows), 'windows': windows}


def measure_peer(script, args, data_dir, batch_size, window, warmup_steps):
    """Runs a peer benchmark (peer_keras.py, peer_torch.py) and reads its JSON.

    Returns:
      The peer's result dict, or None if its framework is not installed.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'peer.json')
        result = common.run([sys.executable, os.path.join('bench', script),
                             '--data_dir=%s' % data_dir, '--batch_size=%d' % batch_size,
                             '--window=%d' % window, '--warmup_steps=%d' % warmup_steps,
                             '--json=%s' % path] + args)
        if result.returncode == common.EXIT_NOT_INSTALLED:
            print('skipped %s: %s' % (script, result.stdout.strip()), flush=True)
            return None
        if result.returncode:
            raise RuntimeError('%s failed: %s' % (script, result.stderr.strip()[-2000:]))
        with open(path) as f:
            return json.load(f)


def measure_in_child(row, args):
    """Measures one row in a fresh process and returns its result dict."""
    result = common.run([sys.executable, os.path.abspath(__file__), '--measure=%s' % row,
                         '--data_dir=%s' % args.data_dir, '--batch_size=%d' % args.batch_size,
                         '--steps=%d' % args.steps, '--window=%d' % args.window,
                         '--warmup_steps=%d' % args.warmup_steps])
    if result.returncode:
        raise RuntimeError('%s failed: %s' % (row, result.stderr.strip()[-2000:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data_dir', default='/tmp/cifar10_bench')
    parser.add_argument('--batch_size', type=int, default=common.BATCH_SIZE)
    parser.add_argument('--steps', type=int, default=320, help='steps per TF row')
    parser.add_argument('--window', type=int, default=common.WINDOW_STEPS)
    parser.add_argument('--warmup_steps', type=int, default=common.WARMUP_STEPS)
    parser.add_argument('--torch_steps', type=int, default=200)
    parser.add_argument('--keras_epochs', type=int, default=3)
    parser.add_argument('--rows', default=','.join(ROWS), help='which rows, comma-separated')
    parser.add_argument('--rounds', type=int, default=5,
                        help='rounds of the matmul, ceiling, queue and dataset rows')
    parser.add_argument('--json', default=None, help='also write the results here')
    parser.add_argument('--measure', choices=['matmul', 'ceiling', 'queue_input',
                                              'dataset_input'], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure == 'matmul':
        print(json.dumps(measure_matmul()))
        return
    if args.measure == 'ceiling':
        print(json.dumps(measure_ceiling(args.batch_size, args.steps, args.window,
                                         args.warmup_steps)))
        return
    if args.measure in ('queue_input', 'dataset_input'):
        input_pipeline = args.measure.split('_')[0]
        print(json.dumps(measure_input_cpu(args.data_dir, args.batch_size, input_pipeline)))
        return

    common.ensure_data(args.data_dir)
    rows = args.rows.split(',')
    results = {'batch_size': args.batch_size, 'cores': common.usable_cores(),
               'flop_per_training_image': common.FLOP_PER_TRAINING_IMAGE, 'rounds': []}
    for round_index in range(args.rounds):
        measured = {}
        for row in [row for row in ROWS[:4] if row in rows]:
            print('round %d: measuring %s ...' % (round_index + 1, row), flush=True)
            if row in ('matmul', 'ceiling'):
                measured[row] = measure_in_child(row, args)
            else:
                measured[row] = measure_trainer(args.data_dir, args.batch_size, args.steps,
                                                args.window, args.warmup_steps, row)
        results['rounds'].append(measured)
    for row in [row for row in ('queue', 'dataset') if row in rows]:
        print('measuring the %s input pipeline alone ...' % row, flush=True)
        results[row + '_input'] = measure_in_child(row + '_input', args)
    if 'keras' in rows:
        print('measuring keras ...', flush=True)
        results['keras'] = measure_peer('peer_keras.py', ['--epochs=%d' % args.keras_epochs],
                                        args.data_dir, args.batch_size, args.window,
                                        args.warmup_steps)
    if 'torch' in rows:
        print('measuring torch ...', flush=True)
        results['torch'] = measure_peer('peer_torch.py', ['--steps=%d' % args.torch_steps],
                                        args.data_dir, args.batch_size, args.window,
                                        args.warmup_steps)

    def over_rounds(value):
        """The median over the rounds of value(round), skipping missing rows."""
        values = []
        for measured in results['rounds']:
            try:
                values.append(value(measured))
            except KeyError:
                pass
        return statistics.median(values) if values else None

    matmul_gflops = over_rounds(lambda m: m['matmul']['gflops'])
    ceiling = over_rounds(lambda m: m['ceiling']['examples_per_sec'])
    table = []
    for row, label in [('ceiling', 'constant in-memory batch (compute only)'),
                       ('queue', 'cifar10_train.py, queue runners'),
                       ('dataset', 'cifar10_train.py --input_pipeline=dataset')]:
        rate = over_rounds(lambda m, row=row: m[row]['examples_per_sec'])
        if rate is None:
            continue
        gflops = rate * common.FLOP_PER_TRAINING_IMAGE / 1e9
        vs_ceiling = over_rounds(lambda m, row=row: m[row]['examples_per_sec']
                                 / m['ceiling']['examples_per_sec'])
        of_matmul = over_rounds(lambda m, row=row: m[row]['examples_per_sec']
                                * common.FLOP_PER_TRAINING_IMAGE / 1e9 / m['matmul']['gflops'])
        results[row] = {'examples_per_sec': rate, 'vs_ceiling': vs_ceiling,
                        'of_matmul_rate': of_matmul}
        table.append([label, '%.0f' % rate, '%.3f' % vs_ceiling if vs_ceiling else '',
                      '%.1f' % gflops, '%.1f%%' % (100 * of_matmul) if of_matmul else ''])
    for row, label, key in [('keras', 'Keras 3 model.fit, steady within an epoch', 'steady'),
                            ('keras', 'Keras 3 model.fit, whole epochs', 'whole_epoch'),
                            ('torch', 'PyTorch eager', 'steady')]:
        if not results.get(row):
            continue
        rate = results[row][key]
        gflops = rate * common.FLOP_PER_TRAINING_IMAGE / 1e9
        table.append([label, '%.0f' % rate, '%.3f' % (rate / ceiling) if ceiling else '',
                      '%.1f' % gflops,
                      '%.1f%%' % (100 * gflops / matmul_gflops) if matmul_gflops else ''])
    results['matmul_gflops'] = matmul_gflops
    title = ('Training, batch %d, %d cores, %d rounds; float32 matmul rate %s GFLOP/s'
             % (args.batch_size, results['cores'], args.rounds,
                '%.1f' % matmul_gflops if matmul_gflops else 'not measured'))
    common.print_table(title, ['feed', 'examples/sec', 'x ceiling', 'GFLOP/s',
                               'of matmul rate'], table)
    for row in ('queue', 'dataset'):
        if ceiling and results.get(row + '_input'):
            cpu_us = results[row + '_input']['cpu_us_per_image']
            results[row + '_input']['share_of_cores_at_ceiling'] = (
                cpu_us * 1e-6 * ceiling / results['cores'])
            print('The %s input pipeline alone: %.1f us of CPU per image, %.1f%% of the %d '
                  'cores at the ceiling\'s rate.' % (row, cpu_us, 100 * cpu_us * 1e-6 * ceiling
                                                     / results['cores'], results['cores']))
    queue = results.get('queue', {}).get('examples_per_sec')
    for row, key in [('keras', 'steady'), ('torch', 'steady')]:
        if queue and results.get(row):
            print('cifar10_train.py (queue) / %s: %.2fx' % (row, queue / results[row][key]))
    if results.get('keras'):
        print('Keras idles %.2f s at each epoch change (median).'
              % results['keras']['epoch_change_idle_secs'])
    if args.json:
        common.write_json(args.json, results)


if __name__ == '__main__':
    main()
