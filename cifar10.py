# Copyright 2015 The TensorFlow Authors. All Rights Reserved.
# Licensed under the Apache License, Version 2.0 (see LICENSE); changed since.

"""Builds the CIFAR-10 network.

Summary of available functions:
 inputs, labels = distorted_inputs()  # Training input; inputs() for evaluation.
 predictions = inference(inputs)  # The model's logits.
 loss = loss(predictions, labels)  # The total loss, with weight decay.
 train_op = train(loss, global_step)  # One step of training.

A library, with the flags the scripts share: run cifar10_train.py to train,
cifar10_eval.py to evaluate, cifar10_predict.py or cifar10_export.py to use a
trained model (through predict() and averaged_weights_saver()).
"""

import os
import re

import numpy as np

import cifar10_input
from cifar10_support import download, mixed_precision, runtime
from cifar10_support.runtime import UserError, tf  # noqa: F401  (the scripts' UserError)

FLAGS = tf.app.flags.FLAGS

# Basic model parameters.
tf.app.flags.DEFINE_integer('batch_size', 128,
                            """Number of images to process in a batch.""", lower_bound=1)
tf.app.flags.DEFINE_string('data_dir', '/tmp/cifar10_data',
                           """Path to the CIFAR-10 data directory.""")
tf.app.flags.DEFINE_boolean('use_fp16', False, """Train the model using fp16, weights """
                            """included (needs a GPU; see --mixed_precision).""")
tf.app.flags.DEFINE_enum('mixed_precision', 'none', ['none', 'bf16', 'fp16'],
                         """Compute in 16 bits where TensorFlow's graph rewrite finds it """
                         """safe, keeping variables, loss and checkpoints in float32: """
                         """bf16 (a CPU's), fp16 (a GPU's, with loss scaling), or none.""")
tf.app.flags.DEFINE_enum('input_pipeline', 'queue', ['queue', 'dataset'],
                         """Feed training by the tutorial's queue runners, or by tf.data.""")
tf.app.flags.DEFINE_string('data_url', download.DATA_URL,
                           """Where to download the CIFAR-10 binary tarball from.""")
tf.app.flags.DEFINE_string('data_md5', download.DATA_MD5,
                           """MD5 the downloaded tarball must have; empty skips the check.""")
tf.app.flags.DEFINE_float('gpu_memory_fraction', 0.0,
                          """Fraction of GPU memory to take; 0 grows on demand, so that a """
                          """trainer and an evaluator share one GPU.""",
                          lower_bound=0.0, upper_bound=1.0)

# The flags of the scripts that use the model, download, train; --help lists them.
MODEL_FLAGS = ['batch_size', 'data_dir', 'use_fp16', 'gpu_memory_fraction']
DOWNLOAD_FLAGS = ['data_url', 'data_md5']
TRAINING_FLAGS = ['mixed_precision', 'input_pipeline']

# Global constants describing the CIFAR-10 data set.
IMAGE_SIZE = cifar10_input.IMAGE_SIZE
NUM_CLASSES = cifar10_input.NUM_CLASSES
NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN = cifar10_input.NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN
NUM_EXAMPLES_PER_EPOCH_FOR_EVAL = cifar10_input.NUM_EXAMPLES_PER_EPOCH_FOR_EVAL
ORIGINAL_IMAGE_SIZE = cifar10_input.ORIGINAL_HEIGHT  # The images are square.
DATA_SUBDIR = download.DATA_SUBDIR  # The folder in --data_dir that holds the files.

# Constants describing the training process.
MOVING_AVERAGE_DECAY = 0.9999     # The decay to use for the moving average.
NUM_EPOCHS_PER_DECAY = 350.0      # Epochs after which learning rate decays.
LEARNING_RATE_DECAY_FACTOR = 0.1  # Learning rate decay factor.
INITIAL_LEARNING_RATE = 0.1       # Initial learning rate.

# tf.nn.lrn(x, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75); the sum of squares
# is of x / LRN_PRESCALE (times its square): the same in float32, while in float16 it
# overflows only for activations LRN_PRESCALE times larger.
LRN_DEPTH_RADIUS = 4
LRN_BIAS = 1.0
LRN_ALPHA = 0.001 / 9.0
LRN_BETA = 0.75
LRN_PRESCALE = 16.0

