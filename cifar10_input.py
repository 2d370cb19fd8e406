# Copyright 2015 The TensorFlow Authors. All Rights Reserved.
# Licensed under the Apache License, Version 2.0 (see LICENSE); changed since.

"""Routine for decoding the CIFAR-10 binary file format.

Each record is a label byte (0-9), then the 1024 red, green and blue bytes
of a 32x32 image. Every data file is checked before any queue is built, so
bad data is one clear error, not a hang at "Filling queue". A library; run
cifar10_train.py or cifar10_eval.py to use it.
"""

import os
import types

import numpy as np

from cifar10_support.runtime import UserError, tf

# Process images of this size, cropped from the 32 x 32 originals. Altering it changes
# the entire model architecture, and any model would need to be retrained.
IMAGE_SIZE = 24

# Global constants describing the CIFAR-10 data set.
NUM_CLASSES = 10
NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN = 50000
NUM_EXAMPLES_PER_EPOCH_FOR_EVAL = 10000

# The record: a label byte, then a 32x32x3 image stored depth-major.
LABEL_BYTES = 1
ORIGINAL_HEIGHT = ORIGINAL_WIDTH = 32
ORIGINAL_DEPTH = 3
RECORD_BYTES = LABEL_BYTES + ORIGINAL_HEIGHT * ORIGINAL_WIDTH * ORIGINAL_DEPTH
TRAIN_FILES = ['data_batch_%d.bin' % i for i in range(1, 6)]
TEST_FILES = ['test_batch.bin']
# The class names, one a line, beside the data files; these if it is absent.
CLASS_NAMES_FILE = 'batches.meta.txt'
CLASS_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
               'ship', 'truck']

# The queues keep this fraction of an epoch, for good shuffling.
MIN_FRACTION_OF_EXAMPLES_IN_QUEUE = 0.4
NUM_PREPROCESS_THREADS = 16
# Records read at a time (one at a time, the cost per op outweighs the work).
RECORDS_PER_READ = 128
# The tf.data pipeline's parallel map calls, and batches prefetched.
NUM_DATASET_MAP_CALLS = NUM_DATASET_PREFETCH_BATCHES = 2


def read_cifar10(filename_queue, num_records=1):
    """Reads and parses up to num_records examples from CIFAR-10 data files.

    Args:
      filename_queue: A queue of strings with the filenames to read from.
      num_records: the most records to read at once.
    Returns:
      An object with fields height, width, depth (32, 32, 3); key, a string Tensor naming
      file & record; label, [n] int32 in 0..9; uint8image, [n, height, width, depth] uint8.
    """
    reader = tf.FixedLengthRecordReader(record_bytes=RECORD_BYTES)
    key, value = reader.read_up_to(filename_queue, num_records)
    labels, images = decode_records(value)
    return types.SimpleNamespace(height=ORIGINAL_HEIGHT, width=ORIGINAL_WIDTH, depth=ORIGINAL_DEPTH,
                                 key=key, label=labels, uint8image=images)


def decode_records(values):
    """Splits records into labels and images.

    Args:
      values: 1-D string Tensor of records, RECORD_BYTES long each.
    Returns:
      labels: 1-D int32 Tensor, in the range 0..9.
      images: [n, 32, 32, 3] uint8 Tensor (height, width, depth).
    """
    record_bytes = tf.reshape(tf.decode_raw(values, tf.uint8), [-1, RECORD_BYTES])
    labels = tf.cast(record_bytes[:, 0], tf.int32)
    # [depth, height, width] images, transposed to [height, width, depth] by XLA:
    # TensorFlow's own transpose of uint8 images is slow.
    depth_major = tf.reshape(record_bytes[:, LABEL_BYTES:],
                             [-1, ORIGINAL_DEPTH, ORIGINAL_HEIGHT, ORIGINAL_WIDTH])
    with tf.xla.experimental.jit_scope():
        return labels, tf.transpose(depth_major, [0, 2, 3, 1])


def _generate_image_and_label_batch(images, labels, min_queue_examples, batch_size, shuffle):
    """Construct a queued batch of images and labels.

    Args:
      images: 4-D Tensor of [n, height, width, 3]: examples enqueued one by one.
      labels: 1-D Tensor of [n] type.int32
      min_queue_examples: int32, minimum number of samples to retain in the queue.
      batch_size: Number of images per batch.
      shuffle: whether to shuffle; if not, the last batch may be smaller.
    Returns:
      images: Images. 4D tensor of [batch_size, height, width, 3] size.
      labels: Labels. 1D tensor of [batch_size] size.
    """
    capacity = min_queue_examples + 3 * batch_size
    if shuffle:
        return tf.train.shuffle_batch(
            [images, labels], batch_size=batch_size, num_threads=NUM_PREPROCESS_THREADS,
            capacity=capacity, min_after_dequeue=min_queue_examples, enqueue_many=True)
    return tf.train.batch(
        [images, labels], batch_size=batch_size, num_threads=NUM_PREPROCESS_THREADS,
        capacity=capacity, enqueue_many=True, allow_smaller_final_batch=True)


