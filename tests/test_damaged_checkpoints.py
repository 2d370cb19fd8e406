"""Damaged checkpoints never stop training or evaluation, and nothing is deleted."""

import re

import pytest
from helpers import (
    DATA_SUBDIR,
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
from cifar10_support import checkpoints


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
def test_each_kind_of_damage_is_told_from_a_whole_checkpoint_with_its_reason(
        damage, trained_run, tmp_path):
    publish_checkpoint(trained_run[0], tmp_path, 150)
    checkpoint = tmp_path / 'model.ckpt-150'
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        cifar10.train(cifar10.loss(cifar10.inference(tf.zeros([1, 24, 24, 3])), [0]),
                      global_step)
        variables = {v.op.name: v for v in tf.global_variables()}
        saver = tf.train.Saver(variables)
        with tf.Session() as sess:
            assert checkpoints.restore_checkpoint(sess, saver, variables, str(checkpoint),
                                              '%s %s') is None
            assert checkpoints.checkpoint_damage(str(checkpoint)) is None
            DAMAGE[damage](checkpoint)
            said = checkpoints.restore_checkpoint(sess, saver, variables, str(checkpoint), '%s %s')
    assert re.fullmatch(r'its (index|data) .+', said), said
    assert '\n' not in said
    # The same verdict, read tensor by tensor without a session.
    assert checkpoints.checkpoint_damage(str(checkpoint)).startswith(said[:len('its index')])


def test_trainer_passes_over_a_damaged_newest_checkpoint_deleting_nothing(
        copy_train_dir, synthetic_data_dir):
    truncate_the_data(copy_train_dir / 'model.ckpt-150')
    before = folder_contents(copy_train_dir)
    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, copy_train_dir,
                                                         max_steps=102, log_frequency=1))
    assert result.returncode == 0, result.stderr
    [damaged_line] = [line for line in result.stdout.splitlines() if 'is damaged' in line]
    assert re.fullmatch(r'%s is damaged \(its data .+\): passing over it\.'
                        % re.escape(str(copy_train_dir / 'model.ckpt-150')), damaged_line)
    assert '/model.ckpt-100 at step 100.' in result.stdout
    assert [step for step, _ in logged_steps(result.stdout)] == [100, 101]
    after = folder_contents(copy_train_dir)
    assert {name: after[name] for name in before if name != 'checkpoint'} == {
        name: data for name, data in before.items() if name != 'checkpoint'}
    assert checkpoint_steps(copy_train_dir) == [50, 100, 102]


def test_a_missing_or_damaged_meta_graph_does_not_stop_a_resume(
        copy_train_dir, synthetic_data_dir):
    # A .meta is for the user's own code: restoring never reads it.
    newest_meta = copy_train_dir / 'model.ckpt-150.meta'
    newest_meta.write_bytes(newest_meta.read_bytes()[:1000])
    (copy_train_dir / 'model.ckpt-100.meta').unlink()
    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, copy_train_dir,
                                                         max_steps=152, log_frequency=1))
    assert result.returncode == 0, result.stderr
    assert 'is damaged' not in result.stdout
    assert '/model.ckpt-150 at step 150.' in result.stdout
    assert [step for step, _ in logged_steps(result.stdout)] == [150, 151]
    assert (copy_train_dir / 'model.ckpt-152.meta').is_file()


def test_run_once_scores_a_checkpoint_whose_meta_graph_is_damaged(
        trained_run, synthetic_data_dir, tmp_path):
    checkpoint_dir = tmp_path / 'train'
    publish_checkpoint(trained_run[0], checkpoint_dir, 150)
    (checkpoint_dir / 'model.ckpt-150.meta').write_bytes(b'not a MetaGraphDef')
    result = run_script('cifar10_eval.py', *eval_flags(
        synthetic_data_dir, checkpoint_dir, tmp_path / 'eval', run_once=True))
    assert result.returncode == 0, result.stderr
    assert 'is damaged' not in result.stdout
    precision_events = read_events(tmp_path / 'eval').Scalars('Precision @ 1')
    assert [event.step for event in precision_events] == [150]


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


def test_run_once_scores_the_newest_checkpoint_that_restores(
        trained_run, synthetic_data_dir, tmp_path):
    checkpoint_dir = tmp_path / 'train'
    for step in (100, 150):
        publish_checkpoint(trained_run[0], checkpoint_dir, step)
    change_bytes_in_the_data(checkpoint_dir / 'model.ckpt-150')
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
                checkpoints.restore_checkpoint(sess, SaverOfAnUnreachableServer(),
                                           {'weight': variable}, checkpoint, '%s %s')


