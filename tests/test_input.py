"""The binary reader and the input pipelines of cifar10_input.py."""

import re
import shutil

import numpy as np
import pytest
from helpers import REPO, learnable_images, write_records

import cifar10
import cifar10_input
from cifar10_input import tf


def read_records(filenames, count):
    """Reads count records through read_cifar10, one at a time, in file order."""
    with tf.Graph().as_default():
        filename_queue = tf.train.string_input_producer(
            [str(f) for f in filenames], shuffle=False, num_epochs=1)
        record = cifar10_input.read_cifar10(filename_queue)
        with tf.Session() as sess:
            sess.run(tf.local_variables_initializer())
            coord = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(sess, coord)
            results = [[label, image[0]] for label, image in (
                sess.run([record.label, record.uint8image]) for _ in range(count))]
            coord.request_stop()
            coord.join(threads)
    return results, record


def test_read_cifar10_decodes_label_and_pixels_in_height_width_channel_order(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    labels = [7, 0, 9]
    write_records(tmp_path / 'batch.bin', labels, images)

    results, record = read_records([tmp_path / 'batch.bin'], 3)

    assert (record.height, record.width, record.depth) == (32, 32, 3)
    for (label, image), want_label, want_image in zip(results, labels, images, strict=True):
        assert label.tolist() == [want_label]
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, want_image)


def test_read_cifar10_decodes_the_known_first_records_of_the_real_sample(sample_data_dir):
    batches = sample_data_dir / cifar10.DATA_SUBDIR
    for name, want_label, want_red in [
            ('data_batch_1.bin', 6, [59, 43, 50, 68, 98, 119]),
            ('test_batch.bin', 3, [158, 159, 165, 166, 160, 156])]:
        [(label, image)], _ = read_records([batches / name], 1)
        assert label.tolist() == [want_label]
        assert image[0, :6, 0].tolist() == want_red


def test_real_sample_files_hold_whole_records(sample_data_dir):
    batches = sample_data_dir / cifar10.DATA_SUBDIR
    for eval_data, num_files in ((False, 5), (True, 1)):
        filenames = cifar10_input.data_filenames(eval_data, str(batches))
        assert cifar10_input.check_data_files(filenames) == 1017 * num_files


