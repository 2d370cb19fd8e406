"""Helpers shared by the benchmarks in bench/.

The runners (train_throughput.py, eval_throughput.py, startup_memory.py,
learning_check.py) and the peers (peer_keras.py, peer_torch.py, which train
the tutorial's CIFAR-10 model in another framework) share the same data, the
same timing arithmetic, the same JSON output and the same weight check:

  ensure_data(data_dir)           # a full-size synthetic set, if none is there
  images, labels = load_train_records(data_dir, max_records)
  x = preprocess(images, 24)      # central 24x24 crop, per-image standardized
  x, labels = load_data(data_dir, max_records, batch_size)   # both at once
  steady, windows = windows_rate(timestamps, batch_size, window, warmup_steps)
  write_json(path, result)

The peers train on preprocessed, in-memory images without the tutorial's
random distortions (random crop, flip, brightness, contrast): that is less
work per example than the tutorial's trainer does, so the comparison is
conservative for the tutorial. Each peer has the tutorial's LRN in two forms
(--lrn, LRN_FORMS): its framework's own LRN, or the band-matrix form of
cifar10.local_response_normalization, built on lrn_window here.

The data set's constants (file names, record format, crop size, classes)
are cifar10_input's, read by input_constants() in a child Python process:
cifar10_input imports TensorFlow and switches eager execution off, which
Keras 3 cannot train under and the PyTorch peer has no use for. This module
itself imports only numpy and the standard library; it is a library, not a
script.
"""

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import types

import numpy as np

# The constants of cifar10_input that the data helpers use (input_constants).
INPUT_CONSTANTS = ('DATA_SUBDIR', 'TRAIN_FILES', 'TEST_FILES', 'LABEL_BYTES',
                   'ORIGINAL_HEIGHT', 'ORIGINAL_WIDTH', 'ORIGINAL_DEPTH', 'RECORD_BYTES',
                   'IMAGE_SIZE', 'NUM_CLASSES')

# Preprocess this many images at a time, to bound the temporary memory.
PREPROCESS_CHUNK = 4096

# Training and timing defaults shared by the peers.
BATCH_SIZE = 128
LEARNING_RATE = 0.1
WEIGHT_DECAY = 0.004
WINDOW_STEPS = 20
WARMUP_STEPS = 20

# Tolerances of --check: float32 results of two implementations that sum in
# different orders (see check_close).
CHECK_RTOL = 1e-4
CHECK_ATOL = 1e-5

# Exit status meaning "this peer's framework is not installed: skip it".
EXIT_NOT_INSTALLED = 3

# The tutorial's LRN (cifar10.LRN_*: tf.nn.lrn's depth_radius, bias, alpha,
# beta), in the two forms a peer can use: its framework's own LRN, or the
# band-matrix product with rsqrt of cifar10.local_response_normalization.
LRN_DEPTH_RADIUS = 4
LRN_BIAS = 1.0
LRN_ALPHA = 0.001 / 9.0
LRN_BETA = 0.75
LRN_FORMS = ('framework', 'band')

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_SIZE_RECORDS_PER_FILE = 10000

# Arithmetic of the model per 24x24 image, counting a multiply-add as 2 FLOP.
# Forward multiply-adds: conv1 24*24*64 outputs * 5*5*3 = 2,764,800; conv2
# 12*12*64 * 5*5*64 = 14,745,600; local3 2304*384 = 884,736; local4 384*192 =
# 73,728; softmax_linear 192*10 = 1,920; in all 18,470,784, so 36.9 MFLOP
# forward. Training adds the gradients of the weights and of the inputs of
# every layer but conv1 (whose input is the image): twice the forward minus
# conv1's input gradient, 68.4 MFLOP. Pooling, LRN, ReLU, the loss and the
# update are left out (under 1%).
FORWARD_MACS = (24 * 24 * 64 * 5 * 5 * 3 + 12 * 12 * 64 * 5 * 5 * 64
                + 2304 * 384 + 384 * 192 + 192 * 10)
CONV1_MACS = 24 * 24 * 64 * 5 * 5 * 3
FLOP_PER_EVAL_IMAGE = 2 * FORWARD_MACS
FLOP_PER_TRAINING_IMAGE = 3 * FLOP_PER_EVAL_IMAGE - 2 * CONV1_MACS


