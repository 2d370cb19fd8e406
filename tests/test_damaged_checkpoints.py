"""Damaged checkpoints never stop training or evaluation, and nothing is deleted."""

import re

import pytest
from helpers import (
    checkpoint_steps,
    eval_flags,
    logged_steps,
    publish_checkpoint,
    read_events,
    run_script,
    save_foreign_checkpoint,
    train_flags,
)

import cifar10
from cifar10 import tf


def change_bytes_in_the_data(prefix):
    """Flips bytes at ten places through the data file, so that the weights
    and their moving averages (which the evaluator reads) are both hit."""
    data_file = next(prefix.parent.glob(prefix.name + '.data-*'))
    data = bytearray(data_file.read_bytes())
    for tenth in range(10):
        data[len(data) * tenth // 10 + 7] ^= 0xFF
    data_file.write_bytes(bytes(data))


def truncate_the_data(prefix):
    data_file = next(prefix.parent.glob(prefix.name + '.data-*'))
    data_file.write_bytes(data_file.read_bytes()[:data_file.stat().st_size // 3])


def remove_the_index(prefix):
    prefix.with_name(prefix.name + '.index').unlink()


def zero_the_index(prefix):
    index = prefix.with_name(prefix.name + '.index')
    index.write_bytes(bytes(index.stat().st_size))


def remove_the_data(prefix):
    next(prefix.parent.glob(prefix.name + '.data-*')).unlink()


DAMAGE = {'bytes changed in the data': change_bytes_in_the_data,
          'truncated data': truncate_the_data,
          'missing index': remove_the_index,
          'zeroed index': zero_the_index,
          'missing data': remove_the_data}


def folder_contents(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


@pytest.mark.parametrize('damage', list(DAMAGE))
def test_trainer_passes_over_a_damaged_newest_checkpoint_and_resumes_from_the_one_before(
        damage, copy_train_dir, synthetic_data_dir):
    DAMAGE[damage](copy_train_dir / 'model.ckpt-150')
    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, copy_train_dir,
                                                         max_steps=102, log_frequency=1))
    assert result.returncode == 0, result.stderr
    [damaged_line] = [line for line in result.stdout.splitlines() if 'is damaged' in line]
    assert re.fullmatch(r'%s is damaged \(its (index|data) .+\): passing over it\.'
                        % re.escape(str(copy_train_dir / 'model.ckpt-150')), damaged_line)
    assert '/model.ckpt-100 at step 100.' in result.stdout
    assert [step for step, _ in logged_steps(result.stdout)] == [100, 101]


def test_trainer_deletes_nothing_when_it_passes_over_a_damaged_checkpoint(
        copy_train_dir, synthetic_data_dir):
    truncate_the_data(copy_train_dir / 'model.ckpt-150')
    before = folder_contents(copy_train_dir)
    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, copy_train_dir,
                                                         max_steps=101))
    assert result.returncode == 0, result.stderr
    after = folder_contents(copy_train_dir)
    assert {name: after[name] for name in before if name != 'checkpoint'} == {
        name: data for name, data in before.items() if name != 'checkpoint'}
    assert checkpoint_steps(copy_train_dir) == [50, 100, 101]


def test_trainer_starts_from_scratch_when_no_checkpoint_restores_and_says_so(
        copy_train_dir, synthetic_data_dir):
    for step in (50, 100, 150):
        DAMAGE['bytes changed in the data'](copy_train_dir / ('model.ckpt-%d' % step))
    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, copy_train_dir,
                                                         max_steps=2, log_frequency=1))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(' is damaged (') == 3
    assert 'No checkpoint in %s restores: training from scratch.' % copy_train_dir in (
        result.stdout)
    assert [step for step, _ in logged_steps(result.stdout)] == [0, 1]


@pytest.mark.parametrize('damage', ['bytes changed in the data', 'truncated data',
                                    'missing index'])