# The state file ('checkpoint') is only an index: the checkpoint files are
# the truth, whatever it holds.

STATE_FILE_DAMAGE = {
    'text that is not a state': b'this is not a checkpoint state\n',
    'binary bytes': bytes(range(256)) * 4,
    'empty': b'',
    'an older checkpoint only': b'model_checkpoint_path: "model.ckpt-50"\n'
                                b'all_model_checkpoint_paths: "model.ckpt-50"\n',
    'a checkpoint elsewhere': b'model_checkpoint_path: "/nowhere/model.ckpt-999"\n',
}


def write_state_file(train_dir, contents):
    (train_dir / 'checkpoint').write_bytes(contents)


@pytest.mark.parametrize('damage', list(STATE_FILE_DAMAGE))
def test_checkpoints_are_found_by_their_files_whatever_the_state_file_holds(
        damage, trained_run, tmp_path):
    for step in (50, 100, 150):
        publish_checkpoint(trained_run[0], tmp_path, step)
    write_state_file(tmp_path, STATE_FILE_DAMAGE[damage])
    paths, state_damage = checkpoints.list_checkpoints(str(tmp_path))
    assert paths == [str(tmp_path / ('model.ckpt-%d' % step)) for step in (50, 100, 150)]
    assert (state_damage is None) == (damage in ('an older checkpoint only',
                                                 'a checkpoint elsewhere'))


@pytest.mark.parametrize('damage', ['text that is not a state', 'an older checkpoint only'])
def test_trainer_resumes_from_the_newest_checkpoint_beside_a_damaged_or_stale_state_file(
        damage, copy_train_dir, synthetic_data_dir):
    write_state_file(copy_train_dir, STATE_FILE_DAMAGE[damage])
    before = folder_contents(copy_train_dir)
    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, copy_train_dir,
                                                         max_steps=151))
    assert result.returncode == 0, result.stderr
    assert '/model.ckpt-150 at step 150.' in result.stdout
    if damage == 'text that is not a state':
        assert ('%s is damaged (it cannot be read): it is rebuilt from the checkpoint files.'
                % (copy_train_dir / 'checkpoint')) in result.stdout.splitlines()
    after = folder_contents(copy_train_dir)
    for name, data in before.items():  # Every saved checkpoint is as it was.
        if name != 'checkpoint':
            assert after[name] == data, name
    assert checkpoint_steps(copy_train_dir) == [50, 100, 150, 151]


# The exporter chooses its checkpoint with the predictor's function.
@pytest.mark.parametrize('script', ['cifar10_eval.py', 'cifar10_predict.py'])
def test_evaluator_and_predictor_use_the_checkpoints_beside_a_damaged_state_file(
        script, trained_run, synthetic_data_dir, tmp_path):
    checkpoint_dir = tmp_path / 'train'
    for step in (100, 150):
        publish_checkpoint(trained_run[0], checkpoint_dir, step)
    write_state_file(checkpoint_dir, STATE_FILE_DAMAGE['binary bytes'])
    flags = {'cifar10_eval.py': eval_flags(synthetic_data_dir, checkpoint_dir, tmp_path / 'eval',
                                           run_once=True),
             'cifar10_predict.py': ['--checkpoint_dir=%s' % checkpoint_dir,
                                    str(synthetic_data_dir / DATA_SUBDIR / 'test_batch.bin')],
             }[script]
    result = run_script(script, *flags)
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert re.search(r'%s is damaged \(it cannot be read.*\): passing over it, to the '
                     r'checkpoint files\.' % re.escape(str(checkpoint_dir / 'checkpoint')), said)
    assert 'No checkpoint' not in said
    if script == 'cifar10_eval.py':
        assert [event.step for event in read_events(tmp_path / 'eval').Scalars(
            'Precision @ 1')] == [150]


def test_a_folder_named_checkpoint_in_the_train_dir_is_refused_in_one_line(
        synthetic_data_dir, tmp_path):
    (tmp_path / 'checkpoint').mkdir()
    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, tmp_path,
                                                         max_steps=1), timeout=60)
    assert result.returncode == 1
    assert result.stderr == ('cifar10_train.py: error: %s is a folder where the trainer keeps '
                             'its checkpoint state file: move it out of --train_dir\n'
                             % (tmp_path / 'checkpoint'))
