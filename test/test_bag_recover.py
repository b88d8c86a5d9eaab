"""Recovery of bags whose writer was killed: real SIGKILL, truncated files, healthy bags."""
import hashlib
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import time

from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import BagReadError, read_pairs
from llava_drive.bag.recover import recover_bag, RecoverError
from llava_drive.bag.writer import BagWriter, BagWriterConfig
from llava_drive.control import Control
from mcap.reader import make_reader
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

REPO = Path(__file__).resolve().parent.parent

# Child process: record pairs at ~20 Hz with wall-clock stamps and report each stamp written.
CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from llava_drive.bag.writer import BagWriter, BagWriterConfig
    from llava_drive.control import Control
    writer = BagWriter(BagWriterConfig(sys.argv[1], flush_interval_s=0.5))
    writer.set_recording_info({'source': 'test_bag_recover'})
    rng = np.random.default_rng(0)
    writer.write_episode_marker(time.time_ns(), {'event': 'start', 'episode': 0})
    i = 0
    while True:
        frame = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        stamp = time.time_ns()
        writer.write_pair(stamp, frame, 'bgr8', Control(steer=(i % 21 - 10) / 10,
                          throttle=0.5), speed=float(i))
        print(stamp, flush=True)
        i += 1
        time.sleep(0.05)
""")


def sha256(path: Path) -> str:
    """Return the SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_bag(path: Path, pairs: int, flush_every: int = 5, compression: str = 'none',
              close: bool = True):
    """Write a bag flushing every ``flush_every`` pairs; return (writer, stamps)."""
    writer = BagWriter(BagWriterConfig(str(path), flush_interval_s=3600.0,
                                       chunk_compression=compression))
    writer.set_recording_info({'source': 'write_bag'})
    rng = np.random.default_rng(1)
    stamps = []
    for i in range(pairs):
        stamp = 1_000_000_000 + i * 50_000_000
        writer.write_pair(stamp, rng.integers(0, 255, (48, 64, 4), dtype=np.uint8), 'bgra8',
                          Control(steer=0.1 * (i % 10) - 0.5, throttle=0.3), speed=float(i))
        stamps.append(stamp)
        if (i + 1) % flush_every == 0:
            writer.flush()
    if close:
        writer.close()
    else:  # as if the process died: the kernel drops its lock on writer.lock
        writer._file_lock.release()
    return writer, stamps


def test_sigkilled_recorder_is_recovered(tmp_path):
    """Every pair older than 1 s before SIGKILL comes back after recover."""
    bag = tmp_path / 'killed'
    child = subprocess.Popen([sys.executable, '-c', CHILD, str(bag)], stdout=subprocess.PIPE,
                             text=True, cwd=REPO)
    stamps = []
    try:
        for line in child.stdout:
            stamps.append(int(line))
            if len(stamps) >= 60:  # ~3 s at 20 Hz, however busy the machine is
                break
    finally:
        kill_ns = time.time_ns()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert len(stamps) > 30
    assert not (bag / 'metadata.yaml').exists()
    with pytest.raises(BagReadError, match='recover'):
        list(read_pairs(bag))

    mcap_path = bag / 'killed_0.mcap'
    original_hash = sha256(mcap_path)
    report = recover_bag(bag)
    assert report.action == 'rebuilt'
    # The original is kept byte for byte, outside the bag directory.
    assert sha256(Path(report.original)) == original_hash
    assert Path(report.original).parent == tmp_path / '.recover-originals' / 'killed'
    assert sorted(p.name for p in bag.iterdir()) == ['killed_0.mcap', 'metadata.yaml']

    recovered = {pair.stamp_ns: pair for pair in read_pairs(bag)}
    must_have = [s for s in stamps if s < kill_ns - 1_000_000_000]
    assert len(must_have) >= 20
    assert set(must_have) <= set(recovered)
    assert report.pairs == len(recovered)
    assert all(pair.episode == 0 for pair in recovered.values())
    first = recovered[stamps[0]]
    assert first.image_rgb.shape == (96, 128, 3) and first.speed == 0.0
    # Both independent readers accept the rebuilt file.
    with open(mcap_path, 'rb') as stream:
        summary = make_reader(stream).get_summary()
    assert summary.statistics.message_count == report.messages
    with AnyReader([bag]) as reader:
        assert sum(c.msgcount for c in reader.connections) == report.messages
    metadata = bagfmt.read_metadata(bag)
    assert bagfmt.custom_json(metadata, bagfmt.CUSTOM_RECORDING_INFO_KEY)['source'] == \
        'test_bag_recover'
    assert 'pairs recovered' in report.text()

    # Idempotent: a second run finds the bag healthy and changes nothing.
    rebuilt_hash = sha256(mcap_path)
    again = recover_bag(bag)
    assert again.action == 'healthy' and again.pairs == report.pairs
    assert sha256(mcap_path) == rebuilt_hash


