"""Exports a trained CIFAR-10 model as a SavedModel, for serving.

Usage:

  python cifar10_export.py --checkpoint_dir=/tmp/cifar10_train --export_dir=/tmp/cifar10_model

It writes <export_dir>/<version>/, a SavedModel (tag 'serve') of the moving
averages of the weights of the newest whole checkpoint in --checkpoint_dir
(or of --checkpoint_path), with the evaluator's preprocessing inside and no
queues, which TensorFlow and TensorFlow Serving load without this project.
Two signatures:

  serving_default  images: uint8 [N, 32, 32, 3] RGB
                   -> probabilities: float32 [N, 10], classes: int64 [N]
  predict_images   image_bytes: string [N], each a PNG, JPEG, GIF, BMP or
                   WebP file's bytes, any size and colour, decoded and
                   resized as cifar10_predict.py does
                   -> probabilities, classes, and class_names: string [N]

class_names are those of batches.meta.txt in --data_dir's
cifar-10-batches-bin/ at export time, else the ten CIFAR-10 names. A batch
that holds something that is not an image fails as a whole, with an error
that names the failure. The version is one more than the highest in
--export_dir, or --export_version; it is written to a hidden staging folder
and renamed once complete, and an existing version is never overwritten.
"""

import os
import shutil
import tempfile

import cifar10
import cifar10_predict
from cifar10_support.runtime import UserError, tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_string('export_dir', '/tmp/cifar10_model',
                           """Directory of the exported model's numbered versions.""")
tf.app.flags.DEFINE_integer('export_version', None, """The version to write (default: one
                            more than the highest in --export_dir).""", lower_bound=1)
FLAGS_USED = ['data_dir', 'use_fp16', 'gpu_memory_fraction', 'checkpoint_dir',
              'checkpoint_path', 'export_dir', 'export_version']

# The signatures: their names, inputs and outputs. predict_images is the name
# TensorFlow Serving's own image example (inception_saved_model.py) gave its
# signature of encoded images; an input named *_bytes is base64-decoded by
# the REST APIs of Google's hosted serving too.
SIGNATURE_KEY = 'serving_default'
IMAGE_BYTES_SIGNATURE_KEY = 'predict_images'
IMAGES_KEY = 'images'
IMAGE_BYTES_KEY = 'image_bytes'
PROBABILITIES_KEY = 'probabilities'
CLASSES_KEY = 'classes'
CLASS_NAMES_KEY = 'class_names'
# The first bytes of each image format the model decodes (WebP's at offset 8).
IMAGE_MAGIC = {'PNG': [(0, b'\x89PNG')], 'JPEG': [(0, b'\xff\xd8\xff')],
               'GIF': [(0, b'GIF8')], 'BMP': [(0, b'BM')],
               'WebP': [(0, b'RIFF'), (8, b'WEBP')]}
# Exports in progress are written under a folder whose name starts with this.
STAGING_PREFIX = '.exporting-'


