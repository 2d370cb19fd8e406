"""The evaluator: checkpoints, moving averages, counting and polling."""

import io
import shutil

import numpy as np
import pytest
from absl.testing import flagsaver
from helpers import (
    DATA_SUBDIR,
    LEARNED_PRECISION,
    ONE_CLASS,
    ONE_CLASS_STEP,
    TEST_FILE,
    eval_flags,
    markdown_table_rows,
    printed_class_table,
    printed_precision,
    publish_checkpoint,
    read_events,
    run_script,
)
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

import cifar10
import cifar10_eval
from cifar10 import tf
from cifar10_support import checkpoints, summaries


def test_run_once_without_a_checkpoint_says_so_and_exits_nonzero(synthetic_data_dir, tmp_path):
    result = run_script('cifar10_eval.py', *eval_flags(
        synthetic_data_dir, tmp_path / 'empty', tmp_path / 'eval', run_once=True))
    assert result.returncode != 0
    assert 'No checkpoint file found in %s' % (tmp_path / 'empty') in result.stderr


def test_train_eval_scores_the_training_files_not_the_test_file(
        trained_run, synthetic_data_dir, tmp_path):
    # The training files the model learned; a test file whose labels are all
    # off by one, on which that model scores badly.
    data_dir = tmp_path / 'data'
    shutil.copytree(synthetic_data_dir, data_dir)
    test_file = data_dir / DATA_SUBDIR / TEST_FILE
    records = np.frombuffer(test_file.read_bytes(), np.uint8).reshape(-1, 3073).copy()
    records[:, 0] = (records[:, 0] + 1) % 10
    test_file.write_bytes(records.tobytes())

    result = run_script('cifar10_eval.py', *eval_flags(
        data_dir, trained_run[0], tmp_path / 'eval', eval_data='train_eval', run_once=True))
    assert result.returncode == 0, result.stderr
    assert ('The train_eval data holds 1000 records, fewer than --num_examples=10000: each '
            'record is scored once.') in result.stdout
    assert printed_precision(result.stdout) > LEARNED_PRECISION


def test_eval_restores_the_moving_averages_into_the_model(trained_run, synthetic_data_dir):
    checkpoint = str(trained_run[0] / 'model.ckpt-150')
    with flagsaver.flagsaver(data_dir=str(synthetic_data_dir)), tf.Graph().as_default():
        _, saver = cifar10_eval.build_eval_graph(eval_data=True)
        [weights] = [v for v in tf.global_variables() if v.op.name == 'local4/weights']
        with tf.Session() as sess:
            saver.restore(sess, checkpoint)
            restored = sess.run(weights)
    averaged = tf.train.load_variable(checkpoint, 'local4/weights/ExponentialMovingAverage')
    raw = tf.train.load_variable(checkpoint, 'local4/weights')
    np.testing.assert_array_equal(restored, averaged)
    assert not np.allclose(restored, raw)


def test_precision_counts_exactly_num_examples_not_the_padded_last_batch(tmp_path):
    # Predictions arrive in order: 10 right, then 90 wrong, in batches of 10.
    with flagsaver.flagsaver(batch_size=10), tf.Graph().as_default():
        prediction = tf.train.input_producer(
            tf.constant([True] * 10 + [False] * 90), shuffle=False).dequeue()
        top_k_op = tf.train.batch([prediction], batch_size=10, num_threads=1)
        eval_ops = {'in_top_k': top_k_op, 'labels': tf.zeros([10], tf.int32),
                    'predictions': tf.zeros([10], tf.int64)}
        step_variable = tf.Variable(0, trainable=False)
        saver = tf.train.Saver([step_variable])
        summary_op = tf.summary.merge([tf.summary.scalar('unused', 1.0)])
        with tf.Session() as sess:
            sess.run(step_variable.initializer)
            checkpoint = saver.save(sess, str(tmp_path / 'model.ckpt'), global_step=7)
        writer = tf.summary.FileWriter(str(tmp_path / 'eval'))
        precision = cifar10_eval.eval_once(saver, writer, eval_ops, summary_op,
                                           checkpoint, num_examples=25,
                                           class_names=['class %d' % i for i in range(10)])
        writer.close()
    assert precision == pytest.approx(10 / 25)  # Padded counting gives 10 / 30.
    [event] = read_events(tmp_path / 'eval').Scalars('Precision @ 1')
    assert (event.step, event.value) == (7, pytest.approx(0.4))


