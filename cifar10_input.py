"""Routine for decoding the CIFAR-10 binary file format.

The binary release (https://www.cs.toronto.edu/~kriz/cifar.html) stores each
image as one fixed-length record of 3073 bytes: a label byte (0-9) followed by
the 1024 red, 1024 green and 1024 blue bytes of a 32x32 image, row-major.

This module reads those records with a queue-runner pipeline, as the original
TensorFlow tutorial did: a filename queue feeds a fixed-length record reader,
16 threads read images into a batching queue, and a Coordinator started by the
caller runs them. For evaluation the images are cropped before the queue; for
training the queue shuffles them as read, and a further thread distorts whole
batches of them into a small prefetch queue. It is a library; run
`cifar10_train.py` or `cifar10_eval.py` to use it.

Every data file is checked before any queue is built, so missing, empty or
truncated data gives one clear error instead of a hang at "Filling queue".

Importing it (or any module of the tutorial) imports TensorFlow quietly (see
_import_tensorflow_quietly) and switches off eager execution, which the
graphs, sessions and queue runners need. That is all it switches: the rest
of TensorFlow 2's behaviour stays on (resource variables, v2 control flow,
v2 tensor shapes). The tutorial works the same after the canonical TF1 start

  import tensorflow.compat.v1 as tf
  tf.disable_v2_behavior()

which switches all of those to their TensorFlow 1 forms.
"""

import os
import re
import sys
import tempfile
import types

import numpy as np

from cifar10_download import DATA_SUBDIR


def _import_tensorflow_quietly():
    """Imports TensorFlow without its start-up chatter and deprecation warnings.

    TensorFlow prints C++ log lines while it loads, and the queue-runner API
    logs a Python deprecation warning at every call; both drown the
    tutorial's own output. The C++ lines follow TF_CPP_MIN_LOG_LEVEL when the
    user set it (1 hides INFO, 2 also WARNING, 3 also ERROR; unset, all are
    hidden), also the start-up lines that TensorFlow prints before it reads
    the variable. The Python deprecation warnings stay hidden unless
    TF_CPP_MIN_LOG_LEVEL=0, which brings all of TensorFlow's output back. If
    the import fails, everything it printed is shown.

    Returns:
      The tensorflow module.
    """
    user_level = os.environ.get('TF_CPP_MIN_LOG_LEVEL')
    if user_level == '0' or 'tensorflow' in sys.modules:
        import tensorflow
    else:
        if user_level is None:
            os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
        tensorflow, chatter = _import_with_stderr_held_back()
        min_severity = int(user_level) if (user_level or '').isdigit() else 3
        sys.stderr.write(_log_lines_at_or_above(chatter, min_severity))
        sys.stderr.flush()
    if user_level != '0':
        tensorflow.compat.v1.logging.set_verbosity(tensorflow.compat.v1.logging.ERROR)
    return tensorflow


def _import_with_stderr_held_back():
    """Imports TensorFlow with file descriptor 2 sent to a temporary file.

    Returns (tensorflow, what it printed); if the import fails, what it
    printed is shown before the error."""
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as held_back:
        os.dup2(held_back.fileno(), 2)
        try:
            import tensorflow
        except BaseException:
            os.dup2(saved_stderr, 2)
            held_back.seek(0)
            sys.stderr.write(held_back.read().decode(errors='replace'))
            raise
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
        held_back.seek(0)
        return tensorflow, held_back.read().decode(errors='replace')


def _log_lines_at_or_above(text, min_severity):
    """Keeps the C++ log lines ('I0000 ...', 'W...', 'E...', 'F...') of at
    least min_severity (0 INFO .. 3 FATAL), with their continuation lines."""
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
# The tutorial builds graphs and runs them in sessions, which needs eager
# execution off. Nothing else is switched: tf.disable_v2_behavior(), if the
# user calls it, works too (see the module docstring).
tf.disable_eager_execution()

