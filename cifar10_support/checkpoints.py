"""Checkpoints that nothing loses: found by their files (the state file is only
an index, which a crash or a copy can leave damaged or stale), checked before they
are restored, saved whole or not at all, in a --train_dir one trainer at a time
may write. A library; the trainers, evaluator, predictor and exporter use it.
"""

import contextlib
import fcntl
import os
import re

from cifar10_support.runtime import UserError, error_reason, make_dir, tf, write_error

# model.ckpt-<step>.index and .data-* (and .meta), and the state file.
CHECKPOINT_BASENAME = 'model.ckpt'
CHECKPOINT_FILE = re.compile(r'^%s-(\d+)\.(index|data-\d+-of-\d+)$'  # A lone .meta is none.
                             % re.escape(CHECKPOINT_BASENAME))
STATE_FILENAME = 'checkpoint'
# Errors of TensorFlow's runtime, not of a checkpoint being read: a server of
# a cluster that cannot be reached, a step cut short.
RUNTIME_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
                  tf.errors.CancelledError, tf.errors.DeadlineExceededError)


def list_checkpoints(checkpoint_dir):
    """The checkpoints in checkpoint_dir, found by their files.

    Returns:
      paths: the path prefixes of the steps with a checkpoint file, whole or not, oldest first.
      state_damage: why the state file cannot be used; None if missing or good.
    """
    names = (os.path.basename(path) for path in
             tf.gfile.Glob(os.path.join(checkpoint_dir, CHECKPOINT_BASENAME + '-*')))
    steps = {int(match.group(1)) for match in map(CHECKPOINT_FILE.match, names) if match}
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


def _read_index(checkpoint_path):
    """A reader of the checkpoint and None, or None and why its index cannot be read."""
    if not tf.gfile.Exists(checkpoint_path + '.index'):
        return None, 'its index file is missing'
    try:
        return tf.train.load_checkpoint(checkpoint_path), None
    except (tf.errors.OpError, ValueError) as e:
        return None, 'its index cannot be read: %s' % error_reason(e)


def checkpoint_damage(checkpoint_path):
    """Why the checkpoint at checkpoint_path (a path prefix) cannot be restored, in
    one line, or None if it is whole: every tensor is read back, checksums checked."""
    reader, damage = _read_index(checkpoint_path)
    if damage:
        return damage
    try:
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError) as e:  # IndexError: cut short.
        return 'its data cannot be read: %s' % error_reason(e)
    return None


def newest_whole_checkpoint(checkpoint_dir, say=None):
    """The path prefix of the newest checkpoint in checkpoint_dir that reads back
    whole, or None; say, if given, gets a line for each damaged file passed over."""
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
    """Restores a checkpoint, telling a damaged one from another model's, which is
    refused before restoring: a variable restored from another shape takes it.

    Args:
      sess, saver: the Session to restore into, and the Saver built from variables.
      variables: dict from the names in the checkpoint to the variables.
      checkpoint_path: the checkpoint's path prefix.
      misfit_error: the message for another model's checkpoint: %s its path, %s the misfit.

    Returns:
      None once restored; else why the checkpoint is damaged, in one line.

    Raises:
      UserError: with misfit_error, if the checkpoint does not fit this model.
      One of RUNTIME_ERRORS: if a server of the cluster failed, not the checkpoint.
    """
    reader, damage = _read_index(checkpoint_path)
    if damage:
        return damage
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    for name, variable in variables.items():
        shape, dtype = variable.shape.as_list(), variable.dtype.base_dtype
        if name not in shapes:
            misfit = 'it has no variable %s' % name
        elif shapes[name] != shape:
            misfit = '%s has shape %s there, %s here' % (name, shapes[name], shape)
        elif dtypes[name] != dtype:
            misfit = '%s is %s there, %s here' % (name, dtypes[name].name, dtype.name)
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
    """Restores the newest whole checkpoint in checkpoint_dir, or initializes.

    A bad state file is rebuilt from the checkpoint files; a damaged checkpoint
    is passed over, with a line, and left in place until saved over.

    Args:
      sess, saver, variables: as for restore_checkpoint.
      checkpoint_dir, init_op: where the checkpoints are; what to run when none restores.
      max_to_keep: how many checkpoints the Saver keeps.

    Raises:
      UserError: if a checkpoint does not fit, or the state file cannot be rebuilt.
    """
    paths, state_damage = list_checkpoints(checkpoint_dir)
    if state_damage:
        print('%s is damaged (%s): it is rebuilt from the checkpoint files.'
              % (os.path.join(checkpoint_dir, STATE_FILENAME), state_damage), flush=True)
    for newest in reversed(range(len(paths))):
        path = paths[newest]
        damage = restore_checkpoint(sess, saver, variables, path, 'cannot resume from %s, it '
                                    'does not fit this model (%s): use another --train_dir')
        if damage is None:
            kept = paths[:newest + 1][-max_to_keep:]
            saver.recover_last_checkpoints(kept)  # Rotated out as training goes on.
            state = None if state_damage else tf.train.get_checkpoint_state(checkpoint_dir)
            if state is None or state.model_checkpoint_path != path:
                try:  # As the Saver writes it: atomically, with relative paths.
                    tf.train.update_checkpoint_state(checkpoint_dir, os.path.basename(path),
                                                     [os.path.basename(p) for p in kept])
                except (tf.errors.OpError, OSError) as e:
                    raise write_failure(checkpoint_dir, e) from e
            print('Resuming from %s at step %d.' % (path, checkpoint_step(path)), flush=True)
            return
        print('%s is damaged (%s): passing over it.' % (path, damage), flush=True)
    if paths:
        print('No checkpoint in %s restores: training from scratch.' % checkpoint_dir, flush=True)
    sess.run(init_op)


