"""Where a training step's time goes: TensorFlow's own per-op timings.

  python bench/profile_step.py [--batch_size=128] [--steps=20] [--top=15]
      [--tf_lrn] [--mixed_precision=none|bf16|fp16]

Traces --steps runs of the compute-only training step (train_throughput.py's
ceiling: cifar10.train on one constant in-memory batch) with
RunOptions(trace_level=FULL_TRACE) and sums each op type's time from the run
metadata's step stats, after --warmup_steps untraced steps; an op type is
the kernel that ran, after Grappler's rewrites (a convolution, its bias and
its ReLU run as one _MklNativeFusedConv2D on CPU). Ops run in
parallel on the inter-op threads, so the op times add up to more than the
step's wall time; the share column is of their sum. A traced step runs
somewhat slower than an untraced one; the shares are what to read.

It also times the step with and without the tutorial's summaries (which
cifar10_train.py adds to every 100th step: histograms of every activation,
weight and gradient, the images, the scalars), alternating the two.

--tf_lrn builds the model with TensorFlow's own LRN kernels (tf.nn.lrn), as
the original did, in place of cifar10.local_response_normalization's
rewrite, to see what the rewrite saves.
--mixed_precision builds and runs the step as the trainers do with that flag.
"""

import argparse
import collections
import re
import statistics
import sys
import time

import common
from train_throughput import build_ceiling_step


def profile(batch_size, steps, warmup_steps, tf_lrn=False, mixed_precision='none'):
    """Traces the training step and sums op time per op type.

    Args:
      batch_size: images per batch.
      steps: traced steps.
      warmup_steps: untraced steps first.
      tf_lrn: build the model with tf.nn.lrn, the original's LRN.
      mixed_precision: the --mixed_precision to build and run the step with.

    Returns:
      (dict op type -> mean milliseconds per step, median traced step
      seconds, median untraced step seconds, the same with the summaries).
    """
    sys.path.insert(0, common.REPO_ROOT)  # This checkout's cifar10, not an installed one.
    import cifar10
    from cifar10 import tf
    if tf_lrn:
        cifar10._lrn = lambda x: tf.nn.lrn(
            x, cifar10.LRN_DEPTH_RADIUS, bias=cifar10.LRN_BIAS, alpha=cifar10.LRN_ALPHA,
            beta=cifar10.LRN_BETA)
    micros_by_type = collections.Counter()
    step_secs = []
    plain_secs, summary_secs = [], []
    with tf.Graph().as_default():
        train_op, loss = build_ceiling_step(batch_size, mixed_precision)
        summary_op = tf.summary.merge_all()
        with tf.Session(config=cifar10.session_config()) as sess:
            sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            for _ in range(warmup_steps):
                sess.run([train_op, loss])
            for _ in range(steps):
                for fetches, secs in [([train_op, loss], plain_secs),
                                      ([train_op, loss, summary_op], summary_secs)]:
                    start = time.perf_counter()
                    sess.run(fetches)
                    secs.append(time.perf_counter() - start)
            options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
            for _ in range(steps):
                metadata = tf.RunMetadata()
                start = time.perf_counter()
                sess.run([train_op, loss], options=options, run_metadata=metadata)
                step_secs.append(time.perf_counter() - start)
                for device in metadata.step_stats.dev_stats:
                    for node in device.node_stats:
                        # 'conv1/conv1 = _MklNativeFusedConv2D(...)': the
                        # kernel that ran, after Grappler's fusions.
                        kernel = re.search(r'= (\w+)\(', node.timeline_label)
                        op_type = kernel.group(1) if kernel else node.node_name
                        micros_by_type[op_type] += node.all_end_rel_micros
    millis = {op_type: micros / 1000.0 / steps for op_type, micros in micros_by_type.items()}
    return (millis, statistics.median(step_secs), statistics.median(plain_secs),
            statistics.median(summary_secs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch_size', type=int, default=common.BATCH_SIZE)
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--warmup_steps', type=int, default=common.WARMUP_STEPS)
    parser.add_argument('--top', type=int, default=15, help='op types to list')
    parser.add_argument('--tf_lrn', action='store_true',
                        help="TensorFlow's own LRN kernels, as the original")
    parser.add_argument('--mixed_precision', default='none', choices=['none', 'bf16', 'fp16'])
    parser.add_argument('--json', default=None, help='also write the results here')
    args = parser.parse_args()
    millis, step_secs, plain_secs, summary_secs = profile(
        args.batch_size, args.steps, args.warmup_steps, args.tf_lrn, args.mixed_precision)
    total = sum(millis.values())
    print('untraced step: %.1f ms; with the summaries: %.1f ms, which every 100 steps '
          'adds %.1f%%' % (1000 * plain_secs, 1000 * summary_secs,
                           (summary_secs - plain_secs) / (100 * plain_secs) * 100))
    print('traced step%s: %.1f ms wall, %.1f ms of op time (batch %d, %d steps)'
          % (' with tf.nn.lrn' if args.tf_lrn else '', 1000 * step_secs, total,
             args.batch_size, args.steps))
    print('%-40s %10s %7s' % ('op type', 'ms/step', 'share'))
    for op_type, ms in sorted(millis.items(), key=lambda item: -item[1])[:args.top]:
        print('%-40s %10.2f %6.1f%%' % (op_type, ms, 100 * ms / total))
    if args.json:
        common.write_json(args.json, {'batch_size': args.batch_size, 'steps': args.steps,
                                      'tf_lrn': args.tf_lrn,
                                      'mixed_precision': args.mixed_precision,
                                      'traced_step_secs': step_secs,
                                      'step_secs': plain_secs,
                                      'summary_step_secs': summary_secs,
                                      'op_millis_per_step': millis})


if __name__ == '__main__':
    main()
