"""A full disk loses nothing: the trainer stops with one line, leaves no
partial file, keeps its last good checkpoint and resumes from it later.

The disk is a small tmpfs that the tests mount, so they need root; without
it they skip.
"""

import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
from helpers import checkpoint_steps, run_script, train_flags

from cifar10 import tf
from cifar10_support import summaries

# One checkpoint of the model is about 8.6 MB (the weights and their moving
# averages); 20 MB holds two beside the event file, not three.
TWO_CHECKPOINTS_BYTES = 20 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    """Mounts a tmpfs of a given size at tmp_path/disk; unmounts it after.

    Returns:
      mount(size_bytes) -> the mount point; resize(size_bytes) changes its size.
    """
    if os.geteuid() != 0:
        pytest.skip('mounting a small tmpfs needs root')
    mount_point = tmp_path / 'disk'
    mount_point.mkdir()

    def mount(size_bytes):
        result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%d' % size_bytes,
                                 'tmpfs', str(mount_point)], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            pytest.skip('cannot mount a tmpfs here: %s' % result.stderr.strip())
        return mount_point

    def resize(size_bytes):
        subprocess.run(['mount', '-o', 'remount,size=%d' % size_bytes, str(mount_point)],
                       check=True)

    mount.resize = resize
    yield mount
    subprocess.run(['umount', str(mount_point)], capture_output=True, check=False)


def whole_records(path):
    """The number of records in a TFRecord (event) file; fails on a cut-off one."""
    data = path.read_bytes()
    offset, count = 0, 0
    while offset < len(data):
        assert offset + 12 <= len(data), 'a cut-off record header at byte %d' % offset
        (length,) = struct.unpack('<Q', data[offset:offset + 8])
        offset += 12 + length + 4
        assert offset <= len(data), 'a cut-off record at the end of %s' % path
        count += 1
    return count


def partial_files(folder):
    return [name for name in os.listdir(folder)
            if 'tempstate' in name or '_temp' in name or '.tmp' in name]


def test_full_disk_stops_the_trainer_with_one_line_and_keeps_the_last_checkpoint(
        small_disk, synthetic_data_dir):
    train_dir = small_disk(TWO_CHECKPOINTS_BYTES) / 'train'
    result = run_script('cifar10_train.py', *train_flags(
        synthetic_data_dir, train_dir, max_steps=40, save_checkpoint_steps=5))

    assert result.returncode == 1
    assert result.stderr.count('\n') == 1, result.stderr
    saved = checkpoint_steps(train_dir)
    assert len(saved) == 2
    last_good = train_dir / ('model.ckpt-%d' % saved[-1])
    assert result.stderr.startswith('cifar10_train.py: error: cannot write to %s: the disk is '
                                    'full (' % train_dir)
    assert result.stderr.endswith('the last good checkpoint, %s, is intact: make room and run '
                                  'again to resume from it\n' % last_good)
    assert partial_files(train_dir) == []
    assert sorted(name for name in os.listdir(train_dir) if name.startswith('model.ckpt')) == (
        sorted('model.ckpt-%d.%s' % (step, suffix) for step in saved
               for suffix in ('index', 'data-00000-of-00001', 'meta')))
    reader = tf.train.load_checkpoint(str(last_good))
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)  # Every tensor reads back, checksums and all.
    [event_file] = train_dir.glob('events.out.tfevents.*')
    assert whole_records(event_file) >= 3  # Version, graph, step 0's summaries.


def test_trainer_resumes_from_the_last_good_checkpoint_once_there_is_room(
        small_disk, synthetic_data_dir):
    train_dir = small_disk(TWO_CHECKPOINTS_BYTES) / 'train'
    flags = train_flags(synthetic_data_dir, train_dir, save_checkpoint_steps=5)
    assert run_script('cifar10_train.py', *flags, '--max_steps=40').returncode == 1
    last_good = checkpoint_steps(train_dir)[-1]

    small_disk.resize(100 * 1024 * 1024)
    result = run_script('cifar10_train.py', *flags, '--max_steps=%d' % (last_good + 5))
    assert result.returncode == 0, result.stderr
    assert '/model.ckpt-%d at step %d.' % (last_good, last_good) in result.stdout
    assert checkpoint_steps(train_dir)[-1] == last_good + 5


def test_a_disk_too_full_for_the_event_file_stops_the_trainer_before_training(
        small_disk, synthetic_data_dir):
    train_dir = small_disk(64 * 1024) / 'train'  # Smaller than the graph.
    result = run_script('cifar10_train.py', *train_flags(synthetic_data_dir, train_dir))

    assert result.returncode == 1
    assert re.fullmatch(r'cifar10_train\.py: error: cannot write to %s: the disk is full '
                        r'\(.*No space left on device\); no checkpoint was written yet: make '
                        r'room and run again\n' % re.escape(str(train_dir)), result.stderr)
    assert ': step ' not in result.stdout
    [event_file] = train_dir.glob('events.out.tfevents.*')
    assert whole_records(event_file) == 1  # The file version; the graph did not fit.


def test_summary_writer_cuts_a_failed_event_off_and_raises(small_disk):
    log_dir = small_disk(32 * 1024)
    writer = summaries.SummaryWriter(str(log_dir))
    summary = tf.Summary()
    summary.value.add(tag='blob').tensor.string_val.append(os.urandom(5000))
    written = 0
    with pytest.raises((OSError, tf.errors.OpError), match='No space left on device'):
        for step in range(100):
            writer.add_summary(summary, step)
            written += 1
    assert 0 < written < 100
    assert whole_records(Path(writer.path)) == 1 + written
    writer.close()
