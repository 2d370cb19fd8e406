"""Writes the tutorial model's reference numbers, for the peers' --check.

Runs the repository's own cifar10.inference and cifar10.loss (TF1 graph
mode through tf.compat.v1) on a fixed, seeded batch and saves to an .npz:

  init/<variable>    every trainable variable's initial value ('conv1/weights')
  after/<variable>   its value after ONE plain SGD step (learning rate 0.1) on
                     the total loss, cross entropy plus weight decay
  images, labels     the batch [16, 24, 24, 3] and its labels
  logits, loss       the model's logits and total loss before the step
  act/<layer>        the activations of each layer (conv1 ... local4), NHWC
  ops/...            tf.nn.lrn and SAME max-pooling outputs on signed,
                     large random inputs, to check those two ops on their own

The step is tf.train.GradientDescentOptimizer(0.1), not cifar10.train, which
also keeps moving averages and decays the learning rate.

Usage (from anywhere; the repository root is found from this file):

  python bench/make_reference.py /tmp/ref.npz
"""

import argparse
import os
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
import cifar10  # noqa: E402  (needs REPO_ROOT on sys.path)
from cifar10 import tf  # noqa: E402

BATCH = 16
SEED = 20240
LEARNING_RATE = 0.1
LRN_ARGS = {'depth_radius': 4, 'bias': 1.0, 'alpha': 0.001 / 9.0, 'beta': 0.75}
# Large enough that the LRN denominator differs clearly from 1.
LRN_INPUT_SCALE = 30.0
# The two pooling input sizes of the model, 24x24 and 12x12.
POOL_SIZES = (24, 12)
CHANNELS = 64
# Activations saved under act/: graph tensor name -> layer name.
ACTIVATIONS = {
    'conv1/conv1:0': 'conv1',
    'pool1:0': 'pool1',
    'norm1:0': 'norm1',
    'conv2/conv2:0': 'conv2',
    'norm2:0': 'norm2',
    'pool2:0': 'pool2',
    'local3/local3:0': 'local3',
    'local4/local4:0': 'local4',
}


def make_batch(rng):
    """Makes the fixed input batch.

    Args:
      rng: a numpy Generator.

    Returns:
      images: float32 [BATCH, 24, 24, 3], standard normal like standardized images.
      labels: int32 [BATCH], every class at least once.
    """
    shape = (BATCH, cifar10.IMAGE_SIZE, cifar10.IMAGE_SIZE, 3)
    images = rng.standard_normal(shape).astype(np.float32)
    labels = (np.arange(BATCH) % cifar10.NUM_CLASSES).astype(np.int32)
    return images, labels


def op_references(sess, rng):
    """Runs tf.nn.lrn and 3x3/2 SAME max pooling on signed random inputs.

    Args:
      sess: a tf.Session.
      rng: a numpy Generator.

    Returns:
      A dict of npz key -> array: ops/lrn_in, ops/lrn_out, and for each size
      S in POOL_SIZES ops/pool{S}_in, ops/pool{S}_out.
    """
    out = {}
    lrn_in = (LRN_INPUT_SCALE * rng.standard_normal((2, 12, 12, CHANNELS))).astype(np.float32)
    out['ops/lrn_in'] = lrn_in
    out['ops/lrn_out'] = sess.run(tf.nn.lrn(tf.constant(lrn_in), **LRN_ARGS))
    for size in POOL_SIZES:
        pool_in = rng.standard_normal((2, size, size, CHANNELS)).astype(np.float32)
        pool = tf.nn.max_pool(tf.constant(pool_in), ksize=[1, 3, 3, 1],
                              strides=[1, 2, 2, 1], padding='SAME')
        out['ops/pool%d_in' % size] = pool_in
        out['ops/pool%d_out' % size] = sess.run(pool)
    return out


def build_reference():
    """Builds the model, runs the batch and one SGD step.

    Returns:
      A dict of npz key -> array (see the module docstring).
    """
    rng = np.random.default_rng(SEED)
    images, labels = make_batch(rng)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(SEED)
        images_ph = tf.placeholder(tf.float32, images.shape, name='images')
        labels_ph = tf.placeholder(tf.int32, labels.shape, name='labels')
        logits = cifar10.inference(images_ph)
        total_loss = cifar10.loss(logits, labels_ph)
        train_op = tf.train.GradientDescentOptimizer(LEARNING_RATE).minimize(total_loss)
        variables = tf.trainable_variables()
        names = [v.op.name for v in variables]
        acts = {name: graph.get_tensor_by_name(tensor) for tensor, name in ACTIVATIONS.items()}
        feed = {images_ph: images, labels_ph: labels}
        with tf.Session(graph=graph, config=cifar10.session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            before = sess.run(variables)
            logits_v, loss_v, acts_v = sess.run([logits, total_loss, acts], feed)
            sess.run(train_op, feed)
            after = sess.run(variables)
            out = op_references(sess, rng)
    out.update({'images': images, 'labels': labels, 'logits': logits_v,
                'loss': np.float32(loss_v)})
    out.update({'act/' + name: value for name, value in acts_v.items()})
    for name, value_before, value_after in zip(names, before, after, strict=True):
        out['init/' + name] = value_before
        out['after/' + name] = value_after
    return out


def main():
    """Parses the command line and writes the .npz.

    Returns:
      The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('output', help='the .npz file to write')
    args = parser.parse_args()
    cifar10.FLAGS.mark_as_parsed()
    reference = build_reference()
    folder = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(folder, exist_ok=True)
    np.savez(args.output, **reference)
    params = sum(reference[k].size for k in reference if k.startswith('init/'))
    print('wrote %s: %d variables, %d parameters, loss %.6f'
          % (args.output, sum(k.startswith('init/') for k in reference), params,
             reference['loss']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
