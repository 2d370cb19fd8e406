"""Classifies your own images with a trained CIFAR-10 model. Usage (`cifar10-predict`
once installed), and what it prints:

  python cifar10_predict.py --checkpoint_dir=/tmp/cifar10_train cat.png test_batch.bin
  cat.png: cat 0.71, dog 0.18, frog 0.04
  test_batch.bin[0]: cat 0.71, dog 0.18, frog 0.04 (true: cat)

That is the top --top_k classes of each image file (PNG, JPEG, GIF, BMP, WebP; resized
to 32x32 RGB) and of each record of a CIFAR-10 binary file (.bin), as the evaluator
scores them with the averaged weights of the newest whole checkpoint in --checkpoint_dir
(or of --checkpoint_path). Class names come from batches.meta.txt under --data_dir, else
the ten CIFAR-10 names. A file that cannot be classified gets a line on stderr saying
why; the others are still classified, and the exit status is 1.
"""

import sys

import numpy as np

import cifar10
import cifar10_eval  # noqa: F401  (defines --checkpoint_dir)
import cifar10_input
from cifar10_support import checkpoints
from cifar10_support.runtime import UserError, error_reason, tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_integer('top_k', 3, """How many of the most likely classes to print.""",
                            lower_bound=1, upper_bound=cifar10.NUM_CLASSES)
tf.app.flags.DEFINE_string('checkpoint_path', '',
                           """A checkpoint to use, such as /tmp/cifar10_train/model.ckpt-1000,
                           instead of the newest in --checkpoint_dir.""")
FLAGS_USED = cifar10.MODEL_FLAGS + ['checkpoint_dir', 'checkpoint_path', 'top_k']

# Files with this ending are read as CIFAR-10 binary files, any other as an image.
BINARY_FILE_EXTENSION = '.bin'
IMAGE_SHAPE = [cifar10.ORIGINAL_IMAGE_SIZE, cifar10.ORIGINAL_IMAGE_SIZE, 3]


def checkpoint_to_restore():
    """The path prefix of --checkpoint_path, else of the newest whole checkpoint in
    --checkpoint_dir (damaged newer ones said on stderr); UserError if there is none."""
    if FLAGS.checkpoint_path:
        if not tf.gfile.Exists(FLAGS.checkpoint_path + '.index'):
            raise UserError('no checkpoint %s (no %s.index): give --checkpoint_path a path prefix '
                            'such as /tmp/cifar10_train/model.ckpt-1000'
                            % (FLAGS.checkpoint_path, FLAGS.checkpoint_path))
        return FLAGS.checkpoint_path
    paths = checkpoints.list_checkpoints(FLAGS.checkpoint_dir)[0]
    if not paths:
        raise UserError('No checkpoint file found in %s' % FLAGS.checkpoint_dir)
    checkpoint_path = checkpoints.newest_whole_checkpoint(
        FLAGS.checkpoint_dir, lambda line: print(line, file=sys.stderr, flush=True))
    if checkpoint_path is None:
        raise UserError('no checkpoint in %s restores: all %d are damaged'
                        % (FLAGS.checkpoint_dir, len(paths)))
    return checkpoint_path


def restore(sess, saver, checkpoint_path):
    """Restores the averaged weights of checkpoint_path into sess with saver (from
    cifar10.averaged_weights_saver()); UserError if it is damaged or of another model."""
    damage = checkpoints.restore_checkpoint(
        sess, saver, cifar10.averaged_variables(), checkpoint_path,
        'cannot restore the averaged weights from %s, it does not fit this model (%s): '
        'give a checkpoint the trainer wrote, with --use_fp16 as in training')
    if damage is not None:
        raise UserError('%s is damaged (%s): give an older checkpoint with '
                        '--checkpoint_path' % (checkpoint_path, damage))


