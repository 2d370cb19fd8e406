"""Fixtures: synthetic and real CIFAR-10 data, a shared short training run,
and scripts started in the background.

Imports no TensorFlow: a test module that needs it imports it (through the
project's modules), so `pytest tests/test_download.py` runs without it.
"""

import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import (
    BF16_RUN_FLAGS,
    DATA_SUBDIR,
    IN_ORDER_RECORDS,
    MULTI_TOWER_FLAGS,
    ONE_CLASS,
    ONE_CLASS_STEP,
    SAMPLE_DIR,
    TEST_FILE,
    TRAINED_RUN_FLAGS,
    RunningScript,
    copy_records,
    evaluate_in_order,
    make_data_dir,
    once_per_run,
    run_script,
    write_one_class_checkpoint,
)


@pytest.fixture(scope='session', autouse=True)
def flags_at_their_defaults():
    """Lets in-process tests read the flags (at their defaults) without a
    command line, once a test module has imported cifar10, which defines them."""
    if 'cifar10' in sys.modules:
        sys.modules['cifar10'].FLAGS.mark_as_parsed()


@pytest.fixture(scope='session')
def synthetic_data_dir(tmp_path_factory):
    """A --data_dir of learnable synthetic data (200 records a file)."""
    return make_data_dir(tmp_path_factory.mktemp('data') / 'cifar10_data')


@pytest.fixture
def sample_data_dir():
    """The real CIFAR-10 sample in ../shared (read-only); skips without it."""
    if not (SAMPLE_DIR / DATA_SUBDIR / TEST_FILE).is_file():
        pytest.skip('the real CIFAR-10 sample is not at %s' % SAMPLE_DIR)
    return SAMPLE_DIR


def _train_once(tmp_path_factory, name, script, data_dir, flags):
    def train(folder):
        return run_script(script, '--data_dir=%s' % data_dir, '--train_dir=%s' % folder,
                          *['--%s=%s' % item for item in flags.items()])

    train_dir, result = once_per_run(tmp_path_factory, name, train)
    assert result.returncode == 0, result.stderr
    return train_dir, result


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory, synthetic_data_dir):
    """Trains once on the synthetic data (TRAINED_RUN_FLAGS).

    Returns:
      (train_dir, the CompletedProcess). Tests must not write into train_dir:
      copy it with copy_train_dir.
    """
    return _train_once(tmp_path_factory, 'trained_run', 'cifar10_train.py', synthetic_data_dir,
                       TRAINED_RUN_FLAGS)


@pytest.fixture(scope='session')
def multi_tower_run(tmp_path_factory, synthetic_data_dir):
    """Trains once with two towers on logical CPU devices (MULTI_TOWER_FLAGS).

    Returns:
      (train_dir, the CompletedProcess); do not write into train_dir.
    """
    return _train_once(tmp_path_factory, 'multi_tower_run', 'cifar10_multi_gpu_train.py',
                       synthetic_data_dir, MULTI_TOWER_FLAGS)


@pytest.fixture(scope='session')
def bf16_run(tmp_path_factory, synthetic_data_dir):
    """Trains once with --mixed_precision=bf16 (BF16_RUN_FLAGS).

    Returns:
      (train_dir, the CompletedProcess); do not write into train_dir.
    """
    return _train_once(tmp_path_factory, 'bf16_run', 'cifar10_train.py', synthetic_data_dir,
                       BF16_RUN_FLAGS)


@pytest.fixture
def copy_train_dir(tmp_path, trained_run):
    """A private copy of the trained run's train_dir, to resume or alter."""
    copy = tmp_path / 'train'
    shutil.copytree(trained_run[0], copy)
    return copy


@pytest.fixture
def start_script():
    """Starts scripts in the background; kills any still running at the end."""
    started = []

    def start(script, *args, env=None):
        running = RunningScript(script, *args, env=env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.kill()


@pytest.fixture
def http_server():
    """A web server on 127.0.0.1 serving the bytes put in its `files` dict.

    A path in `truncated` is announced in full but cut off half way, as a
    dropped connection does. Yields an object with base_url, files, truncated.
    """
    server = ThreadingHTTPServer(('127.0.0.1', 0), _FileHandler)
    server.files, server.truncated = {}, set()
    server.base_url = 'http://127.0.0.1:%d' % server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class _FileHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.path in self.server.truncated:
            body = body[:len(body) // 2]
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope='session')
def in_order_data_dir(tmp_path_factory, synthetic_data_dir):
    """A --data_dir whose test file holds the first IN_ORDER_RECORDS synthetic
    test records, which the evaluator reads in file order."""
    batches = tmp_path_factory.mktemp('in_order') / 'cifar10_data' / DATA_SUBDIR
    batches.mkdir(parents=True)
    copy_records(synthetic_data_dir / DATA_SUBDIR / 'test_batch.bin',
                 batches / 'test_batch.bin', IN_ORDER_RECORDS)
    return batches.parent


@pytest.fixture(scope='session')
def evaluator_outputs(trained_run, in_order_data_dir):
    """The evaluator's graph on in_order_data_dir's test file, with the trained
    run's latest checkpoint: a dict of arrays in file order (evaluate_in_order)."""
    from cifar10 import tf  # Imports TensorFlow.

    checkpoint = tf.train.latest_checkpoint(str(trained_run[0]))
    return evaluate_in_order(in_order_data_dir, checkpoint)


@pytest.fixture(scope='session')
def exported_model(tmp_path_factory, trained_run):
    """cifar10_export.py run once on the trained run into a new --export_dir.

    Returns:
      (export_dir, the CompletedProcess). Do not write into export_dir.
    """
    export_dir, result = once_per_run(tmp_path_factory, 'exported_model', lambda folder: run_script(
        'cifar10_export.py', '--checkpoint_dir=%s' % trained_run[0],
        '--export_dir=%s' % (folder / 'model')))
    assert result.returncode == 0, result.stderr
    return export_dir / 'model', result


@pytest.fixture(scope='session')
def one_class_eval(tmp_path_factory, trained_run, synthetic_data_dir):
    """cifar10_eval.py --run_once on the synthetic test data with a model that
    always predicts ONE_CLASS (write_one_class_checkpoint, step ONE_CLASS_STEP).

    Returns:
      (eval_dir, the CompletedProcess).
    """
    def evaluate(root):
        write_one_class_checkpoint(trained_run[0], root / 'train', ONE_CLASS, ONE_CLASS_STEP)
        return run_script('cifar10_eval.py', '--data_dir=%s' % synthetic_data_dir,
                          '--checkpoint_dir=%s' % (root / 'train'),
                          '--eval_dir=%s' % (root / 'eval'), '--run_once', '--batch_size=64')

    root, result = once_per_run(tmp_path_factory, 'one_class_eval', evaluate)
    assert result.returncode == 0, result.stderr
    return root / 'eval', result
