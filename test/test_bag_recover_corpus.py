"""
Damaged-bag corpus: truncations, random bytes, a damaged first chunk, a damaged summary.

The oracle is independent of recover.py: a minimal record scanner here maps every message of
the undamaged file to its byte range, so a message is intact exactly when no damaged byte falls
in its record. Recovery must keep every intact message, invent none, and report what the
rebuilt bag holds.
"""
from collections import Counter
from pathlib import Path
import shutil
import struct

from llava_drive.bag.reader import count_pairs
from llava_drive.bag.recover import recover_bag
from llava_drive.bag.writer import BagWriter, BagWriterConfig
from llava_drive.control import Control
from mcap.reader import make_reader
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

PAIRS = 60


def reference_bag(path: Path) -> Path:
    """Write a closed, uncompressed bag: 12 chunks of 5 pairs, markers and recording info."""
    rng = np.random.default_rng(7)
    writer = BagWriter(BagWriterConfig(str(path), flush_interval_s=3600.0))
    writer.set_recording_info({'source': 'corpus'})
    writer.write_episode_marker(1_000_000_000, {'event': 'start', 'episode': 0})
    for i in range(PAIRS):
        frame = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        writer.write_pair(1_000_000_000 + i * 50_000_000, frame, 'bgr8',
                          Control(steer=(i % 7 - 3) / 4, throttle=0.4), float(i))
        if i % 5 == 4:
            writer.flush()
    writer.close()
    return writer.file_path


def message_layout(data: bytes, topics):
    """
    Return ``(topic, log_time, payload, start, end)`` for every message record, in file order.

    Walks the top-level records and the records of each (uncompressed) chunk; ``start, end``
    is the record's byte range in the file, header included.
    """
    messages = []
    offset = 8
    while offset + 9 <= len(data):
        opcode, length = struct.unpack_from('<BQ', data, offset)
        body = offset + 9
        if opcode == 0x0F:  # DataEnd
            break
        if opcode == 0x06:  # Chunk: 8+8+8+4 header, compression string, records
            (name_length,) = struct.unpack_from('<I', data, body + 28)
            assert name_length == 0, 'the corpus uses uncompressed chunks'
            (records_length,) = struct.unpack_from('<Q', data, body + 32)
            inner = body + 40
            while inner < body + 40 + records_length:
                inner_opcode, inner_length = struct.unpack_from('<BQ', data, inner)
                if inner_opcode == 0x05:
                    channel_id, _, log_time, _ = struct.unpack_from('<HIQQ', data, inner + 9)
                    messages.append((topics[channel_id], log_time,
                                     data[inner + 31:inner + 9 + inner_length], inner,
                                     inner + 9 + inner_length))
                inner += 9 + inner_length
        offset = body + length
    return messages


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """Return the reference file's bytes, its message layout and its section offsets."""
    mcap_path = reference_bag(tmp_path_factory.mktemp('corpus') / 'ref')
    data = mcap_path.read_bytes()
    with open(mcap_path, 'rb') as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
    topics = {cid: channel.topic for cid, channel in summary.channels.items()}
    layout = message_layout(data, topics)
    assert len(layout) == summary.statistics.message_count == PAIRS * 3 + 1 + 2
    chunks = sorted(index.chunk_start_offset for index in summary.chunk_indexes)
    (summary_start,) = struct.unpack_from('<Q', data, len(data) - 8 - 29 + 9)
    return {'path': mcap_path, 'data': data, 'layout': layout, 'chunks': chunks,
            'summary_start': summary_start}


def recovered_messages(bag: Path):
    """Return the rebuilt bag's messages as a Counter of ``(topic, log_time, payload)``."""
    with AnyReader([bag]) as reader:
        held = sum(c.msgcount for c in reader.connections)
        got = Counter((c.topic, t, bytes(raw)) for c, t, raw in reader.messages())
    assert sum(got.values()) == held
    return got