def test_eval_scores_each_new_checkpoint_once_while_polling(
        trained_run, synthetic_data_dir, start_script, tmp_path):
    checkpoint_dir = tmp_path / 'train'
    publish_checkpoint(trained_run[0], checkpoint_dir, 50)
    evaluator = start_script('cifar10_eval.py', *eval_flags(
        synthetic_data_dir, checkpoint_dir, tmp_path / 'eval',
        eval_interval_secs=1, timeout=4))
    evaluator.wait_for(r'precision @ 1 = ')
    publish_checkpoint(trained_run[0], checkpoint_dir, 100)
    evaluator.wait_for(r'precision @ 1 = ')
    returncode, output = evaluator.finish()

    assert returncode == 0, output
    assert output.count('precision @ 1 = ') == 2
    assert 'No new checkpoint in %s for 4 seconds: stopping.' % checkpoint_dir in output
    precision_events = read_events(tmp_path / 'eval').Scalars('Precision @ 1')
    assert [event.step for event in precision_events] == [50, 100]


def test_a_checkpoint_deleted_while_the_evaluator_reads_it_is_said_to_be_deleted(
        trained_run, synthetic_data_dir, tmp_path, capsys):
    checkpoint_dir = tmp_path / 'train'
    publish_checkpoint(trained_run[0], checkpoint_dir, 50)
    # model.ckpt-100 was the newest when the evaluator looked; then the
    # trainer's rotation took it off the list and removed its files.
    deleted = str(checkpoint_dir / 'model.ckpt-100')
    with flagsaver.flagsaver(data_dir=str(synthetic_data_dir), eval_dir=str(tmp_path / 'eval')), \
            tf.Graph().as_default():
        eval_ops, saver = cifar10_eval.build_eval_graph(eval_data=True)
        writer = tf.summary.FileWriter(str(tmp_path / 'eval'))
        precision = cifar10_eval.eval_once(saver, writer, eval_ops, tf.summary.merge_all(),
                                           deleted, num_examples=200,
                                           class_names=cifar10.cifar10_input.CLASS_NAMES)
        writer.close()
    assert precision is None
    assert ('%s was deleted while being read (the trainer keeps only the newest); moving on '
            'to the newest.' % deleted) in capsys.readouterr().out


def test_evaluator_refuses_a_test_file_that_is_not_cifar10(trained_run, synthetic_data_dir,
                                                           tmp_path):
    data_dir = tmp_path / 'data'
    shutil.copytree(synthetic_data_dir, data_dir)
    test_file = data_dir / DATA_SUBDIR / TEST_FILE
    test_file.write_bytes(bytes(test_file.stat().st_size))  # A copy never filled.

    result = run_script('cifar10_eval.py', *eval_flags(data_dir, trained_run[0],
                                                       tmp_path / 'eval', run_once=True))
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1
    assert 'test_batch.bin holds nothing but zero bytes' in result.stderr
    assert 'precision' not in result.stdout


# Per-class precision and the confusion matrix.

