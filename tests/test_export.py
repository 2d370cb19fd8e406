"""The exporter: a SavedModel that plain TensorFlow serves, with the
predictor's and the evaluator's numbers, written atomically."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import SAMPLE_DIR, TEST_FILE, copy_records, read_records, script_env, softmax
from PIL import Image

import cifar10
import cifar10_export
import cifar10_predict
from cifar10 import tf

# Loads the export with TensorFlow alone, as a server would, and saves its
# outputs: python -c LOAD_AND_RUN <version dir> <images.npy> <outputs.npz>.
LOAD_AND_RUN = '''
import sys

import numpy as np
import tensorflow as tf

serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']
outputs = serve(images=tf.constant(np.load(sys.argv[2])))
np.savez(sys.argv[3], **{key: value.numpy() for key, value in outputs.items()})
project_modules = [name for name in sys.modules if name.startswith('cifar10')]
assert not project_modules, project_modules
'''

# Serves encoded images with TensorFlow alone, as a TF Serving client sends
# them: python -c SERVE_IMAGE_BYTES <version dir> <batches.json> <images.npy>
# <outputs.npz> <errors.json>. batches.json maps a batch's name to its files;
# 'whole' is served by both signatures (serving_default on images.npy, its
# files decoded by the predictor), the others by predict_images only.
SERVE_IMAGE_BYTES = '''
import json
import sys

import numpy as np
import tensorflow as tf

version_dir, batches, images, outputs, errors = sys.argv[1:]
signatures = tf.saved_model.load(version_dir).signatures
files = json.load(open(batches))


def image_bytes(paths):
    return tf.constant([open(path, 'rb').read() for path in paths])


served = {'default_' + key: value.numpy() for key, value in signatures['serving_default'](
    images=tf.constant(np.load(images))).items()}
served.update({'bytes_' + key: value.numpy() for key, value in signatures['predict_images'](
    image_bytes=image_bytes(files.pop('whole'))).items()})
np.savez(outputs, **served)
messages = {}
for name, paths in files.items():
    try:
        signatures['predict_images'](image_bytes=image_bytes(paths))
        messages[name] = None
    except tf.errors.InvalidArgumentError as e:
        messages[name] = e.message
json.dump(messages, open(errors, 'w'))
project_modules = [name for name in sys.modules if name.startswith('cifar10')]
assert not project_modules, project_modules
'''

# How the real test records are saved as files for the image-bytes signature:
# (file name, format, size, PIL mode), one record each.
IMAGE_FILES = [('other_size.png', 'PNG', (48, 40), 'RGB'),
               ('small_grey_alpha.png', 'PNG', (20, 20), 'LA'),
               ('same_size.jpg', 'JPEG', (32, 32), 'RGB'),
               ('large.jpg', 'JPEG', (96, 96), 'RGB'),
               ('palette.gif', 'GIF', (32, 32), 'P'),
               ('other_size.bmp', 'BMP', (40, 40), 'RGB')]


def test_the_export_served_by_tensorflow_alone_gives_the_predictors_and_evaluators_numbers(
        trained_run, exported_model, in_order_data_dir, evaluator_outputs, tmp_path):
    images = read_records(in_order_data_dir / cifar10.DATA_SUBDIR / 'test_batch.bin')[1]
    np.save(tmp_path / 'images.npy', images)
    env = script_env()
    env.pop('PYTHONPATH', None)
    loaded = subprocess.run(
        [sys.executable, '-c', LOAD_AND_RUN, str(exported_model[0] / '1'),
         'images.npy', 'outputs.npz'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert loaded.returncode == 0, loaded.stderr
    served = np.load(tmp_path / 'outputs.npz')

    assert served['probabilities'].dtype == np.float32
    assert served['classes'].dtype == np.int64
    checkpoint = tf.train.latest_checkpoint(str(trained_run[0]))
    predicted = cifar10_predict.predict_probabilities(images, checkpoint)
    np.testing.assert_allclose(served['probabilities'], predicted, atol=1e-5)
    np.testing.assert_allclose(served['probabilities'], softmax(evaluator_outputs['logits']),
                               atol=1e-5)
    np.testing.assert_array_equal(served['classes'], evaluator_outputs['predictions'])


def test_saved_model_cli_shows_both_signatures(exported_model):
    saved_model_cli = Path(sys.executable).parent / 'saved_model_cli'
    result = subprocess.run([str(saved_model_cli), 'show', '--all',
                             '--dir', str(exported_model[0] / '1')],
                            env=script_env(), capture_output=True, text=True, timeout=240,
                            check=False)
    assert result.returncode == 0, result.stderr
    image_bytes, images = result.stdout.split("signature_def['serving_default']:", 1)
    image_bytes = image_bytes.split("signature_def['predict_images']:", 1)[1]
    outputs = ["outputs['probabilities']", 'DT_FLOAT', 'shape: (-1, 10)',
               "outputs['classes']", 'DT_INT64', 'shape: (-1)']
    for expected in ["inputs['images']", 'DT_UINT8', 'shape: (-1, 32, 32, 3)', *outputs]:
        assert expected in images
    for expected in ["inputs['image_bytes']", "outputs['class_names']", 'DT_STRING',
                     *outputs]:
        assert expected in image_bytes


def test_an_interrupted_export_leaves_no_finished_folder(trained_run, tmp_path, monkeypatch):
    real_save = tf.saved_model.Builder.save

    def save_then_interrupt(builder, *args, **kwargs):
        real_save(builder, *args, **kwargs)  # Every file written, none published.
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.saved_model.Builder, 'save', save_then_interrupt)
    export_dir = tmp_path / 'model'
    with pytest.raises(KeyboardInterrupt):
        cifar10_export.export(tf.train.latest_checkpoint(str(trained_run[0])), str(export_dir))
    assert list(export_dir.iterdir()) == []


def test_an_existing_version_is_never_overwritten(trained_run, exported_model, tmp_path):
    export_dir = tmp_path / 'model'
    shutil.copytree(exported_model[0], export_dir)
    saved_model = (export_dir / '1' / 'saved_model.pb').read_bytes()
    with pytest.raises(cifar10.UserError, match='already exists and is never overwritten'):
        cifar10_export.export(tf.train.latest_checkpoint(str(trained_run[0])),
                              str(export_dir), version=1)
    assert (export_dir / '1' / 'saved_model.pb').read_bytes() == saved_model
    assert sorted(path.name for path in export_dir.iterdir()) == ['1']


def test_each_export_is_the_next_numbered_version(tmp_path):
    assert cifar10_export.next_version(str(tmp_path)) == 1
    for name in ['1', '7', 'notes', '.exporting-x']:
        (tmp_path / name).mkdir()
    assert cifar10_export.next_version(str(tmp_path)) == 8


@pytest.fixture(scope='module')
def real_image_files(tmp_path_factory):
    """The first real test records of ../shared's sample, saved as IMAGE_FILES;
    skips without the sample."""
    if not (SAMPLE_DIR / cifar10.DATA_SUBDIR / TEST_FILE).is_file():
        pytest.skip('the real CIFAR-10 sample is not at %s' % SAMPLE_DIR)
    folder = tmp_path_factory.mktemp('real_images')
    copy_records(SAMPLE_DIR / cifar10.DATA_SUBDIR / TEST_FILE, folder / 'first.bin',
                 len(IMAGE_FILES))
    paths = []
    for image, (name, image_format, size, mode) in zip(
            read_records(folder / 'first.bin')[1], IMAGE_FILES, strict=True):
        Image.fromarray(image).resize(size).convert(mode).save(folder / name, image_format)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope='module')
def served_image_bytes(exported_model, real_image_files, tmp_path_factory):
    """SERVE_IMAGE_BYTES run on the real image files, and on batches that
    each hold one bad file between two good ones.

    Returns:
      (outputs, errors, the images the predictor decoded from the files).
    """
    folder = tmp_path_factory.mktemp('served')
    (folder / 'not_an_image.png').write_text('hello')
    (folder / 'empty.png').write_bytes(b'')
    truncated = real_image_files[0].read_bytes()
    (folder / 'truncated.png').write_bytes(truncated[:len(truncated) // 2])
    good = [str(path) for path in real_image_files[:2]]
    batches = {'whole': [str(path) for path in real_image_files],
               'not an image': [good[0], str(folder / 'not_an_image.png'), good[1]],
               'empty': [good[0], str(folder / 'empty.png'), good[1]],
               'truncated PNG': [good[0], str(folder / 'truncated.png'), good[1]]}
    (folder / 'batches.json').write_text(json.dumps(batches))
    names, images, _, failures = cifar10_predict.read_images(batches['whole'])
    assert names == batches['whole'] and failures == []
    np.save(folder / 'images.npy', images)
    env = script_env()
    env.pop('PYTHONPATH', None)
    served = subprocess.run(
        [sys.executable, '-c', SERVE_IMAGE_BYTES, str(exported_model[0] / '1'),
         'batches.json', 'images.npy', 'outputs.npz', 'errors.json'],
        cwd=folder, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert served.returncode == 0, served.stderr
    return (dict(np.load(folder / 'outputs.npz', allow_pickle=True)),
            json.loads((folder / 'errors.json').read_text()), images)


def test_both_signatures_agree_with_the_predictor_on_real_images_of_any_format_and_size(
        trained_run, served_image_bytes):
    outputs, _, images = served_image_bytes
    checkpoint = tf.train.latest_checkpoint(str(trained_run[0]))
    predicted = cifar10_predict.predict_probabilities(images, checkpoint)
    for signature in ('default', 'bytes'):
        np.testing.assert_allclose(outputs[signature + '_probabilities'], predicted,
                                   atol=1e-5)
        np.testing.assert_array_equal(outputs[signature + '_classes'],
                                      predicted.argmax(axis=1))


def test_the_image_bytes_signature_names_each_images_class(served_image_bytes):
    outputs, _, _ = served_image_bytes
    assert outputs['bytes_classes'].dtype == np.int64
    names = [name.decode() for name in outputs['bytes_class_names']]
    assert names == [cifar10.class_names()[label] for label in outputs['bytes_classes']]


@pytest.mark.parametrize('batch, message', [
    ('not an image', 'image] [1] [of the batch is not a PNG, JPEG, GIF, BMP or WebP image'),
    ('empty', 'image] [1] [of the batch is not a PNG, JPEG, GIF, BMP or WebP image'),
    ('truncated PNG', 'PNG')])
def test_a_batch_with_one_bad_image_fails_as_a_whole_naming_the_failure(
        served_image_bytes, batch, message):
    _, errors, _ = served_image_bytes
    assert errors[batch] is not None and message in errors[batch], errors[batch]


def test_saved_model_cli_run_on_a_pngs_bytes_answers_its_class_name(
        exported_model, real_image_files, served_image_bytes, tmp_path):
    np.save(tmp_path / 'png.npy', np.array([real_image_files[0].read_bytes()]))
    saved_model_cli = Path(sys.executable).parent / 'saved_model_cli'
    result = subprocess.run(
        [str(saved_model_cli), 'run', '--dir', str(exported_model[0] / '1'),
         '--tag_set', 'serve', '--signature_def', 'predict_images',
         '--inputs', 'image_bytes=%s' % (tmp_path / 'png.npy')],
        env=script_env(), capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr
    expected = served_image_bytes[0]['bytes_class_names'][0]
    assert 'Result for output key class_names:\n[%r]' % expected in result.stdout