def decode_image(encoded):
    """Decodes encoded, a scalar string Tensor of a PNG, JPEG, GIF, BMP or WebP file, to
    a [32, 32, 3] uint8 RGB Tensor: greyscale to RGB, alpha dropped, a GIF animation's first
    frame (an animated WebP is refused), another size resized (bilinear, antialiased),
    stretched to a square if it is not one. The exported model decodes with it."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    size = [cifar10.ORIGINAL_IMAGE_SIZE] * 2

    def resize():
        resized = tf.compat.v2.image.resize(image, size, antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    has_size = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
    return tf.cond(has_size, lambda: image, resize)


def read_images(paths):
    """Reads the files at paths as 32x32 RGB images, those ending in .bin as CIFAR-10
    binary files, every record an image. Returns names (paths, '<path>[<index>]' for a
    record), images ([n, 32, 32, 3] uint8), labels (the true classes, None for an image
    file) and failures ((path, why) for each file that could not be read)."""
    with tf.Graph().as_default(), tf.Session(config=cifar10.session_config()) as sess:
        encoded = tf.placeholder(tf.string, [])
        decoded_image = decode_image(encoded)
        record_labels, record_images = cifar10_input.decode_records(encoded)
        names, images, labels, failures = [], [], [], []
        for path in paths:
            try:
                with open(path, 'rb') as f:
                    contents = f.read()
            except OSError as e:
                failures.append((path, e.strerror or str(e)))
                continue
            if path.lower().endswith(BINARY_FILE_EXTENSION):
                if not contents or len(contents) % cifar10_input.RECORD_BYTES:
                    failures.append((path, 'not a CIFAR-10 binary file: %d bytes is not a '
                                     'positive multiple of the %d-byte record'
                                     % (len(contents), cifar10_input.RECORD_BYTES)))
                    continue
                file_labels, file_images = sess.run([record_labels, record_images],
                                                    {encoded: contents})
                names += ['%s[%d]' % (path, i) for i in range(len(file_labels))]
                images += list(file_images)
                labels += [int(label) for label in file_labels]
            elif not contents:
                failures.append((path, 'empty file'))
            else:
                try:
                    images.append(sess.run(decoded_image, {encoded: contents}))
                    names.append(path)
                    labels.append(None)
                except tf.errors.OpError as e:
                    failures.append((path, 'cannot decode it as an image (%s)'
                                     % error_reason(e)))
    return names, np.array(images, np.uint8).reshape([-1] + IMAGE_SHAPE), labels, failures


def predict_probabilities(images, checkpoint_path):
    """The [n, NUM_CLASSES] float32 class probabilities of images, an [n, 32, 32, 3] uint8
    array, as the evaluator would give them with checkpoint_path's averaged weights,
    --batch_size at a time; UserError if the checkpoint cannot be restored."""
    with tf.Graph().as_default():
        image_batch = tf.placeholder(tf.uint8, [None] + IMAGE_SHAPE)
        _, probabilities = cifar10.predict(image_batch)
        saver = cifar10.averaged_weights_saver()
        with tf.Session(config=cifar10.session_config()) as sess:
            restore(sess, saver, checkpoint_path)
            batches = [sess.run(probabilities, {image_batch: images[i:i + FLAGS.batch_size]})
                       for i in range(0, len(images), FLAGS.batch_size)]
    return np.concatenate(batches or [np.zeros([0, cifar10.NUM_CLASSES], np.float32)])


def describe(probabilities, class_names, top_k):
    """One image's top_k classes, most likely first, as in 'cat 0.71, dog 0.18, frog 0.04'."""
    top = np.argsort(-probabilities, kind='stable')[:top_k]
    return ', '.join('%s %.2f' % (class_names[i], probabilities[i]) for i in top)


def main(argv):
    """Classifies the files argv[1:] names; returns 1 if any could not be read."""
    paths = argv[1:]
    if not paths:
        raise UserError('name the image files or CIFAR-10 .bin files to classify, as in: '
                        'cifar10-predict --checkpoint_dir=%s cat.png' % FLAGS.checkpoint_dir)
    checkpoint_path = checkpoint_to_restore()
    class_names = cifar10.class_names()
    names, images, labels, failures = read_images(paths)
    for path, why in failures:
        print('%s: error: %s' % (path, why), file=sys.stderr, flush=True)
    probabilities = predict_probabilities(images, checkpoint_path)
    for name, image_probabilities, label in zip(names, probabilities, labels, strict=True):
        line = '%s: %s' % (name, describe(image_probabilities, class_names, FLAGS.top_k))
        if label is not None:
            line += ' (true: %s)' % (class_names[label] if label < len(class_names) else label)
        print(line)
    sys.stdout.flush()
    return 1 if failures else 0


def run():
    """Console-script entry point: parses the flags and classifies."""
    cifar10.run(main, FLAGS_USED, takes_arguments=True)


if __name__ == '__main__':
    run()
