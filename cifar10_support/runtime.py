"""What every script of the tutorial runs on: TensorFlow imported quietly, in
graph mode; one-line errors; the session's options; the script runner.

Importing it imports TensorFlow without its start-up chatter and switches
off eager execution, which the graphs, sessions and queue runners need;
nothing else of TensorFlow 2's behaviour is switched, and the tutorial runs
the same after the canonical TF1 start, `tf.disable_v2_behavior()`. It is a
library; the scripts run through run().
"""

import contextlib
import difflib
import errno
import os
import re
import signal
import sys
import tempfile

from absl import app, flags

# The lines of a TensorFlow error message that are not its reason.
TENSORFLOW_ERROR_CONTEXT = (' ', '\t', 'Graph execution error', 'Detected at node', 'Node:',
                            'Hint:', 'Original stack trace', 'Restoring from checkpoint failed',
                            'Original error', '[[')
# Flags of absl's that every script takes.
ABSL_FLAGS = ('help', 'helpshort', 'helpfull', 'helpxml', 'only_check_args', 'pdb',
              'pdb_post_mortem', 'run_with_pdb', 'run_with_profiling', 'profile_file',
              'use_cprofile_for_profiling')


def _import_tensorflow_quietly():
    """Imports TensorFlow without its C++ start-up lines and Python deprecation
    warnings, which drown the tutorial's output. A TF_CPP_MIN_LOG_LEVEL the
    user set filters the C++ lines by severity (unset: all hidden); =0 shows
    everything. If the import fails, all it printed is shown."""
    user_level = os.environ.get('TF_CPP_MIN_LOG_LEVEL')
    if user_level == '0' or 'tensorflow' in sys.modules:
        import tensorflow
    else:
        if user_level is None:
            os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
        sys.stderr.flush()
        saved_stderr = os.dup(2)
        with tempfile.TemporaryFile() as held_back:  # What the import prints.
            os.dup2(held_back.fileno(), 2)
            try:
                import tensorflow
            finally:
                os.dup2(saved_stderr, 2)
                os.close(saved_stderr)
                held_back.seek(0)
                printed = held_back.read().decode(errors='replace')
                min_severity = int(user_level) if (user_level or '').isdigit() else 3
                sys.stderr.write(printed if 'tensorflow' not in sys.modules
                                 else log_lines_at_or_above(printed, min_severity))
                sys.stderr.flush()
    if user_level != '0':
        tensorflow.compat.v1.logging.set_verbosity(tensorflow.compat.v1.logging.ERROR)
    return tensorflow


def log_lines_at_or_above(text, min_severity):
    """Keeps the C++ log lines ('I0000 ...', 'W...', 'E...', 'F...') of at
    least min_severity (0 INFO .. 3 FATAL), with their continuation lines.

    Args:
      text: what TensorFlow printed.
      min_severity: 0 to 3.

    Returns:
      The lines kept.
    """
    kept, severity = [], 0
    for line in text.splitlines(keepends=True):
        if re.match(r'[IWEF]\d{4} ', line):
            severity = 'IWEF'.index(line[0])
        elif line.startswith('WARNING: All log messages before absl::InitializeLog()'):
            severity = -1  # absl's note about the lines that follow it.
        if severity >= min_severity:
            kept.append(line)
    return ''.join(kept)


tf = _import_tensorflow_quietly().compat.v1
tf.disable_eager_execution()
FLAGS = flags.FLAGS


class UserError(Exception):
    """A problem the user must fix; the scripts print its message, which says
    what to do, as one line and exit non-zero."""


def error_line(message):
    """How the scripts say an error: '<script>: error: <message>', one line.

    Args:
      message: what went wrong and what to do.

    Returns:
      The line, without a newline.
    """
    return '%s: error: %s' % (os.path.basename(sys.argv[0]), message)


def error_reason(error):
    """The line of an error's message that says what went wrong (a TensorFlow
    error's message has it among lines about the graph node).

    Args:
      error: an exception.

    Returns:
      One line.
    """
    message = getattr(error, 'message', None) or str(error)
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not line.startswith(TENSORFLOW_ERROR_CONTEXT)]
    return lines[0] if lines else type(error).__name__


def write_error(folder, error, advice):
    """The UserError for a failed write into folder: a full disk or another
    OS error.

    Args:
      folder: the folder written to.
      error: the exception the write raised.
      advice: what the user should do, for the message.

    Returns:
      A UserError.
    """
    reason = error_reason(error)
    if 'No space left on device' in reason or getattr(error, 'errno', None) == errno.ENOSPC:
        reason = 'the disk is full (%s)' % reason
    return UserError('cannot write to %s: %s; %s' % (folder, reason, advice))


