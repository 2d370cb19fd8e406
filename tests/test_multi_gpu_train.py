"""The multi-GPU tower trainer, on logical CPU devices."""

import re
import shutil
import signal
import statistics
from datetime import datetime

import numpy as np
import pytest
from absl.testing import flagsaver
from helpers import (
    LEARNED_PRECISION,
    MULTI_TOWER_FLAGS,
    assert_meta_graphs_restore,
    checkpoint_steps,
    logged_steps,
    printed_precision,
    random_batch_and_model,
    read_events,
    run_script,
)

import cifar10
import cifar10_multi_gpu_train
from cifar10 import tf

BATCH = 8


def one_step(devices, images, labels, initial_values):
    """Runs one synchronous step of len(devices) towers, the batch split
    evenly between them; returns every global variable's value after it."""
    image_parts = iter(np.split(images, len(devices)))
    label_parts = iter(np.split(labels, len(devices)))

    def next_batch():
        return tf.constant(next(image_parts)), tf.constant(next(label_parts))

    with tf.Graph().as_default(), tf.device('/cpu:0'):
        global_step = tf.train.get_or_create_global_step()
        train_op, _, _ = cifar10_multi_gpu_train.build_training(
            global_step, next_batch, devices)
        config = cifar10.session_config(num_cpu_devices=len(devices))
        with tf.Session(config=config) as sess:
            sess.run(tf.global_variables_initializer())
            for variable in tf.global_variables():  # Weights and their averages.
                name = variable.op.name.replace('/ExponentialMovingAverage', '')
                if name in initial_values:
                    variable.load(initial_values[name], sess)
            sess.run(train_op)
            return {v.op.name: sess.run(v) for v in tf.global_variables()}