# Process images of this size. Note that this differs from the original CIFAR
# image size of 32 x 32. If one alters this number, then the entire model
# architecture will change and any model would need to be retrained.
IMAGE_SIZE = 24

# Global constants describing the CIFAR-10 data set.
NUM_CLASSES = 10
NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN = 50000
NUM_EXAMPLES_PER_EPOCH_FOR_EVAL = 10000

# The binary format: one label byte, then a 32x32x3 image stored depth-major.
LABEL_BYTES = 1
ORIGINAL_HEIGHT = 32
ORIGINAL_WIDTH = 32
ORIGINAL_DEPTH = 3
IMAGE_BYTES = ORIGINAL_HEIGHT * ORIGINAL_WIDTH * ORIGINAL_DEPTH
RECORD_BYTES = LABEL_BYTES + IMAGE_BYTES

TRAIN_FILES = ['data_batch_%d.bin' % i for i in range(1, 6)]
TEST_FILES = ['test_batch.bin']

# The class names, one a line, beside the data files; these if it is absent.
CLASS_NAMES_FILE = 'batches.meta.txt'
CLASS_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
               'horse', 'ship', 'truck']

# The queue keeps at least this fraction of an epoch, for good shuffling.
MIN_FRACTION_OF_EXAMPLES_IN_QUEUE = 0.4
NUM_PREPROCESS_THREADS = 16
# Distorted training batches made ahead of the step that takes them.
NUM_PREFETCH_BATCHES = 2
# Each preprocessing thread reads this many records at a time (and, for
# evaluation, crops them).
RECORDS_PER_READ = 128
# The tf.data pipeline: parallel map calls, and batches prefetched.
NUM_DATASET_MAP_CALLS = 2
NUM_DATASET_PREFETCH_BATCHES = 2


class UserError(Exception):
    """A problem the user must fix (data, download, checkpoint, devices).

    The scripts print its message, which says what to do, as one line and exit
    non-zero.
    """


def check_data_files(filenames):
    """Checks that each file exists and holds whole CIFAR-10 records.

    Besides the size, every record's label byte must be a class, 0-9, and
    the file must not be all zero bytes: a file of the right size can still
    hold another data set, or be a copy that was never filled.

    Args:
      filenames: paths of CIFAR-10 binary files.

    Returns:
      The total number of records in the files.

    Raises:
      UserError: naming the first bad file, what is wrong and what to do.
    """
    total_records = 0
    for filename in filenames:
        if not tf.gfile.Exists(filename) or tf.gfile.IsDirectory(filename):
            data_dir = os.path.dirname(os.path.dirname(filename))
            raise UserError(
                'data file %s not found: --data_dir (now %s) must be the folder '
                'that holds %s/; download the data, or see "Train offline" '
                'in the README' % (filename, data_dir, DATA_SUBDIR))
        size = tf.gfile.Stat(filename).length
        if size == 0 or size % RECORD_BYTES:
            raise UserError(
                'data file %s is %d bytes, not a positive multiple of the %d-byte '
                'CIFAR-10 record: it is empty or truncated; delete %s and '
                'extract or download the data again'
                % (filename, size, RECORD_BYTES, os.path.dirname(filename)))
        _check_records(filename)
        total_records += size // RECORD_BYTES
    return total_records


def _check_records(filename):
    """Raises UserError if a file of whole records is not CIFAR-10: a label
    byte that is not a class, or nothing but zero bytes."""
    try:
        with tf.gfile.GFile(filename, 'rb') as records:
            data = np.frombuffer(records.read(), dtype=np.uint8)
    except tf.errors.OpError as e:
        raise UserError('cannot read data file %s (%s): check its permissions, or extract '
                        'or download the data again' % (filename, e.message)) from e
    labels = data[::RECORD_BYTES]
    bad_records = np.flatnonzero(labels >= NUM_CLASSES)
    if bad_records.size:
        first = int(bad_records[0])
        raise UserError(
            'data file %s does not hold CIFAR-10 records: record %d (of %d) has label '
            '%d, not 0-%d, and %d records are like it; it is another data set or a '
            'damaged copy: replace %s with the CIFAR-10 binary release'
            % (filename, first, labels.size, labels[first], NUM_CLASSES - 1,
               bad_records.size, os.path.dirname(filename)))
    if not data.any():
        raise UserError(
            'data file %s holds nothing but zero bytes, not CIFAR-10 images: it is a '
            'copy that was never filled; replace %s with the CIFAR-10 binary release'
            % (filename, os.path.dirname(filename)))