def save_checkpoint(sess, saver, train_dir, step):
    """Saves <train_dir>/model.ckpt-<step> with its .meta, or leaves nothing of it.

    Raises:
      UserError: if the write fails (a full disk); earlier checkpoints are kept.
    """
    prefix = os.path.join(train_dir, '%s-%d' % (CHECKPOINT_BASENAME, step))
    had_files = bool(tf.gfile.Glob(prefix + '.*'))
    try:  # The .meta first: the Saver publishes the checkpoint and drops the oldest.
        _write_meta_graph(sess.graph, saver, prefix + '.meta')
        saver.save(sess, os.path.join(train_dir, CHECKPOINT_BASENAME), global_step=step,
                   write_meta_graph=False)
    except (tf.errors.OpError, OSError) as e:
        partial = [path for pattern in ('*tempstate*', '_temp*', '.meta.tmp*')
                   for path in tf.gfile.Glob(prefix + pattern)]
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


def _write_meta_graph(graph, saver, path):
    """Writes the graph's .meta atomically with no device in it, not even in its functions
    (which clear_devices misses), so that it loads on any machine."""
    with graph.as_default():  # As Saver.save exports it (clear_devices needs a graph unfinalized).
        meta_graph = saver.export_meta_graph()
    graph_def = meta_graph.graph_def
    for node in [*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def)]:
        node.device = ''
    with tf.gfile.GFile(path + '.tmp', 'wb') as f:
        f.write(meta_graph.SerializeToString())
    tf.gfile.Rename(path + '.tmp', path, overwrite=True)


def write_failure(train_dir, error):
    """The UserError for a file that could not be written into train_dir, naming
    the last good checkpoint."""
    latest = newest_whole_checkpoint(train_dir)
    return write_error(train_dir, error, 'the last good checkpoint, %s, is intact: make room '
                       'and run again to resume from it' % latest if latest
                       else 'no checkpoint was written yet: make room and run again')


@contextlib.contextmanager
def claim_train_dir(train_dir):
    """Creates train_dir if needed and makes this process its only trainer while the
    context lasts (an flock, which the kernel lifts however the process ends); UserError
    if the folder cannot be created or used, or another trainer has it."""
    make_dir(train_dir, 'train_dir')
    if '://' in train_dir:  # A remote file system: no claim to make.
        yield
        return
    state_file = os.path.join(train_dir, STATE_FILENAME)
    if os.path.isdir(state_file):
        raise UserError('%s is a folder where the trainer keeps its checkpoint state file: '
                        'move it out of --train_dir' % state_file)
    try:
        folder = os.open(train_dir, os.O_RDONLY)
    except OSError as e:
        raise UserError('cannot use --train_dir=%s (%s): give a folder you can write to'
                        % (train_dir, e.strerror or e)) from e
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
