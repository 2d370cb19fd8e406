"""--mixed_precision: training in 16-bit floats through TensorFlow's graph
rewrites, with float32 variables and checkpoints; and fp16's loss scaling,
which runs in any session (fp16 itself needs a GPU)."""

import os
import shutil
import statistics
from unittest import mock

import numpy as np
import pytest
from absl.testing import flagsaver
from helpers import (
    LEARNED_PRECISION,
    checkpoint_steps,
    eval_flags,
    evaluate_in_order,
    logged_steps,
    printed_precision,
    run_script,
    train_flags,
)

import cifar10
import cifar10_multi_gpu_train
from cifar10 import tf
from cifar10_support import mixed_precision

# Makes TensorFlow's float16 rewrite of the CPU's ops use float16 kernels.
FLOAT16_EMULATION = 'TF_AUTO_MIXED_PRECISION_GRAPH_REWRITE_EMULATE_FP16'

# The dtype the convolutions and matrix multiplies run in, per --mixed_precision.
COMPUTE_DTYPES = {'none': tf.float32, 'bf16': tf.bfloat16}
# What the loss scale starts at, and the finite steps in a row that double it.
INITIAL_LOSS_SCALE = 2.0 ** 15
LOSS_SCALE_GROWTH_STEPS = 2000


def random_images(batch_size, seed=0, nan=False):
    """A batch of random images; with nan, one value is NaN, so that the
    step's gradients are not all finite."""
    images = np.random.default_rng(seed).normal(size=[batch_size, 24, 24, 3])
    if nan:
        images[0, 0, 0, 0] = np.nan
    return images.astype(np.float32)


def build_training_step(batch_size=4, images=None):
    """Builds cifar10.train on one batch (a placeholder, random_images()
    by default) in the default graph.

    Returns:
      (global_step, loss, train_op, images placeholder).
    """
    global_step = tf.train.get_or_create_global_step()
    rng = np.random.default_rng(0)
    images = tf.placeholder_with_default(random_images(batch_size), [batch_size, 24, 24, 3])
    labels = tf.constant(rng.integers(0, 10, size=batch_size).astype(np.int32))
    loss = cifar10.loss(cifar10.inference(images), labels)
    return global_step, loss, cifar10.train(loss, global_step), images


def local_variable(name):
    """The default graph's local variable with this op name."""
    [found] = [v for v in tf.local_variables() if v.op.name == name]
    return found


def ops_of_type(nodes, op_type):
    """The nodes whose op (after TensorFlow's rewrites, such as oneDNN's
    _MklNativeFusedConv2D) contains op_type."""
    return [node for node in nodes if op_type in node.op]


def node_dtypes(nodes):
    """The set of the nodes' T attributes, as tf.DTypes."""
    return {tf.as_dtype(node.attr['T'].type) for node in nodes}


def global_variable_dtypes():
    """The default graph's global variables: name -> (dtype, shape)."""
    return {v.op.name: (v.dtype.base_dtype, v.shape.as_list()) for v in tf.global_variables()}


@pytest.mark.parametrize('mode', ['none', 'bf16'])
def test_the_session_runs_convolutions_and_matmuls_in_16_bits_and_loss_and_updates_in_float32(
        mode):
    with flagsaver.flagsaver(mixed_precision=mode), tf.Graph().as_default():
        _, loss, train_op, _ = build_training_step()
        with tf.Session(config=cifar10.session_config()) as sess:
            sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            metadata = tf.RunMetadata()
            sess.run([train_op, loss], options=tf.RunOptions(output_partition_graphs=True),
                     run_metadata=metadata)
    # The graphs the session ran, after Grappler's rewrites.
    nodes = [node for graph in metadata.partition_graphs for node in graph.node]
    convolutions = ops_of_type(nodes, 'Conv2D')
    assert len(convolutions) == 5  # Two forward, two filter gradients, one input gradient.
    assert node_dtypes(convolutions) == {COMPUTE_DTYPES[mode]}
    # The layers', the LRN's band matrix products, and their gradients.
    assert node_dtypes(ops_of_type(nodes, 'MatMul')) == {COMPUTE_DTYPES[mode]}
    assert node_dtypes(ops_of_type(nodes, 'SparseSoftmaxCrossEntropyWithLogits')) == {
        tf.float32}
    updates = ops_of_type(nodes, 'ApplyGradientDescent')
    assert len(updates) == 10 and node_dtypes(updates) == {tf.float32}