# The prefix of each multi-GPU tower's op names; summary tags leave it out.
TOWER_NAME = 'tower'


def run(main, flag_names, takes_arguments=False):
    """Runs main(argv) with the flags in flag_names, strictly (runtime.run);
    refuses --use_fp16 with --mixed_precision, and float16 without a GPU."""
    def check_flags():
        if FLAGS.use_fp16 and FLAGS.mixed_precision != 'none':
            raise UserError('--use_fp16 and --mixed_precision=%s do not go together: '
                            '--use_fp16 builds the whole model, weights included, in '
                            'float16; drop one of them' % FLAGS.mixed_precision)
        refusal = mixed_precision.float16_refusal(FLAGS.mixed_precision, FLAGS.use_fp16)
        if refusal:
            raise UserError(refusal)
        if FLAGS.mixed_precision != 'none':
            reason = mixed_precision.not_faster_reason(FLAGS.mixed_precision)
            if reason:
                print(reason, flush=True)

    runtime.run(main, flag_names, takes_arguments, check_flags)


def session_config(log_device_placement=False, num_cpu_devices=1):
    """The tf.ConfigProto of runtime.session_config, given the flags."""
    return runtime.session_config(log_device_placement, num_cpu_devices,
                                  FLAGS.gpu_memory_fraction, FLAGS.mixed_precision)


def strip_tower_prefix(name):
    """Removes the 'tower_N/' prefix of a name, so that towers share tags."""
    return re.sub('%s_[0-9]*/' % TOWER_NAME, '', name)


def _scalar_summary(tag, tensor):
    """Adds a scalar summary with exactly this tag (tf.summary.scalar derives
    it from the op name, which allows neither spaces nor repeats)."""
    tf.add_to_collection(tf.GraphKeys.SUMMARIES, tf.raw_ops.ScalarSummary(tags=tag, values=tensor))


def _histogram_summary(tag, tensor):
    """Adds a histogram summary with exactly this tag."""
    tf.add_to_collection(tf.GraphKeys.SUMMARIES, tf.raw_ops.HistogramSummary(tag=tag,
                                                                            values=tensor))


def _activation_summary(x):
    """Summarizes x, a layer's output named after its scope: a histogram, the sparsity."""
    # The layer's name is its scope: 'tower_0/conv1/conv1' -> 'conv1'.
    layer_name = strip_tower_prefix(x.op.name).rsplit('/', 1)[0]
    _histogram_summary(layer_name + '/activations', x)
    _scalar_summary(layer_name + '/sparsity', tf.nn.zero_fraction(x))


def _variable_on_cpu(name, shape, initializer):
    """Helper to create a Variable stored on CPU memory (float16 with --use_fp16)."""
    with tf.device('/cpu:0'):
        dtype = tf.float16 if FLAGS.use_fp16 else tf.float32
        var = tf.get_variable(name, shape, initializer=initializer, dtype=dtype)
    return var


def _variable_with_weight_decay(name, shape, stddev, wd):
    """Helper to create a Variable, drawn from a truncated normal distribution
    of this stddev, with L2Loss weight decay times wd (none if wd is None)."""
    dtype = tf.float16 if FLAGS.use_fp16 else tf.float32
    var = _variable_on_cpu(name, shape, tf.truncated_normal_initializer(stddev=stddev, dtype=dtype))
    if wd is not None:
        weight_decay = tf.multiply(tf.nn.l2_loss(var), wd, name='weight_loss')
        tf.add_to_collection('losses', weight_decay)
    return var


def distorted_inputs():
    """Construct distorted input for CIFAR training using the Reader ops (or tf.data).

    Returns:
      images: Images. 4D tensor of [batch_size, IMAGE_SIZE, IMAGE_SIZE, 3] size.
      labels: Labels. 1D tensor of [batch_size] size.
    Raises:
      UserError: if the training data is missing or not CIFAR-10.
    """
    data_dir = os.path.join(FLAGS.data_dir, DATA_SUBDIR)
    if FLAGS.input_pipeline == 'dataset':
        build_inputs = cifar10_input.distorted_inputs_dataset
    else:
        build_inputs = cifar10_input.distorted_inputs
    images, labels = build_inputs(data_dir=data_dir, batch_size=FLAGS.batch_size)
    if FLAGS.use_fp16:
        images = tf.cast(images, tf.float16)
    return images, labels


