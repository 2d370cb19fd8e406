"""Peer benchmark: the tutorial's CIFAR-10 model trained with Keras 3 on TensorFlow.

The same model as cifar10.inference, cifar10.loss and the tutorial's SGD:
conv1 5x5x64, max pool 3x3/2 SAME, LRN, conv2 5x5x64, LRN, max pool 3x3/2
SAME, local3 2304->384, local4 384->192, softmax_linear 192->10; loss = mean
cross entropy + 0.004 * l2_loss of the local3 and local4 weights (an L2
regularizer of 0.002, since l2_loss(w) = sum(w^2) / 2); plain SGD at
learning rate 0.1, batch 128. The tutorial's learning rate decays only after
136,718 steps and its moving averages of the weights do not change the
training; this peer has neither. Keras 3 has no LRN layer, so a small layer
computes it, in one of two forms (--lrn):
  framework  tf.nn.local_response_normalization, as a Keras user would
  band       the form of cifar10.local_response_normalization: the sum of
             squares over the 9 neighbouring channels as a product with a
             band matrix, and d ** -0.75 as rsqrt(d) * sqrt(rsqrt(d)); its
             gradient is TensorFlow's automatic one
The model is compiled with jit_compile=False: no XLA, like the tutorial.

It trains the natural Keras way, model.fit on in-memory numpy arrays with
shuffle=True, and a callback records the time of every batch end and epoch
boundary. It reports:
  steady                  median examples/sec over windows of --window
                          batches inside one epoch (after --warmup_steps in
                          the first epoch and the first batch of the others)
  whole_epoch             examples per epoch / seconds from the end of one
                          epoch's last batch to the end of the next one's:
                          an epoch of batches and one epoch change, idle
                          time included (median over epochs 2..E; needs 2+)
  epoch_change_idle_secs  median over epoch changes of: time from the last
                          batch end of an epoch to the first batch end of
                          the next, minus one steady batch time
The idle falls between on_epoch_begin and the first batch of the new epoch,
where Keras moves to a fresh tf.data iterator; it varies from change to
change (0.01 to 8 s seen), so each change's parts are in the JSON too.
The images are preprocessed once (central crop, per-image standardization),
without the tutorial's random distortions: less work per example than the
tutorial's trainer does, so the comparison is conservative.

Usage:
  python bench/peer_keras.py --data_dir /tmp/cifar10_data [--lrn band] [--epochs 3] \
      [--json out.json]
  python bench/peer_keras.py --check /tmp/ref.npz [--lrn band]

Exits with status 3 if Keras (or TensorFlow) is not installed.
"""

import argparse
import math
import os
import platform
import statistics
import sys
import time

import common as pc

os.environ['KERAS_BACKEND'] = 'tensorflow'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

try:
    import keras
    import tensorflow as tf
except ImportError:
    print('peer_keras: Keras 3 with TensorFlow is not installed; skipping')
    sys.exit(pc.EXIT_NOT_INSTALLED)

EPOCHS = 3
CHANNELS = 64
# Layer name -> (truncated normal stddev, bias init).
INIT = {
    'conv1': (5e-2, 0.0),
    'conv2': (5e-2, 0.1),
    'local3': (0.04, 0.1),
    'local4': (0.04, 0.1),
    'softmax_linear': (1 / 192.0, 0.0),
}
ACTIVATIONS = ('conv1', 'pool1', 'norm1', 'conv2', 'norm2', 'pool2', 'local3', 'local4')


