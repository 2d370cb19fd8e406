"""The event files hold the original's summaries, as TensorBoard reads them."""

from helpers import read_events, run_script

LAYERS = ['conv1', 'conv2', 'local3', 'local4', 'softmax_linear']


def test_training_events_hold_the_original_summaries(trained_run):
    found = read_events(trained_run[0]).Tags()
    for loss in ['total_loss', 'cross_entropy', 'local3/weight_loss', 'local4/weight_loss']:
        assert {loss, loss + ' (raw)'} <= set(found['scalars'])
    assert 'learning_rate' in found['scalars']
    for layer in LAYERS:
        assert layer + '/sparsity' in found['scalars']
        assert layer + '/activations' in found['histograms']
        for variable in (layer + '/weights', layer + '/biases'):
            assert {variable, variable + '/gradients'} <= set(found['histograms'])
    assert 'images/image/0' in found['images']
    assert any('fraction_over_400_of_384_full' in tag for tag in found['scalars'])


def test_eval_events_hold_precision_and_activations(trained_run, synthetic_data_dir, tmp_path):
    result = run_script('cifar10_eval.py', '--data_dir=%s' % synthetic_data_dir,
                        '--checkpoint_dir=%s' % trained_run[0], '--eval_dir=%s' % tmp_path,
                        '--run_once')
    assert result.returncode == 0, result.stderr
    found = read_events(tmp_path).Tags()
    assert 'Precision @ 1' in found['scalars']
    assert {layer + '/activations' for layer in LAYERS} <= set(found['histograms'])
    assert 'images/image/0' in found['images']