def class_events(eval_dir):
    """The evaluator's event file, read with TensorBoard's reader."""
    accumulator = event_accumulator.EventAccumulator(
        str(eval_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def summary_table(accumulator):
    """The rows of the last 'Confusion matrix (table)' text summary."""
    [event] = accumulator.Tensors(summaries.CONFUSION_TABLE_TAG)[-1:]
    return markdown_table_rows(tf.make_ndarray(event.tensor_proto).item().decode())


def test_per_class_counts_add_up_to_the_examples_scored(tmp_path):
    # 100 examples in batches of 10; 25 are scored, so the third batch is cut.
    labels = np.arange(100) % 10
    predictions = (labels * 3) % 10
    with flagsaver.flagsaver(batch_size=10), tf.Graph().as_default():
        example = tf.train.slice_input_producer(
            [tf.constant(labels == predictions), tf.constant(labels, tf.int32),
             tf.constant(predictions, tf.int64)], shuffle=False)
        in_top_k, label_batch, prediction_batch = tf.train.batch(
            example, batch_size=10, num_threads=1)
        eval_ops = {'in_top_k': in_top_k, 'labels': label_batch,
                    'predictions': prediction_batch}
        step_variable = tf.Variable(0, trainable=False)
        saver = tf.train.Saver([step_variable])
        summary_op = tf.summary.merge([tf.summary.scalar('unused', 1.0)])
        with tf.Session() as sess:
            sess.run(step_variable.initializer)
            checkpoint = saver.save(sess, str(tmp_path / 'model.ckpt'), global_step=7)
        writer = tf.summary.FileWriter(str(tmp_path / 'eval'))
        cifar10_eval.eval_once(saver, writer, eval_ops, summary_op, checkpoint,
                               num_examples=25, class_names=cifar10.cifar10_input.CLASS_NAMES)
        writer.close()

    rows = summary_table(class_events(tmp_path / 'eval'))[1:]
    examples = [int(row[-2]) for row in rows]
    assert sum(examples) == 25
    assert examples == [3] * 5 + [2] * 5
    assert sum(int(count) for row in rows for count in row[1:-2]) == 25


def test_a_model_that_always_predicts_one_class_fills_one_column(one_class_eval):
    table = printed_class_table(one_class_eval[1].stdout)
    assert table[0][:-2] == ['true \\ predicted'] + cifar10.cifar10_input.CLASS_NAMES
    assert [row[0] for row in table[1:]] == cifar10.cifar10_input.CLASS_NAMES
    for row in table[1:]:
        counts = [int(count) for count in row[1:-2]]
        assert counts[ONE_CLASS] == int(row[-2]) == sum(counts)
    assert sum(int(row[-2]) for row in table[1:]) == 200  # The synthetic test file.


def test_eval_writes_class_precisions_and_the_confusion_matrix_for_tensorboard(
        one_class_eval):
    accumulator = class_events(one_class_eval[0])
    for i, name in enumerate(cifar10.cifar10_input.CLASS_NAMES):
        [event] = accumulator.Scalars('Precision @ 1/%s' % name)
        assert (event.step, event.value) == (ONE_CLASS_STEP, float(i == ONE_CLASS))
    [image] = accumulator.Images(summaries.CONFUSION_IMAGE_TAG)
    assert image.step == ONE_CLASS_STEP
    decoded = Image.open(io.BytesIO(image.encoded_image_string))
    assert (decoded.format, decoded.size) == ('PNG', (image.width, image.height))
    [text] = accumulator.Tensors(summaries.CONFUSION_TABLE_TAG)
    assert text.step == ONE_CLASS_STEP
    assert summary_table(accumulator) == printed_class_table(one_class_eval[1].stdout)


def test_eval_data_other_than_test_or_train_eval_is_refused(synthetic_data_dir, tmp_path):
    result = run_script('cifar10_eval.py', *eval_flags(
        synthetic_data_dir, tmp_path / 'train', tmp_path / 'eval', eval_data='tset'),
        timeout=60)
    assert result.returncode != 0
    assert '--eval_data=tset' in result.stderr
    assert 'test|train_eval' in result.stderr


class FakeClock:
    """time.time and time.sleep for the polling loop, without waiting; the
    first sleep runs during_first_sleep()."""

    def __init__(self, during_first_sleep):
        self.now = 1000.0
        self.during_first_sleep = during_first_sleep

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        if self.during_first_sleep:
            self.during_first_sleep, during = None, self.during_first_sleep
            during()


def test_timeout_counts_the_seconds_after_an_evaluation_not_during_it(tmp_path, monkeypatch):
    def publish(step):  # Only an index file: the polling reads no more.
        (tmp_path / ('model.ckpt-%d.index' % step)).touch()

    # The trainer's next checkpoint comes while the evaluator waits.
    clock = FakeClock(during_first_sleep=lambda: publish(100))
    monkeypatch.setattr(cifar10_eval, 'time', clock)
    scored = []

    def score(checkpoint_path):  # An evaluation that takes 100 seconds.
        scored.append(checkpoints.checkpoint_step(checkpoint_path))
        clock.now += 100
        return 0.5

    publish(50)
    with flagsaver.flagsaver(checkpoint_dir=str(tmp_path), timeout=10, eval_interval_secs=5):
        cifar10_eval._evaluate_each_new_checkpoint(score)
    assert scored == [50, 100]