class LocalResponseNorm(keras.layers.Layer):
    """The tutorial's LRN, in the form the flag --lrn names (common.LRN_FORMS)."""

    def __init__(self, form, **kwargs):
        """Keeps the form.

        Args:
          form: 'framework' (tf.nn.local_response_normalization) or 'band'.
          **kwargs: keras.layers.Layer's arguments (name).
        """
        super().__init__(**kwargs)
        self.form = form
        self.window = None

    def build(self, input_shape):
        """Makes the band matrix of the input's channels (band form only).

        Args:
          input_shape: the NHWC input shape.
        """
        if self.form == 'band':
            self.window = tf.constant(pc.lrn_window(input_shape[-1]))

    def call(self, inputs):
        """Normalizes across channels.

        Args:
          inputs: NHWC tensor.

        Returns:
          The normalized tensor, same shape.
        """
        if self.form == 'framework':
            return tf.nn.local_response_normalization(
                inputs, depth_radius=pc.LRN_DEPTH_RADIUS, bias=pc.LRN_BIAS,
                alpha=pc.LRN_ALPHA, beta=pc.LRN_BETA)
        # d = bias + alpha * (sum of squares over the channel window);
        # d ** -0.75 without pow, as cifar10.local_response_normalization.
        d = pc.LRN_BIAS + pc.LRN_ALPHA * tf.tensordot(tf.square(inputs), self.window, axes=1)
        inverse_sqrt = tf.math.rsqrt(d)
        return inputs * (inverse_sqrt * tf.sqrt(inverse_sqrt))

    def compute_output_shape(self, input_shape):
        """The output has the input's shape.

        Args:
          input_shape: a shape tuple.

        Returns:
          input_shape.
        """
        return input_shape


def init_args(name):
    """The initializers of one layer, as the tutorial initializes it.

    Args:
      name: the layer name.

    Returns:
      A dict of kernel_initializer and bias_initializer.
    """
    stddev, bias = INIT[name]
    return {'kernel_initializer': keras.initializers.TruncatedNormal(stddev=stddev),
            'bias_initializer': keras.initializers.Constant(bias)}


def max_pool(name):
    """The tutorial's 3x3, stride 2, SAME max pooling.

    Args:
      name: the layer name.

    Returns:
      A MaxPooling2D layer.
    """
    return keras.layers.MaxPooling2D(3, 2, padding='same', name=name)


def build_model(lrn, image_size, num_classes):
    """Builds and compiles the model (SGD 0.1, no XLA).

    Args:
      lrn: the LRN's form, 'framework' or 'band'.
      image_size: the input images' height and width (24).
      num_classes: the number of classes (10).

    Returns:
      A compiled keras.Model mapping [N, 24, 24, 3] images to [N, 10] logits.
    """
    decay = keras.regularizers.L2(pc.WEIGHT_DECAY / 2)
    inputs = keras.Input((image_size, image_size, 3), name='images')
    x = keras.layers.Conv2D(CHANNELS, 5, padding='same', activation='relu', name='conv1',
                            **init_args('conv1'))(inputs)
    x = max_pool('pool1')(x)
    x = LocalResponseNorm(lrn, name='norm1')(x)
    x = keras.layers.Conv2D(CHANNELS, 5, padding='same', activation='relu', name='conv2',
                            **init_args('conv2'))(x)
    x = LocalResponseNorm(lrn, name='norm2')(x)
    x = max_pool('pool2')(x)
    x = keras.layers.Flatten(name='flatten')(x)
    x = keras.layers.Dense(384, activation='relu', kernel_regularizer=decay, name='local3',
                           **init_args('local3'))(x)
    x = keras.layers.Dense(192, activation='relu', kernel_regularizer=decay, name='local4',
                           **init_args('local4'))(x)
    logits = keras.layers.Dense(num_classes, name='softmax_linear',
                                **init_args('softmax_linear'))(x)
    model = keras.Model(inputs, logits, name='cifar10')
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=pc.LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    return model


