"""What a checkpoint's .meta costs: its size, and the time it adds to a save.

  python bench/checkpoint_cost.py [--data_dir=/tmp/cifar10_bench] [--saves=20] [--json=out.json]

Builds the single-device trainer's graph (the queue input pipeline, the
model, its summaries and training op), then saves it --saves times each
way, taking turns: with its .meta (as the trainers save) and without. The
medians of the save times and the files' sizes are shown.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import common

sys.path.insert(0, common.REPO_ROOT)

import cifar10  # noqa: E402  (after the path is set)
from cifar10 import tf  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data_dir', default='/tmp/cifar10_bench')
    parser.add_argument('--saves', type=int, default=20)
    parser.add_argument('--json', default='')
    args = parser.parse_args()
    common.ensure_data(args.data_dir)
    cifar10.FLAGS(['checkpoint_cost', '--data_dir=%s' % args.data_dir])
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        images, labels = cifar10.distorted_inputs()
        cifar10.train(cifar10.loss(cifar10.inference(images), labels), global_step)
        tf.summary.merge_all()
        saver = tf.train.Saver(max_to_keep=None)
        times = {True: [], False: []}
        with tf.Session() as sess, tempfile.TemporaryDirectory() as folder:
            sess.run(tf.global_variables_initializer())
            for i in range(args.saves):
                for with_meta in (True, False):
                    prefix = os.path.join(folder, 'meta' if with_meta else 'plain')
                    start = time.perf_counter()
                    saver.save(sess, prefix, global_step=i, write_meta_graph=with_meta)
                    times[with_meta].append(time.perf_counter() - start)
            meta_bytes = os.path.getsize(os.path.join(folder, 'meta-0.meta'))
            checkpoint_bytes = sum(os.path.getsize(os.path.join(folder, name))
                                   for name in os.listdir(folder)
                                   if name.startswith('plain-0.'))
    result = {'meta_bytes': meta_bytes, 'checkpoint_bytes': checkpoint_bytes,
              'save_secs_with_meta': statistics.median(times[True]),
              'save_secs_without_meta': statistics.median(times[False])}
    print('.meta: %.0f KB beside a checkpoint of %.0f KB (.index and .data)'
          % (meta_bytes / 1024, checkpoint_bytes / 1024))
    print('save: %.1f ms with its .meta, %.1f ms without (medians of %d each, in turns)'
          % (1000 * result['save_secs_with_meta'], 1000 * result['save_secs_without_meta'],
             args.saves))
    common.write_json(args.json, result)


if __name__ == '__main__':
    main()