def inputs(eval_data):
    """Construct input for CIFAR evaluation using the Reader ops.

    Args:
      eval_data: bool, indicating if one should use the train or eval data set.
    Returns:
      images: Images. 4D tensor of [batch_size, IMAGE_SIZE, IMAGE_SIZE, 3] size.
      labels: Labels. 1D tensor of [batch_size] size.
    Raises:
      UserError: if the data is missing or not CIFAR-10.
    """
    data_dir = os.path.join(FLAGS.data_dir, DATA_SUBDIR)
    images, labels = cifar10_input.inputs(eval_data=eval_data, data_dir=data_dir,
                                          batch_size=FLAGS.batch_size)
    if FLAGS.use_fp16:
        images = tf.cast(images, tf.float16)
    return images, labels


def inference(images):
    """Build the CIFAR-10 model.

    Args:
      images: Images returned from distorted_inputs() or inputs(); any batch size.
    Returns:
      Logits.
    """
    # tf.get_variable(), not tf.Variable(), so that multi-GPU towers share the variables.
    with tf.variable_scope('conv1') as scope:
        kernel = _variable_with_weight_decay('weights', shape=[5, 5, 3, 64],
                                             stddev=5e-2, wd=None)
        conv = tf.nn.conv2d(images, kernel, [1, 1, 1, 1], padding='SAME')
        biases = _variable_on_cpu('biases', [64], tf.constant_initializer(0.0))
        pre_activation = tf.nn.bias_add(conv, biases)
        conv1 = tf.nn.relu(pre_activation, name=scope.name)
        _activation_summary(conv1)

    pool1 = tf.nn.max_pool(conv1, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1],
                           padding='SAME', name='pool1')
    norm1 = local_response_normalization(pool1, name='norm1')

    with tf.variable_scope('conv2') as scope:
        kernel = _variable_with_weight_decay('weights', shape=[5, 5, 64, 64],
                                             stddev=5e-2, wd=None)
        conv = tf.nn.conv2d(norm1, kernel, [1, 1, 1, 1], padding='SAME')
        biases = _variable_on_cpu('biases', [64], tf.constant_initializer(0.1))
        pre_activation = tf.nn.bias_add(conv, biases)
        conv2 = tf.nn.relu(pre_activation, name=scope.name)
        _activation_summary(conv2)

    norm2 = local_response_normalization(conv2, name='norm2')
    pool2 = tf.nn.max_pool(norm2, ksize=[1, 3, 3, 1],
                           strides=[1, 2, 2, 1], padding='SAME', name='pool2')

    with tf.variable_scope('local3') as scope:
        # Move everything into depth so we can perform a single matrix multiply;
        # the batch dimension is taken at run time, so any batch size works.
        dim = pool2.shape[1:].num_elements()
        reshape = tf.reshape(pool2, [tf.shape(pool2)[0], dim])
        weights = _variable_with_weight_decay('weights', shape=[dim, 384],
                                              stddev=0.04, wd=0.004)
        biases = _variable_on_cpu('biases', [384], tf.constant_initializer(0.1))
        local3 = tf.nn.relu(tf.matmul(reshape, weights) + biases, name=scope.name)
        _activation_summary(local3)

    with tf.variable_scope('local4') as scope:
        weights = _variable_with_weight_decay('weights', shape=[384, 192],
                                              stddev=0.04, wd=0.004)
        biases = _variable_on_cpu('biases', [192], tf.constant_initializer(0.1))
        local4 = tf.nn.relu(tf.matmul(local3, weights) + biases, name=scope.name)
        _activation_summary(local4)

    # linear layer(WX + b), without softmax: tf.nn.sparse_softmax_cross_entropy_with_logits
    # accepts the unscaled logits and performs the softmax internally for efficiency.
    with tf.variable_scope('softmax_linear') as scope:
        weights = _variable_with_weight_decay('weights', [192, NUM_CLASSES],
                                              stddev=1 / 192.0, wd=None)
        biases = _variable_on_cpu('biases', [NUM_CLASSES], tf.constant_initializer(0.0))
        softmax_linear = tf.add(tf.matmul(local4, weights), biases, name=scope.name)
        _activation_summary(softmax_linear)

    return softmax_linear


