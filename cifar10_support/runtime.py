"""What every script of the tutorial runs on: TensorFlow imported quietly, in graph
mode (eager execution off, which the graphs, sessions and queue runners need, and
nothing else of TensorFlow 2 switched); one-line errors; the session's options; the
script runner. A library; the scripts run through run().
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
    """Imports TensorFlow without its C++ start-up lines and deprecation warnings,
    which drown the tutorial's output; a TF_CPP_MIN_LOG_LEVEL the user set filters by
    severity (=0 shows all). If the import fails, all it printed is shown."""
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
    """The C++ log lines ('I0000 ...', 'W...', 'E...', 'F...') in text, what TensorFlow
    printed, of at least min_severity (0 INFO .. 3 FATAL), with their continuations."""
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
    """A problem the user must fix: the scripts print its message, one line, and exit 1."""


def error_line(message):
    """How the scripts say an error: '<script>: error: <message>', one line, no newline."""
    return '%s: error: %s' % (os.path.basename(sys.argv[0]), message)


def error_reason(error):
    """The line of an exception's message that says what went wrong (a TensorFlow
    error's message has it among lines about the graph node)."""
    message = getattr(error, 'message', None) or str(error)
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not line.startswith(TENSORFLOW_ERROR_CONTEXT)]
    return lines[0] if lines else type(error).__name__


def write_error(folder, error, advice):
    """The UserError for a write into folder that raised error (a full disk or
    another OS error), ending with advice, what the user should do."""
    reason = error_reason(error)
    if 'No space left on device' in reason or getattr(error, 'errno', None) == errno.ENOSPC:
        reason = 'the disk is full (%s)' % reason
    return UserError('cannot write to %s: %s; %s' % (folder, reason, advice))


def make_dir(path, flag):
    """Creates path, the folder --<flag> names, if needed; raises UserError if it cannot."""
    try:
        tf.gfile.MakeDirs(path)
    except tf.errors.OpError as e:
        raise UserError('cannot create --%s=%s (%s): give a folder you can write to'
                        % (flag, path, error_reason(e))) from e


def session_config(log_device_placement=False, num_cpu_devices=1, gpu_memory_fraction=0.0,
                   mixed_precision='none'):
    """The session options the scripts share, a tf.ConfigProto.

    Args:
      log_device_placement: bool, log where each op runs.
      num_cpu_devices: how many logical CPU devices (CPU:0..N-1) to create.
      gpu_memory_fraction: the GPU memory to take, so that a trainer and an evaluator
        share a GPU; 0 grows on demand.
      mixed_precision: 'none', or TensorFlow's 16-bit graph rewrite of the CPU's ops
        ('bf16', oneDNN's bfloat16 kernels) or a GPU's ('fp16').
    """
    config = tf.ConfigProto(allow_soft_placement=True, log_device_placement=log_device_placement,
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
    """Turns the first Ctrl-C or SIGTERM into a request to stop (a second acts as
    usual); yields the list of the signal numbers received, empty until one comes."""
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
    """Parses the flags and runs main, as tf.app.run does, but strictly: a flag the
    script does not know (tf.app.run lets one pass), a bad value, a flag of another
    script, a stray argument or what check_flags refuses is one line before main runs.
    A UserError or a NaN loss exits with its message on one line and status 1; a
    Ctrl-C that main does not handle, with status 130.

    Args:
      main: the script's main(argv) function; its module docstring is its --help.
      flag_names: the names of the flags the script uses, which --help lists.
      takes_arguments: whether the script takes arguments besides flags.
      check_flags: None, or a function raising UserError for flags that do not go together.
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
        other = [name for name in FLAGS if FLAGS[name].present and name not in flag_names
                 and name not in ABSL_FLAGS  # absl's own: its --help, logging flags.
                 and not FLAGS.find_module_defining_flag(name, '').startswith('absl.')]
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
    """The one-line message for error, the absl.flags.Error of a flag absl refuses,
    naming the nearest of flag_names, the script's flags, for an unknown one."""
    if isinstance(error, flags.UnrecognizedFlagError):
        nearest = difflib.get_close_matches(error.flagname, flag_names, n=1)
        advice = ': did you mean --%s?' % nearest[0] if nearest else ''
        return 'unknown flag --%s%s (--help lists the flags)' % (error.flagname, advice)
    message = ' '.join(str(error).split())
    return re.sub(r"\('Non-boolean argument to boolean flag', '(.*)'\)",
                  r"'\1' is not true or false", message)
