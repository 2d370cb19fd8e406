"""Exports a trained CIFAR-10 model as a SavedModel, for serving.

Usage:

  python cifar10_export.py --checkpoint_dir=/tmp/cifar10_train --export_dir=/tmp/cifar10_model

(`cifar10-export` once installed.) It writes <export_dir>/<version>/, a
SavedModel of the moving averages of the weights of the newest whole checkpoint in
--checkpoint_dir (or of --checkpoint_path), which today's TensorFlow loads
without any of this project's code:

  model = tf.saved_model.load('/tmp/cifar10_model/1')
  outputs = model.signatures['serving_default'](images=images)  # uint8 [N, 32, 32, 3] RGB
  outputs['probabilities']  # float32 [N, 10]
  outputs['classes']        # int64 [N]: the most probable class

The preprocessing is inside the model (cifar10.predict, the evaluator's own),
and there are no queues. The version is one more than the highest in
--export_dir (1 for the first), or --export_version; TensorFlow Serving
serves the highest. The export is written to a hidden staging folder in
--export_dir and renamed to its version only once complete, so an
interrupted export never leaves a folder that looks finished, and an
existing version is never overwritten.
"""

import os
import shutil
import tempfile

import cifar10
import cifar10_predict
from cifar10_input import tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_string('export_dir', '/tmp/cifar10_model',
                           """Directory of the exported model's numbered versions.""")
tf.app.flags.DEFINE_integer('export_version', None,
                            """The version to write (default: one more than the
                            highest in --export_dir).""",
                            lower_bound=1)
# The predictor's choice of checkpoint, listed in this script's --help too.
tf.app.flags.declare_key_flag('checkpoint_dir', flag_values=FLAGS)
tf.app.flags.declare_key_flag('checkpoint_path', flag_values=FLAGS)

# The serving signature: its name, input and outputs.
SIGNATURE_KEY = 'serving_default'
IMAGES_KEY = 'images'
PROBABILITIES_KEY = 'probabilities'
CLASSES_KEY = 'classes'
# Exports in progress are written under a folder whose name starts with this.
STAGING_PREFIX = '.exporting-'


def next_version(export_dir):
    """One more than the highest numbered version in export_dir, 1 if none.

    Args:
      export_dir: an existing folder.

    Returns:
      An int.
    """
    versions = [int(name) for name in os.listdir(export_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def write_saved_model(checkpoint_path, saved_model_dir):
    """Writes the model with the checkpoint's averaged weights as a SavedModel.

    Args:
      checkpoint_path: the checkpoint's path prefix.
      saved_model_dir: the folder to write; it must not exist.

    Raises:
      UserError: if the checkpoint cannot be restored.
    """
    with tf.Graph().as_default():
        images = tf.placeholder(
            tf.uint8, [None, cifar10.ORIGINAL_IMAGE_SIZE, cifar10.ORIGINAL_IMAGE_SIZE, 3],
            name=IMAGES_KEY)
        logits, probabilities = cifar10.predict(images)
        classes = tf.argmax(logits, axis=1, name=CLASSES_KEY)
        saver = cifar10.averaged_weights_saver()
        with tf.Session(config=cifar10.session_config()) as sess:
            cifar10_predict.restore(sess, saver, checkpoint_path)
            signature = tf.saved_model.predict_signature_def(
                inputs={IMAGES_KEY: images},
                outputs={PROBABILITIES_KEY: probabilities, CLASSES_KEY: classes})
            builder = tf.saved_model.Builder(saved_model_dir)
            builder.add_meta_graph_and_variables(
                sess, [tf.saved_model.tag_constants.SERVING],
                signature_def_map={SIGNATURE_KEY: signature},
                clear_devices=True, strip_default_attrs=True)
            builder.save()


def export(checkpoint_path, export_dir, version=None):
    """Exports a checkpoint as a new numbered version, atomically.

    The SavedModel is written to a staging folder (STAGING_PREFIX) in
    export_dir, renamed to its version once complete, and the staging
    folder removed, also when the export fails or is interrupted.

    Args:
      checkpoint_path: the checkpoint's path prefix.
      export_dir: the folder of versions; created if missing.
      version: the version to write; default next_version(export_dir).

    Returns:
      The path of the new version's folder.

    Raises:
      UserError: if export_dir cannot be used, the version exists, or the
        checkpoint cannot be restored.
    """
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise cifar10.UserError('--export_dir=%s is a file, not a folder: give the folder '
                                'of the exported versions' % export_dir)
    try:
        os.makedirs(export_dir, exist_ok=True)
        if version is None:
            version = next_version(export_dir)
    except OSError as e:
        raise cifar10.UserError('cannot use --export_dir=%s (%s): give a folder you can write'
                                % (export_dir, e.strerror or e)) from e
    version_dir = os.path.join(export_dir, str(version))
    if os.path.exists(version_dir):
        raise cifar10.UserError('%s already exists and is never overwritten: choose another '
                                '--export_version, or leave it out for the next one'
                                % version_dir)
    staging_dir = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=export_dir)
    try:
        saved_model_dir = os.path.join(staging_dir, str(version))
        write_saved_model(checkpoint_path, saved_model_dir)
        try:
            os.rename(saved_model_dir, version_dir)
        except OSError as e:  # Another export wrote this version meanwhile.
            raise cifar10.UserError('cannot move the export to %s (%s): export again'
                                    % (version_dir, e.strerror or e)) from e
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return version_dir


def main(argv):
    """Exports the checkpoint the flags choose to a new version in --export_dir."""
    checkpoint_path = cifar10_predict.checkpoint_to_restore()
    version_dir = export(checkpoint_path, FLAGS.export_dir, FLAGS.export_version)
    print('Exported the averaged weights of %s to %s.' % (checkpoint_path, version_dir),
          flush=True)


def run():
    """Console-script entry point: parses the flags and exports."""
    cifar10.run(main)


if __name__ == '__main__':
    run()