def data_filenames(eval_data, data_dir):
    """Lists the files of one part of the data set.

    Args:
      eval_data: bool, the test file if True, else the five training files.
      data_dir: path to the CIFAR-10 data directory (cifar-10-batches-bin).

    Returns:
      A list of file paths.
    """
    names = TEST_FILES if eval_data else TRAIN_FILES
    return [os.path.join(data_dir, name) for name in names]


def decode_records(values):
    """Splits raw records into labels and images (a chunk of a file's bytes,
    or a whole file's records at once).

    Args:
      values: 1-D string Tensor of records, RECORD_BYTES long each.

    Returns:
      labels: 1-D int32 Tensor, in the range 0..9.
      images: [n, 32, 32, 3] uint8 Tensor (height, width, depth).
    """
    # Convert from a string to a vector of uint8 that is RECORD_BYTES long.
    record_bytes = tf.reshape(tf.decode_raw(values, tf.uint8), [-1, RECORD_BYTES])

    # The first byte is the label, which we convert from uint8 to int32.
    labels = tf.cast(record_bytes[:, 0], tf.int32)

    # The remaining bytes after the label represent the image, which we
    # reshape from [depth * height * width] to [depth, height, width], then
    # transpose to [height, width, depth].
    depth_major = tf.reshape(record_bytes[:, LABEL_BYTES:],
                             [-1, ORIGINAL_DEPTH, ORIGINAL_HEIGHT, ORIGINAL_WIDTH])
    # Compiled by XLA: TensorFlow's own transpose of uint8 images costs
    # several times the rest of the reading.
    with tf.xla.experimental.jit_scope():
        return labels, tf.transpose(depth_major, [0, 2, 3, 1])


def read_class_names(data_dir):
    """Reads the class names from batches.meta.txt, as the binary release has it.

    Args:
      data_dir: path to the CIFAR-10 data directory (cifar-10-batches-bin).

    Returns:
      NUM_CLASSES names, label 0's first: the file's lines, or CLASS_NAMES if
      there is no such file.

    Raises:
      UserError: if the file cannot be read or does not hold NUM_CLASSES names.
    """
    path = os.path.join(data_dir, CLASS_NAMES_FILE)
    if not os.path.exists(path):
        return list(CLASS_NAMES)
    try:
        with open(path, encoding='utf-8') as f:
            names = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeError) as e:
        raise UserError('cannot read the class names in %s (%s): fix or delete it'
                        % (path, e)) from e
    if len(names) != NUM_CLASSES:
        raise UserError('%s holds %d class names, not %d (one a line): fix or delete it'
                        % (path, len(names), NUM_CLASSES))
    return names


def read_cifar10(filename_queue):
    """Reads and parses one example from CIFAR-10 data files.

    Recommendation: if you want N-way read parallelism, call this function
    N times. This will give you N independent Readers reading different
    files & positions within those files, which will give better mixing of
    examples.

    Args:
      filename_queue: A queue of strings with the filenames to read from.

    Returns:
      An object representing a single example, with the following fields:
        height: number of rows in the result (32)
        width: number of columns in the result (32)
        depth: number of color channels in the result (3)
        key: a scalar string Tensor describing the filename & record number
          for this example.
        label: an int32 Tensor with the label in the range 0..9.
        uint8image: a [height, width, depth] uint8 Tensor with the image data
    """
    reader = tf.FixedLengthRecordReader(record_bytes=RECORD_BYTES)
    key, value = reader.read(filename_queue)
    labels, images = decode_records(value)
    return types.SimpleNamespace(
        height=ORIGINAL_HEIGHT, width=ORIGINAL_WIDTH, depth=ORIGINAL_DEPTH,
        key=key, label=tf.reshape(labels, [1]), uint8image=images[0])


