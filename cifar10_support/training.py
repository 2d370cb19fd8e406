"""The training loop of every trainer: a tf.train.MonitoredSession with one hook per
concern (stopping, logging, checkpoints, summaries). A library; the trainers use it.
"""

import time
from datetime import datetime

import numpy as np

from cifar10_support import checkpoints
from cifar10_support.runtime import graceful_stop, tf
from cifar10_support.summaries import SummaryWriter

SAVE_SUMMARY_STEPS = 100
MAX_CHECKPOINTS_TO_KEEP = 5
# Seconds a worker that is not the chief waits between looks at whether the
# chief has initialized or restored the model (TensorFlow's default: 30).
RECOVERY_WAIT_SECS = 1


def _next_multiple(step, every):
    """The first multiple of every at or after step."""
    return -(-step // every) * every


class _FetchingHook(tf.train.SessionRunHook):
    """A hook that fetches self._fetches with every step, for its after_run."""

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._fetches)


class _StopHook(_FetchingHook):
    """Stops at max_steps or after the step in which Ctrl-C or SIGTERM came, and raises
    FloatingPointError at a NaN loss before a later hook saves (tf.train's StopAtStepHook
    knows no signals, and its NanTensorHook would log a line of its own besides)."""

    def __init__(self, loss, global_step, step_done, max_steps, stop_signals, train_dir):
        self._global_step, self._fetches = global_step, [loss, step_done]
        self._max_steps, self._stop_signals, self._train_dir = max_steps, stop_signals, train_dir
        self.step = None  # The global step after the last step run.

    def after_create_session(self, session, coord):
        self.step = int(session.run(self._global_step))
        if self.step >= self._max_steps:
            print('Step %d already reaches --max_steps=%d: nothing to train.'
                  % (self.step, self._max_steps), flush=True)
            coord.request_stop()
        elif self._stop_signals:  # It came while the session was created.
            coord.request_stop()

    def after_run(self, run_context, run_values):
        loss_value, step_done = run_values.results
        if np.isnan(loss_value):
            raise FloatingPointError('loss is NaN at step %d; training stopped, and the last '
                                     'good checkpoint in %s is kept'
                                     % (step_done - 1, self._train_dir))
        self.step = int(step_done)
        if self.step >= self._max_steps or self._stop_signals:
            run_context.request_stop()


class _LoggerHook(_FetchingHook):
    """Prints the tutorial's line every log_frequency steps, with the cluster's rate if given."""

    def __init__(self, loss, global_step, step_done, log_frequency, examples_per_run,
                 num_towers, cluster_examples_per_step):
        self._global_step, self._fetches = global_step, [loss, step_done]
        self._log_frequency, self._examples_per_run = log_frequency, examples_per_run
        self._num_towers, self._cluster_examples_per_step = num_towers, cluster_examples_per_step

    def after_create_session(self, session, coord):
        self._last_step = int(session.run(self._global_step))
        self._next_log_step = _next_multiple(self._last_step, self._log_frequency)
        self._last_time, self._runs = time.time(), 0

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
        self._next_log_step = _next_multiple(step + 1, self._log_frequency)


class _CheckpointHook(_FetchingHook):
    """Saves model.ckpt-<step> every save_steps steps and where training stops, through
    checkpoints.save_checkpoint (tf.train.CheckpointSaverHook leaves a failed save's files)."""

    def __init__(self, saver, global_step, step_done, train_dir, save_steps, max_steps):
        self._saver, self._global_step, self._fetches = saver, global_step, step_done
        self._train_dir, self._save_steps, self._max_steps = train_dir, save_steps, max_steps

    def after_create_session(self, session, coord):
        self._step = self._saved_step = int(session.run(self._global_step))
        self._trains = self._step < self._max_steps
        self._next_save_step = _next_multiple(self._step + 1, self._save_steps)

    def after_run(self, run_context, run_values):
        self._step = int(run_values.results)
        if self._step >= self._next_save_step:
            checkpoints.save_checkpoint(run_context.session, self._saver, self._train_dir,
                                        self._step)
            self._saved_step = self._step
            self._next_save_step = _next_multiple(self._step + 1, self._save_steps)

    def end(self, session):
        if self._trains and (self._saved_step != self._step or not self._saver.last_checkpoints):
            checkpoints.save_checkpoint(session, self._saver, self._train_dir, self._step)