def test_healthy_bag_is_left_alone(tmp_path):
    """Recover on a closed bag reports healthy and touches no file."""
    bag = tmp_path / 'ok'
    write_bag(bag, 12)
    before = {p.name: sha256(p) for p in bag.iterdir()}
    report = recover_bag(bag)
    assert report.action == 'healthy'
    assert report.pairs == 12
    assert {p.name: sha256(p) for p in bag.iterdir()} == before
    assert 'healthy' in report.text()


@pytest.mark.parametrize('compression', ['none', 'zstd'])
def test_truncated_inside_a_chunk(tmp_path, compression):
    """A file cut in the middle of its last chunk keeps every earlier chunk."""
    bag = tmp_path / 'cut'
    writer, stamps = write_bag(bag, 20, flush_every=5, compression=compression, close=False)
    writer._backend._stream.flush()  # what a killed process already handed to the OS
    mcap_path = bag / 'cut_0.mcap'
    data = mcap_path.read_bytes()
    writer._closed = True  # simulate death: no close
    writer._stop_flusher.set()
    mcap_path.write_bytes(data[:len(data) - 2000])  # cut into the 4th chunk
    report = recover_bag(bag)
    assert report.action == 'rebuilt'
    assert report.bytes_dropped > 0 and report.damaged_chunks == 1
    got = [pair.stamp_ns for pair in read_pairs(bag)]
    assert got[:15] == stamps[:15]
    assert len(got) <= 20
    assert report.pairs == len(got)
    if compression == 'none':
        # Complete messages at the start of the cut chunk are salvaged, and not counted as
        # dropped: the dropped bytes are the chunk header, the cut record and the index.
        assert report.salvaged_from_damaged_chunks > 0
        assert report.bytes_dropped < 2000 + 200


def test_missing_metadata_only(tmp_path):
    """A complete MCAP without metadata.yaml gets metadata, the MCAP stays as it is."""
    bag = tmp_path / 'nometa'
    write_bag(bag, 8)
    (bag / 'metadata.yaml').unlink()
    mcap_hash = sha256(bag / 'nometa_0.mcap')
    report = recover_bag(bag)
    assert report.action == 'metadata_written'
    assert sha256(bag / 'nometa_0.mcap') == mcap_hash
    assert len(list(read_pairs(bag))) == 8
    assert not (tmp_path / '.recover-originals').exists()


def test_killed_before_first_flush(tmp_path):
    """A file with only the MCAP header recovers to an empty, readable bag."""
    bag = tmp_path / 'empty'
    bag.mkdir()
    (bag / 'empty_0.mcap').write_bytes(b'\x89MCAP0\r\n')
    report = recover_bag(bag)
    assert report.action == 'rebuilt' and report.pairs == 0
    assert list(read_pairs(bag)) == []


def test_not_a_bag(tmp_path):
    """Clear errors for a missing directory, no MCAP, or a non-MCAP file."""
    with pytest.raises(RecoverError, match='not a bag directory'):
        recover_bag(tmp_path / 'nothing')
    with pytest.raises(RecoverError, match='no .mcap'):
        recover_bag(tmp_path)
    (tmp_path / 'x_0.mcap').write_bytes(b'hello world, not mcap')
    with pytest.raises(RecoverError, match='not an MCAP'):
        recover_bag(tmp_path)
    assert (tmp_path / 'x_0.mcap').read_bytes() == b'hello world, not mcap'
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.recovering')]