def read_cifar10_records(filename_queue, num_records):
    """Reads up to num_records examples at once (fewer at the end of a file).

    The pipelines read and preprocess records a chunk at a time: one image at
    a time, TensorFlow's cost per op would outweigh the work of the ops.

    Args:
      filename_queue: A queue of strings with the filenames to read from.
      num_records: the most records to read.

    Returns:
      labels: 1-D int32 Tensor, in the range 0..9.
      uint8images: [n, 32, 32, 3] uint8 Tensor.
    """
    reader = tf.FixedLengthRecordReader(record_bytes=RECORD_BYTES)
    _, values = reader.read_up_to(filename_queue, num_records)
    return decode_records(values)


def _distort_images(uint8images, crop_offsets, flip, brightness_delta,
                    contrast_factor):
    """Applies the training distortions with the given random draws.

    XLA compiles these ops into a few fused loops: run one by one, their cost
    per op and per pass over memory is ten times their arithmetic.

    Brightness, contrast and standardization each map a channel's values by
    a + b * value, so together they are one such map per image and channel,
    whose coefficients follow from the crop's per-channel sums and sums of
    squares (exact integer sums of the uint8 values): one pass to sum, one
    to map, where the original's ops made six. Each value's deviation from
    its channel's mean is exact before it is scaled, so a nearly one-colour
    image (whose deviations the standardization divides by nearly 0) is not
    swamped by rounding, as it was in the original's float32 ops.

    Args:
      uint8images: [n, 32, 32, 3] uint8 Tensor.
      crop_offsets: [n, 2] int32, each image's crop corner (row, column).
      flip: [n] bool, whether to flip each image left-right.
      brightness_delta: [n] float32, added to each image.
      contrast_factor: [n] float32, each image's contrast factor.

    Returns:
      [n, IMAGE_SIZE, IMAGE_SIZE, 3] float32 Tensor, standardized per image.
    """
    with tf.xla.experimental.jit_scope():
        # Crop a [IMAGE_SIZE, IMAGE_SIZE] section of each image, flipped
        # left-right where asked, by picking its rows and columns.
        steps = tf.range(IMAGE_SIZE)
        rows = crop_offsets[:, :1] + steps
        columns = crop_offsets[:, 1:] + tf.where_v2(flip[:, None],
                                                    IMAGE_SIZE - 1 - steps, steps)
        crops = tf.gather(uint8images, rows, axis=1, batch_dims=1)
        crops = tf.gather(crops, columns, axis=2, batch_dims=1)

        # Each channel's sum and sum of squares: exact integers.
        pixels = IMAGE_SIZE * IMAGE_SIZE
        ints = tf.cast(crops, tf.int32)
        sums = tf.reduce_sum(ints, axis=[1, 2], keepdims=True)
        squares = tf.reduce_sum(ints * ints, axis=[1, 2], keepdims=True)

        # The coefficients, per image and channel, in float64 (exact sums
        # there, and no variance below 0). Brightness shifts each value and
        # contrast scales each channel's deviations from its mean, as in the
        # original: that moves the means by the shift and scales the
        # deviations by the factor. (The brightness is a shift, which the
        # standardization takes out again; the original's did too.)
        channel_means = tf.cast(sums, tf.float64) / pixels
        channel_variances = ((pixels * tf.cast(squares, tf.float64)
                              - tf.square(tf.cast(sums, tf.float64))) / pixels ** 2)
        delta = tf.cast(brightness_delta[:, None, None, None], tf.float64)
        factor = tf.cast(contrast_factor[:, None, None, None], tf.float64)
        channel_means += delta
        # Then subtract off the image's mean and divide by its standard
        # deviation (at least 1 / sqrt(values), as
        # tf.image.per_image_standardization).
        image_mean = tf.reduce_mean(channel_means, axis=3, keepdims=True)
        image_variance = tf.reduce_mean(
            tf.square(factor) * channel_variances + tf.square(channel_means - image_mean),
            axis=3, keepdims=True)
        scale = 1 / tf.maximum(tf.sqrt(image_variance), 1 / np.sqrt(pixels * 3.0))

        # Each value: its deviation from its channel's mean (an exact integer
        # times 1 / pixels), scaled, plus its channel's mean's deviation from
        # the image's mean, scaled.
        deviation_scale = tf.cast(factor * scale / pixels, tf.float32)
        channel_offset = tf.cast((channel_means - image_mean) * scale, tf.float32)
        return (tf.cast(pixels * ints - sums, tf.float32) * deviation_scale
                + channel_offset)