def test_run_once_scores_the_newest_checkpoint_that_restores(
        damage, trained_run, synthetic_data_dir, tmp_path):
    checkpoint_dir = tmp_path / 'train'
    for step in (100, 150):
        publish_checkpoint(trained_run[0], checkpoint_dir, step)
    DAMAGE[damage](checkpoint_dir / 'model.ckpt-150')
    result = run_script('cifar10_eval.py', *eval_flags(
        synthetic_data_dir, checkpoint_dir, tmp_path / 'eval', run_once=True))
    assert result.returncode == 0, result.stderr
    assert re.search(r'model\.ckpt-150 is damaged \(.+\); it is not scored\.', result.stdout)
    assert result.stdout.count('precision @ 1 = ') == 1
    precision_events = read_events(tmp_path / 'eval').Scalars('Precision @ 1')
    assert [event.step for event in precision_events] == [100]


def test_run_once_fails_with_one_line_when_no_checkpoint_restores(
        trained_run, synthetic_data_dir, tmp_path):
    checkpoint_dir = tmp_path / 'train'
    publish_checkpoint(trained_run[0], checkpoint_dir, 150)
    truncate_the_data(checkpoint_dir / 'model.ckpt-150')
    result = run_script('cifar10_eval.py', *eval_flags(
        synthetic_data_dir, checkpoint_dir, tmp_path / 'eval', run_once=True))
    assert result.returncode == 1
    assert result.stderr == ('cifar10_eval.py: error: no checkpoint in %s restores: all 1 are '
                             'damaged or gone\n' % checkpoint_dir)


def test_polling_evaluator_reports_a_damaged_checkpoint_once_and_scores_the_next(
        trained_run, synthetic_data_dir, start_script, tmp_path):
    checkpoint_dir = tmp_path / 'train'
    publish_checkpoint(trained_run[0], checkpoint_dir, 100)
    truncate_the_data(checkpoint_dir / 'model.ckpt-100')
    evaluator = start_script('cifar10_eval.py', *eval_flags(
        synthetic_data_dir, checkpoint_dir, tmp_path / 'eval', eval_interval_secs=1, timeout=3))
    evaluator.wait_for(r'model\.ckpt-100 is damaged')
    publish_checkpoint(trained_run[0], checkpoint_dir, 150)
    evaluator.wait_for(r'precision @ 1 = ')
    returncode, output = evaluator.finish()

    assert returncode == 0, output
    assert output.count('is damaged') == 1  # Not again at every look.
    assert output.count('precision @ 1 = ') == 1
    precision_events = read_events(tmp_path / 'eval').Scalars('Precision @ 1')
    assert [event.step for event in precision_events] == [150]


def test_evaluator_refuses_a_checkpoint_of_another_model_with_one_line(
        trained_run, synthetic_data_dir, tmp_path):
    checkpoint_dir = tmp_path / 'train'
    checkpoint_dir.mkdir()
    save_foreign_checkpoint(checkpoint_dir, 'fp16')
    result = run_script('cifar10_eval.py', *eval_flags(
        synthetic_data_dir, checkpoint_dir, tmp_path / 'eval', run_once=True))
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1
    assert result.stderr.startswith('cifar10_eval.py: error: cannot evaluate %s, it does not '
                                    'fit this model (' % (checkpoint_dir / 'model.ckpt-5'))
    assert 'is float16 there, float32 here' in result.stderr



class SaverOfAnUnreachableServer:
    """A Saver whose restore fails as it does when a parameter server cannot
    reach the chief that restarted beside it."""

    def restore(self, sess, checkpoint_path):
        raise tf.errors.UnavailableError(None, None, 'failed to connect to all addresses')


def test_a_server_out_of_reach_during_a_restore_does_not_make_the_checkpoint_damaged(tmp_path):
    with tf.Graph().as_default():
        variable = tf.get_variable('weight', initializer=1.0)
        with tf.Session() as sess:
            sess.run(variable.initializer)
            checkpoint = tf.train.Saver().save(sess, str(tmp_path / 'model.ckpt'), global_step=1)
            with pytest.raises(tf.errors.UnavailableError):  # The session is made again.
                cifar10.restore_checkpoint(sess, SaverOfAnUnreachableServer(),
                                           {'weight': variable}, checkpoint, '%s %s')
