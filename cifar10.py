"""Builds the CIFAR-10 network.

Summary of available functions:

 # Compute input images and labels for training. If you would like to run
 # evaluations, use inputs() instead.
 inputs, labels = distorted_inputs()

 # Compute inference on the model inputs to make a prediction.
 predictions = inference(inputs)

 # Compute the total loss of the prediction with respect to the labels.
 loss = loss(predictions, labels)

 # Create a graph to run one step of training with respect to the loss.
 train_op = train(loss, global_step)

This module is the library the scripts share: it holds the flags common to
all of them, the model, and the download of the data set. Run
`cifar10_train.py` to train, `cifar10_eval.py` to evaluate,
`cifar10_predict.py` to classify images and `cifar10_export.py` to export a
SavedModel. The predictor and the exporter compute their predictions with
predict(), the evaluation's preprocessing and inference() that the evaluator
runs through inputs(), and all three restore the weights with
averaged_weights_saver(), so that their predictions agree.

Every trainer takes --mixed_precision through this module:
session_config() turns on TensorFlow's 16-bit graph rewrite for the
session, and optimizer() (which train() uses) adds fp16's dynamic loss
scaling; the graph itself, its variables and its checkpoints stay float32.
"""

import contextlib
import difflib
import errno
import os
import re
import socket
import struct
import sys
import time

import numpy as np
from absl import app as absl_app
from absl import flags as absl_flags
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

import cifar10_download
import cifar10_input
from cifar10_download import DATA_MD5, DATA_URL
from cifar10_input import tf

FLAGS = tf.app.flags.FLAGS

# Basic model parameters.
tf.app.flags.DEFINE_integer('batch_size', 128,
                            """Number of images to process in a batch.""",
                            lower_bound=1)
tf.app.flags.DEFINE_string('data_dir', '/tmp/cifar10_data',
                           """Path to the CIFAR-10 data directory.""")
tf.app.flags.DEFINE_boolean('use_fp16', False,
                            """Train the model using fp16: the original's option,
                            which builds the whole model, weights and checkpoints
                            included, in float16 (see --mixed_precision).""")
tf.app.flags.DEFINE_enum('mixed_precision', 'none', ['none', 'bf16', 'fp16'],
                         """Compute in 16-bit floats where TensorFlow's graph rewrite
                         finds it safe, keeping the variables, their moving averages,
                         the loss and the checkpoints in float32: bf16 (the CPU's ops,
                         oneDNN's bfloat16), fp16 (a GPU's ops, and the CPU's on its
                         slow float16 kernels; with dynamic loss scaling), or none.""")
tf.app.flags.DEFINE_enum('input_pipeline', 'queue', ['queue', 'dataset'],
                         """How training is fed: the tutorial's queue runners,
                         or the same pipeline written with tf.data.""")
tf.app.flags.DEFINE_string('data_url', DATA_URL,
                           """Where to download the CIFAR-10 binary tarball from.""")
tf.app.flags.DEFINE_string('data_md5', DATA_MD5,
                           """MD5 the downloaded tarball must have; empty to skip
                           the check (for a tarball other than the official one).""")
tf.app.flags.DEFINE_float('gpu_memory_fraction', 0.0,
                          """Fraction of GPU memory to take; 0 grows on demand,
                          so a trainer and an evaluator share one GPU.""",
                          lower_bound=0.0, upper_bound=1.0)

# Global constants describing the CIFAR-10 data set.
IMAGE_SIZE = cifar10_input.IMAGE_SIZE
NUM_CLASSES = cifar10_input.NUM_CLASSES
NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN = cifar10_input.NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN
NUM_EXAMPLES_PER_EPOCH_FOR_EVAL = cifar10_input.NUM_EXAMPLES_PER_EPOCH_FOR_EVAL
DATA_SUBDIR = cifar10_input.DATA_SUBDIR
ORIGINAL_IMAGE_SIZE = cifar10_input.ORIGINAL_HEIGHT  # The data's images are square.
CLASS_NAMES = cifar10_input.CLASS_NAMES
UserError = cifar10_input.UserError

# Constants describing the training process.
MOVING_AVERAGE_DECAY = 0.9999     # The decay to use for the moving average.
NUM_EPOCHS_PER_DECAY = 350.0      # Epochs after which learning rate decays.
LEARNING_RATE_DECAY_FACTOR = 0.1  # Learning rate decay factor.
INITIAL_LEARNING_RATE = 0.1       # Initial learning rate.

# Where the CPU's flags are listed, and those that make bfloat16 fast there.
CPUINFO_PATH = '/proc/cpuinfo'
BFLOAT16_CPU_FLAGS = ('amx_bf16', 'avx512_bf16')
# GPUs from this compute capability on have fast float16 (Volta, 2017).
FAST_FLOAT16_COMPUTE_CAPABILITY = (7, 0)

# Local response normalization, as the original's
# tf.nn.lrn(x, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75).
LRN_DEPTH_RADIUS = 4
LRN_BIAS = 1.0
LRN_ALPHA = 0.001 / 9.0
LRN_BETA = 0.75  # local_response_normalization's rsqrt form needs 0.75.
# The sum of squares is taken of x / LRN_PRESCALE (times LRN_PRESCALE ** 2):
# a power of two, so float32 results are the same, while in float16, where
# --mixed_precision=fp16 computes the sum, it overflows (and the output
# silently drops to 0) only for activations LRN_PRESCALE times larger.
LRN_PRESCALE = 16.0

