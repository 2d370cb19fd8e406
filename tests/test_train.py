"""The single-device trainer, run as a user runs it."""

import re
import shutil
import signal

import numpy as np
import pytest
from absl.testing import flagsaver
from helpers import (
    assert_meta_graphs_restore,
    checkpoint_steps,
    logged_steps,
    run_script,
    save_foreign_checkpoint,
    train_flags,
)

import cifar10
import cifar10_train
from cifar10 import tf
from cifar10_support import checkpoints

LOG_LINE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: step \d+, loss = \d+\.\d\d '
                      r'\(\d+\.\d examples/sec; \d+\.\d{3} sec/batch\)$')



def test_trainer_logs_every_log_frequency_steps_in_the_original_format(trained_run):
    _, result = trained_run
    lines = result.stdout.splitlines()
    assert lines[0] == ('Filling queue with 400 CIFAR images before starting to train. '
                        'This will take a few minutes.')
    log_lines = [line for line in lines if ': step ' in line]
    assert all(LOG_LINE.match(line) for line in log_lines), log_lines
    assert [step for step, _ in logged_steps(result.stdout)] == list(range(0, 150, 10))


def test_trainer_output_is_free_of_tensorflow_chatter(trained_run):
    _, result = trained_run
    assert result.stderr == ''


def test_checkpoints_every_save_checkpoint_steps_and_at_the_last_step(trained_run):
    train_dir, _ = trained_run
    assert checkpoint_steps(train_dir) == [50, 100, 150]
    assert tf.train.latest_checkpoint(str(train_dir)).endswith('model.ckpt-150')


def test_each_kept_checkpoint_has_a_meta_graph_that_tensorflow_alone_restores(
        trained_run, tmp_path):
    train_dir, _ = trained_run
    assert_meta_graphs_restore(train_dir, tmp_path)


def test_restart_resumes_from_the_latest_checkpoint_and_keeps_the_old_ones(
        copy_train_dir, synthetic_data_dir):
    result = run_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, copy_train_dir, max_steps=165))
    assert result.returncode == 0, result.stderr
    assert '/model.ckpt-150 at step 150.' in result.stdout
    assert [step for step, _ in logged_steps(result.stdout)] == [150, 155, 160]
    assert checkpoint_steps(copy_train_dir) == [50, 100, 150, 165]


@pytest.mark.parametrize('kind, variable', [('other variables', 'conv1/weights'),
                                            ('other shapes', 'local3/weights'),
                                            ('fp16', 'conv1/weights')])
def test_a_checkpoint_of_another_model_is_refused_naming_what_does_not_fit(
        kind, variable, tmp_path):
    checkpoint = save_foreign_checkpoint(tmp_path, kind)
    with tf.Graph().as_default():
        cifar10.inference(tf.zeros([1, cifar10.IMAGE_SIZE, cifar10.IMAGE_SIZE, 3]))
        variables = {v.op.name: v for v in tf.global_variables()}
        with tf.Session() as sess, pytest.raises(cifar10.UserError) as error:
            checkpoints.restore_checkpoint(sess, tf.train.Saver(variables), variables, checkpoint,
                                       'cannot resume from %s (%s)')
    assert str(error.value).startswith('cannot resume from %s (' % checkpoint)
    assert variable in str(error.value)


def test_trainer_stops_with_one_line_at_a_checkpoint_of_another_model(
        synthetic_data_dir, tmp_path):
    save_foreign_checkpoint(tmp_path, 'other shapes')
    saved = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, tmp_path,
                                                         max_steps=10))
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1, result.stderr
    assert result.stderr.startswith(
        'cifar10_train.py: error: cannot resume from %s, it does not fit this model ('
        % (tmp_path / 'model.ckpt-5'))
    assert result.stderr.endswith('): use another --train_dir\n')
    assert 'local3/weights' in result.stderr
    assert 'Resuming' not in result.stdout
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == saved


def test_restart_at_max_steps_trains_nothing(copy_train_dir, synthetic_data_dir):
    result = run_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, copy_train_dir, max_steps=150))
    assert result.returncode == 0, result.stderr
    assert 'Step 150 already reaches --max_steps=150: nothing to train.' in result.stdout
    assert checkpoint_steps(copy_train_dir) == [50, 100, 150]