def damage_and_recover(tmp_path, corpus, damaged: bytes, ranges):
    """Write ``damaged`` as a bag's MCAP, recover it, check the oracle; return the report."""
    bag = tmp_path / 'bag'
    bag.mkdir()
    (bag / 'bag_0.mcap').write_bytes(damaged)
    shutil.copy(corpus['path'].parent / 'metadata.yaml', bag / 'metadata.yaml')  # stale
    report = recover_bag(bag)
    got = recovered_messages(bag)
    original = Counter((topic, log_time, payload)
                       for topic, log_time, payload, _, _ in corpus['layout'])
    intact = Counter((topic, log_time, payload)
                     for topic, log_time, payload, start, end in corpus['layout']
                     if not any(start < high and low < end for low, high in ranges))
    damaged_stamps = {(topic, log_time) for topic, log_time, _, start, end in corpus['layout']
                      if any(start < high and low < end for low, high in ranges)}
    missing = intact - got
    assert not missing, f'intact messages lost: {sorted(k[:2] for k in missing)[:5]}'
    invented = got - original
    # Only a message whose own bytes were hit can come back changed; nothing else is new.
    assert sum(invented.values()) <= len(damaged_stamps), sorted(k[:2] for k in invented)
    assert {key[0] for key in invented} <= {topic for topic, _ in damaged_stamps}
    assert report.messages == sum(got.values())
    assert report.pairs == count_pairs(bag, honour_exclusions=False)
    return report, got, intact


@pytest.mark.parametrize('fraction', [i / 23 for i in range(1, 23)] + [0.003, 0.999])
def test_truncated_anywhere(tmp_path, corpus, fraction):
    """A file cut at any offset keeps exactly the messages whose records are before the cut."""
    data = corpus['data']
    cut = max(9, int(len(data) * fraction))
    report, got, intact = damage_and_recover(tmp_path, corpus, data[:cut], [(cut, len(data))])
    assert got == intact  # a cut damages nothing before it
    assert report.action == 'rebuilt'
    if cut < corpus['summary_start']:
        assert report.bytes_dropped > 0
        assert report.bytes_dropped <= len(data[:cut]) - sum(
            end - start for *_, start, end in corpus['layout'] if end <= cut)


@pytest.mark.parametrize('seed', range(40))  # 300 seeds pass too (45 s)
def test_random_bytes_in_several_places(tmp_path, corpus, seed):
    """Random bytes at 1-4 places in a complete file: every untouched message is kept."""
    rng = np.random.default_rng(seed)
    data = bytearray(corpus['data'])
    ranges = []
    for _ in range(int(rng.integers(1, 5))):
        start = int(rng.integers(9, len(data) - 64))
        size = int(rng.integers(1, 64))
        data[start:start + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        ranges.append((start, start + size))
    report, got, intact = damage_and_recover(tmp_path, corpus, bytes(data), ranges)
    # Damage only in index or metadata records needs no rebuild.
    assert report.action in ('rebuilt', 'metadata_written', 'healthy')
    if report.action == 'rebuilt':
        assert report.original and Path(report.original).is_file()


def test_damaged_first_chunk_takes_channels_from_the_summary(tmp_path, corpus):
    """The first chunk's schema and channel records destroyed: the summary's copies serve."""
    first = corpus['chunks'][0]
    first_message = min(start for *_, start, _ in corpus['layout'])
    data = bytearray(corpus['data'])
    low, high = first + 9 + 40, first_message  # every schema/channel record of chunk 1
    data[low:high] = b'\xa5' * (high - low)
    report, got, intact = damage_and_recover(tmp_path, corpus, bytes(data), [(low, high)])
    assert got == intact and sum(got.values()) == len(corpus['layout'])
    assert report.damaged_chunks == 1 and report.messages_without_channel == 0
    assert report.messages_expected == report.messages
    assert report.pairs == PAIRS


def test_damaged_summary_keeps_every_message(tmp_path, corpus):
    """Garbage in the summary section: the data section alone gives every message back."""
    data = bytearray(corpus['data'])
    start = corpus['summary_start'] + 40
    data[start:start + 200] = b'\x00\xff' * 100
    report, got, intact = damage_and_recover(tmp_path, corpus, bytes(data),
                                             [(start, start + 200)])
    assert report.action == 'rebuilt'
    assert sum(got.values()) == len(corpus['layout']) == sum(intact.values())
    assert report.messages_expected is None  # the damaged summary's count is not trusted


def test_crc_failure_salvages_the_rest_of_the_chunk(tmp_path, corpus):
    """One flipped byte inside a message: the chunk fails its CRC, its other messages stay."""
    topic, log_time, payload, start, end = corpus['layout'][40]
    data = bytearray(corpus['data'])
    data[end - 3] ^= 0xFF  # in the payload: the record still parses
    report, got, intact = damage_and_recover(tmp_path, corpus, bytes(data), [(end - 3, end - 2)])
    assert report.damaged_chunks == 1
    assert sum(got.values()) == len(corpus['layout'])  # the changed one is kept, as it parses
    assert report.salvaged_from_damaged_chunks == 15  # the 5 pairs of that chunk
    assert report.messages_lost() == 0
