"""The scripts after the canonical TF1 start, tf.disable_v2_behavior()."""

import subprocess
import sys

from helpers import (
    REPO,
    SCRIPT_TIMEOUT_SECS,
    checkpoint_steps,
    logged_steps,
    printed_precision,
    run_script,
    script_env,
)

# Runs a script as `python script.py --flags` would, after the lines TF1
# users start with.
TF1_START = '\n'.join([
    'import runpy, sys',
    'import tensorflow.compat.v1 as tf',
    'tf.disable_v2_behavior()',
    'sys.argv = sys.argv[1:]',
    'runpy.run_path(sys.argv[0], run_name="__main__")',
])


def run_script_after_tf1_start(script, *args):
    return subprocess.run([sys.executable, '-c', TF1_START, str(REPO / script), *map(str, args)],
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_SECS,
                          env=script_env(), check=False)


def test_trainer_trains_and_checkpoints_after_disable_v2_behavior(synthetic_data_dir, tmp_path):
    result = run_script_after_tf1_start(
        'cifar10_train.py', '--data_dir=%s' % synthetic_data_dir, '--train_dir=%s' % tmp_path,
        '--batch_size=16', '--max_steps=12', '--save_checkpoint_steps=6', '--log_frequency=4')
    assert result.returncode == 0, result.stderr
    assert [step for step, _ in logged_steps(result.stdout)] == [0, 4, 8]
    assert checkpoint_steps(tmp_path) == [6, 12]


def test_multi_gpu_trainer_trains_after_disable_v2_behavior(synthetic_data_dir, tmp_path):
    result = run_script_after_tf1_start(
        'cifar10_multi_gpu_train.py', '--data_dir=%s' % synthetic_data_dir,
        '--train_dir=%s' % tmp_path, '--device_type=cpu', '--num_gpus=2', '--batch_size=8',
        '--max_steps=6', '--log_frequency=3')
    assert result.returncode == 0, result.stderr
    assert [step for step, _ in logged_steps(result.stdout)] == [0, 3]
    assert checkpoint_steps(tmp_path) == [6]


def test_evaluator_scores_the_same_with_and_without_disable_v2_behavior(
        trained_run, synthetic_data_dir, tmp_path):
    flags = ['--data_dir=%s' % synthetic_data_dir, '--checkpoint_dir=%s' % trained_run[0],
             '--run_once']
    tf1 = run_script_after_tf1_start('cifar10_eval.py', *flags, '--eval_dir=%s/tf1' % tmp_path)
    tf2 = run_script('cifar10_eval.py', *flags, '--eval_dir=%s/tf2' % tmp_path)
    assert tf1.returncode == 0, tf1.stderr
    assert tf2.returncode == 0, tf2.stderr
    assert printed_precision(tf1.stdout) == printed_precision(tf2.stdout)