class Timer(keras.callbacks.Callback):
    """Records the time of every batch end and epoch boundary (perf_counter)."""

    def __init__(self):
        """Starts with empty records."""
        super().__init__()
        self.epoch_begin = []
        self.epoch_end = []
        self.first_batch_begin = []
        self.batch_end = []
        self.train_end = None

    def on_epoch_begin(self, epoch, logs=None):
        """Opens a new epoch's list of batch end times.

        Args:
          epoch: the epoch index.
          logs: unused.
        """
        self.epoch_begin.append(time.perf_counter())
        self.batch_end.append([])

    def on_train_batch_begin(self, batch, logs=None):
        """Notes when an epoch's first batch starts.

        Args:
          batch: the batch index within the epoch.
          logs: unused.
        """
        if batch == 0:
            self.first_batch_begin.append(time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        """Notes when a batch ends (fit runs each step synchronously).

        Args:
          batch: the batch index within the epoch.
          logs: unused (not read, so no tensor is copied).
        """
        self.batch_end[-1].append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        """Notes when an epoch ends.

        Args:
          epoch: the epoch index.
          logs: unused.
        """
        self.epoch_end.append(time.perf_counter())

    def on_train_end(self, logs=None):
        """Notes when training ends.

        Args:
          logs: unused.
        """
        self.train_end = time.perf_counter()


def step_sizes(num_records, batch_size):
    """The examples in each batch of one epoch (the last may be partial).

    Args:
      num_records: examples per epoch.
      batch_size: the batch size.

    Returns:
      A list of ints.
    """
    full, rest = divmod(num_records, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def summarize(timer, num_records, args):
    """Turns the recorded times into the result dict.

    Args:
      timer: the Timer after fit.
      num_records: examples per epoch.
      args: the parsed flags.

    Returns:
      The result dict (see the module docstring).
    """
    sizes = step_sizes(num_records, args.batch_size)
    rates = []
    for epoch, ends in enumerate(timer.batch_end):
        warmup = args.warmup_steps if epoch == 0 else 1
        _, epoch_rates = pc.windows_rate([timer.epoch_begin[epoch]] + ends, args.batch_size,
                                         args.window, warmup, sizes)
        rates.extend(epoch_rates)
    steady = statistics.median(rates) if rates else None
    # A whole epoch, as a Keras user lives it: from the end of one epoch's
    # last batch to the end of the next one's, so one epoch of batches and
    # one epoch change, idle time included.
    last_batch_ends = [ends[-1] for ends in timer.batch_end]
    spans = [b - a for a, b in zip(last_batch_ends[:-1], last_batch_ends[1:], strict=True)]
    whole = [num_records / s for s in spans]
    changes = []
    for epoch in range(len(timer.batch_end) - 1):
        last_end = timer.batch_end[epoch][-1]
        changes.append({
            'last_batch_end_to_epoch_end': timer.epoch_end[epoch] - last_end,
            'epoch_end_to_next_epoch_begin': timer.epoch_begin[epoch + 1] - timer.epoch_end[epoch],
            'next_epoch_begin_to_first_batch_begin':
                timer.first_batch_begin[epoch + 1] - timer.epoch_begin[epoch + 1],
            'first_batch_secs': timer.batch_end[epoch + 1][0] - timer.first_batch_begin[epoch + 1],
            'last_batch_end_to_first_batch_end': timer.batch_end[epoch + 1][0] - last_end,
        })
    idle = None
    if changes and steady:
        batch_secs = args.batch_size / steady
        idle = statistics.median(c['last_batch_end_to_first_batch_end'] - batch_secs
                                 for c in changes)
    return {
        'peer': 'keras',
        'lrn': args.lrn,
        'framework': 'keras %s, tensorflow %s' % (keras.__version__, tf.__version__),
        'python': platform.python_version(),
        'jit_compile': False,
        'batch_size': args.batch_size,
        'num_records': num_records,
        'batches_per_epoch': len(sizes),
        'epochs': args.epochs,
        'window_steps': args.window,
        'warmup_steps': args.warmup_steps,
        'units': 'examples/sec',
        'steady': steady,
        'steady_windows': rates,
        'whole_epoch': statistics.median(whole) if whole else None,
        'whole_epoch_list': whole,
        'epoch_secs': spans,
        'epoch_change_idle_secs': idle,
        'epoch_changes': changes,
        'wall_secs': timer.train_end - timer.epoch_begin[0],
    }


def check(path, lrn, num_classes):
    """Checks ops, activations, logits, loss and one fit step against the reference.

    The step is model.train_on_batch, which runs the train_step that fit runs.

    Args:
      path: the .npz from make_reference.py.
      lrn: the LRN's form, 'framework' or 'band'.
      num_classes: the number of classes.

    Returns:
      The exit status: 0 if everything agrees.
    """
    ref = pc.load_reference(path)
    results = []
    normalized = LocalResponseNorm(lrn)(ref['ops/lrn_in'])
    results.append(pc.check_close('op lrn, %s form' % lrn, normalized,
                                  ref['ops/lrn_out']))
    for size in (24, 12):
        pooled = max_pool('pool%d' % size)(ref['ops/pool%d_in' % size])
        results.append(pc.check_close('op max_pool SAME %dx%d' % (size, size), pooled,
                                      ref['ops/pool%d_out' % size]))
    model = build_model(lrn, ref['images'].shape[1], num_classes)
    for name in INIT:
        model.get_layer(name).set_weights([ref['init/%s/weights' % name],
                                           ref['init/%s/biases' % name]])
    images, labels = ref['images'], ref['labels']
    probe = keras.Model(model.input, [model.get_layer(n).output for n in ACTIVATIONS])
    for name, value in zip(ACTIVATIONS, probe(images), strict=True):
        results.append(pc.check_close('act ' + name, value, ref['act/' + name]))
    logits = model(images)
    loss = model.loss(labels, logits) + sum(model.losses)
    results.append(pc.check_close('logits', logits, ref['logits']))
    results.append(pc.check_close('loss', loss, ref['loss']))
    fit_loss = model.train_on_batch(images, labels)
    results.append(pc.check_close('train_on_batch loss', fit_loss, ref['loss']))
    for name in INIT:
        for kind, value in zip(('weights', 'biases'), model.get_layer(name).get_weights(),
                               strict=True):
            key = '%s/%s' % (name, kind)
            results.append(pc.check_close('after ' + key, value, ref['after/' + key]))
            results.append(pc.check_step('update ' + key, ref['init/' + key], value,
                                         ref['after/' + key]))
    print('peer_keras --check %s --lrn=%s (keras %s, tensorflow %s)'
          % (path, lrn, keras.__version__, tf.__version__))
    return pc.finish_check(results)


def main():
    """Parses the flags, then checks or trains and reports.

    Returns:
      The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    pc.add_common_args(parser)
    parser.add_argument('--epochs', type=pc.positive_int, default=EPOCHS,
                        help='epochs to train (whole_epoch needs 2 or more)')
    parser.add_argument('--verbose', type=int, default=0, choices=(0, 1, 2),
                        help="model.fit's verbose (default 0: no progress bar)")
    args = parser.parse_args()
    if keras.backend.backend() != 'tensorflow':
        print('peer_keras: Keras runs on %s, not tensorflow' % keras.backend.backend())
        return 1
    num_classes = pc.input_constants().NUM_CLASSES
    if args.check:
        return check(args.check, args.lrn, num_classes)
    try:
        x, y = pc.load_data(args.data_dir, args.max_records, args.batch_size)
    except (OSError, ValueError) as e:
        print('peer_keras: error: %s' % e, file=sys.stderr)
        return 1
    model = build_model(args.lrn, x.shape[1], num_classes)
    timer = Timer()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True,
                        callbacks=[timer], verbose=args.verbose)
    result = summarize(timer, len(x), args)
    result['final_loss'] = history.history['loss'][-1]
    if not math.isfinite(result['final_loss']):
        print('peer_keras: the loss is %s' % result['final_loss'])
    pc.print_result(result)
    if args.json:
        pc.write_json(args.json, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
