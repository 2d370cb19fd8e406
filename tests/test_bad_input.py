"""Bad flags, folders and sizes: one line, a non-zero exit, before any work."""

import re
import signal

import pytest
from absl import flags as absl_flags
from absl.testing import flagsaver
from helpers import DATA_SUBDIR, checkpoint_steps, run_script, train_flags

import cifar10
import cifar10_input
from cifar10 import tf
from cifar10_support import runtime


def assert_one_line_error(result, script, message):
    assert result.returncode == 1
    assert result.stderr == '%s: error: %s\n' % (script, message)
    assert result.stdout == ''


@pytest.mark.parametrize('script, flag, message', [
    ('cifar10_train.py', '--max_step=20',
     'unknown flag --max_step: did you mean --max_steps? (--help lists the flags)'),
    ('cifar10_eval.py', '--batch_size=0', 'flag --batch_size=0: 0 is not a positive integer'),
    ('cifar10_train.py', 'max_steps=20',
     "unexpected argument 'max_steps=20': flags start with -- (--help lists them)"),
])
def test_a_flag_the_script_does_not_know_or_a_bad_value_is_refused_in_one_line(
        script, flag, message, tmp_path):
    result = run_script(script, flag, '--data_dir=%s' % tmp_path, timeout=60)
    assert_one_line_error(result, script, message)
    assert list(tmp_path.iterdir()) == []


def test_a_flag_of_another_script_is_refused_and_absls_logging_flags_are_not(tmp_path):
    result = run_script('cifar10_export.py', '--verbosity=0', '--eval_dir=%s' % tmp_path,
                        timeout=60)
    assert_one_line_error(result, 'cifar10_export.py', '--eval_dir is not a flag of '
                          'cifar10_export.py (--help lists its flags)')


@pytest.mark.parametrize('argv, message', [
    (['--eval_interval=5'], 'unknown flag --eval_interval: did you mean --eval_interval_secs? '
                            '(--help lists the flags)'),
    (['--run_once=maybe'], "flag --run_once=maybe: 'maybe' is not true or false"),
    (['--num_examples=-1'], 'flag --num_examples=-1: -1 is not a positive integer'),
    (['--no_such_flag'], 'unknown flag --no_such_flag (--help lists the flags)'),
])
def test_each_refused_flag_is_said_in_one_line(argv, message):
    import cifar10_eval  # Defines the evaluator's flags.

    with flagsaver.flagsaver(), pytest.raises(absl_flags.Error) as error:
        cifar10.FLAGS(['cifar10_eval.py'] + argv)
    assert runtime.flag_error(error.value, cifar10_eval.FLAGS_USED) == message


def test_a_train_dir_that_cannot_be_created_is_refused_in_one_line_before_any_work(
        synthetic_data_dir, tmp_path):
    (tmp_path / 'a_file').write_text('not a folder')
    train_dir = tmp_path / 'a_file' / 'train'
    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, train_dir),
                        timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith('cifar10_train.py: error: cannot create --train_dir=%s ('
                                    % train_dir)
    assert result.stderr.endswith('): give a folder you can write to\n')
    assert result.stderr.count('\n') == 1 and result.stdout == ''


def test_a_second_trainer_on_a_busy_train_dir_refuses_and_the_first_goes_on(
        start_script, synthetic_data_dir, tmp_path):
    first = start_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, tmp_path, max_steps=100000, save_checkpoint_steps=10))
    first.wait_for(r': step 10, ')
    second = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, tmp_path,
                                                         max_steps=5), timeout=60)
    assert_one_line_error(second, 'cifar10_train.py', 'another trainer is training in '
                          '--train_dir=%s: let it finish or stop it, or give another '
                          '--train_dir' % tmp_path)
    first.proc.send_signal(signal.SIGTERM)
    returncode, output = first.finish()
    assert returncode == 0, output
    stopped_at = int(re.search(r'^Stopped by signal 15 at step (\d+); the checkpoint is '
                               r'saved\.$', output, re.MULTILINE).group(1))
    steps = checkpoint_steps(tmp_path)
    assert steps[-1] == stopped_at and steps == sorted(steps)


def test_a_batch_larger_than_the_training_set_is_refused_before_any_queue(synthetic_data_dir):
    batches_dir = synthetic_data_dir / DATA_SUBDIR
    with tf.Graph().as_default(), pytest.raises(cifar10.UserError) as error:
        cifar10_input.distorted_inputs(str(batches_dir), batch_size=1001)
    assert str(error.value) == (
        '--batch_size=1001 is larger than the 1000 training images in %s: a batch would hold '
        'images twice, and its queue would outgrow the memory; use --batch_size=1000 or less'
        % batches_dir)