def local_response_normalization(x, name):
    """tf.nn.lrn of a 4-D NHWC x with the LRN_ constants, named name; by hand because it is
    faster (see docs/PERFORMANCE.md; tests/test_model.py checks it against tf.nn.lrn)."""
    if x.dtype != tf.float32:  # --use_fp16: TensorFlow's own kernel.
        return tf.nn.lrn(x, LRN_DEPTH_RADIUS, bias=LRN_BIAS, alpha=LRN_ALPHA, beta=LRN_BETA,
                         name=name)
    y = _lrn(x)
    y.set_shape(x.shape)
    return tf.identity(y, name=name)


@tf.custom_gradient
def _lrn(x):
    """The LRN of a float32 NHWC Tensor, and its gradient function: the sum of
    squares is one product with a band matrix, and no op calls pow."""
    depth = tf.compat.dimension_value(x.shape[-1])
    channel = np.arange(depth)  # Column c of window sums channels c-4..c+4.
    window = tf.constant((np.abs(channel[:, None] - channel) <= LRN_DEPTH_RADIUS)
                         .astype(np.float32))
    flat = tf.reshape(x, [-1, depth])
    # d = bias + alpha * (sum of squares over the channel window).
    d = LRN_BIAS + (LRN_ALPHA * LRN_PRESCALE ** 2) * tf.matmul(
        tf.square(flat * (1.0 / LRN_PRESCALE)), window)
    inverse_sqrt = tf.math.rsqrt(d)
    scale = inverse_sqrt * tf.sqrt(inverse_sqrt)  # d ** -0.75, without pow.
    y = flat * scale

    def grad(dy):
        # dx = dy * d**-beta - 2 * alpha * beta * x * window(dy * y / d).
        dy = tf.reshape(dy, [-1, depth])
        dx = dy * scale - (2 * LRN_ALPHA * LRN_BETA) * flat * tf.matmul(dy * y / d, window)
        return tf.reshape(dx, tf.shape(x))

    return tf.reshape(y, tf.shape(x)), grad


def loss(logits, labels, scope=None):
    """Add L2Loss to all the trainable variables.

    Args:
      logits: Logits from inference().
      labels: Labels from distorted_inputs or inputs(). 1-D tensor of shape [batch_size]
      scope: sum only the losses created under this name scope (a tower's).
    Returns:
      Loss tensor of type float.
    """
    labels = tf.cast(labels, tf.int64)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits, name='cross_entropy_per_example')
    cross_entropy_mean = tf.reduce_mean(cross_entropy, name='cross_entropy')
    tf.add_to_collection('losses', cross_entropy_mean)
    # The total loss is the cross entropy loss plus all of the weight decay terms (L2 loss).
    return tf.add_n(tf.get_collection('losses', scope), name='total_loss')


def add_loss_summaries(total_loss, losses=None):
    """Add summaries for losses in CIFAR-10 model: their moving averages too.

    Args:
      total_loss: Total loss from loss().
      losses: the losses it sums; default the 'losses' collection.
    Returns:
      loss_averages_op: op for generating moving averages of losses.
    """
    loss_averages = tf.train.ExponentialMovingAverage(0.9, name='avg')
    losses = tf.get_collection('losses') if losses is None else losses
    loss_averages_op = loss_averages.apply(losses + [total_loss])
    for each_loss in losses + [total_loss]:
        # Name each loss as '(raw)' and its moving average as the original loss name.
        name = strip_tower_prefix(each_loss.op.name)
        _scalar_summary(name + ' (raw)', each_loss)
        _scalar_summary(name, loss_averages.average(each_loss))

    return loss_averages_op


