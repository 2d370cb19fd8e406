"""Checkpoints that nothing loses: found by their files, checked before
they are restored, saved whole or not at all, in a --train_dir that one
trainer at a time may write.

The state file ('checkpoint', which tf.train.latest_checkpoint reads) is
only TensorFlow's index of the checkpoints; a crash, a copy or a user can
leave it damaged, stale or missing, so the files are the truth. A library;
the trainers, the evaluator, the predictor and the exporter use it.
"""

import contextlib
import fcntl
import os
import re

from cifar10_support.runtime import UserError, error_reason, tf, write_error

# model.ckpt-<step>.index, .data-*, .meta, and the state file.
CHECKPOINT_BASENAME = 'model.ckpt'
CHECKPOINT_FILE = re.compile(r'^%s-(\d+)\.(index|meta|data-\d+-of-\d+)$'
                             % re.escape(CHECKPOINT_BASENAME))
STATE_FILENAME = 'checkpoint'
# Errors of TensorFlow's runtime, not of a checkpoint being read: a server of
# a cluster that cannot be reached, a step cut short.
RUNTIME_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
                  tf.errors.CancelledError, tf.errors.DeadlineExceededError)


def list_checkpoints(checkpoint_dir):
    """The checkpoints in checkpoint_dir, found by their files.

    Args:
      checkpoint_dir: the folder.

    Returns:
      paths: the path prefixes (<checkpoint_dir>/model.ckpt-<step>) of every
        step with a checkpoint file there, whole or not, oldest first.
      state_damage: why the state file cannot be used, in a few words, or
        None if it is missing or reads well.
    """
    steps = set()
    for path in tf.gfile.Glob(os.path.join(checkpoint_dir, CHECKPOINT_BASENAME + '-*')):
        match = CHECKPOINT_FILE.match(os.path.basename(path))
        if match:
            steps.add(int(match.group(1)))
    paths = [os.path.join(checkpoint_dir, '%s-%d' % (CHECKPOINT_BASENAME, step))
             for step in sorted(steps)]
    state_file = os.path.join(checkpoint_dir, STATE_FILENAME)
    if not tf.gfile.Exists(state_file):
        return paths, None
    if tf.gfile.IsDirectory(state_file):
        return paths, 'it is a folder'
    try:
        state = tf.train.get_checkpoint_state(checkpoint_dir)
    except (ValueError, tf.errors.OpError) as e:  # Parse errors give None.
        return paths, 'it cannot be read: %s' % error_reason(e)
    return paths, None if state else 'it cannot be read'


def checkpoint_step(checkpoint_path):
    """The global step of a checkpoint path like .../model.ckpt-1000, an int."""
    return int(checkpoint_path.rsplit('-', 1)[-1])


def checkpoint_damage(checkpoint_path):
    """Why a checkpoint cannot be restored, if it cannot: every tensor is read
    back, with TensorFlow's checks of every block against its checksum.

    Args:
      checkpoint_path: the checkpoint's path prefix.

    Returns:
      None if it is whole; else why not, in one line.
    """
    if not tf.gfile.Exists(checkpoint_path + '.index'):
        return 'its index file is missing'
    try:
        reader = tf.train.load_checkpoint(checkpoint_path)
    except (tf.errors.OpError, ValueError) as e:
        return 'its index cannot be read: %s' % error_reason(e)
    try:
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError) as e:  # IndexError: cut short.
        return 'its data cannot be read: %s' % error_reason(e)
    return None


def newest_whole_checkpoint(checkpoint_dir, say=None):
    """The newest checkpoint in checkpoint_dir that reads back whole.

    Args:
      checkpoint_dir: the folder.
      say: None, or a function given one line for a damaged state file and
        for each damaged checkpoint passed over.

    Returns:
      Its path prefix, or None if there is none.
    """
    paths, state_damage = list_checkpoints(checkpoint_dir)
    if state_damage and say:
        say('%s is damaged (%s): passing over it, to the checkpoint files.'
            % (os.path.join(checkpoint_dir, STATE_FILENAME), state_damage))
    for path in reversed(paths):
        damage = checkpoint_damage(path)
        if damage is None:
            return path
        if say:
            say('%s is damaged (%s): passing over it.' % (path, damage))
    return None


