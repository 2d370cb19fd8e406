"""Evaluation throughput: how fast cifar10_eval.py scores 10,000 test images.

  python bench/eval_throughput.py [--data_dir=/tmp/cifar10_bench] [--json=out.json]

Makes a checkpoint of the model (untrained weights: the speed does not depend
on them), then times the evaluator's eval_once() on --num_examples test
images: a new session, the restore of the moving averages, the queue
runners, every batch and the summaries, as each new checkpoint costs a
running evaluator. It also times the whole `cifar10_eval.py --run_once`
process, TensorFlow's import and the graph's construction included.
Without --data_dir a synthetic set of the full size is written once.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import common

sys.path.insert(0, common.REPO_ROOT)
import cifar10  # noqa: E402  (needs the repository on sys.path)
import cifar10_eval  # noqa: E402
from cifar10 import tf  # noqa: E402


def make_checkpoint(checkpoint_dir):
    """Saves freshly initialized model variables as model.ckpt-0.

    Args:
      checkpoint_dir: the folder to save into.

    Returns:
      The checkpoint's path.
    """
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        images = tf.placeholder(tf.float32, [None, 24, 24, 3])
        loss = cifar10.loss(cifar10.inference(images), tf.zeros([1], tf.int32))
        cifar10.train(loss, global_step)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            return tf.train.Saver().save(sess, os.path.join(checkpoint_dir, 'model.ckpt'),
                                         global_step=0, write_meta_graph=False)


def time_eval_once(checkpoint, num_examples, repeats):
    """Times cifar10_eval.eval_once on one checkpoint, repeats times.

    Returns:
      The list of durations in seconds.
    """
    with tf.Graph().as_default(), tempfile.TemporaryDirectory() as eval_dir:
        eval_ops, saver = cifar10_eval.build_eval_graph(eval_data=True)
        summary_op = tf.summary.merge_all()
        writer = tf.summary.FileWriter(eval_dir)
        durations = []
        for _ in range(repeats):
            start = time.perf_counter()
            cifar10_eval.eval_once(saver, writer, eval_ops, summary_op, checkpoint,
                                   num_examples, cifar10.class_names())
            durations.append(time.perf_counter() - start)
        writer.close()
    return durations


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data_dir', default='/tmp/cifar10_bench')
    parser.add_argument('--batch_size', type=int, default=common.BATCH_SIZE)
    parser.add_argument('--num_examples', type=int, default=10000)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--json', default=None)
    args = parser.parse_args()

    common.ensure_data(args.data_dir)
    cifar10.FLAGS(['eval_throughput', '--data_dir=%s' % args.data_dir,
                   '--batch_size=%d' % args.batch_size])
    with tempfile.TemporaryDirectory() as checkpoint_dir:
        checkpoint = make_checkpoint(checkpoint_dir)
        durations = time_eval_once(checkpoint, args.num_examples, args.repeats)
        start = time.perf_counter()
        result = common.run([sys.executable, 'cifar10_eval.py', '--run_once',
                             '--data_dir=%s' % args.data_dir,
                             '--checkpoint_dir=%s' % checkpoint_dir,
                             '--eval_dir=%s' % os.path.join(checkpoint_dir, 'eval'),
                             '--batch_size=%d' % args.batch_size,
                             '--num_examples=%d' % args.num_examples])
        process_secs = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError('cifar10_eval.py failed: %s' % result.stderr.strip())

    median = statistics.median(durations)
    results = {'num_examples': args.num_examples, 'batch_size': args.batch_size,
               'eval_once_secs': durations, 'eval_once_median_secs': median,
               'images_per_sec': args.num_examples / median,
               'gflops': args.num_examples * common.FLOP_PER_EVAL_IMAGE / median / 1e9,
               'process_secs': process_secs}
    common.print_table(
        'Evaluation of %d images, batch %d, %d cores' % (args.num_examples, args.batch_size,
                                                         common.usable_cores()),
        ['what', 'seconds', 'images/sec', 'GFLOP/s'],
        [['eval_once (median of %d)' % args.repeats, '%.2f' % median,
          '%.0f' % results['images_per_sec'], '%.1f' % results['gflops']],
         ['cifar10_eval.py --run_once, whole process', '%.2f' % process_secs, '', '']])
    if args.json:
        common.write_json(args.json, results)


if __name__ == '__main__':
    main()
