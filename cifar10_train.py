"""A binary to train CIFAR-10 using a single GPU (or the CPU).

The original tutorial's published figures, with batch_size 128 (this port's
own measurements are in the README's Results):

System        | Step Time (sec/batch)  |     Accuracy
------------------------------------------------------------------
1 Tesla K20m  | 0.35-0.60              | ~86% at 60K steps  (5 hours)
1 Tesla K40m  | 0.25-0.35              | ~86% at 100K steps (4 hours)

Usage (the data set is downloaded to --data_dir first if it is not there;
README.md says how to train offline):

  python cifar10_train.py --train_dir=/tmp/cifar10_train --data_dir=/tmp/cifar10_data

Started again on the same --train_dir it resumes from the newest checkpoint
that restores (a damaged one is passed over); --max_steps is the absolute
last step. Ctrl-C or SIGTERM saves a checkpoint at the current step and
exits. A full disk stops it with one line, its last good checkpoint intact.
"""

import contextlib
import os
import signal
import time
from datetime import datetime

import numpy as np

import cifar10
from cifar10_input import tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_string('train_dir', '/tmp/cifar10_train',
                           """Directory where to write event logs """
                           """and checkpoint.""")
tf.app.flags.DEFINE_integer('max_steps', 100000,
                            """Number of batches to run (the absolute last
                            global step; a resumed run stops there too).""",
                            lower_bound=0)
tf.app.flags.DEFINE_boolean('log_device_placement', False,
                            """Whether to log device placement.""")
tf.app.flags.DEFINE_integer('log_frequency', 10,
                            """How often to log results to the console.""",
                            lower_bound=1)
tf.app.flags.DEFINE_integer('save_checkpoint_steps', 1000,
                            """Save a checkpoint every this many steps.""",
                            lower_bound=1)

SAVE_SUMMARY_STEPS = 100
MAX_CHECKPOINTS_TO_KEEP = 5
CHECKPOINT_BASENAME = 'model.ckpt'