def restore_checkpoint(sess, saver, variables, checkpoint_path, misfit_error):
    """Restores a checkpoint, telling a damaged one from another model's.

    A checkpoint is damaged when a file is missing, cut short or altered.
    One that reads well but lacks a variable of this model, or holds it in
    another shape or dtype, was written by another model: it is refused
    before restoring, since a variable restored from another shape silently
    takes that shape.

    Args:
      sess: the Session to restore into.
      saver: the Saver built from variables.
      variables: dict from the names in the checkpoint to the variables.
      checkpoint_path: the checkpoint's path prefix.
      misfit_error: the message for another model's checkpoint, with two
        %s for the checkpoint and what does not fit.

    Returns:
      None once restored; else why the checkpoint is damaged, in one line.

    Raises:
      UserError: with misfit_error, if the checkpoint does not fit this model.
      One of RUNTIME_ERRORS: if the restore failed for a reason that says
        nothing about the checkpoint (a server of a cluster out of reach).
    """
    if not tf.gfile.Exists(checkpoint_path + '.index'):
        return 'its index file is missing'
    try:
        reader = tf.train.load_checkpoint(checkpoint_path)
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as e:
        return 'its index cannot be read: %s' % error_reason(e)
    for name, variable in variables.items():
        if name not in shapes:
            misfit = 'it has no variable %s' % name
        elif shapes[name] != variable.shape.as_list():
            misfit = '%s has shape %s there, %s here' % (name, shapes[name],
                                                       variable.shape.as_list())
        elif dtypes[name] != variable.dtype.base_dtype:
            misfit = '%s is %s there, %s here' % (name, dtypes[name].name,
                                                variable.dtype.base_dtype.name)
        else:
            continue
        raise UserError(misfit_error % (checkpoint_path, misfit))
    try:
        saver.restore(sess, checkpoint_path)
    except RUNTIME_ERRORS:
        raise  # A server of the cluster failed, not the checkpoint.
    except (tf.errors.OpError, ValueError) as e:
        return 'its data cannot be read: %s' % error_reason(e)
    return None


def restore_or_initialize(sess, saver, variables, checkpoint_dir, init_op, max_to_keep):
    """Restores the newest checkpoint in checkpoint_dir that is whole, or initializes.

    A damaged, stale or missing state file is rebuilt from the checkpoint
    files. A damaged checkpoint (one line says which and why) is passed over
    for the one before it; when none restores, training starts from scratch.
    Nothing is deleted: a damaged checkpoint newer than the one restored is
    left in place, out of the Saver's rotation, until training reaches its
    step again and saves over it.

    Args:
      sess: the Session.
      saver: a tf.train.Saver of variables.
      variables: the dict from checkpoint names to variables the Saver saves.
      checkpoint_dir: where the checkpoints are.
      init_op: the op that initializes the variables, run when none restores.
      max_to_keep: how many checkpoints the Saver keeps.

    Raises:
      UserError: if a checkpoint does not fit this model, or the state file
        cannot be rebuilt.
    """
    paths, state_damage = list_checkpoints(checkpoint_dir)
    if state_damage:
        print('%s is damaged (%s): it is rebuilt from the checkpoint files.'
              % (os.path.join(checkpoint_dir, STATE_FILENAME), state_damage), flush=True)
    for newest in range(len(paths) - 1, -1, -1):
        damage = restore_checkpoint(
            sess, saver, variables, paths[newest],
            'cannot resume from %s, it does not fit this model (%s): use another --train_dir')
        if damage is None:
            kept = paths[:newest + 1][-max_to_keep:]
            saver.recover_last_checkpoints(kept)  # Rotated out as training goes on.
            state = None if state_damage else tf.train.get_checkpoint_state(checkpoint_dir)
            if state is None or state.model_checkpoint_path != paths[newest]:
                _write_state_file(checkpoint_dir, kept)
            print('Resuming from %s at step %d.' % (paths[newest], checkpoint_step(
                paths[newest])), flush=True)
            return
        print('%s is damaged (%s): passing over it.' % (paths[newest], damage), flush=True)
    if paths:
        print('No checkpoint in %s restores: training from scratch.' % checkpoint_dir,
              flush=True)
    sess.run(init_op)