def test_fp16_session_rewrites_a_gpus_ops_and_leaves_the_cpus_alone():
    with flagsaver.flagsaver(mixed_precision='fp16'):
        rewrites = cifar10.session_config().graph_options.rewrite_options
    assert rewrites.auto_mixed_precision == rewrites.ON
    assert rewrites.auto_mixed_precision_cpu != rewrites.ON
    assert rewrites.auto_mixed_precision_onednn_bfloat16 != rewrites.ON


def test_fp16_step_whose_gradients_are_not_finite_is_skipped_and_halves_the_loss_scale():
    # The loss scaling runs in any session: its logic needs no float16 kernel.
    with flagsaver.flagsaver(mixed_precision='fp16'), tf.Graph().as_default():
        global_step, loss, train_op, images = build_training_step()
        scale = local_variable('current_loss_scale')
        weights = {v.op.name: v for v in tf.global_variables()
                   if v.op.name.split('/')[1:2] in (['weights'], ['biases'])}
        with tf.Session() as sess:
            sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            before = sess.run(weights)
            sess.run([train_op, loss], {images: random_images(4, nan=True)})
            after, new_scale, step = sess.run([weights, scale, global_step])
    assert len(weights) == 20  # The weights and their moving averages.
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert (new_scale, step) == (INITIAL_LOSS_SCALE / 2, 1)  # The step counts all the same.


def test_fp16_finite_step_updates_the_weights_and_doubles_the_scale_after_a_run_of_them():
    with flagsaver.flagsaver(mixed_precision='fp16'), tf.Graph().as_default():
        global_step, loss, train_op, _ = build_training_step()
        scale = local_variable('current_loss_scale')
        good_steps = local_variable('good_steps')
        [weights] = [v for v in tf.global_variables() if v.op.name == 'conv1/weights']
        with tf.Session() as sess:
            sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            before = sess.run(weights)
            sess.run([train_op, loss])
            after_one, scale_after_one, good_after_one = sess.run([weights, scale, good_steps])
            good_steps.load(LOSS_SCALE_GROWTH_STEPS - 1, sess)
            sess.run([train_op, loss])
            scale_after_run, good_after_run, step = sess.run([scale, good_steps, global_step])
    assert not np.allclose(after_one, before)
    assert (scale_after_one, good_after_one) == (INITIAL_LOSS_SCALE, 1)
    assert (scale_after_run, good_after_run, step) == (2 * INITIAL_LOSS_SCALE, 0, 2)


def test_fp16_checkpoints_hold_a_float32_runs_variables():
    with tf.Graph().as_default():
        build_training_step()
        float32_run = global_variable_dtypes()
    with flagsaver.flagsaver(mixed_precision='fp16'), tf.Graph().as_default():
        build_training_step()
        assert global_variable_dtypes() == float32_run
        assert {v.op.name for v in tf.local_variables()} >= {'current_loss_scale',
                                                            'good_steps'}
    assert float32_run['conv1/weights'] == (tf.float32, [5, 5, 3, 64])