def distort_images(uint8images):
    """Training distortions, each image with its own random draws: a random
    24x24 crop, a left-right flip half of the time, brightness +-63, contrast
    0.2 to 1.8, then per-image standardization (mean 0, unit variance).

    Equals the original's tf.image.random_crop, random_flip_left_right,
    random_brightness(max_delta=63), random_contrast(0.2, 1.8) and
    per_image_standardization applied one image at a time, for a whole chunk
    of images in a few ops.

    Args:
      uint8images: [n, 32, 32, 3] uint8 Tensor.

    Returns:
      [n, IMAGE_SIZE, IMAGE_SIZE, 3] float32 Tensor.
    """
    n = tf.shape(uint8images)[0]
    return _distort_images(
        uint8images,
        crop_offsets=tf.random_uniform([n, 2], maxval=ORIGINAL_HEIGHT - IMAGE_SIZE + 1,
                                       dtype=tf.int32),
        flip=tf.random_uniform([n]) < 0.5,
        brightness_delta=tf.random_uniform([n], -63.0, 63.0),
        contrast_factor=tf.random_uniform([n], 0.2, 1.8))


def crop_and_standardize(uint8images):
    """Evaluation preprocessing: the central 24x24 crop, standardized per image.

    Args:
      uint8images: [n, 32, 32, 3] uint8 Tensor.

    Returns:
      [n, IMAGE_SIZE, IMAGE_SIZE, 3] float32 Tensor.
    """
    with tf.xla.experimental.jit_scope():  # Fused, as in _distort_images.
        images = tf.image.resize_image_with_crop_or_pad(
            tf.cast(uint8images, tf.float32), IMAGE_SIZE, IMAGE_SIZE)
        return tf.image.per_image_standardization(images)


def _min_queue_examples(num_examples_per_epoch, num_records):
    """Examples kept in the queue, for good shuffling: 0.4 of an epoch, or of
    the records there are when the data set is smaller than an epoch.

    Args:
      num_examples_per_epoch: the examples-per-epoch constant.
      num_records: the records in the files.

    Returns:
      An int.
    """
    return int(min(num_examples_per_epoch, num_records) *
               MIN_FRACTION_OF_EXAMPLES_IN_QUEUE)


def _generate_image_and_label_batch(images, labels, min_queue_examples,
                                    batch_size, shuffle):
    """Constructs a queued batch of images and labels.

    Args:
      images: 4-D Tensor of [n, height, width, 3] (its height and width
        known when the graph is built): a chunk of examples, enqueued one by
        one.
      labels: 1-D Tensor of [n] of type int32.
      min_queue_examples: int32, minimum number of samples to retain
        in the queue that provides the batches of examples.
      batch_size: Number of images per batch.
      shuffle: boolean indicating whether to use a shuffling queue. A
        non-shuffling queue also lets its last batch be smaller, so that an
        evaluation can read each record exactly once.

    Returns:
      images: Images. 4D tensor of [batch_size, height, width, 3] size, of
        the images' type.
      labels: Labels. 1D tensor of [batch_size] size.
    """
    capacity = min_queue_examples + 3 * batch_size
    if shuffle:
        return tf.train.shuffle_batch(
            [images, labels], batch_size=batch_size,
            num_threads=NUM_PREPROCESS_THREADS, capacity=capacity,
            min_after_dequeue=min_queue_examples, enqueue_many=True)
    return tf.train.batch(
        [images, labels], batch_size=batch_size,
        num_threads=NUM_PREPROCESS_THREADS, capacity=capacity,
        enqueue_many=True, allow_smaller_final_batch=True)


