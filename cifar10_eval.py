# Copyright 2015 The TensorFlow Authors. All Rights Reserved.
# Licensed under the Apache License, Version 2.0 (see LICENSE); changed since.

"""Evaluation for CIFAR-10.

Accuracy:
cifar10_train.py achieves 83.0% accuracy after 100K steps (256 epochs
of data) as judged by cifar10_eval.py (the original's figure).

Usage: every --eval_interval_secs it scores the newest checkpoint in --checkpoint_dir
if it is new, writing its precisions and confusion matrix to --eval_dir for
TensorBoard (the data set is downloaded to --data_dir first if it is not there):

  python cifar10_eval.py --checkpoint_dir=/tmp/cifar10_train --eval_dir=/tmp/cifar10_eval
"""

import math
import os
import time
from datetime import datetime

import numpy as np

import cifar10
import cifar10_input
from cifar10_support import checkpoints, runtime, summaries
from cifar10_support.runtime import UserError, tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_string('eval_dir', '/tmp/cifar10_eval',
                           """Directory where to write event logs.""")
tf.app.flags.DEFINE_enum('eval_data', 'test', ['test', 'train_eval'],
                         """Either 'test' or 'train_eval'.""")
tf.app.flags.DEFINE_string('checkpoint_dir', '/tmp/cifar10_train',
                           """Directory where to read model checkpoints.""")
tf.app.flags.DEFINE_integer('eval_interval_secs', 60 * 5,
                            """How often to run the eval.""", lower_bound=0)
tf.app.flags.DEFINE_integer('num_examples', 10000,
                            """Number of examples to run.""", lower_bound=1)
tf.app.flags.DEFINE_boolean('run_once', False,
                            """Whether to run eval only once.""")
tf.app.flags.DEFINE_integer('timeout', None, """Stop after this many seconds without a new """
                            """checkpoint (default: poll for ever).""", lower_bound=0)

FLAGS_USED = cifar10.MODEL_FLAGS + cifar10.DOWNLOAD_FLAGS + [
    'eval_dir', 'eval_data', 'checkpoint_dir', 'eval_interval_secs', 'num_examples',
    'run_once', 'timeout']

_said_state_damage = set()  # The folders whose damaged state file was named.


def eval_once(saver, summary_writer, eval_ops, summary_op, checkpoint_path, num_examples,
              class_names):
    """Run Eval once (UserError if the checkpoint does not fit this model).

    Args:
      saver, summary_writer: the Saver and the summary writer.
      eval_ops, summary_op: from build_eval_graph, and the Summary op.
      checkpoint_path, num_examples: the checkpoint to score, on how many examples.
      class_names: the class names, label 0's first.
    Returns:
      The precision, or None if the checkpoint is damaged or gone (a line says which).
    """
    with tf.Session(config=cifar10.session_config()) as sess:
        damage = checkpoints.restore_checkpoint(
            sess, saver, cifar10.averaged_variables(), checkpoint_path,
            'cannot evaluate %s, it does not fit this model (%s): point --checkpoint_dir at '
            'this model\'s checkpoints, with --use_fp16 if it was trained with it')
        if damage is not None:
            if checkpoint_path in checkpoints.list_checkpoints(os.path.dirname(checkpoint_path))[0]:
                said = '%s is damaged (%s); it is not scored.' % (checkpoint_path, damage)
            else:
                said = ('%s was deleted while being read (the trainer keeps only the newest); '
                        'moving on to the newest.' % checkpoint_path)
            print('%s: %s' % (datetime.now(), said), flush=True)
            return None
        sess.run(tf.local_variables_initializer())
        coord = tf.train.Coordinator()
        threads = tf.train.start_queue_runners(sess=sess, coord=coord)
        fetches = [eval_ops['in_top_k'], eval_ops['labels'], eval_ops['predictions']]
        batches, summary, total_count = [], None, 0  # batches: the fetches of the counted.
        try:
            for _ in range(int(math.ceil(num_examples / FLAGS.batch_size))):
                if summary is None:
                    batch, summary = sess.run([fetches, summary_op])
                else:
                    batch = sess.run(fetches)
                # The last batch may hold more than is left to count.
                batches.append([values[:num_examples - total_count] for values in batch])
                total_count += len(batches[-1][0])
        except tf.errors.OutOfRangeError:
            pass  # Every record has been read once.
        finally:
            coord.request_stop()
            coord.join(threads, stop_grace_period_secs=10)

    in_top_k, labels, predictions = (np.concatenate(v) for v in zip(*batches, strict=True))
    precision = np.sum(in_top_k) / total_count
    print('%s: precision @ 1 = %.3f' % (datetime.now(), precision), flush=True)
    confusion, correct = summaries.count_by_class(in_top_k, labels, predictions, len(class_names))
    if FLAGS.run_once:
        print(summaries.plain_table(summaries.class_table(class_names, confusion, correct)),
              flush=True)

    summary_proto = tf.Summary()
    summary_proto.ParseFromString(summary)
    summary_proto.value.add(tag='Precision @ 1', simple_value=precision)
    summaries.add_class_summaries(summary_proto, class_names, confusion, correct)
    try:
        summary_writer.add_summary(summary_proto, checkpoints.checkpoint_step(checkpoint_path))
    except (tf.errors.OpError, OSError) as e:
        raise runtime.write_error(FLAGS.eval_dir, e, 'the earlier evaluations in it are '
                                  'intact: make room and run again') from e
    return precision