def test_distorted_inputs_give_standardized_24x24_batches(synthetic_data_dir):
    data_dir = str(synthetic_data_dir / cifar10.DATA_SUBDIR)
    with tf.Graph().as_default():
        images, labels = cifar10_input.distorted_inputs(data_dir, batch_size=16)
        assert images.shape.as_list() == [16, 24, 24, 3]
        with tf.Session() as sess:
            coord = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(sess, coord)
            image_batch, label_batch = sess.run([images, labels])
            coord.request_stop()
            coord.join(threads)
    assert image_batch.dtype == np.float32
    np.testing.assert_allclose(image_batch.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(image_batch.std(axis=(1, 2, 3)), 1, atol=1e-3)
    assert label_batch.shape == (16,)
    assert set(label_batch.tolist()) <= set(range(10))


def test_each_distorted_training_image_keeps_its_own_label(tmp_path):
    # One colour a class, made of three different channel values: the
    # distortions keep each image's channel values in their order and
    # proportions (they standardize the colour's three values), so the
    # colour says the class after them.
    colours = np.array([[0, 100, 250], [0, 250, 100], [100, 0, 250], [250, 0, 100],
                        [100, 250, 0], [250, 100, 0], [0, 30, 250], [0, 220, 250],
                        [30, 0, 250], [220, 0, 250]], np.float64)
    patterns = (colours - colours.mean(1, keepdims=True)) / colours.std(1, keepdims=True)
    rng = np.random.default_rng(3)
    batches_dir = tmp_path / cifar10.DATA_SUBDIR
    batches_dir.mkdir()
    for name in cifar10_input.TRAIN_FILES:
        labels = rng.integers(0, 10, size=300)
        images = np.broadcast_to(colours[labels][:, None, None, :], (300, 32, 32, 3))
        write_records(batches_dir / name, labels, images.astype(np.uint8))

    shape, _, images, labels = first_batches(cifar10_input.distorted_inputs, batches_dir, 10)

    nearest = np.argmin([[np.abs(image.mean((0, 1)) - pattern).max() for pattern in patterns]
                         for image in images], axis=1)
    assert shape == [50, 24, 24, 3]
    assert len(set(labels.tolist())) == 10
    np.testing.assert_array_equal(nearest, labels)


def test_inputs_read_each_record_exactly_once_with_a_short_last_batch(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, size=37)
    batches = tmp_path / cifar10.DATA_SUBDIR
    batches.mkdir()
    write_records(batches / 'test_batch.bin', labels, learnable_images(labels, rng))

    with tf.Graph().as_default():
        images, label_batch = cifar10_input.inputs(True, str(batches), batch_size=16)
        seen_labels, batch_sizes = [], []
        with tf.Session() as sess:
            sess.run(tf.local_variables_initializer())
            coord = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(sess, coord)
            with pytest.raises(tf.errors.OutOfRangeError):
                while True:
                    image_batch, label_values = sess.run([images, label_batch])
                    batch_sizes.append(len(image_batch))
                    seen_labels.extend(label_values.tolist())
            coord.request_stop()
            coord.join(threads)

    assert batch_sizes == [16, 16, 5]
    assert sorted(seen_labels) == sorted(labels.tolist())
    assert image_batch.shape[1:] == (24, 24, 3)


@pytest.fixture
def batches_dir(synthetic_data_dir, tmp_path):
    """A writable copy of a complete cifar-10-batches-bin folder."""

    copy = tmp_path / cifar10.DATA_SUBDIR
    shutil.copytree(synthetic_data_dir / cifar10.DATA_SUBDIR, copy)
    return copy


def build_training_inputs(batches):
    with tf.Graph().as_default():
        cifar10_input.distorted_inputs(str(batches), batch_size=8)


def test_missing_file_is_named_before_any_queue_is_built(batches_dir):
    (batches_dir / 'data_batch_3.bin').unlink()
    with pytest.raises(cifar10.UserError, match=r'data_batch_3\.bin not found'):
        build_training_inputs(batches_dir)


def test_truncated_file_is_named_with_its_size(batches_dir):
    path = batches_dir / 'data_batch_2.bin'
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(cifar10.UserError,
                       match=r'data_batch_2\.bin is 5000 bytes, not a positive multiple of '
                             r'the 3073-byte'):
        build_training_inputs(batches_dir)


def test_empty_file_is_named_with_its_size(batches_dir):
    (batches_dir / 'data_batch_5.bin').write_bytes(b'')
    with pytest.raises(cifar10.UserError, match=r'data_batch_5\.bin is 0 bytes'):
        build_training_inputs(batches_dir)


def test_missing_data_points_to_a_readme_section_that_exists(tmp_path):
    with pytest.raises(cifar10.UserError) as error:
        build_training_inputs(tmp_path / cifar10.DATA_SUBDIR)
    section = re.search(r'see "([^"]+)" in the README', str(error.value)).group(1)
    headings = re.findall(r'^#+ (.+)$', (REPO / 'README.md').read_text(), re.MULTILINE)
    assert section in headings


def test_wrong_directory_says_what_data_dir_must_hold(tmp_path):
    with pytest.raises(cifar10.UserError,
                       match=r'data_batch_1\.bin not found: --data_dir .* must be the '
                             r'folder that holds cifar-10-batches-bin/'):
        build_training_inputs(tmp_path / 'nowhere' / cifar10.DATA_SUBDIR)


def set_label(path, record, label):
    """Overwrites one record's label byte."""
    data = bytearray(path.read_bytes())
    data[record * cifar10_input.RECORD_BYTES] = label
    path.write_bytes(bytes(data))


@pytest.mark.parametrize('label', [10, 255])
def test_a_label_byte_that_is_not_a_class_is_named_with_its_record(batches_dir, label):
    set_label(batches_dir / 'data_batch_4.bin', 37, label)
    set_label(batches_dir / 'data_batch_4.bin', 150, label)
    message = (r'data_batch_4\.bin does not hold CIFAR-10 records: record 37 \(of 200\) has '
               r'label %d, not 0-9, and 2 records are like it' % label)
    with pytest.raises(cifar10.UserError, match=message):
        build_training_inputs(batches_dir)


def test_a_file_of_zero_bytes_is_refused(batches_dir):
    path = batches_dir / 'data_batch_1.bin'
    path.write_bytes(bytes(path.stat().st_size))
    with pytest.raises(cifar10.UserError,
                       match=r'data_batch_1\.bin holds nothing but zero bytes'):
        build_training_inputs(batches_dir)


def test_the_tf_data_pipeline_checks_the_label_bytes_too(batches_dir):
    set_label(batches_dir / 'data_batch_2.bin', 0, 77)
    with pytest.raises(cifar10.UserError, match=r'data_batch_2\.bin .* record 0 '):
        with tf.Graph().as_default():
            cifar10_input.distorted_inputs_dataset(str(batches_dir), batch_size=8)


def test_the_evaluation_input_checks_the_label_bytes(batches_dir):
    set_label(batches_dir / 'test_batch.bin', 199, 10)
    with pytest.raises(cifar10.UserError, match=r'test_batch\.bin .* record 199 '):
        with tf.Graph().as_default():
            cifar10_input.inputs(True, str(batches_dir), batch_size=8)


def test_real_sample_labels_are_all_classes(sample_data_dir):
    batches = sample_data_dir / cifar10.DATA_SUBDIR
    filenames = [str(path) for path in sorted(batches.glob('*.bin'))]
    assert len(filenames) == 6
    assert cifar10_input.check_data_files(filenames) == 6 * 1017


def distort_one_at_a_time(image, crop_offset, flip, brightness_delta, contrast_factor):
    """The original's distortions of one image, with the given random draws."""
    image = tf.image.crop_to_bounding_box(tf.cast(image, tf.float32), crop_offset[0],
                                          crop_offset[1], 24, 24)
    if flip:
        image = tf.image.flip_left_right(image)
    image = tf.image.adjust_brightness(image, brightness_delta)
    image = tf.image.adjust_contrast(image, contrast_factor)
    return tf.image.per_image_standardization(image)


def distort_exactly(image, crop_offset, flip, brightness_delta, contrast_factor):
    """The original's distortions of one image in float64 numpy."""
    image = image[crop_offset[0]:crop_offset[0] + 24,
                  crop_offset[1]:crop_offset[1] + 24].astype(np.float64)
    if flip:
        image = image[:, ::-1]
    image = image + np.float64(brightness_delta)
    channel_means = image.mean(axis=(0, 1))
    image = (image - channel_means) * np.float64(contrast_factor) + channel_means
    return (image - image.mean()) / max(image.std(), 1 / np.sqrt(image.size))


def random_draws(rng, count):
    """Crop offsets, flips, brightness deltas and contrast factors for count images."""
    return (rng.integers(0, 9, size=(count, 2)).astype(np.int32),
            rng.random(count) < 0.5,
            rng.uniform(-63, 63, size=count).astype(np.float32),
            rng.uniform(0.2, 1.8, size=count).astype(np.float32))


def distort_chunk(images, draws):
    """cifar10_input._distort_images of a chunk of images, with these draws."""
    with tf.Graph().as_default():
        chunked = cifar10_input._distort_images(tf.constant(images),
                                                *[tf.constant(draw) for draw in draws])
        with tf.Session() as sess:
            return sess.run(chunked)


def test_chunked_distortions_equal_the_originals_applied_one_image_at_a_time():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    draws = random_draws(rng, 6)
    with tf.Graph().as_default():
        one_by_one = [distort_one_at_a_time(*args)
                      for args in zip(images, *draws, strict=True)]
        with tf.Session() as sess:
            one_by_one = sess.run(one_by_one)
    np.testing.assert_allclose(distort_chunk(images, draws), np.stack(one_by_one), atol=1e-5)


def test_chunked_distortions_are_exact_for_nearly_one_colour_images():
    # The standardization divides such an image's deviations by nearly 0
    # (or by its floor, 1 / sqrt(1728)): rounding must not be magnified.
    rng = np.random.default_rng(7)
    images = np.full((4, 32, 32, 3), 200, np.uint8)
    images[1, 10, 10, 1] = 201
    images[2, :, :, 2] = 13
    images[3] = rng.choice(np.array([0, 255], np.uint8), size=(32, 32, 3))
    draws = random_draws(rng, 4)
    exact = [distort_exactly(*args) for args in zip(images, *draws, strict=True)]
    np.testing.assert_allclose(distort_chunk(images, draws), np.stack(exact), atol=1e-5)


def test_distort_images_gives_each_image_its_own_random_draws():
    image = np.random.default_rng(6).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    with tf.Graph().as_default():
        distorted = cifar10_input.distort_images(tf.constant(np.stack([image] * 16)))
        with tf.Session() as sess:
            values = sess.run(distorted)
    assert values.shape == (16, 24, 24, 3)
    assert len({value.tobytes() for value in values}) == 16


def first_batches(build, batches_dir, count, batch_size=50):
    """The first count batches of a training pipeline."""
    with tf.Graph().as_default():
        images, labels = build(str(batches_dir), batch_size=batch_size)
        with tf.Session() as sess:
            coord = tf.train.Coordinator()
            threads = tf.train.start_queue_runners(sess, coord)
            batches = [sess.run([images, labels]) for _ in range(count)]
            coord.request_stop()
            coord.join(threads)
    return (images.shape.as_list(), images.dtype, np.concatenate([b[0] for b in batches]),
            np.concatenate([b[1] for b in batches]))


def test_dataset_and_queue_pipelines_give_alike_batches(synthetic_data_dir):
    batches = synthetic_data_dir / cifar10.DATA_SUBDIR
    queue = first_batches(cifar10_input.distorted_inputs, batches, 20)
    dataset = first_batches(cifar10_input.distorted_inputs_dataset, batches, 20)

    assert queue[:2] == dataset[:2] == ([50, 24, 24, 3], tf.float32)
    for images in (queue[2], dataset[2]):
        np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0, atol=1e-4)
        np.testing.assert_allclose(images.std(axis=(1, 2, 3)), 1, atol=1e-3)
    # The same spread of values: quantiles of all pixels agree closely.
    quantiles = [0.001, 0.1, 0.5, 0.9, 0.999]
    np.testing.assert_allclose(np.quantile(queue[2], quantiles),
                               np.quantile(dataset[2], quantiles), atol=0.15)
    # The same labels, as often as in the files (1,000 labels each).
    file_labels = np.concatenate([
        np.frombuffer((batches / name).read_bytes(), np.uint8)[::3073]
        for name in cifar10_input.TRAIN_FILES])
    want = np.bincount(file_labels, minlength=10) / len(file_labels)
    for labels in (queue[3], dataset[3]):
        assert np.abs(np.bincount(labels, minlength=10) / len(labels) - want).sum() < 0.15
