# Copyright 2015 The TensorFlow Authors. All Rights Reserved.
# Licensed under the Apache License, Version 2.0 (see LICENSE); changed since.

"""A binary to train CIFAR-10 using multiple GPUs with synchronous updates.

Accuracy:
cifar10_multi_gpu_train.py achieves ~86% accuracy after 100K steps (256
epochs of data) as judged by cifar10_eval.py.

Speed: With batch_size 128 (the original's figures; this port's are in
docs/PERFORMANCE.md).

System        | Step Time (sec/batch)  |     Accuracy
--------------------------------------------------------------------
1 Tesla K20m  | 0.35-0.60              | ~86% at 60K steps  (5 hours)
1 Tesla K40m  | 0.25-0.35              | ~86% at 100K steps (4 hours)
2 Tesla K20m  | 0.13-0.20              | ~84% at 30K steps  (2.5 hours)
3 Tesla K20m  | 0.13-0.18              | ~84% at 30K steps
4 Tesla K20m  | ~0.10                  | ~84% at 30K steps

Usage (the data set is downloaded to --data_dir first if it is not there):

  python cifar10_multi_gpu_train.py --num_gpus=2

One tower per device, each on its own batch; a step applies their averaged
gradients once. --device_type=cpu puts the towers on logical CPU devices.
It shares cifar10_train.py's flags, checkpoints, resume and log line.
"""

import cifar10
import cifar10_train
from cifar10_support import checkpoints
from cifar10_support.runtime import UserError, tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_integer('num_gpus', 1, """How many GPUs to use.""", lower_bound=1)
tf.app.flags.DEFINE_enum('device_type', 'gpu', ['gpu', 'cpu'],
                         """Place the towers on GPUs, or on logical CPU devices (without GPUs).""")

FLAGS_USED = cifar10_train.FLAGS_USED + ['num_gpus', 'device_type']
# The original multi-GPU script trained ten times longer by default.
MAX_STEPS_DEFAULT = 1000000


def tower_loss(scope, images, labels):
    """Calculate the total loss on a single tower running the CIFAR model.

    Args:
      scope: unique prefix string identifying the CIFAR tower, e.g. 'tower_0'
      images, labels: [batch_size, height, width, 3] images and [batch_size] labels.
    Returns:
       Tensor of shape [] containing the total loss for a batch of data
    """
    logits = cifar10.inference(images)
    # Only this tower's losses are summed, although the 'losses' collection holds every tower's.
    return cifar10.loss(logits, labels, scope)


def average_gradients(tower_grads):
    """Calculate the average gradient for each shared variable across all towers
    (a synchronization point across all towers).

    Args:
      tower_grads: List of lists of (gradient, variable) tuples, one list per tower.
    Returns:
       List of pairs of (gradient, variable), the gradient averaged across all towers.
    """
    average_grads = []
    for grad_and_vars in zip(*tower_grads, strict=True):
        # grad_and_vars: ((grad0_gpu0, var0_gpu0), ... , (grad0_gpuN, var0_gpuN))
        grads = [tf.expand_dims(g, 0) for g, _ in grad_and_vars]
        grad = tf.reduce_mean(tf.concat(axis=0, values=grads), 0)
        # The Variables are shared across towers: the first tower's pointer will do.
        v = grad_and_vars[0][1]
        average_grads.append((grad, v))
    return average_grads


def prefetch_queue(tensors, capacity):
    """A queue of whole batches, filled by its own QueueRunner (as slim's
    prefetch_queue was), from which each tower dequeues its own."""
    queue = tf.FIFOQueue(capacity, dtypes=[t.dtype for t in tensors],
                         shapes=[t.shape for t in tensors], name='batch_queue')
    tf.train.add_queue_runner(tf.train.QueueRunner(queue, [queue.enqueue(tensors)]))
    tf.summary.scalar('batch_queue/fraction_of_%d_full' % capacity,
                      tf.cast(queue.size(), tf.float32) / capacity)
    return queue