# The lines of a TensorFlow error message that are not its reason.
TENSORFLOW_ERROR_CONTEXT = (' ', '\t', 'Graph execution error', 'Detected at node', 'Node:',
                            'Hint:', 'Original stack trace', 'Restoring from checkpoint failed',
                            'Original error', '[[')

# The checkpoints: model.ckpt-<step>.index, .data-*, .meta; and the state
# file, TensorFlow's index of them.
CHECKPOINT_BASENAME = 'model.ckpt'
CHECKPOINT_FILE = re.compile(r'^%s-(\d+)\.(index|meta|data-\d+-of-\d+)$'
                             % re.escape(CHECKPOINT_BASENAME))
STATE_FILENAME = 'checkpoint'

# Errors of TensorFlow's runtime, not of a checkpoint being read: a server of
# a cluster that cannot be reached, a step cut short.
RUNTIME_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
                  tf.errors.CancelledError, tf.errors.DeadlineExceededError)

# If a model is trained with multiple GPUs, prefix all Op names with tower_name
# to differentiate the operations. Note that this prefix is removed from the
# names of the summaries when visualizing a model.
TOWER_NAME = 'tower'


def session_config(log_device_placement=False, num_cpu_devices=1):
    """Session options shared by the scripts.

    GPU memory grows on demand (or is capped at --gpu_memory_fraction), so a
    trainer and an evaluator fit side by side on one GPU.

    --mixed_precision turns on TensorFlow's own graph rewrite, which changes
    the ops it finds safe (convolutions, matrix multiplies, and the
    element-wise ops between them, forward and backward) to 16 bits, with
    casts where they meet float32; variables, their updates, the loss and
    the softmax stay float32. bf16: the rewrite of the CPU's ops to oneDNN's
    bfloat16 kernels. fp16: the rewrite of a GPU's ops to float16 (GPUs of
    compute capability 7.0 and up; float16_refusal() refuses fp16 where
    there is no GPU). Where the flag cannot make training faster, one line
    says so, once.

    Args:
      log_device_placement: bool, log where each op runs.
      num_cpu_devices: how many logical CPU devices (CPU:0..N-1) to create.

    Returns:
      A tf.ConfigProto.
    """
    config = tf.ConfigProto(allow_soft_placement=True,
                            log_device_placement=log_device_placement,
                            device_count={'CPU': num_cpu_devices})
    if FLAGS.gpu_memory_fraction:
        config.gpu_options.per_process_gpu_memory_fraction = FLAGS.gpu_memory_fraction
    else:
        config.gpu_options.allow_growth = True
    rewrite_options = config.graph_options.rewrite_options
    if FLAGS.mixed_precision == 'bf16':
        rewrite_options.auto_mixed_precision_onednn_bfloat16 = rewrite_options.ON
    elif FLAGS.mixed_precision == 'fp16':
        rewrite_options.auto_mixed_precision = rewrite_options.ON
    if FLAGS.mixed_precision != 'none':
        _say_once(not_faster_reason(FLAGS.mixed_precision))
    return config


def float16_refusal():
    """Why this machine cannot take --mixed_precision=fp16 or --use_fp16.

    Both compute in float16, which a GPU does fast; TensorFlow's float16
    kernels for the CPU are slow, by how much depends on the CPU (from
    several times to hundreds of times slower than float32).

    Returns:
      The refusal, one line that names the flag; None where there is a GPU
      or neither flag is given.
    """
    if tf.config.list_physical_devices('GPU'):
        return None
    if FLAGS.mixed_precision == 'fp16':
        return ('--mixed_precision=fp16 computes in float16, which only a GPU does fast, and '
                'this machine has none: on a CPU, TensorFlow\'s float16 kernels can be a '
                'hundred times slower than float32; use --mixed_precision=bf16, the CPU\'s '
                '16-bit format, or leave the flag out')
    if FLAGS.use_fp16:
        return ('--use_fp16 builds the model in float16, which only a GPU computes fast, and '
                'this machine has none: on a CPU, TensorFlow\'s float16 kernels can be a '
                'hundred times slower than float32; leave it out, or use '
                '--mixed_precision=bf16')
    return None