def _write_state_file(checkpoint_dir, paths):
    """Writes the state file that lists paths, the last the latest, as the
    Saver writes it (atomically, relative paths)."""
    try:
        tf.train.update_checkpoint_state(checkpoint_dir, os.path.basename(paths[-1]),
                                         [os.path.basename(path) for path in paths])
    except (tf.errors.OpError, OSError) as e:
        raise write_failure(checkpoint_dir, e) from e


def save_checkpoint(sess, saver, train_dir, step):
    """Saves <train_dir>/model.ckpt-<step>, with its .meta, or leaves nothing
    of it behind.

    Args:
      sess: the Session.
      saver: the Saver.
      train_dir: the folder.
      step: the global step.

    Raises:
      UserError: if the disk is full or the write fails otherwise; the
        earlier checkpoints are left as they were.
    """
    prefix = os.path.join(train_dir, '%s-%d' % (CHECKPOINT_BASENAME, step))
    had_files = bool(tf.gfile.Glob(prefix + '.*'))
    try:
        saver.save(sess, os.path.join(train_dir, CHECKPOINT_BASENAME), global_step=step)
    except (tf.errors.OpError, OSError) as e:
        partial = tf.gfile.Glob(prefix + '*tempstate*') + tf.gfile.Glob(prefix + '_temp*')
        partial += tf.gfile.Glob(os.path.join(train_dir, STATE_FILENAME + '.tmp*'))
        if not had_files:
            partial += tf.gfile.Glob(prefix + '.*')
        for path in partial:
            with contextlib.suppress(tf.errors.NotFoundError):  # TensorFlow got there first.
                if tf.gfile.IsDirectory(path):
                    tf.gfile.DeleteRecursively(path)
                else:
                    tf.gfile.Remove(path)
        raise write_failure(train_dir, e) from e


def write_failure(train_dir, error):
    """The UserError for a checkpoint or event file that could not be written
    into train_dir, naming the last good checkpoint."""
    latest = newest_whole_checkpoint(train_dir)
    if latest:
        kept = ('the last good checkpoint, %s, is intact: make room and run again to '
                'resume from it' % latest)
    else:
        kept = 'no checkpoint was written yet: make room and run again'
    return write_error(train_dir, error, kept)


@contextlib.contextmanager
def claim_train_dir(train_dir):
    """Creates train_dir if needed and makes this process its only trainer
    while the context lasts: an flock on the folder, which the kernel lifts
    when the process ends, however it ends (SIGKILL too).

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
        raise UserError('cannot create --train_dir=%s (%s): give a folder you can write to'
                        % (train_dir, error_reason(e))) from e
    if '://' in train_dir:  # A remote file system: no claim to make.
        yield
        return
    state_file = os.path.join(train_dir, STATE_FILENAME)
    if os.path.isdir(state_file):
        raise UserError('%s is a folder where the trainer keeps its checkpoint state file: '
                        'move it out of --train_dir' % state_file)
    folder = os.open(train_dir, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(folder)
        raise UserError('another trainer is training in --train_dir=%s: let it finish or '
                        'stop it, or give another --train_dir' % train_dir) from e
    try:
        yield
    finally:
        os.close(folder)