def _prefetched(images, labels):
    """Makes whole batches ahead, in a queue runner's thread.

    Args:
      images: a batch of images, of a static shape.
      labels: its labels.

    Returns:
      images, labels: the same batches, taken from a FIFOQueue of
      NUM_PREFETCH_BATCHES batches.
    """
    prefetch_queue = tf.FIFOQueue(NUM_PREFETCH_BATCHES, [images.dtype, labels.dtype],
                                  shapes=[images.shape, labels.shape], name='prefetch_queue')
    tf.train.add_queue_runner(tf.train.QueueRunner(
        prefetch_queue, [prefetch_queue.enqueue([images, labels])]))
    return prefetch_queue.dequeue()


def _training_files(data_dir, batch_size):
    """Checks the training files and says how many examples the shuffling
    keeps, as the original did before it started to train.

    Args:
      data_dir: Path to the CIFAR-10 data directory (cifar-10-batches-bin).
      batch_size: Number of images per batch.

    Returns:
      filenames: the training files.
      min_queue_examples: examples kept for shuffling.

    Raises:
      UserError: if a training file is missing, empty or truncated, or
        batch_size is larger than the training set.
    """
    filenames = data_filenames(False, data_dir)
    num_records = check_data_files(filenames)
    if batch_size > num_records:
        raise UserError('--batch_size=%d is larger than the %d training images in %s: a batch '
                        'would hold images twice, and its queue would outgrow the memory; '
                        'use --batch_size=%d or less' % (batch_size, num_records, data_dir,
                                                         num_records))
    # Ensure that the random shuffling has good mixing properties.
    min_queue_examples = _min_queue_examples(NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN,
                                             num_records)
    print('Filling queue with %d CIFAR images before starting to train. '
          'This will take a few minutes.' % min_queue_examples, flush=True)
    return filenames, min_queue_examples


def distorted_inputs(data_dir, batch_size):
    """Constructs distorted input for CIFAR training using the Reader ops.

    Args:
      data_dir: Path to the CIFAR-10 data directory (cifar-10-batches-bin).
      batch_size: Number of images per batch.

    Returns:
      images: Images. 4D tensor of [batch_size, IMAGE_SIZE, IMAGE_SIZE, 3] size.
      labels: Labels. 1D tensor of [batch_size] size.

    Raises:
      UserError: if a training file is missing, empty or truncated, or
        batch_size is larger than the training set.
    """
    filenames, min_queue_examples = _training_files(data_dir, batch_size)

    # Create a queue that produces the filenames to read.
    filename_queue = tf.train.string_input_producer(filenames)

    with tf.name_scope('data_augmentation') as augmentation_scope:
        # Read examples from files in the filename queue, a chunk at a time.
        labels, uint8images = read_cifar10_records(filename_queue, RECORDS_PER_READ)

    # Shuffle the examples by building up a queue of them: the images as
    # read, which take less than half the bytes of distorted ones.
    uint8_batch, label_batch = _generate_image_and_label_batch(
        uint8images, labels, min_queue_examples, batch_size, shuffle=True)

    # Apply the random distortions to each image of a batch, a batch ahead
    # of the training step that takes it.
    with tf.name_scope(augmentation_scope):
        images, labels = _prefetched(distort_images(uint8_batch), label_batch)

    # Display the training images in the visualizer.
    tf.summary.image('images', images)
    return images, labels


