"""Peer benchmark: the tutorial's CIFAR-10 model trained in PyTorch (CPU, eager).

The same model as cifar10.inference, cifar10.loss and the tutorial's SGD:
conv1 5x5x64, max pool 3x3/2 SAME, LRN, conv2 5x5x64, LRN, max pool 3x3/2
SAME, local3 2304->384, local4 384->192, softmax_linear 192->10; loss = mean
cross entropy + 0.004 * l2_loss of the local3 and local4 weights; plain SGD
at learning rate 0.1, batch 128. The tutorial's learning rate decays only
after 136,718 steps and its moving averages of the weights do not change the
training; this peer has neither.

Three points make PyTorch compute exactly TensorFlow's function:
- TF 'SAME' max pooling 3x3/2 on an even size pads one row and one column
  AFTER the input only (24 -> 12, 12 -> 6); nn.MaxPool2d(padding=1) pads
  both sides and shifts every window. Pooling unpadded with ceil_mode=True
  gives exactly TF's windows for even sizes (the model's 24 and 12); other
  sizes are padded with -inf as TF pads them, then pooled unpadded.
- tf.nn.lrn(depth_radius=4, alpha=a) sums x^2 over 9 channels times a;
  nn.LocalResponseNorm averages over `size` channels, so it is
  LocalResponseNorm(size=9, alpha=9 * a, beta=0.75, k=1.0). That is the
  framework's form of the LRN (--lrn=framework). The other, --lrn=band, is
  the form of cifar10.local_response_normalization: the sum of squares over
  the 9 neighbouring channels as a product with a band matrix (a 1x1
  convolution in NCHW), and d ** -0.75 as rsqrt(d) * sqrt(rsqrt(d)); its
  gradient is autograd's.
- The model flattens NCHW; the local3 weights' rows are permuted from TF's
  NHWC flatten order when loaded (and back when compared), so the weights
  are interchangeable and no permute runs in the training step.
--check REFERENCE.npz (written by make_reference.py) proves all of it.

It trains on preprocessed in-memory images (central crop, per-image
standardization) without the tutorial's random distortions: less work per
example than the tutorial's trainer, so the comparison is conservative.

Usage:
  python bench/peer_torch.py --data_dir /tmp/cifar10_data [--lrn band] [--steps 300] \
      [--json out.json]
  python bench/peer_torch.py --check /tmp/ref.npz [--lrn band]

Exits with status 3 if PyTorch is not installed.
"""

import argparse
import platform
import sys
import time

import common as pc
import numpy as np

try:
    import torch
    import torch.nn.functional as F  # noqa: N812  (the usual PyTorch spelling)
    from torch import nn
except ImportError:
    print('peer_torch: PyTorch is not installed; skipping')
    sys.exit(pc.EXIT_NOT_INSTALLED)

STEPS = 300
LRN_SIZE = 2 * pc.LRN_DEPTH_RADIUS + 1
POOL_SIZE = 3
POOL_STRIDE = 2
POOL2_SIZE = 6
CHANNELS = 64
# Layer name -> (truncated normal stddev, bias init).
INIT = {
    'conv1': (5e-2, 0.0),
    'conv2': (5e-2, 0.1),
    'local3': (0.04, 0.1),
    'local4': (0.04, 0.1),
    'softmax_linear': (1 / 192.0, 0.0),
}
DECAYED = ('local3', 'local4')


