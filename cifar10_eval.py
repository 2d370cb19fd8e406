"""Evaluation for CIFAR-10.

Accuracy:
cifar10_train.py achieves 83.0% accuracy after 100K steps (256 epochs
of data) as judged by cifar10_eval.py.

Speed:
On a single Tesla K40, cifar10_train.py processes a single batch of 128 images
in 0.25-0.35 sec (i.e. 350 - 600 images /sec). The model reaches ~86%
accuracy after 100K steps in 8 hours of training time.

Usage:
Please see the tutorial and website for how to download the CIFAR-10
data set, compile the program and train the model.

http://tensorflow.org/tutorials/deep_cnn/

  python cifar10_eval.py --checkpoint_dir=/tmp/cifar10_train --eval_dir=/tmp/cifar10_eval

It runs beside the trainer: every --eval_interval_secs it looks for a new
checkpoint in --checkpoint_dir and scores it once with the moving averages of
the weights, writing 'Precision @ 1' to --eval_dir for TensorBoard.
"""

import math
import os
import time
from datetime import datetime

import numpy as np

import cifar10
import cifar10_input
from cifar10_input import tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_string('eval_dir', '/tmp/cifar10_eval',
                           """Directory where to write event logs.""")
tf.app.flags.DEFINE_string('eval_data', 'test',
                           """Either 'test' or 'train_eval'.""")
tf.app.flags.DEFINE_string('checkpoint_dir', '/tmp/cifar10_train',
                           """Directory where to read model checkpoints.""")
tf.app.flags.DEFINE_integer('eval_interval_secs', 60 * 5,
                            """How often to look for a new checkpoint.""",
                            lower_bound=0)
tf.app.flags.DEFINE_integer('num_examples', 10000,
                            """Number of examples to run.""",
                            lower_bound=1)
tf.app.flags.DEFINE_boolean('run_once', False,
                            """Whether to run eval only once.""")
tf.app.flags.DEFINE_integer('timeout', None,
                            """Stop after this many seconds without a new
                            checkpoint (default: poll forever).""",
                            lower_bound=0)


def checkpoint_step(checkpoint_path):
    """Reads the global step from a checkpoint path like .../model.ckpt-1000.

    Args:
      checkpoint_path: the checkpoint's path prefix.

    Returns:
      The global step, an int.
    """
    return int(checkpoint_path.rsplit('-', 1)[-1])


def build_eval_graph(eval_data):
    """Builds the evaluation model and a saver that loads averaged weights.

    Args:
      eval_data: bool, the test file if True, else the training files.

    Returns:
      top_k_op: bool Tensor, whether each example's top prediction is right.
      saver: a Saver that restores the moving averages of the weights (the
        shadow variables) into the model's variables.
    """
    # Get images and labels for CIFAR-10.
    images, labels = cifar10.inputs(eval_data=eval_data)

    # Build a Graph that computes the logits predictions from the
    # inference model.
    logits = cifar10.inference(images)

    # Calculate predictions (in_top_k takes float32 only: --use_fp16 logits
    # are cast).
    top_k_op = tf.nn.in_top_k(predictions=tf.cast(logits, tf.float32),
                              targets=labels, k=1)

    # Restore the moving average version of the learned variables for eval.
    variable_averages = tf.train.ExponentialMovingAverage(
        cifar10.MOVING_AVERAGE_DECAY)
    variables_to_restore = variable_averages.variables_to_restore()
    saver = tf.train.Saver(variables_to_restore)
    return top_k_op, saver