def distorted_inputs_dataset(data_dir, batch_size):
    """The same distorted training input as distorted_inputs, with tf.data.

    The same reading, distortions, shuffling (a buffer the size of the
    shuffling queue's capacity) and batching, for comparing the two designs
    on equal terms; see --input_pipeline. No queue runners are needed.

    Args:
      data_dir: Path to the CIFAR-10 data directory (cifar-10-batches-bin).
      batch_size: Number of images per batch.

    Returns:
      images: Images. 4D tensor of [batch_size, IMAGE_SIZE, IMAGE_SIZE, 3] size.
      labels: Labels. 1D tensor of [batch_size] size.

    Raises:
      UserError: if a training file is missing, empty or truncated, or
        batch_size is larger than the training set.
    """
    filenames, min_queue_examples = _training_files(data_dir, batch_size)

    with tf.name_scope('data_augmentation'):
        records = (tf.data.Dataset.from_tensor_slices(filenames)
                   .shuffle(len(filenames)).repeat()
                   .flat_map(lambda name: tf.data.FixedLengthRecordDataset(
                       name, RECORD_BYTES)))
        dataset = (records.shuffle(min_queue_examples + 3 * batch_size)
                   .batch(batch_size, drop_remainder=True)
                   .map(lambda values: decode_records(values)[::-1],
                        num_parallel_calls=NUM_DATASET_MAP_CALLS)
                   .map(lambda images, labels: (distort_images(images), labels),
                        num_parallel_calls=NUM_DATASET_MAP_CALLS)
                   .prefetch(NUM_DATASET_PREFETCH_BATCHES))
        images, labels = tf.data.make_one_shot_iterator(dataset).get_next()
        images.set_shape([batch_size, IMAGE_SIZE, IMAGE_SIZE, 3])
        labels.set_shape([batch_size])

    # Display the training images in the visualizer.
    tf.summary.image('images', images)
    return images, labels


def inputs(eval_data, data_dir, batch_size):
    """Constructs input for CIFAR evaluation using the Reader ops.

    The files are read exactly once (one epoch), so every record is scored
    once; the last batch may be smaller than batch_size, and reading past
    the epoch raises tf.errors.OutOfRangeError. The epoch counter is a local
    variable: run tf.local_variables_initializer() before the queue runners.

    Args:
      eval_data: bool, indicating if one should use the train or eval data set.
      data_dir: Path to the CIFAR-10 data directory (cifar-10-batches-bin).
      batch_size: Number of images per batch.

    Returns:
      images: Images. 4D tensor of [batch_size, IMAGE_SIZE, IMAGE_SIZE, 3] size.
      labels: Labels. 1D tensor of [batch_size] size.

    Raises:
      UserError: if a file is missing, empty or truncated.
    """
    filenames = data_filenames(eval_data, data_dir)
    num_records = check_data_files(filenames)
    if eval_data:
        num_examples_per_epoch = NUM_EXAMPLES_PER_EPOCH_FOR_EVAL
    else:
        num_examples_per_epoch = NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN

    with tf.name_scope('input'):
        # Create a queue that produces the filenames to read, for one epoch.
        filename_queue = tf.train.string_input_producer(filenames, num_epochs=1)

        # Read examples from files in the filename queue, a chunk at a time:
        # crop the central [IMAGE_SIZE, IMAGE_SIZE] of each image and
        # standardize it.
        labels, uint8images = read_cifar10_records(filename_queue, RECORDS_PER_READ)
        float_images = crop_and_standardize(uint8images)

        # The batching queue's capacity, sized as the training queue's.
        min_queue_examples = _min_queue_examples(num_examples_per_epoch, num_records)

    # Generate a batch of images and labels by building up a queue of examples.
    images, labels = _generate_image_and_label_batch(float_images, labels,
                                                     min_queue_examples, batch_size,
                                                     shuffle=False)

    # Display the evaluation images in the visualizer.
    tf.summary.image('images', images)
    return images, labels
