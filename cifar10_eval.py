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
tf.app.flags.DEFINE_enum('eval_data', 'test', ['test', 'train_eval'],
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
    saver = tf.train.Saver(_averaged_variables())
    return top_k_op, saver


def _averaged_variables():
    """The dict that restores each weight's moving average (its shadow
    variable in the checkpoint) into the weight."""
    variable_averages = tf.train.ExponentialMovingAverage(cifar10.MOVING_AVERAGE_DECAY)
    return variable_averages.variables_to_restore()


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
      The precision, or None if the checkpoint is damaged or was deleted
      while being read (a line says which).

    Raises:
      UserError: if the checkpoint does not fit this model, or the summary
        cannot be written.
    """
    global_step = checkpoint_step(checkpoint_path)
    with tf.Session(config=cifar10.session_config()) as sess:
        damage = cifar10.restore_checkpoint(
            sess, saver, _averaged_variables(), checkpoint_path,
            'cannot evaluate %s, it does not fit this model (%s): point --checkpoint_dir at '
            'this model\'s checkpoints, with --use_fp16 if it was trained with it')
        if damage is not None and checkpoint_path not in _listed_checkpoints(
                os.path.dirname(checkpoint_path)):
            print('%s: %s was deleted while being read (the trainer keeps only '
                  'the newest); moving on to the newest.'
                  % (datetime.now(), checkpoint_path), flush=True)
            return None
        if damage is not None:
            print('%s: %s is damaged (%s); it is not scored.'
                  % (datetime.now(), checkpoint_path, damage), flush=True)
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
    try:
        summary_writer.add_summary(summary_proto, global_step)
        summary_writer.flush()
    except (tf.errors.OpError, OSError) as e:
        raise cifar10.write_error(FLAGS.eval_dir, e, 'the earlier evaluations in it are '
                                  'intact: make room and run again') from e
    return precision


def _listed_checkpoints(checkpoint_dir):
    """The checkpoints that the 'checkpoint' file in checkpoint_dir lists,
    oldest first, whether their files are there or not."""
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    if not state:
        return []
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    return paths


def evaluate():
    """Eval CIFAR-10 for a number of steps, once per new checkpoint.

    Raises:
      UserError: if a data file is bad, with --run_once if no checkpoint
        restores, or if a checkpoint does not fit this model.
    """
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
        try:
            summary_writer = cifar10.SummaryWriter(FLAGS.eval_dir, g)
        except (tf.errors.OpError, OSError) as e:
            raise cifar10.write_error(FLAGS.eval_dir, e, 'make room and run again') from e

        def score(checkpoint_path):
            return eval_once(saver, summary_writer, top_k_op, summary_op, checkpoint_path,
                             num_examples)

        try:
            if FLAGS.run_once:
                _evaluate_newest_whole_checkpoint(score)
            else:
                _evaluate_each_new_checkpoint(score)
        finally:
            summary_writer.close()


def _evaluate_newest_whole_checkpoint(score):
    """Scores the newest checkpoint that restores, passing over damaged ones."""
    paths = _listed_checkpoints(FLAGS.checkpoint_dir)
    if not paths:
        raise cifar10.UserError('No checkpoint file found in %s' % FLAGS.checkpoint_dir)
    for checkpoint_path in reversed(paths):
        if score(checkpoint_path) is not None:
            return
    raise cifar10.UserError('no checkpoint in %s restores: all %d are damaged or gone'
                            % (FLAGS.checkpoint_dir, len(paths)))


def _evaluate_each_new_checkpoint(score):
    """Polls --checkpoint_dir and scores each new checkpoint once, until
    --timeout seconds pass without a new one (counted from the end of the
    last evaluation, so a slow evaluation does not eat the timeout)."""
    last_evaluated = None
    said_waiting = False
    idle_since = time.time()
    while True:
        listed = _listed_checkpoints(FLAGS.checkpoint_dir)
        checkpoint_path = listed[-1] if listed else None
        if checkpoint_path is None and not said_waiting:
            said_waiting = True
            print('No checkpoint file found in %s yet: waiting for the '
                  'trainer.' % FLAGS.checkpoint_dir, flush=True)
        if checkpoint_path is not None and checkpoint_path != last_evaluated:
            last_evaluated = checkpoint_path
            precision = score(checkpoint_path)
            idle_since = time.time()
            if (precision is None
                    and checkpoint_path not in _listed_checkpoints(FLAGS.checkpoint_dir)):
                continue  # Deleted under us: look again for the newest.
        waited = time.time() - idle_since
        if FLAGS.timeout is not None and waited >= FLAGS.timeout:
            print('No new checkpoint in %s for %d seconds: stopping.'
                  % (FLAGS.checkpoint_dir, FLAGS.timeout), flush=True)
            return
        sleep_secs = FLAGS.eval_interval_secs
        if FLAGS.timeout is not None:
            sleep_secs = min(sleep_secs, FLAGS.timeout - waited)
        time.sleep(sleep_secs)


def main(argv=None):  # pylint: disable=unused-argument
    cifar10.maybe_download_and_extract()
    evaluate()


def run():
    """Console-script entry point: parses the flags and evaluates."""
    cifar10.run(main)


if __name__ == '__main__':
    run()