def build_training(global_step, next_batch, devices, replicas_per_step=1,
                   wrap_optimizer=None):
    """Builds the towers, the averaged update and the summaries; the losses'
    are of the towers' means, under the single-device names.

    Args:
      global_step: the global step variable.
      next_batch: function returning (images, labels) for one tower.
      devices: one device name per tower.
      replicas_per_step: how many replicas (cluster workers) share a step.
      wrap_optimizer: passed to cifar10.apply_gradients.
    Returns:
      train_op: runs one synchronous step of all towers.
      total_loss: the towers' mean total loss.
      summary_op: the summaries of the last tower and of the update.
    """
    # The schedule counts examples: a step consumes a batch per tower and replica.
    opt = cifar10.optimizer(cifar10.learning_rate(
        global_step, batches_per_step=len(devices) * replicas_per_step))

    tower_grads, tower_losses, tower_totals = [], [], []
    with tf.variable_scope(tf.get_variable_scope()):
        for i, device in enumerate(devices):
            with tf.device(device):
                with tf.name_scope('%s_%d' % (cifar10.TOWER_NAME, i)) as scope:
                    image_batch, label_batch = next_batch()
                    # The entire model, its variables shared across all towers.
                    tower_totals.append(tower_loss(scope, image_batch, label_batch))
                    tower_losses.append(tf.get_collection('losses', scope))
                    tf.get_variable_scope().reuse_variables()
                    tower_grads.append(opt.compute_gradients(tower_totals[-1]))

    # The step's losses, named as the single-device trainer's
    # ('tower_1/cross_entropy' -> 'cross_entropy'), with their summaries.
    def mean_over_towers(tensors):
        return tf.reduce_mean(tf.stack(tensors),
                              name=cifar10.strip_tower_prefix(tensors[0].op.name))

    losses = [mean_over_towers(list(each)) for each in zip(*tower_losses, strict=True)]
    total_loss = mean_over_towers(tower_totals)
    loss_averages_op = cifar10.add_loss_summaries(total_loss, losses)

    grads = average_gradients(tower_grads)
    train_op = tf.group(cifar10.apply_gradients(opt, grads, global_step, wrap_optimizer),
                        loss_averages_op)

    # Retain the summaries from the final tower, and those outside the towers.
    other_towers = tuple('%s_%d/' % (cifar10.TOWER_NAME, i) for i in range(len(devices) - 1))
    summary_op = tf.summary.merge(
        [summary for summary in tf.get_collection(tf.GraphKeys.SUMMARIES)
         if not summary.op.name.startswith(other_towers)])
    return train_op, total_loss, summary_op


def tower_devices(config, num_towers, device_type):
    """Names num_towers devices of device_type ('gpu' or 'cpu') for the towers;
    raises UserError if a session with this config has fewer."""
    with tf.Graph().as_default(), tf.Session(config=config) as sess:
        present = [device.name for device in sess.list_devices()
                   if device.device_type == device_type.upper()]
    if len(present) < num_towers:
        raise UserError('--num_gpus=%d asks for %d towers, but this machine has %d %s '
                        'device(s): lower --num_gpus, or pass --device_type=cpu to run the '
                        'towers on CPU devices' % (num_towers, num_towers, len(present),
                                                   device_type.upper()))
    return ['/%s:%d' % (device_type, i) for i in range(num_towers)]


def train(config, devices):
    """Train CIFAR-10 for a number of steps, with this session config, on these devices."""
    with tf.Graph().as_default(), tf.device('/cpu:0'):
        # Count the steps; each consumes one batch per tower.
        global_step = tf.train.get_or_create_global_step()

        # Get images and labels for CIFAR-10: one input pipeline for all towers.
        images, labels = cifar10.distorted_inputs()
        batch_queue = prefetch_queue([images, labels], capacity=2 * len(devices))

        train_op, total_loss, summary_op = build_training(global_step, batch_queue.dequeue,
                                                          devices)
        cifar10_train.train_loop(train_op, total_loss, global_step, num_towers=len(devices),
                                 summary_op=summary_op, config=config)


def main(argv=None):  # pylint: disable=unused-argument
    # Check the devices first: a missing GPU should not wait for a download.
    config = cifar10.session_config(
        FLAGS.log_device_placement,
        num_cpu_devices=FLAGS.num_gpus if FLAGS.device_type == 'cpu' else 1)
    devices = tower_devices(config, FLAGS.num_gpus, FLAGS.device_type)
    with checkpoints.claim_train_dir(FLAGS.train_dir):
        cifar10.maybe_download_and_extract()
        train(config, devices)


def run():
    """Console-script entry point: parses the flags and trains."""
    FLAGS.set_default('max_steps', MAX_STEPS_DEFAULT)
    cifar10.run(main, FLAGS_USED)


if __name__ == '__main__':
    run()