def not_faster_reason(mixed_precision):
    """Why --mixed_precision cannot make this machine faster, if it cannot.

    bfloat16 is fast on a CPU with bfloat16 instructions (BFLOAT16_CPU_FLAGS
    in CPUINFO_PATH: AMX, or AVX-512 BF16); float16 on a GPU of compute
    capability FAST_FLOAT16_COMPUTE_CAPABILITY or more (float16_refusal()
    refuses it without a GPU).

    Args:
      mixed_precision: 'bf16' or 'fp16'.

    Returns:
      The reason, one line that names the flag; None where it can be faster.
    """
    gpus = tf.config.list_physical_devices('GPU')
    if mixed_precision == 'bf16':
        if gpus:
            return ('--mixed_precision=bf16 converts only the CPU\'s ops to bfloat16 (TensorFlow '
                    'has no such rewrite for GPUs), so the GPU computes in float32: use '
                    '--mixed_precision=fp16 on a GPU')
        if not set(BFLOAT16_CPU_FLAGS) & _cpu_flags():
            return ('--mixed_precision=bf16: this CPU has no bfloat16 instructions (%s), so '
                    'oneDNN emulates them: this will be slower, not faster'
                    % ' or '.join(BFLOAT16_CPU_FLAGS))
        return None
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get('compute_capability')
        if capability and tuple(capability) < FAST_FLOAT16_COMPUTE_CAPABILITY:
            return ('--mixed_precision=fp16: %s (compute capability %d.%d) has no fast '
                    'float16, so TensorFlow leaves its ops in float32: this will not be '
                    'faster' % (gpu.name, capability[0], capability[1]))
    return None


def _cpu_flags():
    """The CPU's feature flags listed in CPUINFO_PATH (empty if unreadable)."""
    try:
        with open(CPUINFO_PATH) as cpuinfo:
            for line in cpuinfo:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


_said_lines = set()  # What _say_once has printed.


def _say_once(line):
    """Prints line, unless it is None or was printed before in this process."""
    if line is not None and line not in _said_lines:
        _said_lines.add(line)
        print(line, flush=True)


def error_line(message):
    """How the scripts say an error: '<script>: error: <message>', one line.

    Args:
      message: what went wrong and what to do.

    Returns:
      The line, without a newline.
    """
    return '%s: error: %s' % (os.path.basename(sys.argv[0]), message)


def run(main, *flag_modules, takes_arguments=False):
    """Parses the flags and runs main, as tf.app.run does, but strictly.

    Makes --help list the shared flags of this module and of flag_modules
    beside the script's own, also when the script runs as a console script,
    and print the script's docstring as written. An unknown flag (tf.app.run
    lets one pass unseen), a bad flag value, --use_fp16 with
    --mixed_precision, or float16 without a GPU (float16_refusal) is
    refused in one line, before main runs.
    A UserError or a NaN loss ends the script with its message on one line
    and exit status 1; a Ctrl-C that main does not handle, with status 130.

    Args:
      main: the script's main(argv) function.
      *flag_modules: further modules whose flags the script uses.
      takes_arguments: whether the script takes arguments besides flags
        (refused in one line otherwise).
    """
    script = sys.modules[main.__module__]
    if script.__name__ == '__main__' and script.__doc__:
        # absl's --help %-formats the docstring with the program's name,
        # which garbles a '%' followed by text ("~86% accuracy").
        script.__doc__ = script.__doc__.replace('%', '%%')
    key_flags = []
    for module in (script, sys.modules[__name__]) + flag_modules:
        for flag in FLAGS.get_key_flags_for_module(module):
            FLAGS.register_key_flag_for_module(sys.argv[0], flag)
            key_flags.append(flag.name)

    def parse_flags(argv):
        try:
            return FLAGS(argv)
        except absl_flags.Error as e:
            sys.exit(error_line(_flag_error(e, key_flags)))

    def main_with_one_line_errors(argv):
        try:
            if len(argv) > 1 and not takes_arguments:
                raise UserError('unexpected argument %r: flags start with -- (--help lists '
                                'them)' % argv[1])
            if FLAGS.use_fp16 and FLAGS.mixed_precision != 'none':
                raise UserError('--use_fp16 and --mixed_precision=%s do not go together: '
                                '--use_fp16 builds the whole model, weights included, in '
                                'float16; drop one of them' % FLAGS.mixed_precision)
            refusal = float16_refusal()
            if refusal:
                raise UserError(refusal)
            return main(argv)
        except (UserError, FloatingPointError) as e:
            sys.exit(error_line(e))
        except KeyboardInterrupt:
            sys.exit(130)

    absl_app.run(main_with_one_line_errors, flags_parser=parse_flags)


def _flag_error(error, key_flags):
    """The one-line message for a flag absl refuses, naming the nearest known
    flag for an unknown one."""
    if isinstance(error, absl_flags.UnrecognizedFlagError):
        name = error.flagname
        nearest = (difflib.get_close_matches(name, key_flags, n=1)
                   or difflib.get_close_matches(name, list(FLAGS), n=1))
        advice = ': did you mean --%s?' % nearest[0] if nearest else ''
        return 'unknown flag --%s%s (--help lists the flags)' % (name, advice)
    message = ' '.join(str(error).split())
    return re.sub(r"\('Non-boolean argument to boolean flag', '(.*)'\)",
                  r"'\1' is not true or false", message)


def list_checkpoints(checkpoint_dir):
    """The checkpoints in checkpoint_dir, found by their files.

    The state file ('checkpoint', which tf.train.latest_checkpoint reads) is
    only an index of the checkpoints, and a crash, a copy or a user can
    leave it damaged, stale or missing; the files are the truth.

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


def checkpoint_damage(checkpoint_path):
    """Why a checkpoint cannot be restored, if it cannot: every tensor is
    read back, with TensorFlow's checks of every block against its checksum.

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