def distort_images(uint8images):
    """The original's distortions of [n, 32, 32, 3] uint8 images, each with its own random
    draws: a random 24x24 crop, a left-right flip, random_brightness(max_delta=63),
    random_contrast(0.2, 1.8), then per_image_standardization; returns [n, 24, 24, 3]
    float32. Hand-fused because it is faster (docs/PERFORMANCE.md); tested against tf.image's ops.
    """
    n = tf.shape(uint8images)[0]
    return _distort_images(
        uint8images,
        tf.random_uniform([n, 2], maxval=ORIGINAL_HEIGHT - IMAGE_SIZE + 1, dtype=tf.int32),
        tf.random_uniform([n]) < 0.5, tf.random_uniform([n], -63.0, 63.0),
        tf.random_uniform([n], 0.2, 1.8))


def _distort_images(uint8images, offsets, flip, delta, factor):
    """distort_images with these draws: [n, 2] crop corners, and [n] flips,
    brightness deltas and contrast factors."""
    delta = tf.cast(delta[:, None, None, None], tf.float64)
    factor = tf.cast(factor[:, None, None, None], tf.float64)
    with tf.xla.experimental.jit_scope():
        # Randomly crop a [IMAGE_SIZE, IMAGE_SIZE] section of each image, and
        # flip it left to right half of the time, by picking rows and columns.
        steps = tf.range(IMAGE_SIZE)
        rows = offsets[:, :1] + steps
        columns = offsets[:, 1:] + tf.where_v2(flip[:, None], IMAGE_SIZE - 1 - steps, steps)
        crops = tf.gather(tf.gather(uint8images, rows, axis=1, batch_dims=1), columns,
                          axis=2, batch_dims=1)

        # Each channel's mean and variance, from exact integer sums: float32
        # rounding would swamp a nearly one-colour image.
        pixels = IMAGE_SIZE * IMAGE_SIZE
        ints = tf.cast(crops, tf.int32)
        sums = tf.reduce_sum(ints, axis=[1, 2], keepdims=True)
        squares = tf.cast(tf.reduce_sum(ints * ints, axis=[1, 2], keepdims=True), tf.float64)
        means = tf.cast(sums, tf.float64) / pixels
        variances = (pixels * squares - tf.square(tf.cast(sums, tf.float64))) / pixels ** 2
        # Brightness shifts the values by delta, contrast scales deviations from
        # the channel's mean by factor, standardization subtracts the image's
        # mean and divides by its standard deviation (at least 1 / sqrt(values)):
        # together, one map a + b * value per image and channel.
        means += delta
        image_mean = tf.reduce_mean(means, axis=3, keepdims=True)
        image_variance = tf.reduce_mean(
            tf.square(factor) * variances + tf.square(means - image_mean), axis=3, keepdims=True)
        scale = 1 / tf.maximum(tf.sqrt(image_variance), 1 / np.sqrt(pixels * 3.0))
        deviation_scale = tf.cast(factor * scale / pixels, tf.float32)
        channel_offset = tf.cast((means - image_mean) * scale, tf.float32)
        return tf.cast(pixels * ints - sums, tf.float32) * deviation_scale + channel_offset


def crop_and_standardize(uint8images):
    """Evaluation preprocessing of [n, 32, 32, 3] uint8 images: the central
    24x24 crop, standardized per image; returns [n, 24, 24, 3] float32."""
    with tf.xla.experimental.jit_scope():  # Fused, as in distort_images.
        images = tf.image.resize_image_with_crop_or_pad(
            tf.cast(uint8images, tf.float32), IMAGE_SIZE, IMAGE_SIZE)
        return tf.image.per_image_standardization(images)


def distorted_inputs(data_dir, batch_size):
    """Construct distorted input for CIFAR training using the Reader ops.

    Args:
      data_dir: Path to the CIFAR-10 data directory.
      batch_size: Number of images per batch.
    Returns:
      images: Images. 4D tensor of [batch_size, IMAGE_SIZE, IMAGE_SIZE, 3] size.
      labels: Labels. 1D tensor of [batch_size] size.
    Raises:
      UserError: if the training data is bad, or smaller than batch_size.
    """
    filenames, min_queue_examples = _training_files(data_dir, batch_size)
    filename_queue = tf.train.string_input_producer(filenames)
    with tf.name_scope('data_augmentation') as augmentation_scope:
        read_input = read_cifar10(filename_queue, RECORDS_PER_READ)

    # Generate a batch of images and labels by building up a queue of examples,
    # uint8 (smaller than distorted ones); a whole batch is distorted at once.
    uint8_batch, labels = _generate_image_and_label_batch(
        read_input.uint8image, read_input.label, min_queue_examples, batch_size,
        shuffle=True)
    with tf.name_scope(augmentation_scope):
        images = distort_images(uint8_batch)
    tf.summary.image('images', images)
    return images, labels