@contextlib.contextmanager
def _graceful_stop():
    """Turns the first Ctrl-C or SIGTERM into a request to stop after the step.

    A second signal acts as usual (Ctrl-C raises KeyboardInterrupt at once).

    Yields:
      A list that holds the received signal numbers; empty until one comes.
    """
    received = []

    def request_stop(signum, unused_frame):
        received.append(signum)
        signal.signal(signum, previous_handlers[signum])

    previous_handlers = {signum: signal.signal(signum, request_stop)
                         for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


def restore_or_initialize(sess, saver, variables, global_step, checkpoint_dir):
    """Restores the newest checkpoint in checkpoint_dir that is whole, or initializes.

    A damaged checkpoint (one line says which and why) is passed over for
    the one before it; when none restores, training starts from scratch.
    Nothing is deleted: a damaged checkpoint newer than the one restored is
    left in place, out of the Saver's rotation, until training reaches its
    step again and saves over it.

    Args:
      sess: the Session.
      saver: a tf.train.Saver of the model's variables.
      variables: the dict from checkpoint names to variables the Saver saves.
      global_step: the global step variable.
      checkpoint_dir: where the checkpoints are.

    Returns:
      The global step to continue from.

    Raises:
      UserError: if a checkpoint does not fit this model.
    """
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    paths = list(state.all_model_checkpoint_paths) if state else []
    if state and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    for newest in range(len(paths) - 1, -1, -1):
        damage = cifar10.restore_checkpoint(
            sess, saver, variables, paths[newest],
            'cannot resume from %s, it does not fit this model (%s): use another --train_dir')
        if damage is None:
            # Old checkpoints keep being rotated out after a restart.
            saver.recover_last_checkpoints(paths[:newest + 1])
            step = int(sess.run(global_step))
            print('Resuming from %s at step %d.' % (paths[newest], step), flush=True)
            break
        print('%s is damaged (%s): passing over it.' % (paths[newest], damage), flush=True)
    else:
        if paths:
            print('No checkpoint in %s restores: training from scratch.' % checkpoint_dir,
                  flush=True)
        sess.run(tf.global_variables_initializer())
        step = 0
    sess.run(tf.local_variables_initializer())
    return step


def _remove_partial_checkpoint(checkpoint_path, step):
    """Removes what a failed save of model.ckpt-<step> left: its temporary
    files, and its own files unless they belong to a listed checkpoint."""
    prefix = '%s-%d' % (checkpoint_path, step)
    partial = tf.gfile.Glob(prefix + '*tempstate*') + tf.gfile.Glob(prefix + '_temp*')
    partial += tf.gfile.Glob(os.path.join(os.path.dirname(checkpoint_path), 'checkpoint.tmp*'))
    state = tf.train.get_checkpoint_state(os.path.dirname(checkpoint_path))
    listed = [os.path.basename(p) for p in state.all_model_checkpoint_paths] if state else []
    if os.path.basename(prefix) not in listed:
        partial += tf.gfile.Glob(prefix + '.index') + tf.gfile.Glob(prefix + '.data-*')
    for path in partial:
        with contextlib.suppress(tf.errors.NotFoundError):  # TensorFlow got there first.
            if tf.gfile.IsDirectory(path):
                tf.gfile.DeleteRecursively(path)
            else:
                tf.gfile.Remove(path)


def _write_failure(error):
    """The UserError for a checkpoint or event file that could not be written."""
    latest = tf.train.latest_checkpoint(FLAGS.train_dir)
    if latest:
        kept = ('the last good checkpoint, %s, is intact: make room and run again to '
                'resume from it' % latest)
    else:
        kept = 'no checkpoint was written yet: make room and run again'
    return cifar10.write_error(FLAGS.train_dir, error, kept)


def save_checkpoint(sess, saver, checkpoint_path, step):
    """Saves model.ckpt-<step>, or leaves nothing of it behind.

    Args:
      sess: the Session.
      saver: the Saver.
      checkpoint_path: the path prefix, <train_dir>/model.ckpt.
      step: the global step.

    Raises:
      UserError: if the disk is full or the write fails otherwise; the
        earlier checkpoints are left as they were.
    """
    try:
        saver.save(sess, checkpoint_path, global_step=step, write_meta_graph=False)
    except (tf.errors.OpError, OSError) as e:
        _remove_partial_checkpoint(checkpoint_path, step)
        raise _write_failure(e) from e


def train_loop(train_op, loss, global_step, num_towers=1, summary_op=None,
               config=None):
    """Runs train_op until --max_steps, checkpointing along the way.

    Resumes from the latest checkpoint in --train_dir. Logs every
    --log_frequency steps, writes summaries every SAVE_SUMMARY_STEPS steps,
    saves model.ckpt-<step> every --save_checkpoint_steps steps, at the last
    step and when Ctrl-C or SIGTERM asks it to stop. A NaN loss stops it
    without saving, so the last checkpoint stays the last good one; so does
    a checkpoint or event file that cannot be written (a full disk), and
    nothing half-written is left behind.

    Args:
      train_op: op that runs one training step and increments global_step.
      loss: the loss tensor to log and check.
      global_step: the global step variable.
      num_towers: batches consumed per step (one per tower).
      summary_op: the summaries to write; default all of the graph's.
      config: the session's tf.ConfigProto; default cifar10.session_config().

    Raises:
      FloatingPointError: if the loss becomes NaN.
      UserError: if a checkpoint does not fit this model, or a checkpoint or
        event file cannot be written.
    """
    tf.gfile.MakeDirs(FLAGS.train_dir)
    checkpoint_path = os.path.join(FLAGS.train_dir, CHECKPOINT_BASENAME)
    variables = {variable.op.name: variable for variable in tf.global_variables()}
    saver = tf.train.Saver(variables, max_to_keep=MAX_CHECKPOINTS_TO_KEEP,
                           save_relative_paths=True)
    if summary_op is None:
        summary_op = tf.summary.merge_all()
    if config is None:
        config = cifar10.session_config(FLAGS.log_device_placement)

    with tf.Session(config=config) as sess, _graceful_stop() as stop_signals:
        step = restore_or_initialize(sess, saver, variables, global_step, FLAGS.train_dir)
        if step >= FLAGS.max_steps:
            print('Step %d already reaches --max_steps=%d: nothing to train.'
                  % (step, FLAGS.max_steps))
            return
        try:
            summary_writer = cifar10.SummaryWriter(FLAGS.train_dir, sess.graph)
        except (tf.errors.OpError, OSError) as e:
            raise _write_failure(e) from e
        coord = tf.train.Coordinator()
        threads = tf.train.start_queue_runners(sess=sess, coord=coord)
        saved_step = step
        try:
            last_log_time, last_log_step = time.time(), step
            while (step < FLAGS.max_steps and not stop_signals
                   and not coord.should_stop()):
                if summary_op is not None and step % SAVE_SUMMARY_STEPS == 0:
                    _, loss_value, summary = sess.run([train_op, loss, summary_op])
                    try:
                        summary_writer.add_summary(summary, step)
                    except (tf.errors.OpError, OSError) as e:
                        raise _write_failure(e) from e
                else:
                    _, loss_value = sess.run([train_op, loss])
                if np.isnan(loss_value):
                    raise FloatingPointError(
                        'loss is NaN at step %d; training stopped, and the last '
                        'good checkpoint in %s is kept'
                        % (step, FLAGS.train_dir))

                if step % FLAGS.log_frequency == 0:
                    now = time.time()
                    steps_run = step + 1 - last_log_step
                    duration = now - last_log_time
                    last_log_time, last_log_step = now, step + 1
                    examples_per_sec = (steps_run * num_towers * FLAGS.batch_size
                                        / duration)
                    sec_per_batch = duration / steps_run / num_towers
                    format_str = ('%s: step %d, loss = %.2f (%.1f examples/sec; '
                                  '%.3f sec/batch)')
                    print(format_str % (datetime.now(), step, loss_value,
                                        examples_per_sec, sec_per_batch),
                          flush=True)

                step += 1
                if step % FLAGS.save_checkpoint_steps == 0:
                    save_checkpoint(sess, saver, checkpoint_path, step)
                    saved_step = step
            if saved_step != step or not saver.last_checkpoints:
                save_checkpoint(sess, saver, checkpoint_path, step)
            if stop_signals:
                print('Stopped by signal %d at step %d; the checkpoint is saved.'
                      % (stop_signals[0], step), flush=True)
        finally:
            coord.request_stop()
            coord.join(threads)
            summary_writer.close()


def train():
    """Train CIFAR-10 for a number of steps."""
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()

        # Get images and labels for CIFAR-10.
        # Force input pipeline to CPU:0 to avoid operations sometimes ending up
        # on GPU and resulting in a slow down.
        with tf.device('/cpu:0'):
            images, labels = cifar10.distorted_inputs()

        # Build a Graph that computes the logits predictions from the
        # inference model.
        logits = cifar10.inference(images)

        # Calculate loss.
        loss = cifar10.loss(logits, labels)

        # Build a Graph that trains the model with one batch of examples and
        # updates the model parameters.
        train_op = cifar10.train(loss, global_step)

        train_loop(train_op, loss, global_step)


def main(argv=None):  # pylint: disable=unused-argument
    cifar10.maybe_download_and_extract()
    train()


def run():
    """Console-script entry point: parses the flags and trains."""
    cifar10.run(main)


if __name__ == '__main__':
    run()
