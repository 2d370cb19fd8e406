"""The predictor: its classes and probabilities are the evaluator's, for
records and for image files, and bad files are reported one by one."""

import io

import numpy as np
import pytest
from helpers import (
    IN_ORDER_RECORDS,
    copy_records,
    parse_predictions,
    read_records,
    run_script,
    softmax,
)
from PIL import Image

import cifar10
import cifar10_input


def png_bytes(image):
    """An image array encoded as PNG."""
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format='PNG')
    return encoded.getvalue()


def test_predicted_classes_and_probabilities_are_the_evaluators(
        trained_run, in_order_data_dir, evaluator_outputs):
    test_file = in_order_data_dir / cifar10.DATA_SUBDIR / 'test_batch.bin'
    result = run_script('cifar10_predict.py', '--checkpoint_dir=%s' % trained_run[0],
                        '--top_k=10', test_file)
    assert result.returncode == 0, result.stderr

    predictions = parse_predictions(result.stdout)
    names = cifar10_input.CLASS_NAMES
    # The evaluator's batch holds the records in file order.
    np.testing.assert_array_equal(evaluator_outputs['labels'], read_records(test_file)[0])
    expected_probabilities = softmax(evaluator_outputs['logits'])
    assert len(predictions) == IN_ORDER_RECORDS
    for i in range(IN_ORDER_RECORDS):
        ranked, true_class = predictions['%s[%d]' % (test_file, i)]
        assert true_class == names[evaluator_outputs['labels'][i]]
        assert (ranked[0][0] == true_class) == evaluator_outputs['in_top_k'][i]
        printed = [dict(ranked)[name] for name in names]
        np.testing.assert_allclose(printed, expected_probabilities[i], atol=0.005 + 1e-6)


def test_a_png_of_a_real_record_gets_the_same_prediction_as_the_record(
        trained_run, sample_data_dir, tmp_path):
    records = tmp_path / 'first.bin'
    copy_records(sample_data_dir / cifar10.DATA_SUBDIR / 'test_batch.bin', records, 3)
    images = read_records(records)[1]
    pngs = [tmp_path / ('record%d.png' % i) for i in range(len(images))]
    for png, image in zip(pngs, images, strict=True):
        png.write_bytes(png_bytes(image))
    result = run_script('cifar10_predict.py', '--checkpoint_dir=%s' % trained_run[0],
                        '--data_dir=%s' % sample_data_dir, '--top_k=10', records, *pngs)
    assert result.returncode == 0, result.stderr

    predictions = parse_predictions(result.stdout)
    for i, png in enumerate(pngs):
        assert predictions[str(png)][0] == predictions['%s[%d]' % (records, i)][0]


def test_bad_files_get_one_line_each_and_the_others_are_still_classified(
        trained_run, tmp_path):
    rng = np.random.default_rng(0)
    grey = tmp_path / 'grey.png'  # Greyscale, not 32x32.
    Image.fromarray(rng.integers(0, 256, (45, 60), dtype=np.uint8)).save(grey)
    photo = tmp_path / 'photo.jpg'
    Image.fromarray(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)).save(photo)
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    text = tmp_path / 'notes.png'
    text.write_text('a text file, renamed\n')
    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes(photo.read_bytes()[:photo.stat().st_size // 2])
    missing = tmp_path / 'missing.png'
    bad_files = [missing, empty, text, truncated]

    result = run_script('cifar10_predict.py', '--checkpoint_dir=%s' % trained_run[0],
                        missing, grey, empty, text, photo, truncated)

    assert result.returncode != 0
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == len(bad_files), result.stderr
    for bad_file, line in zip(bad_files, error_lines, strict=True):
        assert line.startswith('%s: error: ' % bad_file)
    predictions = parse_predictions(result.stdout)
    assert sorted(predictions) == sorted([str(grey), str(photo)])
    assert all(len(ranked) == 3 for ranked, _ in predictions.values())


def test_without_a_checkpoint_predict_says_so_and_exits_nonzero(tmp_path):
    image = tmp_path / 'image.png'
    image.write_bytes(png_bytes(np.zeros([32, 32, 3], np.uint8)))
    result = run_script('cifar10_predict.py', '--checkpoint_dir=%s' % (tmp_path / 'empty'),
                        image)
    assert result.returncode != 0
    assert 'No checkpoint file found in %s' % (tmp_path / 'empty') in result.stderr


def test_class_names_come_from_batches_meta_txt_else_the_cifar10_names(tmp_path):
    names = ['class %d' % i for i in range(cifar10.NUM_CLASSES)]
    assert cifar10_input.read_class_names(str(tmp_path)) == cifar10_input.CLASS_NAMES
    (tmp_path / 'batches.meta.txt').write_text('\n'.join(names) + '\n\n')
    assert cifar10_input.read_class_names(str(tmp_path)) == names


def test_a_batches_meta_txt_without_ten_names_is_an_error_naming_it(tmp_path):
    (tmp_path / 'batches.meta.txt').write_text('cat\ndog\n')
    with pytest.raises(cifar10.UserError, match='batches.meta.txt holds 2 class names'):
        cifar10_input.read_class_names(str(tmp_path))