def test_fp16_lrn_of_large_activations_stays_tf_nn_lrn():
    # Squares of 200 summed over 9 channels overflow float16; the LRN sums
    # them prescaled, and matches float32's tf.nn.lrn to float16 precision.
    # TensorFlow's float16 rewrite of the CPU's ops stands in for a GPU's.
    values = np.random.default_rng(5).uniform(150, 250, size=[2, 3, 3, 16]).astype(np.float32)
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, values.shape)  # Not folded into a constant.
        ours = cifar10.local_response_normalization(x, name='norm')
        reference = tf.nn.lrn(x, 4, bias=1.0, alpha=0.001 / 9.0, beta=0.75)
        config = tf.ConfigProto()
        config.graph_options.rewrite_options.auto_mixed_precision_cpu = (
            config.graph_options.rewrite_options.ON)
        with mock.patch.dict(os.environ, {FLOAT16_EMULATION: '0'}), \
                tf.Session(config=config) as sess:
            metadata = tf.RunMetadata()
            ours = sess.run(ours, {x: values}, run_metadata=metadata,
                            options=tf.RunOptions(output_partition_graphs=True))
        with tf.Session() as sess:
            reference = sess.run(reference, {x: values})
    nodes = [node for graph in metadata.partition_graphs for node in graph.node]
    assert node_dtypes(ops_of_type(nodes, 'MatMul')) == {tf.float16}
    np.testing.assert_allclose(ours, reference, rtol=5e-3)


def test_bf16_training_learns_and_the_evaluator_scores_it_far_above_chance(
        bf16_run, synthetic_data_dir, tmp_path):
    train_dir, trained = bf16_run
    assert trained.stderr == ''
    losses = [loss for _, loss in logged_steps(trained.stdout)]
    assert statistics.median(losses[-5:]) < losses[0] - 1.0  # Robust to a late spike.
    result = run_script('cifar10_eval.py', *eval_flags(
        synthetic_data_dir, train_dir, tmp_path / 'eval', run_once=True))
    assert result.returncode == 0, result.stderr
    assert printed_precision(result.stdout) > LEARNED_PRECISION


def test_bf16_checkpoint_holds_a_float32_runs_variables(bf16_run, trained_run):
    def variables(folder):
        reader = tf.train.load_checkpoint(str(folder))
        shapes = reader.get_variable_to_shape_map()
        return {name: (dtype, shapes[name])
                for name, dtype in reader.get_variable_to_dtype_map().items()}

    found = variables(bf16_run[0])
    assert found == variables(trained_run[0])
    assert found['conv1/weights'] == (tf.float32, [5, 5, 3, 64])


def test_trainer_says_once_in_one_line_when_bf16_cannot_be_faster(bf16_run):
    said = [line for line in bf16_run[1].stdout.splitlines()
            if line.startswith('--mixed_precision=')]
    reason = mixed_precision.not_faster_reason('bf16')
    assert said == ([] if reason is None else [reason])


@pytest.mark.parametrize('cpu_flags, slower', [('avx2 avx512f', True),
                                               ('avx2 avx512f avx512_bf16', False),
                                               ('avx2 amx_bf16 amx_tile', False)])
def test_bf16_is_said_to_be_slower_on_a_cpu_without_bfloat16_instructions(
        cpu_flags, slower, tmp_path, monkeypatch):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nflags\t\t: fpu sse %s\n\n' % cpu_flags)
    monkeypatch.setattr(mixed_precision, 'CPUINFO_PATH', str(cpuinfo))
    reason = mixed_precision.not_faster_reason('bf16')
    assert (reason is not None) == slower
    if slower:
        assert reason.startswith('--mixed_precision=bf16: ') and '\n' not in reason
        assert 'slower, not faster' in reason


@pytest.mark.parametrize('script, flag, folder_flags', [
    ('cifar10_train.py', '--mixed_precision=fp16', ['--train_dir']),
    ('cifar10_eval.py', '--use_fp16', ['--checkpoint_dir', '--eval_dir'])])
def test_float16_without_a_gpu_is_refused_in_one_line_naming_bf16(
        script, folder_flags, flag, synthetic_data_dir, tmp_path):
    result = run_script(script, flag, '--data_dir=%s' % synthetic_data_dir,
                        *['%s=%s' % (name, tmp_path) for name in folder_flags], timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith('%s: error: %s ' % (script, flag))
    assert 'only a GPU' in result.stderr and '--mixed_precision=bf16' in result.stderr
    assert result.stderr.count('\n') == 1 and result.stdout == ''
    assert list(tmp_path.iterdir()) == []


def test_resume_without_the_flag_continues_a_mixed_precision_run(
        bf16_run, synthetic_data_dir, tmp_path):
    copy = tmp_path / 'train'
    shutil.copytree(bf16_run[0], copy)
    [*_, last] = checkpoint_steps(copy)
    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, copy,
                                                         max_steps=last + 5))
    assert result.returncode == 0, result.stderr
    assert '/model.ckpt-%d at step %d.' % (last, last) in result.stdout
    assert checkpoint_steps(copy)[-1] == last + 5


