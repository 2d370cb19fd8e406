"""TensorFlow's chatter is silenced unless the user asks for it."""

import subprocess
import sys

import pytest
from helpers import REPO, script_env

import cifar10
from cifar10_support import runtime

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


@pytest.mark.parametrize('level', ['1', '2', '3'])
def test_a_users_tf_cpp_min_log_level_hides_the_info_lines_and_the_python_warnings(
        synthetic_data_dir, level):
    result = build_pipeline(synthetic_data_dir, TF_CPP_MIN_LOG_LEVEL=level)
    assert 'I0000' not in result.stderr
    assert 'before absl::InitializeLog()' not in result.stderr
    assert 'is deprecated' not in result.stderr
    assert result.stdout.startswith('Filling queue with 400 CIFAR images')


def test_import_log_lines_are_filtered_by_severity_with_their_continuations():
    printed = ('WARNING: All log messages before absl::InitializeLog() is called are written '
               'to STDERR\n'
               'I0000 00:00:1.1  1 port.cc:153] oneDNN custom operations are on.\n'
               'W0000 00:00:1.2  1 cpu.cc:1] a warning\n'
               'that goes on\n'
               'E0000 00:00:1.3  1 util.cc:131] an error\n')
    keep = runtime.log_lines_at_or_above
    assert keep(printed, 1) == ('W0000 00:00:1.2  1 cpu.cc:1] a warning\nthat goes on\n'
                                'E0000 00:00:1.3  1 util.cc:131] an error\n')
    assert keep(printed, 2) == 'E0000 00:00:1.3  1 util.cc:131] an error\n'
    assert keep(printed, 3) == ''
