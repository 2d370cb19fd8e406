"""The download module against a local web server and built tarballs.

No test imports TensorFlow: the one that needs the trainer runs it as a script."""

import hashlib
import io
import re
import socket
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from helpers import REPO, TEST_FILE, TRAIN_FILES, record_bytes, run_script

from cifar10_support import download as cifar10_download
from cifar10_support.download import DATA_SUBDIR, DownloadError
from cifar10_support.download import maybe_download_and_extract as download

TARBALL = 'cifar-10-binary.tar.gz'


def build_tarball(path, unsafe_member=None):
    """Writes a tarball laid out as the release, with random (incompressible)
    records so that the download takes several chunks.

    Args:
      path: where to write it.
      unsafe_member: an extra tarfile.TarInfo to add, or None.

    Returns:
      The tarball's bytes.
    """
    rng = np.random.default_rng(3)
    with tarfile.open(path, 'w:gz') as tar:
        for name in TRAIN_FILES + [TEST_FILE]:
            labels = rng.integers(0, 10, size=20)
            images = rng.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
            records = record_bytes(labels, images)
            info = tarfile.TarInfo('%s/%s' % (DATA_SUBDIR, name))
            info.size = len(records)
            tar.addfile(info, io.BytesIO(records))
        if unsafe_member is not None:
            tar.addfile(unsafe_member, io.BytesIO(b'x' * unsafe_member.size))
    return path.read_bytes()


@pytest.fixture
def tarball(tmp_path):
    """(bytes, md5) of a well-formed tarball."""
    data = build_tarball(tmp_path / 'built.tar.gz')
    return data, hashlib.md5(data).hexdigest()


@pytest.fixture
def dead_url():
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    return 'http://127.0.0.1:%d/%s' % (port, TARBALL)


def test_download_fetches_verifies_and_extracts(http_server, tarball, tmp_path, capsys):
    data, md5 = tarball
    http_server.files['/' + TARBALL] = data
    data_dir = tmp_path / 'data'

    download(str(data_dir), http_server.base_url + '/' + TARBALL, md5)

    assert sorted(p.name for p in data_dir.iterdir()) == sorted([TARBALL, DATA_SUBDIR])
    assert (data_dir / TARBALL).read_bytes() == data
    assert (data_dir / DATA_SUBDIR / 'test_batch.bin').stat().st_size == 20 * 3073
    output = capsys.readouterr().out
    percents = re.findall(r'\r>> Downloading cifar-10-binary\.tar\.gz (\d+\.\d)%', output)
    assert len(percents) > 3 and percents[-1] == '100.0'
    assert 'Successfully downloaded cifar-10-binary.tar.gz %d bytes.' % len(data) in output


def test_no_download_when_the_extracted_folder_is_there(dead_url, tmp_path):
    (tmp_path / DATA_SUBDIR).mkdir()
    download(str(tmp_path), dead_url, '')
    assert [p.name for p in tmp_path.iterdir()] == [DATA_SUBDIR]


def test_no_download_when_the_tarball_is_there(dead_url, tarball, tmp_path):
    data, md5 = tarball
    (tmp_path / TARBALL).write_bytes(data)
    download(str(tmp_path), dead_url, md5)
    assert (tmp_path / DATA_SUBDIR / 'data_batch_5.bin').is_file()