def distorted_inputs_dataset(data_dir, batch_size):
    """distorted_inputs written with tf.data, without queue runners: the same
    Args, Returns and Raises."""
    filenames, min_queue_examples = _training_files(data_dir, batch_size)
    with tf.name_scope('data_augmentation'):
        records = (tf.data.Dataset.from_tensor_slices(filenames).shuffle(len(filenames))
                   .repeat().flat_map(lambda name: tf.data.FixedLengthRecordDataset(
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
    tf.summary.image('images', images)
    return images, labels


def inputs(eval_data, data_dir, batch_size):
    """Construct input for CIFAR evaluation using the Reader ops: each record
    once, then tf.errors.OutOfRangeError (the epoch count is a local variable).

    Args:
      eval_data: bool, indicating if one should use the train or eval data set.
      data_dir: Path to the CIFAR-10 data directory.
      batch_size: Number of images per batch.
    Returns:
      images: Images. 4D tensor of [batch_size, IMAGE_SIZE, IMAGE_SIZE, 3] size.
      labels: Labels. 1D tensor of [batch_size] size.
    Raises:
      UserError: if a data file is missing or not CIFAR-10.
    """
    filenames = data_filenames(eval_data, data_dir)
    num_records = check_data_files(filenames)
    num_examples_per_epoch = (NUM_EXAMPLES_PER_EPOCH_FOR_EVAL if eval_data
                              else NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN)

    with tf.name_scope('input'):
        filename_queue = tf.train.string_input_producer(filenames, num_epochs=1)
        read_input = read_cifar10(filename_queue, RECORDS_PER_READ)
        float_image = crop_and_standardize(read_input.uint8image)
        min_queue_examples = int(min(num_examples_per_epoch, num_records) *
                                 MIN_FRACTION_OF_EXAMPLES_IN_QUEUE)

    images, labels = _generate_image_and_label_batch(float_image, read_input.label,
                                                     min_queue_examples, batch_size, shuffle=False)
    tf.summary.image('images', images)
    return images, labels


def data_filenames(eval_data, data_dir):
    """The files of the test set (eval_data) or of the training set in data_dir."""
    return [os.path.join(data_dir, name) for name in (TEST_FILES if eval_data else TRAIN_FILES)]


def _training_files(data_dir, batch_size):
    """Checks the training files, and says how many examples the shuffling
    keeps; returns the files and that number, min_queue_examples."""
    filenames = data_filenames(False, data_dir)
    num_records = check_data_files(filenames)
    if batch_size > num_records:
        raise UserError('--batch_size=%d is larger than the %d training images in %s: a batch '
                        'would hold images twice, and its queue would outgrow the memory; '
                        'use --batch_size=%d or less'
                        % (batch_size, num_records, data_dir, num_records))
    min_queue_examples = int(min(NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN, num_records) *
                             MIN_FRACTION_OF_EXAMPLES_IN_QUEUE)
    print('Filling queue with %d CIFAR images before starting to train. '
          'This will take a few minutes.' % min_queue_examples, flush=True)
    return filenames, min_queue_examples


def check_data_files(filenames):
    """Checks that each file holds whole CIFAR-10 records, each label a class,
    not all zero bytes: the right size is not enough.

    Args:
      filenames: paths of CIFAR-10 binary files.
    Returns:
      The total number of records in the files.
    Raises:
      UserError: naming the first bad file, what is wrong and what to do.
    """
    total_records = 0
    for filename in filenames:
        folder = os.path.dirname(filename)
        if not tf.gfile.Exists(filename) or tf.gfile.IsDirectory(filename):
            raise UserError('data file %s not found: --data_dir (now %s) must be the folder that '
                            'holds %s/; download the data, or see "Train offline" in the README'
                            % (filename, os.path.dirname(folder), os.path.basename(folder)))
        size = tf.gfile.Stat(filename).length
        if size == 0 or size % RECORD_BYTES:
            raise UserError('data file %s is %d bytes, not a positive multiple of the %d-byte '
                            'CIFAR-10 record: it is empty or truncated; delete %s and extract '
                            'or download the data again' % (filename, size, RECORD_BYTES, folder))
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
            raise UserError('data file %s does not hold CIFAR-10 records: record %d (of %d) has '
                            'label %d, not 0-%d, and %d records are like it; it is another data '
                            'set or a damaged copy: replace %s with the CIFAR-10 binary release'
                            % (filename, first, labels.size, labels[first], NUM_CLASSES - 1,
                               bad_records.size, folder))
        if not data.any():
            raise UserError('data file %s holds nothing but zero bytes, not CIFAR-10 images: '
                            'it is a copy that was never filled; replace %s with the CIFAR-10 '
                            'binary release' % (filename, folder))
        total_records += size // RECORD_BYTES
    return total_records


def read_class_names(data_dir):
    """The class names, label 0's first: the lines of CLASS_NAMES_FILE in data_dir,
    else CLASS_NAMES. Raises UserError if it does not hold NUM_CLASSES names."""
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