def restore_checkpoint(sess, saver, variables, checkpoint_path, misfit_error):
    """Restores a checkpoint, telling a damaged one from another model's.

    A checkpoint is damaged when its index or data file is missing, cut
    short or altered (TensorFlow checks every block and tensor against its
    checksum). One that reads well but lacks a variable of this model, or
    holds it in another shape or dtype, was written by another model: it is
    refused before restoring, since a variable restored from another shape
    silently takes that shape.

    Args:
      sess: the Session to restore into.
      saver: the Saver built from variables.
      variables: dict from the names in the checkpoint to the model's
        variables, as the Saver was given them.
      checkpoint_path: the checkpoint's path prefix (.../model.ckpt-1000).
      misfit_error: the message for a checkpoint of another model, with two
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


def error_reason(error):
    """The line of a TensorFlow error message that says what went wrong.

    Args:
      error: an exception; a tf.errors.OpError's message has the reason
        among lines about the graph node that raised it.

    Returns:
      One line.
    """
    message = getattr(error, 'message', None) or str(error)
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not line.startswith(TENSORFLOW_ERROR_CONTEXT)]
    return lines[0] if lines else type(error).__name__


def write_error(folder, error, advice):
    """The one-line error for a failed write into folder: a full disk or
    another OS error.

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


class SummaryWriter:
    """Writes TensorBoard event files, as tf.summary.FileWriter does, but at once.

    tf.summary.FileWriter writes from a thread and drops what a full disk
    refuses without a word, leaving a cut-off event in the file. This writer
    writes and flushes each event before it returns; when a write fails it
    cuts the file back to its last whole event, closes it and raises.
    """

    def __init__(self, logdir, graph=None):
        """Opens a new event file in logdir and writes the graph into it.

        Args:
          logdir: the folder, created if needed (a local path, or a URL such
            as gs://... that tf.io.gfile opens).
          graph: a tf.Graph to show in TensorBoard, or None.

        Raises:
          tf.errors.OpError or OSError: if the folder or the file cannot be written.
        """
        tf.gfile.MakeDirs(logdir)
        self.path = os.path.join(logdir, 'events.out.tfevents.%010d.%s.%d' % (
            time.time(), socket.gethostname(), os.getpid()))
        self._local = '://' not in logdir
        self._file = open(self.path, 'wb') if self._local else tf.io.gfile.GFile(self.path, 'wb')
        self._whole_bytes = 0  # The file's size after its last whole event.
        self._add_event(tf.Event(file_version='brain.Event:2'))
        if graph is not None:
            self._add_event(tf.Event(graph_def=graph.as_graph_def().SerializeToString()))

    def _add_event(self, event):
        if self._file is None:
            raise ValueError('the event file %s is closed' % self.path)
        event.wall_time = time.time()
        data = event.SerializeToString()
        # A record: length, its masked CRC-32C, the data, its masked CRC-32C.
        header = struct.pack('<Q', len(data))
        record = b''.join([header, struct.pack('<I', masked_crc32c(header)), data,
                           struct.pack('<I', masked_crc32c(data))])
        try:
            self._file.write(record)
            self._file.flush()
        except (tf.errors.OpError, OSError):
            event_file, self._file = self._file, None
            with contextlib.suppress(tf.errors.OpError, OSError):
                event_file.close()  # A local file is closed even when this fails.
            if self._local:
                os.truncate(self.path, self._whole_bytes)
            raise
        self._whole_bytes += len(record)

    def add_summary(self, summary, global_step):
        """Writes a summary at a step.

        Args:
          summary: a tf.Summary, or its serialized bytes (what a summary op gives).
          global_step: the step to show it at.

        Raises:
          tf.errors.OpError or OSError: if the write fails; the file then ends
            with the last whole event, and the writer is closed.
        """
        if isinstance(summary, bytes):
            summary = tf.Summary.FromString(summary)
        self._add_event(tf.Event(step=int(global_step), summary=summary))

    def flush(self):
        """Does nothing: every event is flushed when it is added."""

    def close(self):
        """Closes the event file."""
        if self._file is not None:
            self._file.close()
            self._file = None


def strip_tower_prefix(name):
    """Removes the 'tower_N/' prefix, so that all towers share summary tags.

    Args:
      name: an op or tensor name.

    Returns:
      The name without its tower prefix.
    """
    return re.sub('%s_[0-9]*/' % TOWER_NAME, '', name)


def _scalar_summary(tag, tensor):
    """Adds a scalar summary with exactly this tag.

    tf.summary.scalar derives the tag from the op name, which allows neither
    the spaces of 'total_loss (raw)' nor repeated names; the raw op does.

    Args:
      tag: the tag TensorBoard shows.
      tensor: a scalar Tensor.
    """
    summary = tf.raw_ops.ScalarSummary(tags=tag, values=tensor)
    tf.add_to_collection(tf.GraphKeys.SUMMARIES, summary)


def _histogram_summary(tag, tensor):
    """Adds a histogram summary with exactly this tag (as _scalar_summary).

    Args:
      tag: the tag TensorBoard shows.
      tensor: a real Tensor.
    """
    summary = tf.raw_ops.HistogramSummary(tag=tag, values=tensor)
    tf.add_to_collection(tf.GraphKeys.SUMMARIES, summary)


