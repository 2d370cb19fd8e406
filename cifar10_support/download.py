"""Downloads and extracts the CIFAR-10 binary release, safely: the tarball gets its name
once complete and matching its md5, cifar-10-batches-bin/ once all of it is checked and
extracted. A library for cifar10.maybe_download_and_extract(), of the standard library
only, so that it also runs alone: python -m cifar10_support.download /tmp/cifar10_data
"""

import hashlib
import http.client
import os
import pathlib
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request

# The official binary release, its md5, and the folder it unpacks to.
DATA_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz'
DATA_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530'
DATA_SUBDIR = 'cifar-10-batches-bin'
DOWNLOAD_TIMEOUT_SECS = 60
DOWNLOAD_CHUNK_BYTES = 1 << 16


class DownloadError(Exception):
    """The data could not be downloaded or extracted; the message says what to do."""


def maybe_download_and_extract(data_dir, data_url=DATA_URL, data_md5=DATA_MD5):
    """Download and extract the tarball from Alex's website into data_dir, unless it is
    there: from data_url, checked against data_md5 (empty to skip). Raises DownloadError
    (offline, HTTP error, cut-off download, md5 mismatch, unsafe or damaged tarball)."""
    if os.path.isdir(os.path.join(data_dir, DATA_SUBDIR)):
        return
    if os.path.basename(os.path.normpath(data_dir)) == DATA_SUBDIR:
        raise DownloadError('--data_dir=%s is itself a %s folder: pass the folder that holds '
                            'it, --data_dir=%s' % (data_dir, DATA_SUBDIR,
                                                   os.path.dirname(os.path.abspath(data_dir))))
    filepath = os.path.join(data_dir, os.path.basename(urllib.parse.urlparse(data_url).path))
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise DownloadError('cannot create --data_dir=%s (%s): choose a folder you can write '
                            'to' % (data_dir, e)) from e
    if os.path.exists(filepath):
        _check_md5(filepath, _file_md5(filepath), data_md5,
                   'it may be a partial or foreign file: delete it')
    else:
        _download(data_url, filepath, data_md5)
    _extract(filepath, data_dir)


def _file_md5(path):
    """The hex md5 of the file at path."""
    md5 = hashlib.md5()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(DOWNLOAD_CHUNK_BYTES), b''):
            md5.update(chunk)
    return md5.hexdigest()


def _check_md5(path, actual_md5, expected_md5, advice):
    """Raises DownloadError, with advice, if expected_md5 is given and not actual_md5."""
    if expected_md5 and actual_md5 != expected_md5:
        raise DownloadError('%s has md5 %s, not the expected %s: %s, or pass '
                            '--data_md5= for a tarball other than the official one'
                            % (path, actual_md5, expected_md5, advice))


def _offline_error(data_url, filepath, reason):
    """The DownloadError for a download that failed, saying where to put the data instead."""
    data_dir, filename = os.path.split(filepath)
    return DownloadError('cannot download %s (%s): check the connection, or put %s in %s, '
                         'or its extracted %s/ folder there, and run again'
                         % (data_url, reason, filename, data_dir, DATA_SUBDIR))


def _download(data_url, filepath, data_md5):
    """Downloads data_url to filepath through a temporary file; raises DownloadError,
    leaving no file at filepath, if offline, cut off or not matching data_md5."""
    filename = os.path.basename(filepath)
    partial_fd, partial_path = tempfile.mkstemp(
        prefix='.%s.' % filename, suffix='.part', dir=os.path.dirname(filepath))
    md5, received_bytes, shown_percent = hashlib.md5(), 0, None
    try:
        with os.fdopen(partial_fd, 'wb') as partial:
            try:
                response = urllib.request.urlopen(data_url, timeout=DOWNLOAD_TIMEOUT_SECS)
            except (OSError, http.client.HTTPException, ValueError) as e:
                raise _offline_error(data_url, filepath, e) from e
            with response:
                expected_bytes = int(response.headers.get('Content-Length') or 0)
                while True:
                    try:
                        chunk = response.read(DOWNLOAD_CHUNK_BYTES)
                    except (OSError, http.client.HTTPException) as e:
                        raise _offline_error(data_url, filepath, e) from e
                    if not chunk:
                        break
                    partial.write(chunk)
                    md5.update(chunk)
                    received_bytes += len(chunk)
                    percent = '%.1f' % (100.0 * received_bytes / max(expected_bytes, 1))
                    if expected_bytes and percent != shown_percent:
                        sys.stdout.write('\r>> Downloading %s %s%%' % (filename, percent))
                        sys.stdout.flush()
                        shown_percent = percent
            print()
            if received_bytes < expected_bytes:
                raise _offline_error(data_url, filepath, 'interrupted after %d of %d bytes'
                                     % (received_bytes, expected_bytes))
        _check_md5(data_url, md5.hexdigest(), data_md5,
                   'the download is damaged or not the CIFAR-10 release; it was '
                   'removed, try again')
        os.replace(partial_path, filepath)
    finally:
        if os.path.exists(partial_path):
            os.remove(partial_path)
    print('Successfully downloaded', filename, received_bytes, 'bytes.')


def _check_tar_member(member, tarball):
    """Raises DownloadError for a tar member that could write outside the folder."""
    path = pathlib.PurePosixPath(member.name)
    if path.is_absolute() or '..' in path.parts:
        raise DownloadError('refusing to extract %s: member %r has an absolute path '
                            'or "..": delete the tarball and download the official '
                            'one' % (tarball, member.name))
    if not (member.isfile() or member.isdir()):
        raise DownloadError('refusing to extract %s: member %r is a link or device, '
                            'not a plain file: delete the tarball and download the '
                            'official one' % (tarball, member.name))


def _extract(tarball, data_dir):
    """Extracts cifar-10-batches-bin/ from the tarball into data_dir, through a temporary
    folder, once every member is checked; raises DownloadError if it cannot."""
    staging_dir = tempfile.mkdtemp(prefix='.extracting-', dir=data_dir)
    try:
        with tarfile.open(tarball, 'r:gz') as tar:
            members = tar.getmembers()
            for member in members:
                _check_tar_member(member, tarball)
            safety_filter = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
            tar.extractall(staging_dir, members=members, **safety_filter)
        extracted_dir = os.path.join(staging_dir, DATA_SUBDIR)
        if not os.path.isdir(extracted_dir):
            raise DownloadError('%s holds no %s/ folder: it is not the CIFAR-10 '
                                'binary release' % (tarball, DATA_SUBDIR))
        try:
            os.replace(extracted_dir, os.path.join(data_dir, DATA_SUBDIR))
        except OSError:
            # Another process (the evaluator beside the trainer) got there first.
            if not os.path.isdir(os.path.join(data_dir, DATA_SUBDIR)):
                raise
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError('cannot extract %s (%s): delete it and download again'
                            % (tarball, e)) from e
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)


def main(argv):
    """Downloads and extracts the data into the folder argv[1] names."""
    if len(argv) != 2:
        sys.exit('usage: %s DATA_DIR' % os.path.basename(argv[0]))
    try:
        maybe_download_and_extract(argv[1])
    except DownloadError as e:
        sys.exit('%s: error: %s' % (os.path.basename(argv[0]), e))


if __name__ == '__main__':
    main(sys.argv)