def add_common_args(parser):
    """Adds the flags every peer takes.

    Args:
      parser: an argparse.ArgumentParser.

    Returns:
      The parser.
    """
    parser.add_argument('--data_dir', default='/tmp/cifar10_data',
                        help="the data set's folder, as the trainer's --data_dir")
    parser.add_argument('--batch_size', type=int, default=BATCH_SIZE,
                        help='examples per training step')
    parser.add_argument('--max_records', type=int, default=None,
                        help='read at most this many training records (default all)')
    parser.add_argument('--window', type=int, default=WINDOW_STEPS,
                        help='steps per timing window')
    parser.add_argument('--warmup_steps', type=int, default=WARMUP_STEPS,
                        help='steps left out of the timing at the start')
    parser.add_argument('--json', default=None,
                        help='write the result to this JSON file')
    parser.add_argument('--check', metavar='REFERENCE.npz', default=None,
                        help='only check the model against make_reference.py output')
    parser.add_argument('--lrn', choices=LRN_FORMS, default='framework',
                        help="the LRN's form: the framework's own LRN, or the band-matrix "
                        "product of cifar10.local_response_normalization")
    return parser


def positive_int(text):
    """An argparse type: an integer of at least 1.

    Args:
      text: the flag's value.

    Returns:
      The int.

    Raises:
      argparse.ArgumentTypeError: if it is not a positive integer.
    """
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError('%s is not a positive integer' % text)
    return value


def usable_cores():
    """The CPU cores this process may run on.

    Returns:
      An int: the affinity mask's size where the OS has one, else cpu_count.
    """
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.cache
def input_constants():
    """The data set's constants, as cifar10_input declares them.

    cifar10_input imports TensorFlow and switches eager execution off, so it
    is imported in a child Python process (once per process, on first use),
    which prints the constants; the caller's process stays as it was.

    Returns:
      A types.SimpleNamespace with the INPUT_CONSTANTS as attributes (the
      file lists as lists).

    Raises:
      RuntimeError: if cifar10_input cannot be imported.
    """
    code = ('import json, cifar10_input; from cifar10_support.download import DATA_SUBDIR; '
            'cifar10_input.DATA_SUBDIR = DATA_SUBDIR; print(json.dumps({name: '
            'getattr(cifar10_input, name) for name in %r}))' % (INPUT_CONSTANTS,))
    result = run([sys.executable, '-c', code])
    if result.returncode:
        raise RuntimeError('reading the constants of cifar10_input failed: %s'
                           % result.stderr.strip()[-2000:])
    return types.SimpleNamespace(**json.loads(result.stdout.strip().splitlines()[-1]))


def lrn_window(depth):
    """The band matrix of the LRN's band-matrix form.

    Entry [i, j] is 1 where channels i and j are at most LRN_DEPTH_RADIUS
    apart, so squares @ lrn_window(depth) sums each channel's window of
    squares, as cifar10.local_response_normalization does. It is symmetric.

    Args:
      depth: the number of channels.

    Returns:
      float32 array [depth, depth].
    """
    channel = np.arange(depth)
    return (np.abs(channel[:, None] - channel[None, :]) <= LRN_DEPTH_RADIUS).astype(np.float32)


def ensure_data(data_dir, records_per_file=FULL_SIZE_RECORDS_PER_FILE, seed=0):
    """Writes a synthetic data set of the full release's size, unless
    <data_dir>/cifar-10-batches-bin/ is there already.

    Throughput does not depend on what the images show. Each synthetic image
    is a random colour plus noise, in the exact 3073-byte record format, and
    its label is drawn independently of it: nothing to learn, so the loss
    stays near its start. (On images that give their class away, a colour
    per class, the tutorial's learning rate of 0.1 makes the loss spike now
    and then, to NaN once in a benchmark run, with TensorFlow's own LRN too.)

    Args:
      data_dir: the folder to hold cifar-10-batches-bin/.
      records_per_file: records in each of the six files.
      seed: the random seed.

    Returns:
      data_dir.
    """
    const = input_constants()
    batches = os.path.join(data_dir, const.DATA_SUBDIR)
    if os.path.isdir(batches):
        return data_dir
    print('Writing a synthetic full-size data set to %s ...' % batches, flush=True)
    rng = np.random.default_rng(seed)
    staging = batches + '.partial'
    os.makedirs(staging, exist_ok=True)
    planes_shape = (records_per_file, const.ORIGINAL_DEPTH, const.ORIGINAL_HEIGHT,
                    const.ORIGINAL_WIDTH)
    for name in const.TRAIN_FILES + const.TEST_FILES:
        labels = rng.integers(0, const.NUM_CLASSES, size=records_per_file)
        noise = rng.normal(0, 40, size=planes_shape)
        colours = rng.integers(0, 256, size=(records_per_file, const.ORIGINAL_DEPTH))
        planes = np.clip(colours[:, :, None, None] + noise, 0, 255).astype(np.uint8)
        records = np.concatenate([labels[:, None].astype(np.uint8),
                                  planes.reshape(records_per_file, -1)], axis=1)
        records.tofile(os.path.join(staging, name))
    os.replace(staging, batches)
    return data_dir