def _activation_summary(x):
    """Helper to create summaries for activations.

    Creates a summary that provides a histogram of activations.
    Creates a summary that measures the sparsity of activations.

    Args:
      x: Tensor, the output of a layer, named after its scope ('conv1/conv1').
    """
    # The layer's name is its scope: 'tower_0/conv1/conv1' -> 'conv1'.
    layer_name = strip_tower_prefix(x.op.name).rsplit('/', 1)[0]
    _histogram_summary(layer_name + '/activations', x)
    _scalar_summary(layer_name + '/sparsity', tf.nn.zero_fraction(x))


def _variable_on_cpu(name, shape, initializer):
    """Helper to create a Variable stored on CPU memory.

    Args:
      name: name of the variable
      shape: list of ints
      initializer: initializer for Variable

    Returns:
      Variable Tensor
    """
    with tf.device('/cpu:0'):
        dtype = tf.float16 if FLAGS.use_fp16 else tf.float32
        var = tf.get_variable(name, shape, initializer=initializer, dtype=dtype)
    return var


def _variable_with_weight_decay(name, shape, stddev, wd):
    """Helper to create an initialized Variable with weight decay.

    Note that the Variable is initialized with a truncated normal distribution.
    A weight decay is added only if one is specified.

    Args:
      name: name of the variable
      shape: list of ints
      stddev: standard deviation of a truncated Gaussian
      wd: add L2Loss weight decay multiplied by this float. If None, weight
          decay is not added for this Variable.

    Returns:
      Variable Tensor
    """
    dtype = tf.float16 if FLAGS.use_fp16 else tf.float32
    var = _variable_on_cpu(
        name,
        shape,
        tf.truncated_normal_initializer(stddev=stddev, dtype=dtype))
    if wd is not None:
        weight_decay = tf.multiply(tf.nn.l2_loss(var), wd, name='weight_loss')
        tf.add_to_collection('losses', weight_decay)
    return var


def _channel_window_matrix(depth):
    """The [depth, depth] band matrix whose column c sums channels c-4..c+4.

    Args:
      depth: the number of channels.

    Returns:
      A float constant Tensor.
    """
    channel = np.arange(depth)
    window = np.abs(channel[:, None] - channel[None, :]) <= LRN_DEPTH_RADIUS
    return tf.constant(window.astype(np.float32))


@tf.custom_gradient
def _lrn(x):
    """tf.nn.lrn with the model's constants, and its gradient, in cheap ops.

    Args:
      x: a 4-D NHWC float32 Tensor.

    Returns:
      The normalized Tensor and its gradient function.
    """
    depth = tf.compat.dimension_value(x.shape[-1])
    window = _channel_window_matrix(depth)
    flat = tf.reshape(x, [-1, depth])
    # d = bias + alpha * (sum of squares over the channel window).
    d = LRN_BIAS + (LRN_ALPHA * LRN_PRESCALE ** 2) * tf.matmul(
        tf.square(flat * (1.0 / LRN_PRESCALE)), window)
    inverse_sqrt = tf.math.rsqrt(d)
    scale = inverse_sqrt * tf.sqrt(inverse_sqrt)  # d ** -0.75, without pow.
    y = flat * scale

    def grad(dy):
        # dx = dy * d**-beta - 2 * alpha * beta * x * window(dy * y / d).
        dy = tf.reshape(dy, [-1, depth])
        dx = dy * scale - (2 * LRN_ALPHA * LRN_BETA) * flat * tf.matmul(dy * y / d, window)
        return tf.reshape(dx, tf.shape(x))

    return tf.reshape(y, tf.shape(x)), grad


def local_response_normalization(x, name):
    """Local response normalization: tf.nn.lrn(x, 4, bias=1.0, alpha=0.001 / 9.0,
    beta=0.75), the same numbers, computed faster.

    The sum of squares over the 9 neighbouring channels is one product with a
    band matrix (a oneDNN matmul on CPU), and d ** -0.75 is rsqrt(d) *
    sqrt(rsqrt(d)); the gradient is written out the same way. TensorFlow's
    LRN kernels spend most of their time in pow (the README's Results has
    the measured step times of both). tests/test_model.py checks the output
    and the gradient against tf.nn.lrn.

    Args:
      x: a 4-D NHWC Tensor.
      name: the name of the result.

    Returns:
      The normalized Tensor, of x's shape.
    """
    if x.dtype != tf.float32:  # fp16: TensorFlow's own kernel.
        return tf.nn.lrn(x, LRN_DEPTH_RADIUS, bias=LRN_BIAS, alpha=LRN_ALPHA,
                         beta=LRN_BETA, name=name)
    y = _lrn(x)
    y.set_shape(x.shape)
    return tf.identity(y, name=name)


