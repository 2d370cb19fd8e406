"""The exporter: a SavedModel that plain TensorFlow serves, with the
predictor's and the evaluator's numbers, written atomically."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import read_records, script_env, softmax

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


def test_saved_model_cli_shows_the_serving_signature(exported_model):
    saved_model_cli = Path(sys.executable).parent / 'saved_model_cli'
    result = subprocess.run([str(saved_model_cli), 'show', '--all',
                             '--dir', str(exported_model[0] / '1')],
                            env=script_env(), capture_output=True, text=True, timeout=240,
                            check=False)
    assert result.returncode == 0, result.stderr
    signature = result.stdout.split("signature_def['serving_default']:", 1)[1]
    for expected in ["inputs['images']", 'DT_UINT8', 'shape: (-1, 32, 32, 3)',
                     "outputs['probabilities']", 'DT_FLOAT', 'shape: (-1, 10)',
                     "outputs['classes']", 'DT_INT64', 'shape: (-1)']:
        assert expected in signature


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
