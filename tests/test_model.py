"""The model, loss and train op of cifar10.py against REFERENCE.md."""

import numpy as np
import pytest
from absl.testing import flagsaver

import cifar10
from cifar10 import tf

WANT_VARIABLES = {
    'conv1/weights': [5, 5, 3, 64], 'conv1/biases': [64],
    'conv2/weights': [5, 5, 64, 64], 'conv2/biases': [64],
    'local3/weights': [2304, 384], 'local3/biases': [384],
    'local4/weights': [384, 192], 'local4/biases': [192],
    'softmax_linear/weights': [192, 10], 'softmax_linear/biases': [10],
}


def variable(name):
    """The graph's global variable with this op name."""
    [found] = [v for v in tf.global_variables() if v.op.name == name]
    return found


def build_model(batch_size=None):
    images = tf.placeholder(tf.float32, [batch_size, 24, 24, 3])
    return images, cifar10.inference(images)


def test_inference_creates_the_reference_variables():
    with tf.Graph().as_default():
        build_model()
        variables = {v.op.name: v.shape.as_list() for v in tf.trainable_variables()}
    assert variables == WANT_VARIABLES


def test_inference_has_1068298_parameters():
    with tf.Graph().as_default():
        build_model()
        total = sum(np.prod(v.shape.as_list()) for v in tf.trainable_variables())
    assert total == 1068298


def test_variables_are_pinned_to_the_cpu():
    with tf.Graph().as_default():
        build_model()
        devices = {v.device for v in tf.trainable_variables()}
    assert devices == {'/device:CPU:0'}


@pytest.mark.parametrize('batch_size', [1, 7, 128])
def test_logits_have_shape_batch_by_10_for_any_batch_size(batch_size):
    with tf.Graph().as_default():
        images, logits = build_model()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(logits, {images: np.zeros([batch_size, 24, 24, 3])})
    assert values.shape == (batch_size, 10)


def test_total_loss_is_cross_entropy_plus_weight_decay_of_local3_and_local4():
    with tf.Graph().as_default():
        images, logits = build_model(4)
        labels = tf.constant([0, 1, 2, 3])
        total_loss = cifar10.loss(logits, labels)
        cross_entropy = tf.get_default_graph().get_tensor_by_name('cross_entropy:0')
        weights = {name: variable(name + '/weights') for name in ('local3', 'local4')}
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            feed = {images: np.random.default_rng(0).normal(size=[4, 24, 24, 3])}
            total, xent, w = sess.run([total_loss, cross_entropy, weights], feed)
    decay = sum(0.004 * np.sum(np.square(v)) / 2 for v in w.values())
    np.testing.assert_allclose(total, xent + decay, rtol=1e-5)


def build_training(batch_size=4):
    global_step = tf.train.get_or_create_global_step()
    images, logits = build_model(batch_size)
    labels = tf.constant(list(range(batch_size)))
    train_op = cifar10.train(cifar10.loss(logits, labels), global_step)
    return global_step, images, train_op


def test_learning_rate_decays_tenfold_every_350_epochs_of_steps():
    with flagsaver.flagsaver(batch_size=128), tf.Graph().as_default():
        global_step, _, _ = build_training()
        learning_rate = tf.get_default_graph().get_tensor_by_name('ExponentialDecay:0')
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            rates = []
            for step in (0, 136717, 136718, 2 * 136718):
                global_step.load(step, sess)
                rates.append(sess.run(learning_rate))
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 0.001], rtol=1e-6)


def test_moving_average_tracks_the_weights_after_the_gradient_step():
    with tf.Graph().as_default():
        global_step, images, train_op = build_training()
        weights = variable('local4/weights')
        shadow = variable('local4/weights/ExponentialMovingAverage')
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            before = sess.run(weights)
            feed = {images: np.random.default_rng(0).normal(size=[4, 24, 24, 3])}
            sess.run(train_op, feed)
            after, averaged, step = sess.run([weights, shadow, global_step])
    assert step == 1
    assert not np.allclose(after, before)
    # num_updates = global_step = 1 after the step: decay = (1 + 1) / (10 + 1).
    decay = 2.0 / 11.0
    np.testing.assert_allclose(averaged, decay * before + (1 - decay) * after, atol=1e-6)


@pytest.mark.parametrize('depth', [64, 5])
def test_local_response_normalization_equals_tf_nn_lrn_and_its_gradient(depth):
    rng = np.random.default_rng(4)
    values = (rng.normal(size=[3, 5, 7, depth]) * 20).astype(np.float32)
    weights = rng.normal(size=[3, 5, 7, depth]).astype(np.float32)
    with tf.Graph().as_default():
        x = tf.constant(values)
        ours = cifar10.local_response_normalization(x, name='norm')
        reference = tf.nn.lrn(x, 4, bias=1.0, alpha=0.001 / 9.0, beta=0.75)
        gradients = [tf.gradients(tf.reduce_sum(y * weights), x)[0] for y in (ours, reference)]
        with tf.Session() as sess:
            ours, reference, (our_grad, reference_grad) = sess.run([ours, reference, gradients])
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(our_grad, reference_grad, rtol=1e-4, atol=1e-6)
    assert np.abs(ours - values).max() > 1.0  # The normalization really acts.