def test_resume_with_bf16_continues_a_float32_run(copy_train_dir, synthetic_data_dir):
    result = run_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, copy_train_dir, max_steps=155, mixed_precision='bf16'))
    assert result.returncode == 0, result.stderr
    assert '/model.ckpt-150 at step 150.' in result.stdout
    assert checkpoint_steps(copy_train_dir)[-1] == 155


def test_fp16_towers_share_one_loss_scale_and_skip_an_overflowing_step_together():
    # Tower 1's batch is fed with a NaN once: both towers skip that step.
    tower_batches = []

    def next_batch():
        tower_batches.append(tf.placeholder_with_default(
            random_images(2, seed=len(tower_batches)), [2, 24, 24, 3]))
        return tower_batches[-1], tf.constant([1, 2])

    with flagsaver.flagsaver(mixed_precision='fp16'), tf.Graph().as_default(), \
            tf.device('/cpu:0'):
        global_step = tf.train.get_or_create_global_step()
        train_op, _, _ = cifar10_multi_gpu_train.build_training(
            global_step, next_batch, ['/cpu:0', '/cpu:1'])
        scale = local_variable('current_loss_scale')  # The only one: it is shared.
        [weights] = [v for v in tf.global_variables() if v.op.name == 'conv1/weights']
        with tf.Session(config=tf.ConfigProto(device_count={'CPU': 2})) as sess:
            sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            before = sess.run(weights)
            sess.run(train_op, {tower_batches[1]: random_images(2, nan=True)})
            skipped, scale_after_overflow = sess.run([weights, scale])
            sess.run(train_op)
            trained = sess.run(weights)
    np.testing.assert_array_equal(skipped, before)
    assert scale_after_overflow == INITIAL_LOSS_SCALE / 2
    assert np.isfinite(trained).all() and not np.allclose(trained, before)


def test_use_fp16_builds_a_float16_model_that_the_evaluator_scores(
        in_order_data_dir, tmp_path):
    # The original's option, run in this process (the scripts refuse it
    # without a GPU): two steps on a small batch, then the evaluator's graph.
    with flagsaver.flagsaver(use_fp16=True), tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        images = tf.cast(tf.random.normal([2, 24, 24, 3]), tf.float16)
        train_op = cifar10.train(cifar10.loss(cifar10.inference(images), [1, 2]), global_step)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run([train_op, train_op])
            checkpoint = tf.train.Saver().save(sess, str(tmp_path / 'model.ckpt'),
                                               global_step=global_step)
    dtypes = tf.train.load_checkpoint(checkpoint).get_variable_to_dtype_map()
    assert dtypes['conv1/weights'] == dtypes['local4/weights/ExponentialMovingAverage'] \
        == tf.float16
    with flagsaver.flagsaver(use_fp16=True):
        scored = evaluate_in_order(in_order_data_dir, checkpoint)
    assert scored['logits'].dtype == np.float16
    # in_top_k counts a tie with the top logit as right (float16 ties often).
    true_logits = scored['logits'][np.arange(len(scored['labels'])), scored['labels']]
    np.testing.assert_array_equal(scored['in_top_k'],
                                  true_logits == scored['logits'].max(axis=1))


def test_use_fp16_with_mixed_precision_is_refused_in_one_line(synthetic_data_dir, tmp_path):
    result = run_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, tmp_path, use_fp16=True, mixed_precision='bf16'), timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        'cifar10_train.py: error: --use_fp16 and --mixed_precision=bf16 do not go together: '
        '--use_fp16 builds the whole model, weights included, in float16; drop one of them\n')
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