def distorted_inputs():
    """Constructs distorted input for CIFAR training using the Reader ops
    (--input_pipeline=queue) or tf.data (--input_pipeline=dataset).

    Returns:
      images: Images. 4D tensor of [batch_size, IMAGE_SIZE, IMAGE_SIZE, 3] size.
      labels: Labels. 1D tensor of [batch_size] size.

    Raises:
      UserError: if a training file is missing, empty or truncated.
    """
    data_dir = os.path.join(FLAGS.data_dir, DATA_SUBDIR)
    if FLAGS.input_pipeline == 'dataset':
        build_inputs = cifar10_input.distorted_inputs_dataset
    else:
        build_inputs = cifar10_input.distorted_inputs
    images, labels = build_inputs(data_dir=data_dir, batch_size=FLAGS.batch_size)
    if FLAGS.use_fp16:
        images = tf.cast(images, tf.float16)
    return images, labels


def inputs(eval_data):
    """Constructs input for CIFAR evaluation using the Reader ops.

    Args:
      eval_data: bool, indicating if one should use the train or eval data set.

    Returns:
      images: Images. 4D tensor of [batch_size, IMAGE_SIZE, IMAGE_SIZE, 3] size.
      labels: Labels. 1D tensor of [batch_size] size.

    Raises:
      UserError: if a data file is missing, empty or truncated.
    """
    data_dir = os.path.join(FLAGS.data_dir, DATA_SUBDIR)
    images, labels = cifar10_input.inputs(eval_data=eval_data,
                                          data_dir=data_dir,
                                          batch_size=FLAGS.batch_size)
    if FLAGS.use_fp16:
        images = tf.cast(images, tf.float16)
    return images, labels


def class_names():
    """The names of the classes, label 0's first.

    Returns:
      The lines of batches.meta.txt in --data_dir's cifar-10-batches-bin/
      where the data has it, else the ten CIFAR-10 names.

    Raises:
      UserError: if that file is there but does not hold NUM_CLASSES names.
    """
    return cifar10_input.read_class_names(os.path.join(FLAGS.data_dir, DATA_SUBDIR))


def inference(images):
    """Build the CIFAR-10 model.

    Args:
      images: Images returned from distorted_inputs() or inputs(); any batch
        size.

    Returns:
      Logits.
    """
    # We instantiate all variables using tf.get_variable() instead of
    # tf.Variable() in order to share variables across multiple GPU training
    # runs. If we only ran this model on a single GPU, we could simplify this
    # function by replacing all instances of tf.get_variable() with
    # tf.Variable().
    #
    # conv1
    with tf.variable_scope('conv1') as scope:
        kernel = _variable_with_weight_decay('weights', shape=[5, 5, 3, 64],
                                             stddev=5e-2, wd=None)
        conv = tf.nn.conv2d(images, kernel, [1, 1, 1, 1], padding='SAME')
        biases = _variable_on_cpu('biases', [64], tf.constant_initializer(0.0))
        pre_activation = tf.nn.bias_add(conv, biases)
        conv1 = tf.nn.relu(pre_activation, name=scope.name)
        _activation_summary(conv1)

    # pool1
    pool1 = tf.nn.max_pool(conv1, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1],
                           padding='SAME', name='pool1')
    # norm1
    norm1 = local_response_normalization(pool1, name='norm1')

    # conv2
    with tf.variable_scope('conv2') as scope:
        kernel = _variable_with_weight_decay('weights', shape=[5, 5, 64, 64],
                                             stddev=5e-2, wd=None)
        conv = tf.nn.conv2d(norm1, kernel, [1, 1, 1, 1], padding='SAME')
        biases = _variable_on_cpu('biases', [64], tf.constant_initializer(0.1))
        pre_activation = tf.nn.bias_add(conv, biases)
        conv2 = tf.nn.relu(pre_activation, name=scope.name)
        _activation_summary(conv2)

    # norm2
    norm2 = local_response_normalization(conv2, name='norm2')
    # pool2
    pool2 = tf.nn.max_pool(norm2, ksize=[1, 3, 3, 1],
                           strides=[1, 2, 2, 1], padding='SAME', name='pool2')

    # local3
    with tf.variable_scope('local3') as scope:
        # Move everything into depth so we can perform a single matrix multiply.
        # The batch dimension is taken at run time, so any batch size works.
        dim = pool2.shape[1:].num_elements()
        reshape = tf.reshape(pool2, [tf.shape(pool2)[0], dim])
        weights = _variable_with_weight_decay('weights', shape=[dim, 384],
                                              stddev=0.04, wd=0.004)
        biases = _variable_on_cpu('biases', [384], tf.constant_initializer(0.1))
        local3 = tf.nn.relu(tf.matmul(reshape, weights) + biases, name=scope.name)
        _activation_summary(local3)

    # local4
    with tf.variable_scope('local4') as scope:
        weights = _variable_with_weight_decay('weights', shape=[384, 192],
                                              stddev=0.04, wd=0.004)
        biases = _variable_on_cpu('biases', [192], tf.constant_initializer(0.1))
        local4 = tf.nn.relu(tf.matmul(local3, weights) + biases, name=scope.name)
        _activation_summary(local4)

    # linear layer(WX + b),
    # We don't apply softmax here because
    # tf.nn.sparse_softmax_cross_entropy_with_logits accepts the unscaled logits
    # and performs the softmax internally for efficiency.
    with tf.variable_scope('softmax_linear') as scope:
        weights = _variable_with_weight_decay('weights', [192, NUM_CLASSES],
                                              stddev=1 / 192.0, wd=None)
        biases = _variable_on_cpu('biases', [NUM_CLASSES],
                                  tf.constant_initializer(0.0))
        softmax_linear = tf.add(tf.matmul(local4, weights), biases,
                                name=scope.name)
        _activation_summary(softmax_linear)

    return softmax_linear