def eval_once(saver, summary_writer, top_k_op, summary_op, checkpoint_path,
              num_examples):
    """Run Eval once.

    Args:
      saver: Saver.
      summary_writer: Summary writer.
      top_k_op: Top K op.
      summary_op: Summary op.
      checkpoint_path: the checkpoint to evaluate.
      num_examples: how many examples to score; each record is read once.

    Returns:
      The precision, or None if the checkpoint vanished while being read.
    """
    global_step = checkpoint_step(checkpoint_path)
    with tf.Session(config=cifar10.session_config()) as sess:
        try:
            saver.restore(sess, checkpoint_path)
        except (tf.errors.NotFoundError, tf.errors.DataLossError):
            print('%s: %s was deleted while being read (the trainer keeps only '
                  'the newest); moving on to the newest.'
                  % (datetime.now(), checkpoint_path), flush=True)
            return None
        sess.run(tf.local_variables_initializer())

        # Start the queue runners.
        coord = tf.train.Coordinator()
        threads = tf.train.start_queue_runners(sess=sess, coord=coord)
        true_count = 0  # Counts the number of correct predictions.
        total_count = 0
        summary = None
        try:
            num_iter = int(math.ceil(num_examples / FLAGS.batch_size))
            for _ in range(num_iter):
                if summary is None:
                    predictions, summary = sess.run([top_k_op, summary_op])
                else:
                    predictions = sess.run(top_k_op)
                # The last batch may hold more than is left to count.
                predictions = predictions[:num_examples - total_count]
                true_count += int(np.sum(predictions))
                total_count += len(predictions)
        except tf.errors.OutOfRangeError:
            pass  # Every record has been read once.
        finally:
            coord.request_stop()
            coord.join(threads, stop_grace_period_secs=10)

    # Compute precision @ 1.
    precision = true_count / total_count
    print('%s: precision @ 1 = %.3f' % (datetime.now(), precision), flush=True)

    summary_proto = tf.Summary()
    summary_proto.ParseFromString(summary)
    summary_proto.value.add(tag='Precision @ 1', simple_value=precision)
    summary_writer.add_summary(summary_proto, global_step)
    summary_writer.flush()
    return precision


def evaluate():
    """Eval CIFAR-10 for a number of steps, once per new checkpoint."""
    eval_data = FLAGS.eval_data == 'test'
    filenames = cifar10_input.data_filenames(
        eval_data, os.path.join(FLAGS.data_dir, cifar10.DATA_SUBDIR))
    num_records = cifar10_input.check_data_files(filenames)
    num_examples = min(FLAGS.num_examples, num_records)
    if num_records < FLAGS.num_examples:
        print('The %s data holds %d records, fewer than --num_examples=%d: '
              'each record is scored once.'
              % (FLAGS.eval_data, num_records, FLAGS.num_examples), flush=True)

    with tf.Graph().as_default() as g:
        top_k_op, saver = build_eval_graph(eval_data)

        # Build the summary operation based on the TF collection of Summaries.
        summary_op = tf.summary.merge_all()
        summary_writer = tf.summary.FileWriter(FLAGS.eval_dir, g)

        last_evaluated = None
        said_waiting = False
        last_new_checkpoint_time = time.time()
        while True:
            checkpoint_path = tf.train.latest_checkpoint(FLAGS.checkpoint_dir)
            if checkpoint_path is None and FLAGS.run_once:
                raise cifar10.UserError('No checkpoint file found in %s'
                                        % FLAGS.checkpoint_dir)
            if checkpoint_path is None and not said_waiting:
                said_waiting = True
                print('No checkpoint file found in %s yet: waiting for the '
                      'trainer.' % FLAGS.checkpoint_dir, flush=True)
            if checkpoint_path is not None and checkpoint_path != last_evaluated:
                last_evaluated = checkpoint_path
                last_new_checkpoint_time = time.time()
                precision = eval_once(saver, summary_writer, top_k_op, summary_op,
                                      checkpoint_path, num_examples)
                if precision is None:
                    continue  # Deleted under us: look again for the newest.
            if FLAGS.run_once:
                break
            waited = time.time() - last_new_checkpoint_time
            if FLAGS.timeout is not None and waited >= FLAGS.timeout:
                print('No new checkpoint in %s for %d seconds: stopping.'
                      % (FLAGS.checkpoint_dir, FLAGS.timeout), flush=True)
                break
            sleep_secs = FLAGS.eval_interval_secs
            if FLAGS.timeout is not None:
                sleep_secs = min(sleep_secs, FLAGS.timeout - waited)
            time.sleep(sleep_secs)
        summary_writer.close()


def main(argv=None):  # pylint: disable=unused-argument
    cifar10.maybe_download_and_extract()
    evaluate()


def run():
    """Console-script entry point: parses the flags and evaluates."""
    cifar10.run(main)


if __name__ == '__main__':
    run()