def test_two_towers_on_half_batches_update_like_one_tower_on_the_whole_batch():
    images, labels, initial_values = random_batch_and_model(0, BATCH)

    one_tower = one_step(['/cpu:0'], images, labels, initial_values)
    two_towers = one_step(['/cpu:0', '/cpu:1'], images, labels, initial_values)

    assert one_tower.keys() == two_towers.keys()
    for name, value in one_tower.items():
        np.testing.assert_allclose(two_towers[name], value, rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    assert not np.allclose(one_tower['conv1/weights'], initial_values['conv1/weights'])


def test_towers_run_on_separate_devices():
    rng = np.random.default_rng(1)
    batches = iter([rng.normal(size=[4, 24, 24, 3]).astype(np.float32) for _ in range(2)])
    with tf.Graph().as_default(), tf.device('/cpu:0'):
        global_step = tf.train.get_or_create_global_step()
        train_op, _, _ = cifar10_multi_gpu_train.build_training(
            global_step, lambda: (tf.constant(next(batches)), tf.constant([1, 2, 3, 4])),
            ['/cpu:0', '/cpu:1'])
        with tf.Session(config=cifar10.session_config(num_cpu_devices=2)) as sess:
            sess.run(tf.global_variables_initializer())
            metadata = tf.RunMetadata()
            sess.run(train_op, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                     run_metadata=metadata)

    # Which towers' convolutions (forward and backward) ran on each device.
    conv_towers = {}
    for device_stats in metadata.step_stats.dev_stats:
        device = device_stats.device.rsplit('/', 1)[-1]
        for node in device_stats.node_stats:
            if 'Conv2D' in node.timeline_label.split(' = ')[-1].split('(')[0]:
                conv_towers.setdefault(device, set()).add(node.node_name.split('/')[0])
    assert conv_towers == {'device:CPU:0': {'tower_0'}, 'device:CPU:1': {'tower_1'}}


def test_learning_rate_decays_n_times_sooner_in_steps_with_n_towers():
    with flagsaver.flagsaver(batch_size=128), tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        rate = cifar10.learning_rate(global_step, batches_per_step=2)
        with tf.Session() as sess:
            sess.run(global_step.initializer)
            rates = []
            for step in (136718 // 2 - 1, 136718 // 2):
                global_step.load(step, sess)
                rates.append(sess.run(rate))
    np.testing.assert_allclose(rates, [0.1, 0.01], rtol=1e-6)


def test_more_towers_than_gpus_is_a_clear_error_before_anything_starts(tmp_path):
    result = run_script('cifar10_multi_gpu_train.py', '--num_gpus=2',
                        '--data_dir=%s' % tmp_path, '--train_dir=%s' % tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        'cifar10_multi_gpu_train.py: error: --num_gpus=2 asks for 2 towers, but this machine '
        'has 0 GPU device(s): lower --num_gpus, or pass --device_type=cpu to run the towers '
        'on CPU devices\n')
    assert list(tmp_path.iterdir()) == []


def test_two_towers_drive_the_loss_down(multi_tower_run):
    _, result = multi_tower_run
    losses = [loss for _, loss in logged_steps(result.stdout)]
    assert statistics.median(losses[-5:]) < losses[0] - 1.0  # Robust to a late spike.


def test_multi_tower_output_is_free_of_tensorflow_chatter(multi_tower_run):
    _, result = multi_tower_run
    assert result.stderr == ''


def test_log_line_counts_the_examples_of_all_towers(multi_tower_run):
    _, result = multi_tower_run
    lines = re.findall(r'^(\S+ \S+): step (\d+), .*\((\S+) examples/sec; (\S+) sec/batch\)$',
                       result.stdout, re.MULTILINE)
    towers, batch = MULTI_TOWER_FLAGS['num_gpus'], MULTI_TOWER_FLAGS['batch_size']
    # Fifteen lines, so that the loop below checks thirteen intervals.
    assert [int(step) for _, step, _, _ in lines] == list(range(0, 150, 10))
    for (previous, *_), (stamp, _, examples_per_sec, sec_per_batch) in zip(
            lines[1:], lines[2:], strict=False):
        interval = (datetime.fromisoformat(stamp)
                    - datetime.fromisoformat(previous)).total_seconds()
        # Ten steps of two towers: 20 batches of sec/batch, 640 examples.
        assert float(sec_per_batch) * 10 * towers == pytest.approx(interval, rel=0.1)
        assert float(examples_per_sec) == pytest.approx(10 * towers * batch / interval, rel=0.1)


def test_checkpoints_hold_the_single_device_trainers_variable_names(
        multi_tower_run, trained_run):
    multi_dir, _ = multi_tower_run
    assert checkpoint_steps(multi_dir) == [50, 100, 150]
    multi_names = {name for name, _ in tf.train.list_variables(str(multi_dir))}
    single_names = {name for name, _ in tf.train.list_variables(str(trained_run[0]))}
    assert multi_names == single_names


def test_multi_tower_checkpoints_have_meta_graphs_that_tensorflow_alone_restores(
        multi_tower_run, tmp_path):
    multi_dir, _ = multi_tower_run
    assert_meta_graphs_restore(multi_dir, tmp_path)


def test_eval_scores_a_multi_tower_checkpoint_far_above_chance(
        multi_tower_run, synthetic_data_dir, tmp_path):
    result = run_script('cifar10_eval.py', '--data_dir=%s' % synthetic_data_dir,
                        '--checkpoint_dir=%s' % multi_tower_run[0],
                        '--eval_dir=%s' % tmp_path, '--run_once')
    assert result.returncode == 0, result.stderr
    assert printed_precision(result.stdout) > LEARNED_PRECISION


def test_summaries_carry_the_single_device_tags_from_one_tower(multi_tower_run, trained_run):
    multi, single = read_events(multi_tower_run[0]), read_events(trained_run[0])
    for kind in ('scalars', 'histograms', 'images'):
        # The queue-fill fractions name the queue sizes, which the batch sets.
        model_tags = {tag for tag in single.Tags()[kind] if 'fraction_' not in tag}
        assert model_tags, kind
        assert model_tags <= set(multi.Tags()[kind]), kind
        assert not any('tower' in tag for tag in multi.Tags()[kind])
    assert 'batch_queue/fraction_of_4_full' in multi.Tags()['scalars']


def test_one_input_pipeline_feeds_a_queue_of_two_batches_per_tower(multi_tower_run):
    graph = read_events(multi_tower_run[0]).Graph()
    readers = [node for node in graph.node if node.op.startswith('FixedLengthRecordReader')]
    [batch_queue] = [node for node in graph.node if node.name == 'batch_queue']
    assert len(readers) == 1
    assert batch_queue.attr['capacity'].i == 2 * MULTI_TOWER_FLAGS['num_gpus']


def test_towers_train_through_the_tf_data_pipeline(synthetic_data_dir, tmp_path):
    result = run_script('cifar10_multi_gpu_train.py', '--input_pipeline=dataset',
                        '--data_dir=%s' % synthetic_data_dir, '--train_dir=%s' % tmp_path,
                        '--device_type=cpu', '--num_gpus=2', '--batch_size=16',
                        '--max_steps=20', '--save_checkpoint_steps=10', '--log_frequency=5')
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''
    assert [step for step, _ in logged_steps(result.stdout)] == [0, 5, 10, 15]
    assert checkpoint_steps(tmp_path) == [10, 20]
    graph = read_events(tmp_path).Graph()
    ops = {node.op for node in graph.node} | {
        node.op for function in graph.library.function for node in function.node_def}
    assert 'FixedLengthRecordDatasetV2' in ops
    assert not any(op.startswith('FixedLengthRecordReader') for op in ops)


@pytest.fixture
def multi_tower_train_dir(tmp_path, multi_tower_run):
    copy = tmp_path / 'multi'
    shutil.copytree(multi_tower_run[0], copy)
    return copy


def test_single_device_trainer_resumes_a_multi_tower_checkpoint(
        multi_tower_train_dir, synthetic_data_dir):
    result = run_script('cifar10_train.py', '--data_dir=%s' % synthetic_data_dir,
                        '--train_dir=%s' % multi_tower_train_dir, '--batch_size=16',
                        '--max_steps=155')
    assert result.returncode == 0, result.stderr
    assert '/model.ckpt-150 at step 150.' in result.stdout
    assert checkpoint_steps(multi_tower_train_dir) == [50, 100, 150, 155]


def test_multi_tower_trainer_resumes_a_single_device_checkpoint_and_stops_on_sigterm(
        copy_train_dir, synthetic_data_dir, start_script):
    trainer = start_script('cifar10_multi_gpu_train.py', '--data_dir=%s' % synthetic_data_dir,
                           '--train_dir=%s' % copy_train_dir, '--device_type=cpu',
                           '--num_gpus=2', '--batch_size=16', '--log_frequency=5')
    trainer.wait_for(r'/model\.ckpt-150 at step 150\.')
    trainer.wait_for(r': step 160, ')
    trainer.proc.send_signal(signal.SIGTERM)
    returncode, output = trainer.finish()
    assert returncode == 0, output
    stopped_at = int(re.search(r'Stopped by signal 15 at step (\d+);', output).group(1))
    assert checkpoint_steps(copy_train_dir) == [50, 100, 150, stopped_at]
