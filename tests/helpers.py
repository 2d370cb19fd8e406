"""Helpers for the tests: CIFAR-10 records in the exact binary format,
learnable synthetic data, running the scripts as a user does, and reading
what they leave behind (event files, checkpoints).

Importing this module does not import TensorFlow (so the download tests run
without it); the helpers that need it import it when called.
"""

import fcntl
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from absl.testing import flagsaver
from tensorboard.backend.event_processing import event_accumulator

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = Path(os.environ.get('CIFAR10_SAMPLE_DIR',
                                 REPO.parent / 'shared' / 'cifar10-sample'))
sys.path.insert(0, str(REPO))

from cifar10_support.download import DATA_SUBDIR  # noqa: E402  (after the path is set)

# The binary release's files, as the tests expect the scripts to read them.
TRAIN_FILES = ['data_batch_%d.bin' % i for i in range(1, 6)]
TEST_FILE = 'test_batch.bin'

# Ten colours that stay distinct after per-image standardization (which
# removes brightness and contrast), so a class is learnable from its colour.
CLASS_COLOURS = np.array([
    [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
    [0, 255, 255], [255, 128, 0], [128, 0, 255], [0, 128, 255], [128, 255, 0],
], dtype=np.float64)

SCRIPT_TIMEOUT_SECS = 240


def record_bytes(labels, images):
    """CIFAR-10 records: for each image a label byte, then its R, G and B planes.

    Args:
      labels: N ints in 0..9.
      images: uint8 array [N, 32, 32, 3] (height, width, channel).

    Returns:
      N * 3073 bytes.
    """
    images = np.asarray(images, dtype=np.uint8)
    return b''.join(bytes([label]) + image.transpose(2, 0, 1).tobytes()
                    for label, image in zip(labels, images, strict=True))


def write_records(path, labels, images):
    """Writes CIFAR-10 records (see record_bytes) to the file at path."""
    Path(path).write_bytes(record_bytes(labels, images))


def learnable_images(labels, rng, noise=40.0):
    """Images whose colour says their class, plus noise.

    Args:
      labels: N ints in 0..9.
      rng: a numpy Generator.
      noise: standard deviation of the per-pixel noise.

    Returns:
      uint8 array [N, 32, 32, 3].
    """
    base = CLASS_COLOURS[np.asarray(labels)][:, None, None, :]
    images = base + rng.normal(0.0, noise, size=(len(labels), 32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def make_data_dir(root, records_per_file=200, seed=0):
    """Creates <root>/cifar-10-batches-bin/ with learnable synthetic data.

    Args:
      root: the --data_dir to create.
      records_per_file: records in each of the six files.
      seed: random seed.

    Returns:
      root, as a Path.
    """
    rng = np.random.default_rng(seed)
    batches = Path(root) / DATA_SUBDIR
    batches.mkdir(parents=True)
    for name in TRAIN_FILES + [TEST_FILE]:
        labels = rng.integers(0, 10, size=records_per_file)
        write_records(batches / name, labels, learnable_images(labels, rng))
    return Path(root)


def once_per_run(tmp_path_factory, name, make):
    """Makes something once for the whole test run, shared by the workers
    pytest-xdist runs the tests in (each of which has its own session).

    The first worker to ask runs make(folder) in a new folder of the run;
    the others wait for it (an flock) and get the same folder and result.

    Args:
      tmp_path_factory: pytest's fixture.
      name: a name for it, unique in the run.
      make: a function(folder) returning a subprocess.CompletedProcess.

    Returns:
      (folder, the CompletedProcess).
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        base = base.parent  # The run's folder, above each worker's.
    folder, record = base / ('shared-' + name), base / ('shared-%s.json' % name)
    with open(base / ('shared-%s.lock' % name), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            shutil.rmtree(folder, ignore_errors=True)  # A worker's try that failed.
            folder.mkdir()
            result = make(folder)
            record.write_text(json.dumps({'args': [str(arg) for arg in result.args],
                                          'returncode': result.returncode,
                                          'stdout': result.stdout, 'stderr': result.stderr}))
        made = json.loads(record.read_text())
    return folder, subprocess.CompletedProcess(**made)


def script_env():
    """The environment the scripts run in: quiet TensorFlow, no proxy."""
    env = dict(os.environ)
    env.pop('TF_CPP_MIN_LOG_LEVEL', None)
    env['PYTHONUNBUFFERED'] = '1'
    env['CUDA_VISIBLE_DEVICES'] = ''
    return env


def run_script(script, *args, timeout=SCRIPT_TIMEOUT_SECS, env=None):
    """Runs one of the scripts to completion, as a user does.

    Args:
      script: e.g. 'cifar10_train.py'.
      *args: its command-line flags.
      timeout: the deadline, in seconds.
      env: the environment; default script_env().

    Returns:
      The subprocess.CompletedProcess, with text stdout and stderr.
    """
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=env or script_env(), check=False)


# Restores a checkpoint from its .meta with TensorFlow alone, as a TF1 user's
# own code does, and saves every global variable's value:
# python -c RESTORE_FROM_META_GRAPH <checkpoint path prefix> <values.npz>.
RESTORE_FROM_META_GRAPH = '''
import sys

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
checkpoint = sys.argv[1]
saver = tf.compat.v1.train.import_meta_graph(checkpoint + '.meta')
with tf.compat.v1.Session() as sess:
    saver.restore(sess, checkpoint)
    variables = tf.compat.v1.global_variables()
    values = sess.run(variables)
np.savez(sys.argv[2], **{v.op.name: value for v, value in zip(variables, values)})
project_modules = [name for name in sys.modules if name.startswith('cifar10')]
assert not project_modules, project_modules
'''


def restore_from_meta_graph(checkpoint, folder):
    """Runs RESTORE_FROM_META_GRAPH in a TensorFlow-only process.

    Returns:
      A dict: variable name -> the value the process restored.
    """
    env = script_env()
    env.pop('PYTHONPATH', None)
    values = Path(folder) / 'restored.npz'
    result = subprocess.run([sys.executable, '-c', RESTORE_FROM_META_GRAPH, str(checkpoint),
                             str(values)], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=SCRIPT_TIMEOUT_SECS, check=False)
    assert result.returncode == 0, result.stderr
    return dict(np.load(values))


def assert_meta_graphs_restore(train_dir, folder):
    """Asserts that each checkpoint in train_dir has its .meta, and that a
    TensorFlow-only process restores every variable of the newest, the global
    step among them, from its .meta."""
    from cifar10_support.runtime import tf  # Imports TensorFlow.

    for step in checkpoint_steps(train_dir):
        assert (Path(train_dir) / ('model.ckpt-%d.meta' % step)).is_file()
    checkpoint = tf.train.latest_checkpoint(str(train_dir))
    restored = restore_from_meta_graph(checkpoint, folder)
    reader = tf.train.load_checkpoint(str(checkpoint))
    saved = reader.get_variable_to_shape_map()
    assert sorted(restored) == sorted(saved)
    assert restored['global_step'] == int(str(checkpoint).rsplit('-', 1)[1])
    for name in saved:
        np.testing.assert_array_equal(restored[name], reader.get_tensor(name))


class RunningScript:
    """A script started in the background whose output lines can be awaited."""

    def __init__(self, script, *args, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / script), *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env or script_env())
        self.lines = []
        self._pending = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._pending.put(line)
        self._pending.put(None)

    def wait_for(self, pattern, timeout=SCRIPT_TIMEOUT_SECS):
        """Waits for an output line matching pattern.

        Returns:
          The re.Match.

        Raises:
          AssertionError: if the deadline passes or the output ends first.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._pending.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise AssertionError('no line matching %r within %ss; output:\n%s'
                                     % (pattern, timeout, ''.join(self.lines))) from None
            if line is None:
                self._pending.put(None)
                raise AssertionError('output ended without %r; output:\n%s'
                                     % (pattern, ''.join(self.lines)))
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def finish(self, timeout=SCRIPT_TIMEOUT_SECS):
        """Waits for the script to exit and collects the rest of its output.

        Returns:
          (exit code, all output as one string).
        """
        returncode = self.proc.wait(timeout=timeout)
        while (line := self._pending.get(timeout=timeout)) is not None:
            self.lines.append(line)
        self._pending.put(None)
        return returncode, ''.join(self.lines)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# A short training run shared by the tests that only read its results:
# 150 steps of batch 128 on the learnable synthetic data. (At batch 32 the
# tutorial's learning rate of 0.1 makes the loss jump about; about one run in
# ten diverged to NaN or recovered late.)
TRAINED_RUN_FLAGS = dict(batch_size=128, max_steps=150, save_checkpoint_steps=50,
                         log_frequency=10)


# Two towers of 64 on logical CPU devices: the same 128 examples a step.
MULTI_TOWER_FLAGS = dict(TRAINED_RUN_FLAGS, batch_size=64, device_type='cpu', num_gpus=2)

# A short --mixed_precision=bf16 run on the learnable synthetic data (fp16
# needs a GPU).
BF16_RUN_FLAGS = dict(TRAINED_RUN_FLAGS, mixed_precision='bf16')

# The precision @ 1 a short run on the learnable synthetic data must beat:
# three times chance (0.1), nine standard errors above it on the 200 test
# records. Not higher: the tutorial's learning rate of 0.1 still throws the
# loss up now and then at step 150 (the weights overshoot and the logits
# collapse), and a run that ends in such a throw scores less than one that
# has settled. Of 40 runs of 150 steps at batch 64, 35 scored 1.000 and the
# rest 0.47 to 0.94; a 100-step fp16 run scored 0.40. A model that has not
# learned scores about 0.1, or its one answer's share of the test records
# (an untrained one scored 0.21).
LEARNED_PRECISION = 0.3


def checkpoint_steps(train_dir):
    """The global steps of the checkpoints the 'checkpoint' file lists."""
    from cifar10_support import checkpoints  # TensorFlow: only here.

    state = checkpoints.tf.train.get_checkpoint_state(str(train_dir))
    if not state:
        return []
    return [checkpoints.checkpoint_step(p) for p in state.all_model_checkpoint_paths]


def random_batch_and_model(seed, batch_size):
    """A random batch and random initial values of the model's trainable
    variables, by their op names, for comparing one step of two trainers.

    Returns:
      (images [batch_size, 24, 24, 3] float32, labels [batch_size] int32,
      dict of variable name -> initial value).
    """
    import cifar10  # TensorFlow: only here, see the module's docstring.

    rng = np.random.default_rng(seed)
    images = rng.normal(size=[batch_size, 24, 24, 3]).astype(np.float32)
    labels = rng.integers(0, 10, size=batch_size).astype(np.int32)
    with cifar10.tf.Graph().as_default():
        cifar10.inference(cifar10.tf.placeholder(cifar10.tf.float32, [None, 24, 24, 3]))
        initial_values = {v.op.name: rng.normal(0, 0.05, size=v.shape.as_list())
                          .astype(np.float32) for v in cifar10.tf.trainable_variables()}
    return images, labels, initial_values


def read_events(log_dir):
    """Reads the event files in log_dir as TensorBoard does.

    Args:
      log_dir: a --train_dir or --eval_dir.

    Returns:
      A loaded EventAccumulator: .Tags() (a dict of lists by kind: 'scalars',
      'histograms', 'images'...), .Scalars(tag) (events with .step and
      .value), .Graph() (the GraphDef).
    """
    accumulator = event_accumulator.EventAccumulator(str(log_dir))
    accumulator.Reload()
    return accumulator


def printed_precision(output):
    """The precision @ 1 from the evaluator's (first) result line."""
    return float(re.search(r'precision @ 1 = ([\d.]+)', output).group(1))


def logged_steps(output):
    """(step, loss) pairs from the trainer's log lines."""
    return [(int(m.group(1)), float(m.group(2)))
            for m in re.finditer(r': step (\d+), loss = ([\d.naif]+) \(', output)]


def free_ports(count):
    """count TCP ports of 127.0.0.1 that are free now."""
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(('127.0.0.1', 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


def local_cluster_spec(num_workers):
    """A cluster of one parameter server and num_workers workers on free
    127.0.0.1 ports: {'ps': ['127.0.0.1:<port>'], 'worker': [...]}."""
    addresses = ['127.0.0.1:%d' % port for port in free_ports(1 + num_workers)]
    return {'ps': addresses[:1], 'worker': addresses[1:]}


def train_flags(data_dir, train_dir, **flags):
    """Command-line flags for a short, small-batch run."""
    flags = {'batch_size': 16, 'log_frequency': 5, **flags}
    return ['--data_dir=%s' % data_dir, '--train_dir=%s' % train_dir] + [
        '--%s=%s' % item for item in flags.items()]


def eval_flags(data_dir, checkpoint_dir, eval_dir, **flags):
    """Command-line flags for the evaluator."""
    flags = {'batch_size': 64, **flags}
    return ['--data_dir=%s' % data_dir, '--checkpoint_dir=%s' % checkpoint_dir,
            '--eval_dir=%s' % eval_dir] + ['--%s=%s' % item for item in flags.items()]


def save_foreign_checkpoint(train_dir, kind):
    """Saves model.ckpt-5 in train_dir from a model the trainer cannot resume:
    kind 'other variables' (a model of one dense layer), 'other shapes' (this
    model on 32x32 images: local3 has 4096 inputs, not 2304) or 'fp16' (this
    model in float16).

    Returns:
      The checkpoint's path prefix.
    """
    import cifar10  # Imports TensorFlow.

    tf = cifar10.tf
    with flagsaver.flagsaver(use_fp16=kind == 'fp16'), tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        if kind == 'other variables':
            tf.get_variable('dense/kernel', [4, 2])
        else:
            size = 32 if kind == 'other shapes' else cifar10.IMAGE_SIZE
            dtype = tf.float16 if kind == 'fp16' else tf.float32
            logits = cifar10.inference(tf.zeros([1, size, size, 3], dtype))
            cifar10.train(cifar10.loss(logits, tf.constant([0])), global_step)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            global_step.load(5, sess)
            return tf.train.Saver().save(sess, str(train_dir / 'model.ckpt'), global_step=5,
                                  write_meta_graph=False)


def publish_checkpoint(source_dir, target_dir, step):
    """Copies model.ckpt-<step> into target_dir and makes it the latest, as
    the trainer's Saver does (data first, then the 'checkpoint' file)."""
    from cifar10 import tf  # Imports TensorFlow.

    target_dir.mkdir(exist_ok=True)
    for path in source_dir.glob('model.ckpt-%d.*' % step):
        shutil.copy(path, target_dir)
    state = tf.train.get_checkpoint_state(str(target_dir))
    paths = list(state.all_model_checkpoint_paths) if state else []
    latest = str(target_dir / ('model.ckpt-%d' % step))
    tf.train.update_checkpoint_state(str(target_dir), latest, paths + [latest])
# Prediction and export: the evaluator's graph run in file order, the
# predictor's output lines, and models of known behaviour.

# Few enough test records for one read of the evaluation pipeline (at most
# cifar10_input.RECORDS_PER_READ), which then keeps them in file order.
IN_ORDER_RECORDS = 100


def read_records(path):
    """Reads a CIFAR-10 binary file with numpy.

    Returns:
      labels: [N] uint8 array.
      images: [N, 32, 32, 3] uint8 array (height, width, channel).
    """
    import cifar10  # Imports TensorFlow.

    records = np.fromfile(path, np.uint8).reshape(-1, cifar10.cifar10_input.RECORD_BYTES)
    return records[:, 0], records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def copy_records(source, target, count):
    """Writes the first count records of the CIFAR-10 file source to target."""
    import cifar10  # Imports TensorFlow.

    Path(target).write_bytes(Path(source).read_bytes()[:count * cifar10.cifar10_input.RECORD_BYTES])


def evaluate_in_order(data_dir, checkpoint_path):
    """Runs the evaluator's graph (build_eval_graph) once on the test file.

    The test file must hold at most RECORDS_PER_READ records (as
    IN_ORDER_RECORDS do): one read takes them all, and one batch of
    RECORDS_PER_READ holds them in file order.

    Returns:
      The dict of numpy arrays of the evaluator's eval_ops: 'in_top_k',
      'labels', 'predictions' and 'logits', one entry per record.
    """
    import cifar10  # Imports TensorFlow.
    import cifar10_eval

    tf = cifar10.tf
    with flagsaver.flagsaver(data_dir=str(data_dir),
                             batch_size=cifar10.cifar10_input.RECORDS_PER_READ), \
            tf.Graph().as_default():
        eval_ops, saver = cifar10_eval.build_eval_graph(eval_data=True)
        with tf.Session() as sess:
            saver.restore(sess, str(checkpoint_path))
            sess.run(tf.local_variables_initializer())
            coord = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(sess=sess, coord=coord)
            try:
                return sess.run(eval_ops)
            finally:
                coord.request_stop()
                coord.join(threads)


def softmax(logits):
    """The softmax of each row of logits, in float64."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def parse_predictions(output):
    """Reads the predictor's lines, '<name>: cat 0.71, dog 0.18 (true: cat)'.

    Returns:
      A dict: name -> (list of (class, probability), true class or None).
    """
    predictions = {}
    for match in re.finditer(r'^(.+?): (.+?)(?: \(true: (.+)\))?$', output, re.MULTILINE):
        ranked = [(name, float(probability)) for name, probability in
                  (item.rsplit(' ', 1) for item in match.group(2).split(', '))]
        predictions[match.group(1)] = (ranked, match.group(3))
    return predictions


# The class that the one_class_eval fixture's model always predicts, and the
# global step of its checkpoint.
ONE_CLASS = 3
ONE_CLASS_STEP = 7


def write_one_class_checkpoint(train_dir, target_dir, label, step):
    """Writes a checkpoint of a model that predicts label for every image.

    The trained run's averaged weights, with the last layer's weights zero
    and its biases 10 for label and 0 for the others.

    Args:
      train_dir: the trained run's train_dir.
      target_dir: the folder to write model.ckpt-<step> and 'checkpoint' in.
      label: the class predicted.
      step: the global step in the checkpoint's name.

    Returns:
      The checkpoint's path prefix.
    """
    import cifar10  # Imports TensorFlow.

    tf = cifar10.tf
    with tf.Graph().as_default():
        cifar10.inference(tf.zeros([1, cifar10.IMAGE_SIZE, cifar10.IMAGE_SIZE, 3]))
        saver = cifar10.averaged_weights_saver()
        variables = {v.op.name: v for v in tf.global_variables()}
        biases = np.zeros(cifar10.NUM_CLASSES, np.float32)
        biases[label] = 10.0
        with tf.Session() as sess:
            saver.restore(sess, tf.train.latest_checkpoint(str(train_dir)))
            sess.run([variables['softmax_linear/weights'].assign(
                          tf.zeros_like(variables['softmax_linear/weights'])),
                      variables['softmax_linear/biases'].assign(biases)])
            return saver.save(sess, str(Path(target_dir) / 'model.ckpt'), global_step=step)


def printed_class_table(output):
    """The per-class table the evaluator prints after its precision line.

    Returns:
      The rows, each a list of cells (the header first).
    """
    import cifar10  # Imports TensorFlow.

    lines = output.splitlines()
    [start] = [i for i, line in enumerate(lines) if 'precision @ 1 = ' in line]
    rows = [re.split(r'\s{2,}', line.strip()) for line in lines[start + 1:]]
    return rows[:cifar10.NUM_CLASSES + 1]


def markdown_table_rows(table):
    """The rows of a Markdown table (its separator line left out)."""
    return [[cell.strip() for cell in line.strip().strip('|').split('|')]
            for i, line in enumerate(table.splitlines()) if i != 1]