def predict(uint8images):
    """The model's predictions for whole images, computed as the evaluator does.

    The images go through the evaluation's preprocessing
    (cifar10_input.crop_and_standardize: the central 24x24 crop, then
    per-image standardization), as inputs() applies it, then inference().
    Restore the weights with averaged_weights_saver(), as the evaluator does.

    Args:
      uint8images: [n, 32, 32, 3] uint8 Tensor of RGB images, any n.

    Returns:
      logits: [n, NUM_CLASSES] Tensor, from inference().
      probabilities: [n, NUM_CLASSES] float32 Tensor, the softmax of the logits.
    """
    images = cifar10_input.crop_and_standardize(uint8images)
    if FLAGS.use_fp16:
        images = tf.cast(images, tf.float16)
    logits = inference(images)
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), name='probabilities')
    return logits, probabilities


def averaged_weights_saver():
    """A Saver that restores the moving averages of the weights into the model.

    Evaluation, prediction and export all use the averaged weights (the
    shadow variables of MOVING_AVERAGE_DECAY the trainer keeps), which the
    original tutorial credits with about 3 points of precision. Build the
    model first.

    Returns:
      A tf.train.Saver that loads each variable's shadow value from a
      checkpoint into the variable.
    """
    return tf.train.Saver(averaged_variables())


def averaged_variables():
    """The dict from the checkpoint names of the weights' moving averages
    (their shadow variables) to the model's variables they restore into.

    Returns:
      A dict, as averaged_weights_saver's Saver is built from.
    """
    variable_averages = tf.train.ExponentialMovingAverage(MOVING_AVERAGE_DECAY)
    return variable_averages.variables_to_restore()


def loss(logits, labels, scope=None):
    """The total loss: the mean cross entropy plus the weight decay terms.

    The weight decay (L2) terms are those inference() added to the 'losses'
    collection, for local3's and local4's weights only; the loss summaries
    are added by add_loss_summaries().

    Args:
      logits: Logits from inference().
      labels: Labels from distorted_inputs or inputs(). 1-D tensor
              of shape [batch_size]
      scope: sum only the losses created under this name scope (one tower's);
        default all.

    Returns:
      Loss tensor of type float, named 'total_loss'.
    """
    # Calculate the average cross entropy loss across the batch.
    labels = tf.cast(labels, tf.int64)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits, name='cross_entropy_per_example')
    cross_entropy_mean = tf.reduce_mean(cross_entropy, name='cross_entropy')
    tf.add_to_collection('losses', cross_entropy_mean)

    # The total loss is defined as the cross entropy loss plus all of the weight
    # decay terms (L2 loss).
    return tf.add_n(tf.get_collection('losses', scope), name='total_loss')


def add_loss_summaries(total_loss, losses=None):
    """Add summaries for losses in CIFAR-10 model.

    Generates moving average for all losses and associated summaries for
    visualizing the performance of the network.

    Args:
      total_loss: Total loss from loss().
      losses: the losses it sums; default the 'losses' collection.

    Returns:
      loss_averages_op: op for generating moving averages of losses.
    """
    # Compute the moving average of all individual losses and the total loss.
    loss_averages = tf.train.ExponentialMovingAverage(0.9, name='avg')
    if losses is None:
        losses = tf.get_collection('losses')
    loss_averages_op = loss_averages.apply(losses + [total_loss])

    # Attach a scalar summary to all individual losses and the total loss; do
    # the same for the averaged version of the losses.
    for each_loss in losses + [total_loss]:
        # Name each loss as '(raw)' and name the moving average version of the
        # loss as the original loss name.
        name = strip_tower_prefix(each_loss.op.name)
        _scalar_summary(name + ' (raw)', each_loss)
        _scalar_summary(name, loss_averages.average(each_loss))

    return loss_averages_op


def learning_rate(global_step, batches_per_step=1):
    """The learning rate: decays tenfold every NUM_EPOCHS_PER_DECAY epochs.

    The schedule counts examples: a step that consumes several batches (one
    per tower) reaches the decay that many times sooner in steps.

    Args:
      global_step: Integer Variable counting the number of training steps.
      batches_per_step: batches of --batch_size one step consumes.

    Returns:
      The learning rate, a scalar Tensor with a 'learning_rate' summary.
    """
    # Variables that affect learning rate.
    num_batches_per_epoch = NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN / FLAGS.batch_size
    decay_steps = int(num_batches_per_epoch * NUM_EPOCHS_PER_DECAY /
                      batches_per_step)

    # Decay the learning rate exponentially based on the number of steps.
    lr = tf.train.exponential_decay(INITIAL_LEARNING_RATE,
                                    global_step,
                                    decay_steps,
                                    LEARNING_RATE_DECAY_FACTOR,
                                    staircase=True)
    _scalar_summary('learning_rate', lr)
    return lr


