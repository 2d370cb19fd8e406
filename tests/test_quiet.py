"""TensorFlow's chatter is silenced unless the user asks for it."""

import subprocess
import sys

from helpers import REPO, script_env

import cifar10

BUILD_PIPELINE = ('import cifar10_input; '
                  'cifar10_input.distorted_inputs(%r, batch_size=4); '
                  'cifar10_input.inputs(True, %r, batch_size=4)')


def build_pipeline(data_dir, **env):
    batches = str(data_dir / cifar10.DATA_SUBDIR)
    return subprocess.run([sys.executable, '-c', BUILD_PIPELINE % (batches, batches)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**script_env(), **env}, check=True)


def test_queue_pipeline_builds_without_tensorflow_chatter(synthetic_data_dir):
    result = build_pipeline(synthetic_data_dir)
    assert result.stderr == ''
    assert result.stdout.startswith('Filling queue with 400 CIFAR images')


def test_tf_cpp_min_log_level_brings_tensorflow_chatter_back(synthetic_data_dir):
    result = build_pipeline(synthetic_data_dir, TF_CPP_MIN_LOG_LEVEL='0')
    assert 'is deprecated' in result.stderr
    assert 'I0000' in result.stderr  # TensorFlow's C++ start-up log lines.
