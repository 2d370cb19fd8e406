"""Training really learns: on learnable synthetic data and on real images."""

import statistics

from helpers import LEARNED_PRECISION, logged_steps, printed_precision, read_events, run_script


def evaluate_once(data_dir, checkpoint_dir, eval_dir):
    result = run_script('cifar10_eval.py', '--data_dir=%s' % data_dir,
                        '--checkpoint_dir=%s' % checkpoint_dir,
                        '--eval_dir=%s' % eval_dir, '--run_once', '--batch_size=128')
    assert result.returncode == 0, result.stderr
    return printed_precision(result.stdout), result


def test_training_on_learnable_data_drives_the_loss_down(trained_run):
    train_dir, result = trained_run
    losses = [loss for _, loss in logged_steps(result.stdout)]
    assert statistics.median(losses[-5:]) < losses[0] - 1.0  # Robust to a late spike.
    events = read_events(train_dir)
    raw_cross_entropy = {e.step: e.value for e in events.Scalars('cross_entropy (raw)')}
    assert raw_cross_entropy[0] > 2.0  # About ln(10) at the start.
    averaged_cross_entropy = {e.step: e.value for e in events.Scalars('cross_entropy')}
    # Below ln(10) = 2.30, the loss of guessing, with room for the
    # tutorial's learning rate, which still shakes the loss at step 100.
    assert averaged_cross_entropy[100] < 2.0


def test_evaluator_scores_the_learned_model_far_above_chance(
        trained_run, synthetic_data_dir, tmp_path):
    precision, result = evaluate_once(synthetic_data_dir, trained_run[0], tmp_path)
    assert precision > LEARNED_PRECISION
    # The 200-record test file is scored once, record by record.
    assert ('The test data holds 200 records, fewer than --num_examples=10000: each '
            'record is scored once.') in result.stdout
    [event] = read_events(tmp_path).Scalars('Precision @ 1')
    assert event.step == 150
    assert abs(event.value * 200 - round(event.value * 200)) < 1e-3


def test_real_sample_trains_and_evaluates_above_0_2(sample_data_dir, tmp_path):
    train_dir = tmp_path / 'train'
    result = run_script('cifar10_train.py', '--data_dir=%s' % sample_data_dir,
                        '--train_dir=%s' % train_dir, '--batch_size=32',
                        '--max_steps=300', '--save_checkpoint_steps=100',
                        '--log_frequency=50')
    assert result.returncode == 0, result.stderr
    assert 'Filling queue with 2034 CIFAR images' in result.stdout
    precision, _ = evaluate_once(sample_data_dir, train_dir, tmp_path / 'eval')
    assert precision > 0.2  # Chance is 0.1.


def test_training_through_the_tf_data_pipeline_learns_too(synthetic_data_dir, tmp_path):
    train_dir = tmp_path / 'train'
    result = run_script('cifar10_train.py', '--input_pipeline=dataset',
                        '--data_dir=%s' % synthetic_data_dir, '--train_dir=%s' % train_dir,
                        '--batch_size=64', '--max_steps=150', '--log_frequency=10')
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''
    losses = [loss for _, loss in logged_steps(result.stdout)]
    assert statistics.median(losses[-5:]) < losses[0] - 1.0  # Robust to a late spike.
    precision, _ = evaluate_once(synthetic_data_dir, train_dir, tmp_path / 'eval')
    assert precision > LEARNED_PRECISION