def same_pad(size):
    """The padding of TF 'SAME' pooling (POOL_SIZE, POOL_STRIDE) on one axis.

    Args:
      size: the input size along the axis.

    Returns:
      (before, after): TF puts the odd padding element after.
    """
    out = -(-size // POOL_STRIDE)
    total = max((out - 1) * POOL_STRIDE + POOL_SIZE - size, 0)
    return total // 2, total - total // 2


def max_pool_same(x):
    """3x3/2 max pooling exactly as tf.nn.max_pool(padding='SAME'), NCHW.

    Args:
      x: tensor [N, C, H, W].

    Returns:
      The pooled tensor [N, C, ceil(H/2), ceil(W/2)].
    """
    top, bottom = same_pad(x.shape[2])
    left, right = same_pad(x.shape[3])
    if top == 0 and left == 0:
        # Padding only after (even sizes, as 24 and 12): ceil_mode adds the
        # partial last window, exactly, without copying x into a padded tensor.
        return F.max_pool2d(x, POOL_SIZE, POOL_STRIDE, ceil_mode=True)
    x = F.pad(x, (left, right, top, bottom), value=float('-inf'))
    return F.max_pool2d(x, POOL_SIZE, POOL_STRIDE)


class BandLocalResponseNorm(nn.Module):
    """The LRN in the form of cifar10.local_response_normalization, NCHW."""

    def __init__(self, depth):
        """Keeps the band matrix as a 1x1 convolution's kernel (a buffer, not trained).

        Args:
          depth: the number of channels.
        """
        super().__init__()
        window = torch.from_numpy(pc.lrn_window(depth))
        self.register_buffer('window', window.reshape(depth, depth, 1, 1))

    def forward(self, x):
        """Normalizes across channels.

        Args:
          x: tensor [N, C, H, W].

        Returns:
          The normalized tensor, same shape.
        """
        # d = bias + alpha * (sum of squares over the channel window); the
        # window is symmetric, so the kernel's in/out order does not matter.
        d = pc.LRN_BIAS + pc.LRN_ALPHA * F.conv2d(x.square(), self.window)
        inverse_sqrt = torch.rsqrt(d)
        return x * (inverse_sqrt * torch.sqrt(inverse_sqrt))


def make_lrn(form):
    """The tutorial's LRN over CHANNELS channels, in one of common.LRN_FORMS.

    Args:
      form: 'framework' (nn.LocalResponseNorm) or 'band'.

    Returns:
      An nn.Module.
    """
    if form == 'band':
        return BandLocalResponseNorm(CHANNELS)
    return nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_SIZE * pc.LRN_ALPHA, beta=pc.LRN_BETA,
                                k=pc.LRN_BIAS)


class Cifar10Net(nn.Module):
    """The tutorial's model; its parameters are named after the TF variables."""

    def __init__(self, lrn, num_classes):
        """Creates the layers, initialized as the tutorial initializes them.

        Args:
          lrn: the LRN's form, 'framework' or 'band'.
          num_classes: the number of classes (10).
        """
        super().__init__()
        self.conv1 = nn.Conv2d(3, CHANNELS, 5, padding=2)
        self.conv2 = nn.Conv2d(CHANNELS, CHANNELS, 5, padding=2)
        self.local3 = nn.Linear(POOL2_SIZE * POOL2_SIZE * CHANNELS, 384)
        self.local4 = nn.Linear(384, 192)
        self.softmax_linear = nn.Linear(192, num_classes)
        self.lrn = make_lrn(lrn)
        with torch.no_grad():
            for name, (stddev, bias) in INIT.items():
                layer = getattr(self, name)
                nn.init.trunc_normal_(layer.weight, std=stddev, a=-2 * stddev, b=2 * stddev)
                nn.init.constant_(layer.bias, bias)

    def forward(self, x):
        """Computes the logits.

        Args:
          x: float32 tensor [N, 3, 24, 24].

        Returns:
          Logits [N, 10].
        """
        x = self.lrn(max_pool_same(F.relu(self.conv1(x))))
        x = max_pool_same(self.lrn(F.relu(self.conv2(x))))
        x = F.relu(self.local3(torch.flatten(x, 1)))
        x = F.relu(self.local4(x))
        return self.softmax_linear(x)


def total_loss(model, logits, labels):
    """Mean cross entropy plus the tutorial's weight decay.

    Args:
      model: a Cifar10Net.
      logits: [N, 10].
      labels: int64 [N].

    Returns:
      The scalar loss: cross entropy + sum of 0.004 * sum(w^2) / 2 over the
      local3 and local4 weights (TF's l2_loss is sum(w^2) / 2).
    """
    loss = F.cross_entropy(logits, labels)
    for name in DECAYED:
        loss = loss + pc.WEIGHT_DECAY * getattr(model, name).weight.pow(2).sum() / 2
    return loss