def next_version(export_dir):
    """One more than the highest numbered version in export_dir (an existing
    folder), 1 if none."""
    versions = [int(name) for name in os.listdir(export_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def decode_images(image_bytes):
    """Decodes a batch of encoded images as cifar10_predict.decode_image does,
    each first checked against IMAGE_MAGIC so that an error names the bad one's
    place in the batch (decode_image's own error does not say which).

    Args:
      image_bytes: [n] string Tensor of encoded images.

    Returns:
      [n, 32, 32, 3] uint8 Tensor.
    """
    def decode(image_and_index):
        image, index = image_and_index
        head = tf.strings.join([tf.strings.substr(image, 0, 12), b'\0' * 12])  # Never too short.
        known = tf.reduce_any([tf.reduce_all([
            tf.equal(tf.strings.substr(head, offset, len(magic)), magic)
            for offset, magic in signature]) for signature in IMAGE_MAGIC.values()])
        check = tf.debugging.Assert(known, [
            'image', index, 'of the batch is not a %s or %s image' % (
                ', '.join(list(IMAGE_MAGIC)[:-1]), list(IMAGE_MAGIC)[-1])])
        with tf.control_dependencies([check]):
            return cifar10_predict.decode_image(tf.identity(image))

    size = cifar10.ORIGINAL_IMAGE_SIZE
    return tf.map_fn(decode, (image_bytes, tf.range(tf.size(image_bytes))),
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))


def write_saved_model(checkpoint_path, saved_model_dir, class_names):
    """Writes the checkpoint's averaged weights as a SavedModel with the two
    signatures the module docstring describes.

    Args:
      checkpoint_path, saved_model_dir: the checkpoint's path prefix; the new folder.
      class_names: the NUM_CLASSES class names, label 0's first.

    Raises:
      UserError: if the checkpoint cannot be restored.
    """
    size = cifar10.ORIGINAL_IMAGE_SIZE
    with tf.Graph().as_default():
        images = tf.placeholder(tf.uint8, [None, size, size, 3], name=IMAGES_KEY)
        image_bytes = tf.placeholder(tf.string, [None], name=IMAGE_BYTES_KEY)
        signatures = {}
        # The same model twice, sharing its variables.
        with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
            for key, inputs, uint8images in [
                    (SIGNATURE_KEY, {IMAGES_KEY: images}, images),
                    (IMAGE_BYTES_SIGNATURE_KEY, {IMAGE_BYTES_KEY: image_bytes},
                     decode_images(image_bytes))]:
                logits, probabilities = cifar10.predict(uint8images)
                classes = tf.argmax(logits, axis=1)
                outputs = {PROBABILITIES_KEY: probabilities, CLASSES_KEY: classes}
                if key == IMAGE_BYTES_SIGNATURE_KEY:
                    outputs[CLASS_NAMES_KEY] = tf.gather(tf.constant(class_names), classes)
                signatures[key] = tf.saved_model.predict_signature_def(inputs, outputs)
        saver = cifar10.averaged_weights_saver()
        with tf.Session(config=cifar10.session_config()) as sess:
            cifar10_predict.restore(sess, saver, checkpoint_path)
            builder = tf.saved_model.Builder(saved_model_dir)
            builder.add_meta_graph_and_variables(
                sess, [tf.saved_model.tag_constants.SERVING], signature_def_map=signatures,
                clear_devices=True, strip_default_attrs=True)
            builder.save()


def export(checkpoint_path, export_dir, version=None, class_names=None):
    """Exports a checkpoint as a new numbered version, atomically: written to
    a staging folder in export_dir, renamed once complete.

    Args:
      checkpoint_path: the checkpoint's path prefix.
      export_dir: the folder of versions; created if missing.
      version: the version to write; default next_version(export_dir).
      class_names: the class names; default cifar10.class_names().

    Returns:
      The path of the new version's folder.

    Raises:
      UserError: if export_dir cannot be used, the version exists, or the
        checkpoint cannot be restored.
    """
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise UserError('--export_dir=%s is a file, not a folder: give the folder '
                        'of the exported versions' % export_dir)
    try:
        os.makedirs(export_dir, exist_ok=True)
        if version is None:
            version = next_version(export_dir)
    except OSError as e:
        raise UserError('cannot use --export_dir=%s (%s): give a folder you can write'
                        % (export_dir, e.strerror or e)) from e
    version_dir = os.path.join(export_dir, str(version))
    if os.path.exists(version_dir):
        raise UserError('%s already exists and is never overwritten: choose another '
                        '--export_version, or leave it out for the next one' % version_dir)
    staging_dir = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=export_dir)
    try:
        saved_model_dir = os.path.join(staging_dir, str(version))
        write_saved_model(checkpoint_path, saved_model_dir,
                          class_names or cifar10.class_names())
        try:
            os.rename(saved_model_dir, version_dir)
        except OSError as e:  # Another export wrote this version meanwhile.
            raise UserError('cannot move the export to %s (%s): export again'
                            % (version_dir, e.strerror or e)) from e
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return version_dir


def main(argv):
    """Exports the checkpoint the flags choose to a new version in --export_dir."""
    class_names = cifar10.class_names()
    checkpoint_path = cifar10_predict.checkpoint_to_restore()
    version_dir = export(checkpoint_path, FLAGS.export_dir, FLAGS.export_version, class_names)
    print('Exported the averaged weights of %s to %s.' % (checkpoint_path, version_dir),
          flush=True)


def run():
    """Console-script entry point: parses the flags and exports."""
    cifar10.run(main, FLAGS_USED)


if __name__ == '__main__':
    run()