def run(command, timeout=None):
    """Runs a command, its output captured, from the repository's root.

    Args:
      command: the argument list.
      timeout: seconds, or None.

    Returns:
      The subprocess.CompletedProcess (text stdout and stderr).
    """
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def print_table(title, header, rows):
    """Prints a small aligned table.

    Args:
      title: a line above the table.
      header: the column names.
      rows: lists of cells (strings).
    """
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    print('\n' + title)
    for row in [header, ['-' * w for w in widths]] + rows:
        print('  '.join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


def load_train_records(data_dir, max_records=None):
    """Reads the five CIFAR-10 training files into memory.

    Args:
      data_dir: the folder that holds cifar-10-batches-bin/.
      max_records: read at most this many records (None: all); files past
        the last one needed are not opened.

    Returns:
      images: uint8 array [N, 32, 32, 3] (height, width, RGB).
      labels: int32 array [N], the label bytes (0..9 in CIFAR-10).

    Raises:
      FileNotFoundError: if a training file is missing.
      ValueError: if a file is not a whole number of records.
    """
    const = input_constants()
    chunks = []
    total = 0
    for name in const.TRAIN_FILES:
        if max_records is not None and total >= max_records:
            break
        path = os.path.join(data_dir, const.DATA_SUBDIR, name)
        if not os.path.exists(path):
            raise FileNotFoundError('data file %s not found: --data_dir (now %s) must be '
                                    'the folder that holds %s/'
                                    % (path, data_dir, const.DATA_SUBDIR))
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % const.RECORD_BYTES:
            raise ValueError('data file %s is %d bytes, not a positive multiple of %d'
                             % (path, raw.size, const.RECORD_BYTES))
        records = raw.reshape(-1, const.RECORD_BYTES)
        if max_records is not None:
            records = records[:max_records - total]
        chunks.append(records)
        total += len(records)
    records = np.concatenate(chunks)
    labels = records[:, 0].astype(np.int32)
    planes = records[:, const.LABEL_BYTES:].reshape(-1, const.ORIGINAL_DEPTH,
                                                    const.ORIGINAL_HEIGHT, const.ORIGINAL_WIDTH)
    images = np.ascontiguousarray(planes.transpose(0, 2, 3, 1))
    return images, labels


def preprocess(images, size):
    """Crops the central size x size and standardizes each image, as the eval input does.

    Matches tf.image.resize_image_with_crop_or_pad(image, size, size) followed
    by tf.image.per_image_standardization: (x - mean) / max(stddev,
    1/sqrt(pixels)), with the mean and the (population) stddev taken over the
    whole image. The images are at least size x size, as CIFAR-10's 32x32.

    Args:
      images: uint8 array [N, H, W, C].
      size: the crop's height and width (cifar10_input.IMAGE_SIZE, 24).

    Returns:
      float32 array [N, size, size, C] (NHWC).
    """
    _, height, width, depth = images.shape
    top, left = (height - size) // 2, (width - size) // 2
    min_stddev = np.float32(1.0 / math.sqrt(size * size * depth))
    out = np.empty((len(images), size, size, depth), dtype=np.float32)
    for start in range(0, len(images), PREPROCESS_CHUNK):
        crop = images[start:start + PREPROCESS_CHUNK, top:top + size, left:left + size]
        crop = crop.astype(np.float32)
        mean = crop.mean(axis=(1, 2, 3), keepdims=True)
        stddev = crop.std(axis=(1, 2, 3), keepdims=True)
        out[start:start + len(crop)] = (crop - mean) / np.maximum(stddev, min_stddev)
    return out


def load_data(data_dir, max_records=None, batch_size=1):
    """Reads and preprocesses the training records, checking there is a batch.

    Args:
      data_dir: the folder that holds cifar-10-batches-bin/.
      max_records: read at most this many records (None: all).
      batch_size: the data must hold at least one batch.

    Returns:
      x: float32 array [N, 24, 24, 3].
      y: int32 array [N].

    Raises:
      ValueError: if there are fewer records than one batch.
    """
    images, labels = load_train_records(data_dir, max_records)
    if len(images) < batch_size:
        raise ValueError('%d records are fewer than one batch of %d'
                         % (len(images), batch_size))
    return preprocess(images, input_constants().IMAGE_SIZE), labels


def windows_rate(timestamps, batch_size, window=WINDOW_STEPS, warmup_steps=0,
                 step_sizes=None):
    """Turns step end times into examples/sec over windows of steps.

    timestamps[0] is the time the first step started; timestamps[i] the time
    step i ended. The first warmup_steps steps are left out; the rest is cut
    into back-to-back windows of `window` steps (a short tail is dropped),
    and each window gives examples / seconds.

    Args:
      timestamps: list of floats (seconds), one more than the steps.
      batch_size: examples per step, when step_sizes is None.
      window: steps per window.
      warmup_steps: steps left out at the start.
      step_sizes: optional list of the examples in each step (a last partial
        batch); overrides batch_size.

    Returns:
      (median, rates): the median rate (None if no whole window) and the
      list of window rates, in examples/sec.
    """
    steps = len(timestamps) - 1
    if step_sizes is None:
        step_sizes = [batch_size] * steps
    rates = []
    start = warmup_steps
    while start + window <= steps:
        examples = sum(step_sizes[start:start + window])
        seconds = timestamps[start + window] - timestamps[start]
        rates.append(examples / seconds)
        start += window
    median = statistics.median(rates) if rates else None
    return median, rates


def write_json(path, result):
    """Writes a result dict as indented JSON (the folder is created).

    Args:
      path: the output file.
      result: a JSON-serializable dict.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write('\n')


def print_result(result):
    """Prints the headline numbers of a result on a few lines.

    Args:
      result: the dict a peer writes to JSON.
    """
    print('%s (--lrn=%s): batch %d, %d records' % (result['peer'], result['lrn'],
                                                   result['batch_size'], result['num_records']))
    for key in ('steady', 'whole_epoch', 'epoch_change_idle_secs'):
        if key in result:
            value = result[key]
            text = 'n/a (too few steps)' if value is None else '%.1f' % value
            unit = 'secs' if key.endswith('secs') else 'examples/sec'
            print('  %-24s %s %s' % (key, text, unit))


def load_reference(path):
    """Reads the .npz that make_reference.py wrote.

    Args:
      path: the .npz file.

    Returns:
      A dict of name -> numpy array.
    """
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def check_close(name, got, want, rtol=CHECK_RTOL, atol=CHECK_ATOL):
    """Compares a peer's array with the reference's, as numpy.allclose does.

    Args:
      name: what is compared, for the report.
      got: the peer's array.
      want: the reference array.
      rtol: relative tolerance.
      atol: absolute tolerance.

    Returns:
      (ok, line): whether |got - want| <= atol + rtol * |want| everywhere
      (and the shapes agree), and a report line with the max abs difference.
    """
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return False, '%-28s FAIL shape %s != %s' % (name, got.shape, want.shape)
    diff = np.abs(got - want)
    ok = bool(np.all(diff <= atol + rtol * np.abs(want)))
    line = '%-28s %s max|diff| %.2e  (max|ref| %.2e)' % (
        name, 'ok  ' if ok else 'FAIL', diff.max(), np.abs(want).max())
    return ok, line


def check_step(name, before, got_after, want_after, rtol=CHECK_RTOL):
    """Compares the change one SGD step made to a weight with the reference's.

    The updated weights agree within CHECK_ATOL even if the update were
    wrong by less than that, so the updates themselves are compared too,
    relative to the largest update of that weight. The weights are stored
    in float32, so two units in their last place are allowed on top: the
    update of a bias near 0.1 is ~7e-5, and one ulp at 0.1 is 7.5e-9, i.e.
    1e-4 of that update.

    Args:
      name: the weight, for the report.
      before: the weight before the step (the same in both).
      got_after: the peer's weight after the step.
      want_after: the reference weight after the step.
      rtol: the largest allowed difference, relative to max |update|, on top
        of two float32 units in the last place of the largest weight.

    Returns:
      (ok, line) as check_close.
    """
    got = np.asarray(got_after, np.float64) - np.asarray(before, np.float64)
    want = np.asarray(want_after, np.float64) - np.asarray(before, np.float64)
    scale = np.abs(want).max()
    diff = np.abs(got - want).max()
    # The weights after the step are float32: allow them to round apart by
    # two units in the last place of the largest weight.
    ulps = 2 * np.spacing(np.abs(want_after).max().astype(np.float32))
    ok = bool(diff <= rtol * scale + ulps)
    line = '%-28s %s max|diff| %.2e  (max|update| %.2e, rel %.1e)' % (
        name, 'ok  ' if ok else 'FAIL', diff, scale, diff / scale if scale else 0.0)
    return ok, line


def finish_check(results):
    """Prints the check lines and a verdict.

    Args:
      results: list of (ok, line) from check_close and check_step.

    Returns:
      The exit status: 0 if all agree, 1 otherwise.
    """
    for _, line in results:
        print('  ' + line)
    failed = sum(1 for ok, _ in results if not ok)
    if failed:
        print('CHECK FAILED: %d of %d comparisons disagree' % (failed, len(results)))
        return 1
    print('CHECK PASSED: all %d comparisons agree' % len(results))
    return 0