def to_torch_weight(name, value):
    """Converts a TF weight array to this model's layout.

    Args:
      name: the layer name ('conv1', 'local3', ...).
      value: the TF array (conv HWIO; dense [in, out], local3's rows in NHWC
        flatten order).

    Returns:
      The numpy array for the PyTorch parameter.
    """
    if name.startswith('conv'):
        return value.transpose(3, 2, 0, 1)
    if name == 'local3':
        value = value.reshape(POOL2_SIZE, POOL2_SIZE, CHANNELS, -1)
        value = value.transpose(2, 0, 1, 3).reshape(POOL2_SIZE * POOL2_SIZE * CHANNELS, -1)
    return value.T


def to_tf_weight(name, value):
    """Converts this model's weight back to the TF layout (see to_torch_weight).

    Args:
      name: the layer name.
      value: the PyTorch parameter as a numpy array.

    Returns:
      The numpy array in TF's layout.
    """
    if name.startswith('conv'):
        return value.transpose(2, 3, 1, 0)
    value = value.T
    if name == 'local3':
        value = value.reshape(CHANNELS, POOL2_SIZE, POOL2_SIZE, -1)
        value = value.transpose(1, 2, 0, 3).reshape(POOL2_SIZE * POOL2_SIZE * CHANNELS, -1)
    return value


def nchw(array):
    """Makes a float32 NCHW tensor of an NHWC numpy array.

    Args:
      array: numpy [N, H, W, C].

    Returns:
      A contiguous torch tensor [N, C, H, W].
    """
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def nhwc(tensor):
    """Makes an NHWC numpy array of an NCHW tensor.

    Args:
      tensor: torch [N, C, H, W].

    Returns:
      numpy [N, H, W, C].
    """
    return tensor.detach().numpy().transpose(0, 2, 3, 1)


def check(path, lrn, num_classes):
    """Checks ops, logits, loss and one SGD step against the reference.

    Args:
      path: the .npz from make_reference.py.
      lrn: the LRN's form, 'framework' or 'band'.
      num_classes: the number of classes.

    Returns:
      The exit status: 0 if everything agrees.
    """
    ref = pc.load_reference(path)
    results = []
    normalized = make_lrn(lrn)(nchw(ref['ops/lrn_in']))
    results.append(pc.check_close('op lrn, %s form' % lrn, nhwc(normalized),
                                  ref['ops/lrn_out']))
    for size in (24, 12):
        pooled = max_pool_same(nchw(ref['ops/pool%d_in' % size]))
        results.append(pc.check_close('op max_pool SAME %dx%d' % (size, size),
                                      nhwc(pooled), ref['ops/pool%d_out' % size]))
    model = Cifar10Net(lrn, num_classes)
    with torch.no_grad():
        for name in INIT:
            layer = getattr(model, name)
            layer.weight.copy_(torch.from_numpy(
                to_torch_weight(name, ref['init/%s/weights' % name]).copy()))
            layer.bias.copy_(torch.from_numpy(ref['init/%s/biases' % name]))
    images = nchw(ref['images'])
    labels = torch.from_numpy(ref['labels']).long()
    acts = {'conv1': F.relu(model.conv1(images))}
    acts['pool1'] = max_pool_same(acts['conv1'])
    acts['norm1'] = model.lrn(acts['pool1'])
    acts['conv2'] = F.relu(model.conv2(acts['norm1']))
    acts['norm2'] = model.lrn(acts['conv2'])
    acts['pool2'] = max_pool_same(acts['norm2'])
    for name, value in acts.items():
        results.append(pc.check_close('act ' + name, nhwc(value), ref['act/' + name]))
    local3 = F.relu(model.local3(torch.flatten(acts['pool2'], 1)))
    local4 = F.relu(model.local4(local3))
    for name, value in (('local3', local3), ('local4', local4)):
        results.append(pc.check_close('act ' + name, value.detach().numpy(),
                                      ref['act/' + name]))
    optimizer = torch.optim.SGD(model.parameters(), lr=pc.LEARNING_RATE)
    logits = model(images)
    loss = total_loss(model, logits, labels)
    results.append(pc.check_close('logits', logits.detach().numpy(), ref['logits']))
    results.append(pc.check_close('loss', loss.item(), ref['loss']))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    for name in INIT:
        layer = getattr(model, name)
        for kind, param in (('weights', layer.weight), ('biases', layer.bias)):
            key = '%s/%s' % (name, kind)
            value = param.detach().numpy()
            if kind == 'weights':
                value = to_tf_weight(name, value)
            results.append(pc.check_close('after ' + key, value, ref['after/' + key]))
            results.append(pc.check_step('update ' + key, ref['init/' + key], value,
                                         ref['after/' + key]))
    print('peer_torch --check %s --lrn=%s (torch %s)' % (path, lrn, torch.__version__))
    return pc.finish_check(results)


