"""Learning check on real images: precision @ 1 after a fixed training run.

  python bench/learning_check.py [--data_dir=../shared/cifar10-sample] [--min_precision=P]
      [--max_steps=1000] [--mixed_precision=none|bf16|fp16] [--runs=1]

Trains cifar10_train.py for --max_steps steps on the real CIFAR-10 sample
(1,017 images of each training file), with --mixed_precision as given, then
scores the sample's 1,017 test images with cifar10_eval.py --run_once (in
float32, as it scores any checkpoint), so that a change that hurts learning
shows up. --runs repeats this from scratch and also prints the mean, since
one run's precision varies by about a point. With --min_precision it exits
non-zero when the mean is below that. The sample is too small for the
published 86%: the number to watch is this script's own earlier result
(README, Results), or the same command without --mixed_precision.
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

import common


def train_and_evaluate(args):
    """One run: trains from scratch, then evaluates the last checkpoint.

    Returns:
      dict: first_loss, last_loss, precision, train_secs.
    """
    with tempfile.TemporaryDirectory() as folder:
        train_dir = os.path.join(folder, 'train')
        start = time.perf_counter()
        train = common.run([sys.executable, 'cifar10_train.py', '--data_dir=%s' % args.data_dir,
                            '--train_dir=%s' % train_dir, '--batch_size=%d' % args.batch_size,
                            '--max_steps=%d' % args.max_steps, '--log_frequency=100',
                            '--mixed_precision=%s' % args.mixed_precision])
        train_secs = time.perf_counter() - start
        if train.returncode:
            sys.exit('cifar10_train.py failed: %s' % train.stderr.strip())
        evaluate = common.run([sys.executable, 'cifar10_eval.py', '--run_once',
                               '--data_dir=%s' % args.data_dir, '--checkpoint_dir=%s' % train_dir,
                               '--eval_dir=%s' % os.path.join(folder, 'eval')])
        if evaluate.returncode:
            sys.exit('cifar10_eval.py failed: %s' % evaluate.stderr.strip())
    losses = [float(loss) for loss in re.findall(r'loss = ([\d.]+)', train.stdout)]
    precision = float(re.search(r'precision @ 1 = ([\d.]+)', evaluate.stdout).group(1))
    return {'first_loss': losses[0], 'last_loss': losses[-1], 'precision': precision,
            'train_secs': train_secs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data_dir', default=os.path.join(
        os.path.dirname(common.REPO_ROOT), 'shared', 'cifar10-sample'))
    parser.add_argument('--batch_size', type=int, default=common.BATCH_SIZE)
    parser.add_argument('--max_steps', type=int, default=1000)
    parser.add_argument('--mixed_precision', default='none', choices=['none', 'bf16', 'fp16'])
    parser.add_argument('--runs', type=common.positive_int, default=1)
    parser.add_argument('--min_precision', type=float, default=None)
    parser.add_argument('--json', default=None)
    args = parser.parse_args()

    runs = [train_and_evaluate(args) for _ in range(args.runs)]
    mean_precision = statistics.mean(run['precision'] for run in runs)
    results = {'data_dir': args.data_dir, 'batch_size': args.batch_size,
               'max_steps': args.max_steps, 'mixed_precision': args.mixed_precision,
               'runs': runs, 'precision': mean_precision}
    rows = [['%d' % (i + 1), '%.2f' % run['first_loss'], '%.2f' % run['last_loss'],
             '%.3f' % run['precision'], '%.0f' % run['train_secs']]
            for i, run in enumerate(runs)]
    common.print_table('Learning check: %d steps of batch %d on %s, --mixed_precision=%s'
                       % (args.max_steps, args.batch_size, args.data_dir, args.mixed_precision),
                       ['run', 'loss at step 0', 'last logged loss', 'precision @ 1',
                        'training (s)'], rows)
    if len(runs) > 1:
        print('mean precision @ 1 over %d runs: %.3f' % (len(runs), mean_precision))
    if args.json:
        common.write_json(args.json, results)
    if args.min_precision is not None and mean_precision < args.min_precision:
        sys.exit('precision %.3f is below --min_precision=%.3f'
                 % (mean_precision, args.min_precision))


if __name__ == '__main__':
    main()
