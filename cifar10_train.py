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
train_loop() here is the training loop of every trainer: this one,
cifar10_multi_gpu_train.py and cifar10_distributed_train.py.
"""

import contextlib
import fcntl
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
# Seconds a worker that is not the chief waits between looks at whether the
# chief has initialized or restored the model (TensorFlow's default: 30).
RECOVERY_WAIT_SECS = 1


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


@contextlib.contextmanager
def claim_train_dir(train_dir):
    """Creates train_dir if needed and makes this process its only trainer
    while the context lasts.

    The claim is an flock on the folder: the kernel lifts it when the
    process ends, however it ends, so a trainer killed with SIGKILL does not
    block the next one.

    Args:
      train_dir: the --train_dir.

    Yields:
      Nothing.

    Raises:
      UserError: if the folder cannot be created or used, or another
        trainer has claimed it.
    """
    try:
        tf.gfile.MakeDirs(train_dir)
    except tf.errors.OpError as e:
        raise cifar10.UserError('cannot create --train_dir=%s (%s): give a folder you can '
                                'write to' % (train_dir, cifar10.error_reason(e))) from e
    if '://' in train_dir:
        yield  # A remote file system: no claim to make.
        return
    state_file = os.path.join(train_dir, cifar10.STATE_FILENAME)
    if os.path.isdir(state_file):
        raise cifar10.UserError('%s is a folder where the trainer keeps its checkpoint state '
                                'file: move it out of --train_dir' % state_file)
    try:
        folder = os.open(train_dir, os.O_RDONLY)
    except OSError as e:
        raise cifar10.UserError('cannot use --train_dir=%s (%s): give a folder you can write '
                                'to' % (train_dir, e.strerror)) from e
    try:
        fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(folder)
        raise cifar10.UserError('another trainer is training in --train_dir=%s: let it '
                                'finish or stop it, or give another --train_dir'
                                % train_dir) from e
    try:
        yield
    finally:
        os.close(folder)


def restore_or_initialize(sess, saver, variables, global_step, checkpoint_dir, init_op):
    """Restores the newest checkpoint in checkpoint_dir that is whole, or initializes.

    The checkpoints are found by their files (cifar10.list_checkpoints): a
    damaged, stale or missing state file is rebuilt from them. A damaged
    checkpoint (one line says which and why) is passed over for the one
    before it; when none restores, training starts from scratch. Nothing is
    deleted: a damaged checkpoint newer than the one restored is left in
    place, out of the Saver's rotation, until training reaches its step
    again and saves over it.

    Args:
      sess: the Session.
      saver: a tf.train.Saver of the model's variables.
      variables: the dict from checkpoint names to variables the Saver saves.
      global_step: the global step variable.
      checkpoint_dir: where the checkpoints are.
      init_op: the op that initializes the variables, run when none restores.

    Returns:
      The global step to continue from.

    Raises:
      UserError: if a checkpoint does not fit this model, or the state file
        cannot be rebuilt.
    """
    paths, state_damage = cifar10.list_checkpoints(checkpoint_dir)
    state_file = os.path.join(checkpoint_dir, cifar10.STATE_FILENAME)
    if state_damage:
        print('%s is damaged (%s): it is rebuilt from the checkpoint files.'
              % (state_file, state_damage), flush=True)
    for newest in range(len(paths) - 1, -1, -1):
        damage = cifar10.restore_checkpoint(
            sess, saver, variables, paths[newest],
            'cannot resume from %s, it does not fit this model (%s): use another --train_dir')
        if damage is None:
            # Old checkpoints keep being rotated out after a restart.
            kept = paths[:newest + 1][-MAX_CHECKPOINTS_TO_KEEP:]
            saver.recover_last_checkpoints(kept)
            state = None if state_damage else tf.train.get_checkpoint_state(checkpoint_dir)
            if state is None or state.model_checkpoint_path != paths[newest]:
                _write_state_file(checkpoint_dir, kept)
            step = int(sess.run(global_step))
            print('Resuming from %s at step %d.' % (paths[newest], step), flush=True)
            return step
        print('%s is damaged (%s): passing over it.' % (paths[newest], damage), flush=True)
    if paths:
        print('No checkpoint in %s restores: training from scratch.' % checkpoint_dir,
              flush=True)
    sess.run(init_op)
    return 0


def _write_state_file(checkpoint_dir, paths):
    """Writes the state file that lists paths, the last the latest, as the
    Saver writes it (atomically, relative paths)."""
    try:
        tf.train.update_checkpoint_state(checkpoint_dir, os.path.basename(paths[-1]),
                                         [os.path.basename(path) for path in paths])
    except (tf.errors.OpError, OSError) as e:
        raise _write_failure(e) from e


def _remove_partial_checkpoint(prefix, had_files):
    """Removes what a failed save of the checkpoint prefix left: its
    temporary files, and its own files unless it had files before."""
    partial = tf.gfile.Glob(prefix + '*tempstate*') + tf.gfile.Glob(prefix + '_temp*')
    partial += tf.gfile.Glob(os.path.join(os.path.dirname(prefix),
                                          cifar10.STATE_FILENAME + '.tmp*'))
    if not had_files:
        partial += tf.gfile.Glob(prefix + '.*')
    for path in partial:
        with contextlib.suppress(tf.errors.NotFoundError):  # TensorFlow got there first.
            if tf.gfile.IsDirectory(path):
                tf.gfile.DeleteRecursively(path)
            else:
                tf.gfile.Remove(path)


def newest_whole_checkpoint(checkpoint_dir):
    """The newest checkpoint in checkpoint_dir that reads back whole, or None."""
    paths, _ = cifar10.list_checkpoints(checkpoint_dir)
    return next((path for path in reversed(paths) if cifar10.checkpoint_damage(path) is None),
                None)


def _write_failure(error):
    """The UserError for a checkpoint or event file that could not be written."""
    latest = newest_whole_checkpoint(FLAGS.train_dir)
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
    prefix = '%s-%d' % (checkpoint_path, step)
    had_files = bool(tf.gfile.Glob(prefix + '.*'))
    try:
        saver.save(sess, checkpoint_path, global_step=step, write_meta_graph=False)
    except (tf.errors.OpError, OSError) as e:
        _remove_partial_checkpoint(prefix, had_files)
        raise _write_failure(e) from e


def _next_multiple(step, every):
    """The first multiple of every at or after step."""
    return -(-step // every) * every


class _NanHook(tf.train.SessionRunHook):
    """Stops training with FloatingPointError when the loss becomes NaN,
    before any hook after it saves the step."""

    def __init__(self, loss, step_done):
        self._fetches = [loss, step_done]

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._fetches)

    def after_run(self, run_context, run_values):
        loss_value, step_done = run_values.results
        if np.isnan(loss_value):
            raise FloatingPointError(
                'loss is NaN at step %d; training stopped, and the last '
                'good checkpoint in %s is kept' % (step_done - 1, FLAGS.train_dir))


class _StopHook(tf.train.SessionRunHook):
    """Stops at --max_steps, or after the step in which Ctrl-C or SIGTERM came."""

    def __init__(self, global_step, step_done, stop_signals):
        self._global_step = global_step
        self._step_done = step_done
        self._stop_signals = stop_signals
        self.step = None  # The global step after the last step run.

    def after_create_session(self, session, coord):
        self.step = int(session.run(self._global_step))
        if self.step >= FLAGS.max_steps:
            print('Step %d already reaches --max_steps=%d: nothing to train.'
                  % (self.step, FLAGS.max_steps), flush=True)
            coord.request_stop()
        elif self._stop_signals:  # It came while the session was created.
            coord.request_stop()

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._step_done)

    def after_run(self, run_context, run_values):
        self.step = int(run_values.results)
        if self.step >= FLAGS.max_steps or self._stop_signals:
            run_context.request_stop()


class _LoggerHook(tf.train.SessionRunHook):
    """Prints the tutorial's line once every --log_frequency steps: this
    process's examples/sec and sec/batch, and the cluster's examples/sec
    when cluster_examples_per_step is given."""

    def __init__(self, loss, global_step, step_done, examples_per_run, num_towers,
                 cluster_examples_per_step):
        self._global_step = global_step
        self._fetches = [loss, step_done]
        self._examples_per_run = examples_per_run
        self._num_towers = num_towers
        self._cluster_examples_per_step = cluster_examples_per_step

    def after_create_session(self, session, coord):
        self._last_step = int(session.run(self._global_step))
        self._next_log_step = _next_multiple(self._last_step, FLAGS.log_frequency)
        self._last_time, self._runs = time.time(), 0

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._fetches)

    def after_run(self, run_context, run_values):
        loss_value, step_done = run_values.results
        self._runs += 1
        step = step_done - 1  # The step this run trained.
        if step < self._next_log_step:
            return
        now = time.time()
        duration = now - self._last_time
        rates = '%.1f examples/sec; %.3f sec/batch' % (
            self._runs * self._examples_per_run / duration,
            duration / self._runs / self._num_towers)
        if self._cluster_examples_per_step:
            rates += '; cluster %.1f examples/sec' % (
                (step_done - self._last_step) * self._cluster_examples_per_step / duration)
        print('%s: step %d, loss = %.2f (%s)' % (datetime.now(), step, loss_value, rates),
              flush=True)
        self._last_time, self._last_step, self._runs = now, step_done, 0
        self._next_log_step = _next_multiple(step + 1, FLAGS.log_frequency)


class _CheckpointHook(tf.train.SessionRunHook):
    """Saves model.ckpt-<step> every --save_checkpoint_steps steps, and at
    the end: at the last step, or where Ctrl-C or SIGTERM stopped training."""

    def __init__(self, saver, global_step, step_done):
        self._saver = saver
        self._global_step = global_step
        self._step_done = step_done
        self._path = os.path.join(FLAGS.train_dir, cifar10.CHECKPOINT_BASENAME)

    def after_create_session(self, session, coord):
        self._step = self._saved_step = int(session.run(self._global_step))
        self._trains = self._step < FLAGS.max_steps
        self._next_save_step = _next_multiple(self._step + 1, FLAGS.save_checkpoint_steps)

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._step_done)

    def after_run(self, run_context, run_values):
        self._step = int(run_values.results)
        if self._step >= self._next_save_step:
            save_checkpoint(run_context.session, self._saver, self._path, self._step)
            self._saved_step = self._step
            self._next_save_step = _next_multiple(self._step + 1, FLAGS.save_checkpoint_steps)

    def end(self, session):
        if self._trains and (self._saved_step != self._step or not self._saver.last_checkpoints):
            save_checkpoint(session, self._saver, self._path, self._step)


class _SummaryHook(tf.train.SessionRunHook):
    """Writes the graph, then the summaries every SAVE_SUMMARY_STEPS steps,
    into an event file in --train_dir opened at the first step."""

    def __init__(self, summary_op, global_step, step_done):
        self._summary_op = summary_op
        self._global_step = global_step
        self._step_done = step_done
        self._writer = None

    def after_create_session(self, session, coord):
        self._next_step = int(session.run(self._global_step))
        self._next_summary_step = _next_multiple(self._next_step, SAVE_SUMMARY_STEPS)

    def before_run(self, run_context):
        if self._writer is None:
            try:
                self._writer = cifar10.SummaryWriter(FLAGS.train_dir, tf.get_default_graph())
            except (tf.errors.OpError, OSError) as e:
                raise _write_failure(e) from e
        if self._summary_op is not None and self._next_step >= self._next_summary_step:
            return tf.train.SessionRunArgs([self._step_done, self._summary_op])
        return tf.train.SessionRunArgs([self._step_done])

    def after_run(self, run_context, run_values):
        step_done, *summary = run_values.results
        self._next_step = step_done
        if summary:
            try:
                self._writer.add_summary(summary[0], step_done - 1)
            except (tf.errors.OpError, OSError) as e:
                raise _write_failure(e) from e
            self._next_summary_step = _next_multiple(step_done, SAVE_SUMMARY_STEPS)

    def close(self):
        """Closes the event file, if it was opened."""
        if self._writer is not None:
            self._writer.close()


class _WorkerSessionCreator(tf.train.SessionCreator):
    """tf.train.WorkerSessionCreator, looking every RECOVERY_WAIT_SECS (not
    30 s) whether the chief has made the model ready, with no time limit."""

    def __init__(self, scaffold, master, config):
        self._scaffold = scaffold
        self._master = master
        self._config = config

    def create_session(self):
        self._scaffold.finalize()
        session_manager = tf.train.SessionManager(
            local_init_op=self._scaffold.local_init_op,
            ready_op=self._scaffold.ready_op,
            ready_for_local_init_op=self._scaffold.ready_for_local_init_op,
            graph=tf.get_default_graph(), recovery_wait_secs=RECOVERY_WAIT_SECS)
        return session_manager.wait_for_session(self._master, config=self._config)


def train_loop(train_op, loss, global_step, num_towers=1, summary_op=None, config=None,
               master='', is_chief=True, hooks=(), cluster_examples_per_step=None,
               before_restore=None):
    """Runs train_op until --max_steps, checkpointing along the way: the
    training loop of every trainer, a tf.train.MonitoredSession with one
    hook per concern.

    The chief (every single-machine trainer is one) resumes from the newest
    whole checkpoint in --train_dir (restore_or_initialize, also when the
    session is created again after a parameter server came back), writes
    summaries every SAVE_SUMMARY_STEPS steps and saves model.ckpt-<step>
    every --save_checkpoint_steps steps, at the last step and when Ctrl-C
    or SIGTERM asks it to stop. Every process logs every --log_frequency
    steps. A NaN loss stops it without saving, so the last checkpoint stays
    the last good one; so does a checkpoint or event file that cannot be
    written (a full disk), and nothing half-written is left behind. Ended
    before --max_steps otherwise (a queue it reads was closed: in a cluster,
    the workers' token queue), it saves and says so.

    Args:
      train_op: op that runs one training step and increments global_step.
      loss: the loss tensor to log and check.
      global_step: the global step variable.
      num_towers: batches consumed per step (one per tower).
      summary_op: the summaries to write; default all of the graph's.
      config: the session's tf.ConfigProto; default cifar10.session_config().
      master: the TensorFlow server to run on (a cluster worker's
        server.target); '' runs in this process.
      is_chief: whether this process initializes or restores the model and
        writes checkpoints and summaries; another waits until the chief has
        made the model ready, looking every RECOVERY_WAIT_SECS.
      hooks: further tf.train.SessionRunHooks (the distributed trainer's).
      cluster_examples_per_step: the examples the whole cluster trains per
        global step; when given, the log line also says the cluster's rate.
      before_restore: a function(session) the chief calls in each new
        session before it restores or initializes the model.

    Raises:
      FloatingPointError: if the loss becomes NaN.
      UserError: if a checkpoint does not fit this model, or a checkpoint or
        event file cannot be written.
    """
    variables = {variable.op.name: variable for variable in tf.global_variables()}
    saver = tf.train.Saver(variables, max_to_keep=MAX_CHECKPOINTS_TO_KEEP,
                           save_relative_paths=True)
    init_op = tf.global_variables_initializer()
    if summary_op is None:
        summary_op = tf.summary.merge_all()
    if config is None:
        config = cifar10.session_config(FLAGS.log_device_placement)
    # The global step once this run's step is done (the steps of other
    # workers may be in it too).
    with tf.control_dependencies([train_op]):
        step_done = global_step.read_value()

    def restore(unused_scaffold, sess):
        if before_restore is not None:
            before_restore(sess)
        restore_or_initialize(sess, saver, variables, global_step, FLAGS.train_dir, init_op)

    scaffold = tf.train.Scaffold(init_op=tf.no_op(name='restore_or_initialize'),
                                 init_fn=restore, saver=saver, summary_op=summary_op)
    if is_chief:
        session_creator = tf.train.ChiefSessionCreator(scaffold, master=master, config=config)
    else:
        session_creator = _WorkerSessionCreator(scaffold, master, config)
    with _graceful_stop() as stop_signals:
        stop = _StopHook(global_step, step_done, stop_signals)
        summaries = _SummaryHook(summary_op, global_step, step_done)
        all_hooks = [_NanHook(loss, step_done), stop,
                     _LoggerHook(loss, global_step, step_done, num_towers * FLAGS.batch_size,
                                 num_towers, cluster_examples_per_step)]
        if is_chief:
            all_hooks += [_CheckpointHook(saver, global_step, step_done), summaries]
        try:
            with tf.train.MonitoredSession(session_creator, all_hooks + list(hooks)) as sess:
                while not sess.should_stop():
                    sess.run(step_done)
        finally:
            summaries.close()
    saved = '; the checkpoint is saved' if is_chief else ''
    if stop_signals:
        print('Stopped by signal %d at step %d%s.' % (stop_signals[0], stop.step, saved),
              flush=True)
    elif stop.step < FLAGS.max_steps:  # An input or a worker's token queue was closed.
        print('Training ended at step %d, before --max_steps=%d%s.'
              % (stop.step, FLAGS.max_steps, saved), flush=True)


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
    with claim_train_dir(FLAGS.train_dir):
        cifar10.maybe_download_and_extract()
        train()


def run():
    """Console-script entry point: parses the flags and trains."""
    cifar10.run(main)


if __name__ == '__main__':
    run()
