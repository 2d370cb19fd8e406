# Copyright 2015 The TensorFlow Authors. All Rights Reserved.
# Licensed under the Apache License, Version 2.0 (see LICENSE); changed since.

"""A binary to train CIFAR-10 using a single GPU (or the CPU).

Accuracy:
cifar10_train.py achieves ~86% accuracy after 100K steps (256 epochs of
data) as judged by cifar10_eval.py.

Speed: With batch_size 128 (the original's figures; this port's are in
docs/PERFORMANCE.md).

System        | Step Time (sec/batch)  |     Accuracy
------------------------------------------------------------------
1 Tesla K20m  | 0.35-0.60              | ~86% at 60K steps  (5 hours)
1 Tesla K40m  | 0.25-0.35              | ~86% at 100K steps (4 hours)

Usage (the data set is downloaded to --data_dir first if it is not there):

  python cifar10_train.py --train_dir=/tmp/cifar10_train --data_dir=/tmp/cifar10_data

Started again on the same --train_dir it resumes from the newest checkpoint
that restores; --max_steps is the absolute last step. Ctrl-C or SIGTERM
saves a checkpoint at the current step and exits. One trainer at a time
may use a --train_dir.
"""

import cifar10
from cifar10_support import checkpoints, training
from cifar10_support.runtime import tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_string('train_dir', '/tmp/cifar10_train',
                           """Directory where to write event logs and checkpoint.""")
tf.app.flags.DEFINE_integer('max_steps', 100000, """Number of batches to run (the absolute """
                            """last global step: a resumed run stops there too).""", lower_bound=0)
tf.app.flags.DEFINE_boolean('log_device_placement', False,
                            """Whether to log device placement.""")
tf.app.flags.DEFINE_integer('log_frequency', 10,
                            """How often to log results to the console.""", lower_bound=1)
tf.app.flags.DEFINE_integer('save_checkpoint_steps', 1000,
                            """Save a checkpoint every this many steps.""", lower_bound=1)

# The flags of this trainer, which the multi-GPU and distributed ones take too.
FLAGS_USED = (cifar10.MODEL_FLAGS + cifar10.DOWNLOAD_FLAGS + cifar10.TRAINING_FLAGS
              + ['train_dir', 'max_steps', 'log_device_placement', 'log_frequency',
                 'save_checkpoint_steps'])


def train_loop(train_op, loss, global_step, num_towers=1, **kwargs):
    """Runs train_op with training.train_loop, given the flags: --train_dir,
    --max_steps, --save_checkpoint_steps, --log_frequency, --batch_size.

    Args:
      train_op: op that runs one step and increments global_step.
      loss: the loss tensor to log and check.
      global_step: the global step variable.
      num_towers: batches of --batch_size one step consumes.
      **kwargs: more arguments of training.train_loop; config defaults to cifar10.session_config().
    """
    kwargs.setdefault('config', cifar10.session_config(FLAGS.log_device_placement))
    training.train_loop(train_op, loss, global_step, FLAGS.train_dir, FLAGS.max_steps,
                        FLAGS.save_checkpoint_steps, FLAGS.log_frequency,
                        examples_per_run=num_towers * FLAGS.batch_size, num_towers=num_towers,
                        **kwargs)


def train():
    """Train CIFAR-10 for a number of steps."""
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()

        # Get images and labels for CIFAR-10.
        # Force input pipeline to CPU:0 to avoid operations sometimes ending up on
        # GPU and resulting in a slow down.
        with tf.device('/cpu:0'):
            images, labels = cifar10.distorted_inputs()
        logits = cifar10.inference(images)
        loss = cifar10.loss(logits, labels)
        train_op = cifar10.train(loss, global_step)
        train_loop(train_op, loss, global_step)


def main(argv=None):  # pylint: disable=unused-argument
    with checkpoints.claim_train_dir(FLAGS.train_dir):  # It resumes: nothing is deleted.
        cifar10.maybe_download_and_extract()
        train()


def run():
    """Console-script entry point: parses the flags and trains."""
    cifar10.run(main, FLAGS_USED)


if __name__ == '__main__':
    run()