def test_a_broken_tarball_left_by_an_earlier_download_is_refused(dead_url, tarball, tmp_path):
    data, md5 = tarball
    (tmp_path / TARBALL).write_bytes(data[:len(data) // 2])
    with pytest.raises(DownloadError, match=r'not the expected %s: it may be a partial '
                                                r'or foreign file: delete it' % md5):
        download(str(tmp_path), dead_url, md5)
    assert not (tmp_path / DATA_SUBDIR).exists()


def test_interrupted_transfer_leaves_no_finished_looking_file(http_server, tarball, tmp_path):
    data, md5 = tarball
    http_server.files['/' + TARBALL] = data
    http_server.truncated.add('/' + TARBALL)
    data_dir = tmp_path / 'data'
    with pytest.raises(DownloadError, match=r'interrupted after \d+ of %d bytes' % len(data)):
        download(str(data_dir), http_server.base_url + '/' + TARBALL, md5)
    assert list(data_dir.iterdir()) == []


def test_md5_mismatch_is_refused_and_the_download_removed(http_server, tarball, tmp_path):
    data, md5 = tarball
    http_server.files['/' + TARBALL] = data
    data_dir = tmp_path / 'data'
    with pytest.raises(DownloadError, match=r'has md5 %s, not the expected %s' % (
            md5, cifar10_download.DATA_MD5)):
        download(str(data_dir), http_server.base_url + '/' + TARBALL, cifar10_download.DATA_MD5)
    assert list(data_dir.iterdir()) == []


def unsafe_members(outside):
    """Tar members that would write outside the extraction folder."""
    absolute = tarfile.TarInfo(str(outside / 'absolute'))
    dotdot = tarfile.TarInfo('%s/../../dotdot' % DATA_SUBDIR)
    symlink = tarfile.TarInfo('%s/link' % DATA_SUBDIR)
    symlink.type, symlink.linkname = tarfile.SYMTYPE, str(outside / 'target')
    hardlink = tarfile.TarInfo('%s/hard' % DATA_SUBDIR)
    hardlink.type, hardlink.linkname = tarfile.LNKTYPE, '%s/test_batch.bin' % DATA_SUBDIR
    device = tarfile.TarInfo('%s/device' % DATA_SUBDIR)
    device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 3
    for member in (absolute, dotdot):
        member.size = 4
    return {'absolute path': absolute, 'dot-dot': dotdot, 'symlink': symlink,
            'hard link': hardlink, 'device': device}


@pytest.mark.parametrize('kind', ['absolute path', 'dot-dot', 'symlink', 'hard link', 'device'])
def test_unsafe_tar_members_are_refused_and_nothing_is_written(kind, dead_url, tmp_path):
    outside = tmp_path / 'outside'
    outside.mkdir()
    data_dir = tmp_path / 'data' / 'inner'
    data_dir.mkdir(parents=True)
    build_tarball(data_dir / TARBALL, unsafe_members(outside)[kind])

    with pytest.raises(DownloadError, match=r'refusing to extract .*%s: member' % TARBALL):
        download(str(data_dir), dead_url, '')
    assert [p.name for p in data_dir.iterdir()] == [TARBALL]
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / 'data').iterdir()) == ['inner']


def test_server_down_gives_the_offline_message(dead_url, tmp_path):
    with pytest.raises(DownloadError, match=r'cannot download %s \(.*\): check the '
                                                r'connection, or put %s in %s, or its '
                                                r'extracted cifar-10-batches-bin/ folder there'
                                                % (re.escape(dead_url), TARBALL, tmp_path)):
        download(str(tmp_path), dead_url, '')
    assert list(tmp_path.iterdir()) == []


def test_http_error_gives_the_offline_message(http_server, tmp_path):
    with pytest.raises(DownloadError, match=r'cannot download .*HTTP Error 404'):
        download(str(tmp_path), http_server.base_url + '/' + TARBALL, '')
    assert list(tmp_path.iterdir()) == []


def test_data_dir_inside_the_batches_folder_names_the_right_one(tmp_path, dead_url):
    batches = tmp_path / DATA_SUBDIR
    batches.mkdir()
    with pytest.raises(DownloadError, match=r'is itself a cifar-10-batches-bin folder: pass '
                                                r'the folder that holds it, --data_dir=%s$'
                                                % tmp_path):
        download(str(batches), dead_url, '')


def test_trainer_offline_without_data_exits_with_one_line_saying_where_to_put_it(
        dead_url, tmp_path):
    result = run_script('cifar10_train.py', '--data_dir=%s' % tmp_path,
                        '--train_dir=%s' % (tmp_path / 'train'), '--data_url=%s' % dead_url,
                        timeout=60)
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1
    assert result.stderr.startswith('cifar10_train.py: error: cannot download %s' % dead_url)
    assert 'put %s in %s' % (TARBALL, tmp_path) in result.stderr


def test_extraction_finished_first_by_another_process_is_kept(tarball, tmp_path):
    # The evaluator and the trainer started side by side both extract; the
    # one that finishes second keeps the first one's folder.
    data, _ = tarball
    data_dir = tmp_path / 'data'
    theirs = data_dir / DATA_SUBDIR
    theirs.mkdir(parents=True)
    (theirs / 'data_batch_1.bin').write_bytes(b'theirs')
    (data_dir / TARBALL).write_bytes(data)
    cifar10_download._extract(str(data_dir / TARBALL), str(data_dir))
    assert (theirs / 'data_batch_1.bin').read_bytes() == b'theirs'
    assert sorted(p.name for p in data_dir.iterdir()) == sorted([TARBALL, DATA_SUBDIR])


def test_download_module_imports_without_tensorflow():
    code = 'import sys, cifar10_support.download; print("tensorflow" in sys.modules)'
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout == 'False\n'
