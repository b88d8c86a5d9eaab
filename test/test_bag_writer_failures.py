"""BagWriter under failure: full disks, MCAP writer errors, hostile stamps and markers, locks."""
import errno
import os
from pathlib import Path
import subprocess
import time

from llava_drive.bag import format as bagfmt
from llava_drive.bag import writer as bagwriter
from llava_drive.bag.reader import read_pairs
from llava_drive.bag.recover import recover_bag, RecoverError
from llava_drive.bag.writer import (BagWriteError, BagWriter, BagWriterConfig, lock_holder,
                                    SampleRejected)
from llava_drive.control import Control
from mcap.records import Message
from mcap.stream_reader import StreamReader
import numpy as np
import pytest

FRAME = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)


def stamp(i: int) -> int:
    """Return the stamp of pair ``i`` (20 Hz from t = 1 s)."""
    return 1_000_000_000 + i * 50_000_000


def scanned_messages(mcap_path: Path) -> int:
    """Count messages with mcap's own non-seeking reader (an independent count)."""
    with open(mcap_path, 'rb') as stream:
        return sum(isinstance(r, Message) for r in StreamReader(stream).records)


def check_ended_bag(bag: Path, writer: BagWriter, acknowledged: int):
    """Assert the bag after a failure: readable, counts on disk and the loss add up."""
    pairs = list(read_pairs(bag, decode_images=False))
    assert len(pairs) == writer.pairs_written
    assert writer.pairs_written + writer.loss['pairs'] == acknowledged
    metadata = bagfmt.read_metadata(bag)
    assert metadata['message_count'] == scanned_messages(writer.file_path)
    summary = bagfmt.custom_json(metadata, bagfmt.CUSTOM_SUMMARY_KEY)
    assert summary['error'] == writer.error and summary['lost'] == writer.loss
    assert [p.stamp_ns for p in pairs] == [stamp(i) for i in range(len(pairs))]
    assert not list(bag.glob('*.tmp')) and not (bag / bagwriter.LOCK_FILE).exists()
    return pairs


@pytest.fixture
def small_fs(tmp_path):
    """Yield a 3 MB tmpfs directory (needs root to mount; skipped with the reason if not)."""
    mount_point = tmp_path / 'small'
    mount_point.mkdir()
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f'cannot mount a 3 MB tmpfs here ({result.stderr.strip() or "not root"}); '
                    'test_enospc_from_the_stream covers a full disk without a mount')
    try:
        yield mount_point
    finally:
        subprocess.run(['umount', '-l', str(mount_point)], check=False)


def test_full_disk_ends_the_bag_with_metadata_and_the_exact_loss(small_fs):
    """A real full filesystem: BagWriteError ENOSPC, every flushed pair readable, loss exact."""
    bag = small_fs / 'run'
    writer = BagWriter(BagWriterConfig(str(bag), image_format='raw', flush_interval_s=3600.0))
    acknowledged = 0
    with pytest.raises(BagWriteError) as raised:
        for i in range(10_000):
            writer.write_pair(stamp(i), FRAME, 'bgr8', Control(throttle=0.5), 3.0)
            acknowledged += 1
            if i % 4 == 3:
                writer.flush()
    assert raised.value.errno == errno.ENOSPC
    assert str(bag) in str(raised.value)
    writer.close({'rejected': {'late_frame': 2}})  # already reported: close does not raise
    assert acknowledged > 50
    check_ended_bag(bag, writer, acknowledged)
    assert writer.loss['pairs'] == 4  # pairs reach the file at flushes: the failing one's 4
    summary = bagfmt.custom_json(bagfmt.read_metadata(bag), bagfmt.CUSTOM_SUMMARY_KEY)
    assert summary['rejected'] == {'late_frame': 2}
    assert recover_bag(bag).action == 'healthy'