class _SummaryHook(tf.train.SessionRunHook):
    """Writes the graph, then the summaries every SAVE_SUMMARY_STEPS steps (through a
    SummaryWriter: tf.train.SummarySaverHook's FileWriter loses events on a full disk)."""

    def __init__(self, summary_op, global_step, step_done, train_dir):
        self._summary_op, self._global_step = summary_op, global_step
        self._step_done, self._train_dir = step_done, train_dir
        self._writer = None

    def after_create_session(self, session, coord):
        self._next_step = int(session.run(self._global_step))
        self._next_summary_step = _next_multiple(self._next_step, SAVE_SUMMARY_STEPS)

    def before_run(self, run_context):
        if self._writer is None:
            try:
                self._writer = SummaryWriter(self._train_dir, tf.get_default_graph())
            except (tf.errors.OpError, OSError) as e:
                raise checkpoints.write_failure(self._train_dir, e) from e
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
                raise checkpoints.write_failure(self._train_dir, e) from e
            self._next_summary_step = _next_multiple(step_done, SAVE_SUMMARY_STEPS)

    def close(self):
        """Closes the event file, if it was opened."""
        if self._writer is not None:
            self._writer.close()


class _WorkerSessionCreator(tf.train.SessionCreator):
    """tf.train.WorkerSessionCreator, but looking every RECOVERY_WAIT_SECS, and for ever."""

    def __init__(self, scaffold, master, config):
        self._scaffold, self._master, self._config = scaffold, master, config

    def create_session(self):
        self._scaffold.finalize()
        session_manager = tf.train.SessionManager(
            local_init_op=self._scaffold.local_init_op, ready_op=self._scaffold.ready_op,
            ready_for_local_init_op=self._scaffold.ready_for_local_init_op,
            graph=tf.get_default_graph(), recovery_wait_secs=RECOVERY_WAIT_SECS)
        return session_manager.wait_for_session(self._master, config=self._config)


def train_loop(train_op, loss, global_step, train_dir, max_steps, save_checkpoint_steps,
               log_frequency, examples_per_run, config, num_towers=1, summary_op=None,
               master='', is_chief=True, hooks=(), cluster_examples_per_step=None,
               before_restore=None):
    """Runs train_op until max_steps, checkpointing along the way.

    The chief resumes from the newest whole checkpoint in train_dir, and saves every
    save_checkpoint_steps steps and at the end, on Ctrl-C or SIGTERM too; a NaN loss or
    a failed write stops it without saving, so the last checkpoint stays a good one.

    Args:
      train_op, loss, global_step: the op of a training step, the loss, the global step.
      train_dir, max_steps: where the chief writes; the absolute last global step.
      save_checkpoint_steps, log_frequency: save, and log, every this many steps.
      examples_per_run, num_towers: the examples a run of train_op trains; its towers.
      config, master: the session's tf.ConfigProto; its server ('' runs in-process).
      summary_op, hooks: the summaries to write (default all); further SessionRunHooks.
      is_chief: whether this process restores or initializes and saves; others wait.
      cluster_examples_per_step: the cluster's examples per global step, to log its rate.
      before_restore: a function(session) the chief calls in each new session first.

    Raises:
      FloatingPointError at a NaN loss; UserError for a misfit checkpoint or failed write.
    """
    variables = {variable.op.name: variable for variable in tf.global_variables()}
    saver = tf.train.Saver(variables, max_to_keep=MAX_CHECKPOINTS_TO_KEEP, save_relative_paths=True)
    init_op = tf.global_variables_initializer()
    summary_op = tf.summary.merge_all() if summary_op is None else summary_op
    # The global step once this run's step is done (other workers' steps may be in it).
    with tf.control_dependencies([train_op]):
        step_done = global_step.read_value()

    def restore(unused_scaffold, sess):
        if before_restore is not None:
            before_restore(sess)
        checkpoints.restore_or_initialize(sess, saver, variables, train_dir, init_op,
                                          MAX_CHECKPOINTS_TO_KEEP)

    scaffold = tf.train.Scaffold(init_op=tf.no_op(name='restore_or_initialize'),
                                 init_fn=restore, saver=saver, summary_op=summary_op)
    session_creator = (tf.train.ChiefSessionCreator(scaffold, master=master, config=config)
                       if is_chief else _WorkerSessionCreator(scaffold, master, config))
    with graceful_stop() as stop_signals:
        stop = _StopHook(loss, global_step, step_done, max_steps, stop_signals, train_dir)
        summaries = _SummaryHook(summary_op, global_step, step_done, train_dir)
        all_hooks = [stop,
                     _LoggerHook(loss, global_step, step_done, log_frequency, examples_per_run,
                                 num_towers, cluster_examples_per_step)]
        if is_chief:
            all_hooks += [_CheckpointHook(saver, global_step, step_done, train_dir,
                                          save_checkpoint_steps, max_steps), summaries]
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
    elif stop.step < max_steps:  # An input or a worker's token queue was closed.
        print('Training ended at step %d, before --max_steps=%d%s.'
              % (stop.step, max_steps, saved), flush=True)