def optimizer(lr):
    """The optimizer: plain gradient descent, as the original's.

    With --mixed_precision=fp16 it is wrapped in TensorFlow's dynamic loss
    scaling (_LossScaleOptimizer), whose compute_gradients() multiplies the
    loss by the loss scale (2^15 at first) and divides the gradients by it,
    so that gradients too small for float16 do not flush to zero on the way
    back, and whose apply_gradients() skips a step whose gradients are not
    all finite and halves the scale (doubled after 2,000 finite steps in a
    row). The scale's variables are local: the checkpoints stay the same
    with and without the flag, and a resumed run starts again at 2^15.

    Args:
      lr: the learning rate.

    Returns:
      A tf.train.Optimizer.
    """
    opt = tf.train.GradientDescentOptimizer(lr)
    if FLAGS.mixed_precision != 'fp16':
        return opt
    created = []

    def local_variable(next_creator, **kwargs):
        kwargs['collections'] = [tf.GraphKeys.LOCAL_VARIABLES]
        created.append(next_creator(**kwargs))
        return created[-1]

    with tf.variable_creator_scope(local_variable):
        opt = _LossScaleOptimizer(opt, 'dynamic')
    [scale] = [v for v in created if v.op.name.endswith('current_loss_scale')]
    _scalar_summary('loss_scale', scale)
    return opt


class _LossScaleOptimizer(tf.mixed_precision.MixedPrecisionLossScaleOptimizer):
    """TensorFlow's loss-scale optimizer, except that a step it skips is
    counted all the same: SyncReplicasOptimizer's tokens carry the global
    step, and a round that did not advance it would wait for ever."""

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        apply_op = super().apply_gradients(grads_and_vars, name=name)
        if global_step is None:
            return apply_op
        with tf.control_dependencies([apply_op]):
            return tf.assign_add(global_step, 1).op


def apply_gradients(opt, grads, global_step, wrap_optimizer=None):
    """Applies the gradients, then updates the weights' moving averages.

    Args:
      opt: the optimizer, from optimizer().
      grads: list of (gradient, variable) pairs, from opt.compute_gradients().
      global_step: Integer Variable, incremented by the step.
      wrap_optimizer: None, or a function(opt, variable_averages) returning
        the optimizer that applies the gradients instead, through opt, and
        then updates variable_averages of the trainable variables itself
        (the distributed trainer's tf.train.SyncReplicasOptimizer).

    Returns:
      train_op: op for training; running it updates the weights and then
        their moving averages (with wrap_optimizer: whatever its
        apply_gradients returns).
    """
    variable_averages = tf.train.ExponentialMovingAverage(
        MOVING_AVERAGE_DECAY, global_step)
    if wrap_optimizer is not None:
        opt = wrap_optimizer(opt, variable_averages)

    # Apply gradients.
    apply_gradient_op = opt.apply_gradients(grads, global_step=global_step)

    # Add histograms for trainable variables.
    for var in tf.trainable_variables():
        _histogram_summary(var.op.name, var)

    # Add histograms for gradients.
    for grad, var in grads:
        if grad is not None:
            _histogram_summary(var.op.name + '/gradients', grad)

    if wrap_optimizer is not None:
        return apply_gradient_op
    # Track the moving averages of all trainable variables, after the
    # gradient step has changed them.
    with tf.control_dependencies([apply_gradient_op]):
        return variable_averages.apply(tf.trainable_variables())


def train(total_loss, global_step):
    """Train CIFAR-10 model.

    Create an optimizer and apply to all trainable variables. Add moving
    average for all trainable variables.

    Args:
      total_loss: Total loss from loss().
      global_step: Integer Variable counting the number of training steps
        processed.

    Returns:
      train_op: op for training; running it updates the weights and then
        their moving averages.
    """
    lr = learning_rate(global_step)

    # Generate moving averages of all losses and associated summaries.
    loss_averages_op = add_loss_summaries(total_loss)

    # Compute gradients.
    with tf.control_dependencies([loss_averages_op]):
        opt = optimizer(lr)
        grads = opt.compute_gradients(total_loss)

    return apply_gradients(opt, grads, global_step)


def maybe_download_and_extract(data_dir=None, data_url=None, data_md5=None):
    """Download and extract the tarball from Alex's website, unless it is there.

    The tutorial's entry point to cifar10_download.maybe_download_and_extract:
    nothing is downloaded when <data_dir>/cifar-10-batches-bin/ or the
    tarball is already there, and nothing half-finished is ever left under
    the final names.

    Args:
      data_dir: folder to download and extract into (default --data_dir).
      data_url: where to download from (default --data_url).
      data_md5: md5 the tarball must have, empty to skip (default --data_md5).

    Raises:
      UserError: offline, HTTP error, interrupted download, md5 mismatch,
        unsafe or damaged tarball; the message says what to do.
    """
    try:
        cifar10_download.maybe_download_and_extract(
            FLAGS.data_dir if data_dir is None else data_dir,
            FLAGS.data_url if data_url is None else data_url,
            FLAGS.data_md5 if data_md5 is None else data_md5)
    except cifar10_download.DownloadError as e:
        raise UserError(str(e)) from e