def test_recovery_on_a_full_disk_leaves_no_partial_file(small_fs):
    """Rebuilding needs space: on a full disk it fails in one error and leaves no debris."""
    bag = small_fs / 'killed'
    writer = BagWriter(BagWriterConfig(str(bag), image_format='raw', flush_interval_s=3600.0))
    for i in range(40):
        writer.write_pair(stamp(i), FRAME, 'bgr8', Control(), 1.0)
    writer.flush()
    mcap_path = writer.file_path
    writer._file_lock.release()  # as if SIGKILLed: no close, no metadata.yaml
    original = mcap_path.read_bytes()
    filler = small_fs / 'filler'
    with open(filler, 'wb', buffering=0) as stream:  # unbuffered: close cannot fail
        try:
            while True:
                stream.write(b'\0' * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    with pytest.raises(OSError) as raised:
        recover_bag(bag)
    assert raised.value.errno == errno.ENOSPC
    assert sorted(p.name for p in bag.iterdir()) == [mcap_path.name]
    assert mcap_path.read_bytes() == original
    filler.unlink()
    report = recover_bag(bag)
    assert report.action == 'rebuilt' and report.pairs == 40


class FullDiskStream:
    """A file object that accepts ``capacity`` bytes and then raises ENOSPC, like a full disk."""

    def __init__(self, path: Path, capacity: int):
        self._file = open(path, 'xb')
        self._capacity = capacity

    def write(self, data) -> int:
        room = self._capacity - self._file.tell()
        if len(data) > room:
            self._file.write(bytes(data[:max(room, 0)]))  # a partial record reaches the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)


@pytest.mark.parametrize('compression', ['none', 'zstd'])
def test_enospc_from_the_stream(tmp_path, monkeypatch, compression):
    """ENOSPC mid-record (no mount needed): the partial chunk is cut off, the rest kept."""
    monkeypatch.setattr(bagwriter, '_open_stream', lambda path: FullDiskStream(path, 200_000))
    bag = tmp_path / 'run'
    writer = BagWriter(BagWriterConfig(str(bag), image_format='raw', flush_interval_s=3600.0,
                                       chunk_compression=compression))
    acknowledged = 0
    with pytest.raises(BagWriteError) as raised:
        for i in range(1000):
            writer.write_pair(stamp(i), FRAME, 'bgr8', Control(), 1.0)
            acknowledged += 1
            if i % 5 == 4:
                writer.flush()
    assert raised.value.errno == errno.ENOSPC
    writer.close()
    check_ended_bag(bag, writer, acknowledged)
    # Pairs reach the file at flushes only: the failing flush loses exactly its 5 pairs.
    assert writer.loss['pairs'] == 5 and writer.loss['messages'] == 15
    assert writer.loss['first_stamp_ns'] == stamp(acknowledged - 5)
    assert writer.loss['last_stamp_ns'] == stamp(acknowledged - 1)


def test_failure_in_the_flush_thread_is_raised_by_close(tmp_path, monkeypatch):
    """A full disk met by the background flush is not swallowed: close() raises it."""
    monkeypatch.setattr(bagwriter, '_open_stream', lambda path: FullDiskStream(path, 5_000))
    bag = tmp_path / 'run'
    writer = BagWriter(BagWriterConfig(str(bag), image_format='raw', flush_interval_s=0.05))
    writer.write_pair(stamp(0), FRAME, 'bgr8', Control(), 1.0)  # 14 KB: no room for it
    deadline = time.monotonic() + 30.0
    while writer.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 'No space left' in writer.error
    with pytest.raises(BagWriteError):
        writer.close()
    assert writer.loss['pairs'] == 1 and writer.pairs_written == 0
    assert bagfmt.custom_json(bagfmt.read_metadata(bag),
                              bagfmt.CUSTOM_SUMMARY_KEY)['lost']['pairs'] == 1
    assert list(read_pairs(bag)) == [] and bagfmt.read_metadata(bag)['message_count'] == 0


def test_mcap_writer_exception_ends_the_bag(tmp_path, monkeypatch):
    """A non-OS exception inside the MCAP writer is a BagWriteError too, never half-closed."""
    bag = tmp_path / 'run'
    writer = BagWriter(BagWriterConfig(str(bag), flush_interval_s=3600.0))
    for i in range(6):
        writer.write_pair(stamp(i), FRAME, 'bgr8', Control(), 1.0)
    writer.flush()
    writer.write_pair(stamp(6), FRAME, 'bgr8', Control(), 1.0)

    def broken(*args, **kwargs):
        raise ValueError('required argument is not an integer')

    monkeypatch.setattr(writer._backend, 'write', broken)
    with pytest.raises(BagWriteError, match='ValueError: required argument') as raised:
        writer.write_pair(stamp(7), FRAME, 'bgr8', Control(), 1.0)
    assert raised.value.errno is None
    with pytest.raises(BagWriteError):  # later calls keep failing, they do not write
        writer.write_pair(stamp(8), FRAME, 'bgr8', Control(), 1.0)
    writer.close()
    pairs = check_ended_bag(bag, writer, 7)
    assert len(pairs) == 6 and writer.loss['pairs'] == 1


@pytest.mark.parametrize('bad', [-1, -5_000_000_000, 2 ** 63, 2 ** 64 + 3, 1.5e9, 'soon', None,
                                 True, stamp(0) + 8 * 24 * 3600 * 10 ** 9])
def test_bad_stamps_are_rejected_before_the_mcap_writer(tmp_path, bad):
    """Negative, oversized, non-integer and far-from-the-bag stamps are counted, not written."""
    bag = tmp_path / 'run'
    writer = BagWriter(BagWriterConfig(str(bag)))
    writer.write_pair(stamp(0), FRAME, 'bgr8', Control(), 1.0)
    with pytest.raises(SampleRejected) as pair_error:
        writer.write_pair(bad, FRAME, 'bgr8', Control(), 1.0)
    with pytest.raises(SampleRejected) as marker_error:
        writer.write_episode_marker(bad, {'event': 'start', 'episode': 1})
    assert pair_error.value.reason == marker_error.value.reason
    assert pair_error.value.reason in ('bad_stamp', 'implausible_stamp')
    writer.write_pair(stamp(1), FRAME, 'bgr8', Control(), 1.0)
    writer.close()
    assert sum(writer.rejected.values()) == 2
    assert [p.stamp_ns for p in read_pairs(bag)] == [stamp(0), stamp(1)]
    summary = bagfmt.custom_json(bagfmt.read_metadata(bag), bagfmt.CUSTOM_SUMMARY_KEY)
    assert summary['rejected'] == {pair_error.value.reason: 2}


@pytest.mark.parametrize('marker', [[1, 2], 'start', 7, None, {'event': 'begin', 'episode': 1},
                                    {'event': 'start', 'episode': '1'},
                                    {'event': 'start', 'episode': True},
                                    {'event': 'end', 'episode': 1, 'x': float('nan')},
                                    {'event': 'end', 'episode': 1, 'x': object()}])
def test_malformed_episode_markers_are_counted(tmp_path, marker):
    """Markers that are not a JSON object with event and int episode are rejected, counted."""
    bag = tmp_path / 'run'
    with BagWriter(BagWriterConfig(str(bag))) as writer:
        writer.write_pair(stamp(0), FRAME, 'bgr8', Control(), 1.0)
        with pytest.raises(SampleRejected, match='malformed_episode_marker'):
            writer.write_episode_marker(stamp(0), marker)
        writer.write_episode_marker(stamp(0), {'event': 'start', 'episode': 4})
    assert writer.rejected == {'malformed_episode_marker': 1}
    assert [p.episode for p in read_pairs(bag)] == [4]


def test_lock_file_while_writing(tmp_path):
    """writer.lock names the live writer; recover refuses the bag until it is closed."""
    bag = tmp_path / 'run'
    writer = BagWriter(BagWriterConfig(str(bag), flush_interval_s=0.05))
    writer.write_pair(stamp(0), FRAME, 'bgr8', Control(), 1.0)
    writer.flush()
    holder = lock_holder(bag)
    assert holder['pid'] == os.getpid()
    with pytest.raises(RecoverError, match=f'pid {os.getpid()}'):
        recover_bag(bag)
    assert writer.file_path.is_file() and not list(bag.glob('*.orig'))
    writer.write_pair(stamp(1), FRAME, 'bgr8', Control(), 1.0)
    writer.close()
    assert lock_holder(bag) is None and not (bag / bagwriter.LOCK_FILE).exists()
    assert recover_bag(bag).pairs == 2


def test_stale_lock_of_a_dead_writer_does_not_block_recovery(tmp_path):
    """A lock file nobody holds (the writer was SIGKILLed) is ignored and removed."""
    bag = tmp_path / 'run'
    writer = BagWriter(BagWriterConfig(str(bag), flush_interval_s=3600.0))
    writer.write_pair(stamp(0), FRAME, 'bgr8', Control(), 1.0)
    writer.flush()
    writer._file_lock.release()
    (bag / bagwriter.LOCK_FILE).write_text('{"pid": 999999999}')  # left behind, unlocked
    assert lock_holder(bag) is None
    report = recover_bag(bag)
    assert report.pairs == 1 and not (bag / bagwriter.LOCK_FILE).exists()


def test_recorder_summary_carries_the_error_and_the_disk_counts(ros_graph, tmp_path,
                                                                monkeypatch):
    """A failure met only when the recorder closes its bag is in its summary and status."""
    from llava_drive.nodes.recorder import Recorder
    from rclpy.parameter import Parameter
    monkeypatch.setattr(bagwriter, '_open_stream', lambda path: FullDiskStream(path, 5_000))
    bag = tmp_path / 'run'
    recorder = ros_graph.add(Recorder(context=ros_graph.context, parameter_overrides=[
        Parameter('bag_path', value=str(bag)), Parameter('flush_interval', value=60.0),
        Parameter('image_format', value='raw')]))
    assert recorder.writer is not None, recorder.error
    for i in range(3):  # acknowledged, still in the open chunk
        recorder.writer.write_pair(stamp(i), FRAME, 'bgr8', Control(), 1.0)
    recorder.stop()  # the final flush meets the full disk
    summary = recorder.last_summary
    assert 'No space left' in summary['error'] and recorder.error == summary['error']
    assert summary['pairs_written'] == 0 and summary['lost']['pairs'] == 3
    assert bagfmt.custom_json(bagfmt.read_metadata(bag),
                              bagfmt.CUSTOM_SUMMARY_KEY)['lost']['pairs'] == 3