def train(x, y, batch_size, steps, lrn, num_classes, seed=0):
    """Trains a fresh model for some steps, timing each.

    Batches are drawn from a fresh shuffle of the data at each pass; the
    last partial batch of a pass is skipped.

    Args:
      x: float32 tensor [N, 3, 24, 24].
      y: int64 tensor [N].
      batch_size: examples per step.
      steps: the number of steps.
      lrn: the LRN's form, 'framework' or 'band'.
      num_classes: the number of classes.
      seed: the torch random seed.

    Returns:
      (timestamps, final_loss): the start time then each step's end time
      (time.perf_counter seconds), and the last step's loss.
    """
    torch.manual_seed(seed)
    model = Cifar10Net(lrn, num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=pc.LEARNING_RATE)
    per_pass = len(x) // batch_size
    order = torch.randperm(len(x))
    timestamps = [time.perf_counter()]
    loss_value = float('nan')
    for step in range(steps):
        position = step % per_pass
        if step and position == 0:
            order = torch.randperm(len(x))
        index = order[position * batch_size:(position + 1) * batch_size]
        loss = total_loss(model, model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        timestamps.append(time.perf_counter())
    return timestamps, loss_value


def main():
    """Parses the flags, then checks or trains and reports.

    Returns:
      The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    pc.add_common_args(parser)
    parser.add_argument('--steps', type=pc.positive_int, default=STEPS,
                        help='training steps to run')
    parser.add_argument('--threads', type=pc.positive_int,
                        default=pc.usable_cores(),
                        help='torch.set_num_threads (default: the usable cores)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    num_classes = pc.input_constants().NUM_CLASSES
    if args.check:
        return check(args.check, args.lrn, num_classes)
    try:
        x, y = pc.load_data(args.data_dir, args.max_records, args.batch_size)
    except (OSError, ValueError) as e:
        print('peer_torch: error: %s' % e, file=sys.stderr)
        return 1
    x, y = nchw(x), torch.from_numpy(y).long()
    timestamps, final_loss = train(x, y, args.batch_size, args.steps, args.lrn, num_classes)
    steady, windows = pc.windows_rate(timestamps, args.batch_size, args.window,
                                      args.warmup_steps)
    result = {
        'peer': 'torch',
        'lrn': args.lrn,
        'framework': 'torch %s' % torch.__version__,
        'python': platform.python_version(),
        'threads': args.threads,
        'batch_size': args.batch_size,
        'num_records': len(x),
        'steps': args.steps,
        'window_steps': args.window,
        'warmup_steps': args.warmup_steps,
        'units': 'examples/sec',
        'steady': steady,
        'steady_windows': windows,
        'wall_secs': timestamps[-1] - timestamps[0],
        'final_loss': final_loss,
    }
    pc.print_result(result)
    if args.json:
        pc.write_json(args.json, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