def build_eval_graph(eval_data):
    """Builds the evaluation model.

    Args:
      eval_data: bool, the test file if True, else the training files.
    Returns:
      eval_ops: dict of a batch's 'in_top_k', 'labels', 'predictions' and 'logits'.
      saver: a Saver that restores the moving averages of the weights.
    """
    images, labels = cifar10.inputs(eval_data=eval_data)
    logits = cifar10.inference(images)
    # Calculate predictions (in_top_k takes float32 only: --use_fp16's are cast).
    top_k_op = tf.nn.in_top_k(predictions=tf.cast(logits, tf.float32), targets=labels, k=1)

    # Restore the moving average version of the learned variables for eval.
    return ({'in_top_k': top_k_op, 'labels': labels, 'logits': logits,
             'predictions': tf.argmax(logits, axis=1)}, cifar10.averaged_weights_saver())


def evaluate():
    """Eval CIFAR-10 once per new checkpoint (--run_once: the newest that restores)."""
    eval_data = FLAGS.eval_data == 'test'
    num_records = cifar10_input.check_data_files(cifar10_input.data_filenames(
        eval_data, os.path.join(FLAGS.data_dir, cifar10.DATA_SUBDIR)))
    num_examples = min(FLAGS.num_examples, num_records)
    if num_records < FLAGS.num_examples:
        print('The %s data holds %d records, fewer than --num_examples=%d: each record is '
              'scored once.' % (FLAGS.eval_data, num_records, FLAGS.num_examples), flush=True)
    runtime.make_dir(FLAGS.eval_dir, 'eval_dir')

    with tf.Graph().as_default() as g:
        eval_ops, saver = build_eval_graph(eval_data)
        class_names = cifar10.class_names()
        summary_op = tf.summary.merge_all()
        try:
            summary_writer = summaries.SummaryWriter(FLAGS.eval_dir, g)
        except (tf.errors.OpError, OSError) as e:
            raise runtime.write_error(FLAGS.eval_dir, e, 'make room and run again') from e
        evaluate_checkpoints = (_evaluate_newest_whole_checkpoint if FLAGS.run_once
                                else _evaluate_each_new_checkpoint)
        try:
            evaluate_checkpoints(lambda path: eval_once(
                saver, summary_writer, eval_ops, summary_op, path, num_examples, class_names))
        finally:
            summary_writer.close()


def _listed_checkpoints():
    """The checkpoints in --checkpoint_dir, oldest first; a damaged state file is said once."""
    paths, state_damage = checkpoints.list_checkpoints(FLAGS.checkpoint_dir)
    if state_damage and FLAGS.checkpoint_dir not in _said_state_damage:
        _said_state_damage.add(FLAGS.checkpoint_dir)
        print('%s: %s is damaged (%s): passing over it, to the checkpoint files.'
              % (datetime.now(), os.path.join(FLAGS.checkpoint_dir, checkpoints.STATE_FILENAME),
                 state_damage), flush=True)
    return paths


def _evaluate_newest_whole_checkpoint(score):
    """Scores the newest checkpoint that restores, passing over damaged ones."""
    paths = _listed_checkpoints()
    if not paths:
        raise UserError('No checkpoint file found in %s' % FLAGS.checkpoint_dir)
    for checkpoint_path in reversed(paths):
        if score(checkpoint_path) is not None:
            return
    raise UserError('no checkpoint in %s restores: all %d are damaged or gone'
                    % (FLAGS.checkpoint_dir, len(paths)))


def _evaluate_each_new_checkpoint(score):
    """Polls --checkpoint_dir and scores each new checkpoint once, until --timeout
    seconds pass without one after the last evaluation ended."""
    last_evaluated, said_waiting, idle_since = None, False, time.time()
    while True:
        # A checkpoint without its index may be one the trainer is writing.
        listed = [path for path in _listed_checkpoints() if tf.gfile.Exists(path + '.index')]
        checkpoint_path = listed[-1] if listed else None
        if checkpoint_path is None and not said_waiting:
            said_waiting = True
            print('No checkpoint file found in %s yet: waiting for the trainer.'
                  % FLAGS.checkpoint_dir, flush=True)
        if checkpoint_path is not None and checkpoint_path != last_evaluated:
            last_evaluated = checkpoint_path
            precision = score(checkpoint_path)
            idle_since = time.time()
            if precision is None and checkpoint_path not in _listed_checkpoints():
                continue  # Deleted under us: look again for the newest.
        waited = time.time() - idle_since
        if FLAGS.timeout is not None and waited >= FLAGS.timeout:
            print('No new checkpoint in %s for %d seconds: stopping.'
                  % (FLAGS.checkpoint_dir, FLAGS.timeout), flush=True)
            return
        time.sleep(FLAGS.eval_interval_secs if FLAGS.timeout is None
                   else min(FLAGS.eval_interval_secs, FLAGS.timeout - waited))


def main(argv=None):  # pylint: disable=unused-argument
    cifar10.maybe_download_and_extract()
    evaluate()


def run():
    """Console-script entry point: parses the flags and evaluates."""
    cifar10.run(main, FLAGS_USED)


if __name__ == '__main__':
    run()