def test_ctrl_c_saves_a_checkpoint_at_the_current_step(start_script, synthetic_data_dir,
                                                      tmp_path):
    trainer = start_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, tmp_path, save_checkpoint_steps=100000))
    trainer.wait_for(r': step 20, ')
    trainer.proc.send_signal(signal.SIGINT)
    returncode, output = trainer.finish()
    assert returncode == 0, output
    stopped_at = int(re.search(r'Stopped by signal 2 at step (\d+);', output).group(1))
    assert stopped_at > 20
    assert checkpoint_steps(tmp_path) == [stopped_at]


def test_sigterm_saves_a_checkpoint_at_the_current_step_and_a_restart_goes_on_from_it(
        start_script, synthetic_data_dir, tmp_path):
    trainer = start_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, tmp_path, save_checkpoint_steps=100000))
    trainer.wait_for(r': step 20, ')
    trainer.proc.send_signal(signal.SIGTERM)
    returncode, output = trainer.finish()
    assert returncode == 0, output
    stopped_at = int(re.search(r'Stopped by signal 15 at step (\d+);', output).group(1))
    assert stopped_at > 20
    assert checkpoint_steps(tmp_path) == [stopped_at]

    result = run_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, tmp_path, max_steps=stopped_at + 5))
    assert result.returncode == 0, result.stderr
    assert '/model.ckpt-%d at step %d.' % (stopped_at, stopped_at) in result.stdout
    assert checkpoint_steps(tmp_path) == [stopped_at, stopped_at + 5]


def test_sigkill_loses_only_the_steps_since_the_last_checkpoint(
        start_script, synthetic_data_dir, tmp_path):
    trainer = start_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, tmp_path, save_checkpoint_steps=3, log_frequency=1))
    trainer.wait_for(r': step 40, ')
    trainer.proc.kill()
    trainer.proc.wait()
    saved = checkpoint_steps(tmp_path)
    assert saved and saved[-1] >= 39
    for step in saved:  # Every checkpoint listed can be read back in full.
        reader = tf.train.load_checkpoint(str(tmp_path / ('model.ckpt-%d' % step)))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)

    result = run_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, tmp_path, max_steps=saved[-1] + 3))
    assert result.returncode == 0, result.stderr
    assert '/model.ckpt-%d at step %d.' % (saved[-1], saved[-1]) in result.stdout


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    with flagsaver.flagsaver(train_dir=str(tmp_path), max_steps=100, batch_size=1,
                             save_checkpoint_steps=5), tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        weight = tf.get_variable('weight', initializer=1.0)
        # The loss turns NaN at step 7, as a diverging model's does.
        loss = tf.where(global_step >= 7, np.nan, tf.square(weight))
        train_op = tf.train.GradientDescentOptimizer(0.1).minimize(loss, global_step)
        with pytest.raises(FloatingPointError, match='loss is NaN at step 7; training '
                                                     'stopped, and the last good checkpoint'):
            cifar10_train.train_loop(train_op, loss, global_step)
    assert checkpoint_steps(tmp_path) == [5]
    assert np.isfinite(tf.train.load_variable(str(tmp_path / 'model.ckpt-5'), 'weight'))


def test_gpu_memory_grows_on_demand_by_default():
    config = cifar10.session_config()
    assert config.gpu_options.allow_growth
    assert config.gpu_options.per_process_gpu_memory_fraction == 0


def test_gpu_memory_fraction_flag_caps_the_memory_taken():
    with flagsaver.flagsaver(gpu_memory_fraction=0.4):
        config = cifar10.session_config()
    assert not config.gpu_options.allow_growth
    assert config.gpu_options.per_process_gpu_memory_fraction == pytest.approx(0.4)


def test_data_that_is_not_cifar10_fails_at_once_with_one_line_naming_the_record(
        synthetic_data_dir, tmp_path):
    data_dir = tmp_path / 'data'
    shutil.copytree(synthetic_data_dir, data_dir)
    foreign = data_dir / 'cifar-10-batches-bin' / 'data_batch_3.bin'
    data = bytearray(foreign.read_bytes())
    data[5 * 3073] = 42  # Record 5's label byte.
    foreign.write_bytes(bytes(data))

    result = run_script('cifar10_train.py', *train_flags(data_dir, tmp_path / 'train'),
                        timeout=60)
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1
    assert 'data_batch_3.bin does not hold CIFAR-10 records: record 5 (of 200) has label 42' in (
        result.stderr)
    assert 'Filling queue' not in result.stdout