def make_dir(path, flag):
    """Creates the folder a flag names, if needed.

    Args:
      path: the folder.
      flag: the flag's name, for the message.

    Raises:
      UserError: if it cannot be created.
    """
    try:
        tf.gfile.MakeDirs(path)
    except tf.errors.OpError as e:
        raise UserError('cannot create --%s=%s (%s): give a folder you can write to'
                        % (flag, path, error_reason(e))) from e


def session_config(log_device_placement=False, num_cpu_devices=1, gpu_memory_fraction=0.0,
                   mixed_precision='none'):
    """The session options the scripts share.

    GPU memory grows on demand, or is capped at gpu_memory_fraction, so that
    a trainer and an evaluator fit on one GPU. mixed_precision turns on
    TensorFlow's graph rewrite to 16 bits: 'bf16' of the CPU's ops (oneDNN's
    bfloat16 kernels), 'fp16' of a GPU's.

    Args:
      log_device_placement: bool, log where each op runs.
      num_cpu_devices: how many logical CPU devices (CPU:0..N-1) to create.
      gpu_memory_fraction: the fraction of GPU memory to take; 0 grows.
      mixed_precision: 'none', 'bf16' or 'fp16'.

    Returns:
      A tf.ConfigProto.
    """
    config = tf.ConfigProto(allow_soft_placement=True,
                            log_device_placement=log_device_placement,
                            device_count={'CPU': num_cpu_devices})
    if gpu_memory_fraction:
        config.gpu_options.per_process_gpu_memory_fraction = gpu_memory_fraction
    else:
        config.gpu_options.allow_growth = True
    rewrites = config.graph_options.rewrite_options
    if mixed_precision == 'bf16':
        rewrites.auto_mixed_precision_onednn_bfloat16 = rewrites.ON
    elif mixed_precision == 'fp16':
        rewrites.auto_mixed_precision = rewrites.ON
    return config


@contextlib.contextmanager
def graceful_stop():
    """Turns the first Ctrl-C or SIGTERM into a request to stop; a second
    acts as usual (Ctrl-C raises KeyboardInterrupt at once).

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


def run(main, flag_names, takes_arguments=False, check_flags=None):
    """Parses the flags and runs main, as tf.app.run does, but strictly.

    --help lists the script's flags (flag_names) and prints its docstring as
    written. A flag the script does not know (tf.app.run lets one pass), a
    bad value, a flag of another script, a stray argument or what
    check_flags refuses is one line before main runs. A UserError or a NaN
    loss ends the script with its message on one line and exit status 1; a
    Ctrl-C that main does not handle, with status 130.

    Args:
      main: the script's main(argv) function.
      flag_names: the names of the flags the script uses.
      takes_arguments: whether the script takes arguments besides flags.
      check_flags: None, or a function that raises UserError for flags
        that do not go together.
    """
    script = sys.modules[main.__module__]
    if script.__name__ == '__main__' and script.__doc__:
        # absl's --help %-formats the docstring: '~86%' would be garbled.
        script.__doc__ = script.__doc__.replace('%', '%%')
    for name in flag_names:
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])

    def parse_flags(argv):
        try:
            argv = FLAGS(argv)
        except flags.Error as e:
            sys.exit(error_line(flag_error(e, flag_names)))
        other = [name for name in FLAGS if FLAGS[name].present
                 and name not in flag_names and name not in ABSL_FLAGS]
        if other:
            sys.exit(error_line('--%s is not a flag of %s (--help lists its flags)'
                                % (other[0], os.path.basename(sys.argv[0]))))
        return argv

    def main_with_one_line_errors(argv):
        try:
            if len(argv) > 1 and not takes_arguments:
                raise UserError('unexpected argument %r: flags start with -- (--help lists '
                                'them)' % argv[1])
            if check_flags:
                check_flags()
            return main(argv)
        except (UserError, FloatingPointError) as e:
            sys.exit(error_line(e))
        except KeyboardInterrupt:
            sys.exit(130)

    app.run(main_with_one_line_errors, flags_parser=parse_flags)


def flag_error(error, flag_names):
    """The one-line message for a flag absl refuses, naming the nearest of
    flag_names for an unknown one.

    Args:
      error: the absl.flags.Error.
      flag_names: the script's flags.

    Returns:
      The message.
    """
    if isinstance(error, flags.UnrecognizedFlagError):
        nearest = difflib.get_close_matches(error.flagname, flag_names, n=1)
        advice = ': did you mean --%s?' % nearest[0] if nearest else ''
        return 'unknown flag --%s%s (--help lists the flags)' % (error.flagname, advice)
    message = ' '.join(str(error).split())
    return re.sub(r"\('Non-boolean argument to boolean flag', '(.*)'\)",
                  r"'\1' is not true or false", message)