def learning_rate(global_step, batches_per_step=1):
    """The learning rate, decayed every NUM_EPOCHS_PER_DECAY epochs of examples.

    Args:
      global_step: Integer Variable counting the number of training steps.
      batches_per_step: batches of --batch_size one step consumes.
    Returns:
      The learning rate, with a 'learning_rate' summary.
    """
    num_batches_per_epoch = NUM_EXAMPLES_PER_EPOCH_FOR_TRAIN / FLAGS.batch_size
    decay_steps = int(num_batches_per_epoch * NUM_EPOCHS_PER_DECAY / batches_per_step)
    lr = tf.train.exponential_decay(INITIAL_LEARNING_RATE, global_step, decay_steps,
                                    LEARNING_RATE_DECAY_FACTOR, staircase=True)
    _scalar_summary('learning_rate', lr)
    return lr


def optimizer(lr):
    """Gradient descent, with dynamic loss scaling for --mixed_precision=fp16."""
    opt = tf.train.GradientDescentOptimizer(lr)
    if FLAGS.mixed_precision == 'fp16':
        opt, scale = mixed_precision.loss_scale_optimizer(opt)
        _scalar_summary('loss_scale', scale)
    return opt


def apply_gradients(opt, grads, global_step, wrap_optimizer=None):
    """Applies the gradients, then updates the weights' moving averages.

    Args:
      opt: the optimizer, from optimizer().
      grads: list of (gradient, variable) pairs, from opt.compute_gradients().
      global_step: Integer Variable, incremented by the step.
      wrap_optimizer: None, or function(opt, variable_averages) giving an
        optimizer that also updates the averages (the distributed trainer's).
    Returns:
      train_op: op for training.
    """
    variable_averages = tf.train.ExponentialMovingAverage(MOVING_AVERAGE_DECAY, global_step)
    if wrap_optimizer is not None:
        opt = wrap_optimizer(opt, variable_averages)
    apply_gradient_op = opt.apply_gradients(grads, global_step=global_step)

    for var in tf.trainable_variables():
        _histogram_summary(var.op.name, var)
    for grad, var in grads:
        if grad is not None:
            _histogram_summary(var.op.name + '/gradients', grad)

    if wrap_optimizer is not None:
        return apply_gradient_op
    # Track the moving averages of all trainable variables, after the step.
    with tf.control_dependencies([apply_gradient_op]):
        return variable_averages.apply(tf.trainable_variables())


def train(total_loss, global_step):
    """Train CIFAR-10 model: apply an optimizer, then average the trainable variables.

    Args:
      total_loss: Total loss from loss().
      global_step: Integer Variable counting the number of training steps processed.
    Returns:
      train_op: op for training.
    """
    lr = learning_rate(global_step)
    loss_averages_op = add_loss_summaries(total_loss)
    with tf.control_dependencies([loss_averages_op]):
        opt = optimizer(lr)
        grads = opt.compute_gradients(total_loss)

    return apply_gradients(opt, grads, global_step)


def predict(uint8images):
    """The model's predictions for whole images, preprocessed as for evaluation.

    Args:
      uint8images: [n, 32, 32, 3] uint8 Tensor of RGB images, any n.
    Returns:
      logits: [n, NUM_CLASSES] Tensor, from inference().
      probabilities: [n, NUM_CLASSES] float32 Tensor, the softmax of the logits.
    """
    images = cifar10_input.crop_and_standardize(uint8images)
    if FLAGS.use_fp16:
        images = tf.cast(images, tf.float16)
    logits = inference(images)
    return logits, tf.nn.softmax(tf.cast(logits, tf.float32), name='probabilities')


def averaged_variables():
    """The dict from the checkpoint names of the weights' moving averages to
    the model's variables they restore into (build the model first)."""
    return tf.train.ExponentialMovingAverage(MOVING_AVERAGE_DECAY).variables_to_restore()


def averaged_weights_saver():
    """A Saver that restores the moving averages of the weights into the model
    (build it first): they score better than the weights themselves."""
    return tf.train.Saver(averaged_variables())


def class_names():
    """The class names, label 0's first (cifar10_input.read_class_names)."""
    return cifar10_input.read_class_names(os.path.join(FLAGS.data_dir, DATA_SUBDIR))


def maybe_download_and_extract():
    """Download and extract the tarball from Alex's website (--data_url); on failure a
    UserError says what went wrong and what to do."""
    try:
        download.maybe_download_and_extract(FLAGS.data_dir, FLAGS.data_url, FLAGS.data_md5)
    except download.DownloadError as e:
        raise UserError(str(e)) from e
