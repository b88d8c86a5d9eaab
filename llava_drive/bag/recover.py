"""
Recover a bag whose writer died (SIGKILL, power loss, full disk).

Such a bag has an MCAP without summary and footer, maybe a truncated last record, and no
``metadata.yaml``; rosbags refuses to read it. Recovery scans every
complete record with a tolerant streaming read, salvages the complete messages at the start of
a truncated chunk, writes a new MCAP with summary plus ``metadata.yaml``, and keeps the
original beside it as ``<name>.mcap.orig``. Nothing is deleted. A healthy bag is left alone.
"""
from dataclasses import asdict, dataclass, field
from io import BytesIO
import json
import os
from pathlib import Path
import struct
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple

from llava_drive import __version__
from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import OpenBag, read_pairs, ReadStats
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.reader import make_reader
from mcap.records import Channel, Chunk, Message, Schema
from mcap.stream_reader import breakup_chunk
from mcap.writer import CompressionType, Writer

MAGIC = b'\x89MCAP0\r\n'
RECORD_HEAD = struct.Struct('<BQ')


class RecoverError(Exception):
    """The bag cannot be recovered (not a bag, not MCAP, several files ...)."""


@dataclass
class RecoveryReport:
    """
    What :func:`recover_bag` found and did.

    ``action`` is ``healthy`` (nothing changed), ``metadata_written`` (the MCAP was complete,
    only metadata.yaml was missing) or ``rebuilt`` (new MCAP written, original kept).
    """

    path: str
    action: str = 'healthy'
    pairs: int = 0
    messages: int = 0
    salvaged_from_truncated_chunk: int = 0
    unpaired_images: int = 0
    unpaired_controls: int = 0
    corrupt_chunks: int = 0
    truncated_bytes: int = 0
    first_stamp_ns: Optional[int] = None
    last_stamp_ns: Optional[int] = None
    original: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Return the report as a JSON-ready dict."""
        return asdict(self)

    def text(self) -> str:
        """Return a short human-readable report."""
        if self.action == 'healthy':
            return f'{self.path}: healthy ({self.pairs} pairs, {self.messages} messages); ' \
                   'nothing changed'
        lines = [f'{self.path}: {self.action.replace("_", " ")}',
                 f'  pairs recovered:      {self.pairs}',
                 f'  messages recovered:   {self.messages}'
                 f' ({self.salvaged_from_truncated_chunk} salvaged from a truncated chunk)',
                 f'  messages lost:        unknown count after the last recovered stamp; '
                 f'{self.truncated_bytes} bytes of incomplete records dropped, '
                 f'{self.corrupt_chunks} corrupt chunks skipped',
                 f'  unpaired messages:    {self.unpaired_images} images, '
                 f'{self.unpaired_controls} controls (not counted as pairs)']
        if self.first_stamp_ns is not None:
            span = (self.last_stamp_ns - self.first_stamp_ns) / 1e9
            lines.append(f'  stamps:               {self.first_stamp_ns} .. {self.last_stamp_ns}'
                         f' ({span:.2f} s)')
        if self.original:
            lines.append(f'  original kept as:     {self.original}')
        lines.extend(f'  note: {note}' for note in self.notes)
        return '\n'.join(lines)


@dataclass
class _Scan:
    """Counters of one tolerant pass over an MCAP file."""

    compression: str = ''
    truncated_bytes: int = 0
    corrupt_chunks: int = 0
    salvaged: int = 0


def _parse_inner(data: bytes) -> Tuple[list, int]:
    """Return the complete schema/channel/message records of (partial) chunk data."""
    records = []
    offset = 0
    while offset + RECORD_HEAD.size <= len(data):
        opcode, length = RECORD_HEAD.unpack_from(data, offset)
        body_start = offset + RECORD_HEAD.size
        if body_start + length > len(data):
            break
        stream = ReadDataStream(BytesIO(data[body_start:body_start + length]))
        if opcode == Opcode.SCHEMA:
            records.append(Schema.read(stream))
        elif opcode == Opcode.CHANNEL:
            records.append(Channel.read(stream))
        elif opcode == Opcode.MESSAGE:
            records.append(Message.read(stream, length))
        offset = body_start + length
    return records, len(data) - offset


def _salvage_chunk(body: bytes, scan: _Scan) -> list:
    """Return the complete records at the start of a truncated chunk record."""
    header = struct.Struct('<QQQI')
    if len(body) < header.size + 4:
        return []
    (name_length,) = struct.unpack_from('<I', body, header.size)
    data_start = header.size + 4 + name_length + 8
    if len(body) < data_start:
        return []
    compression = body[header.size + 4:header.size + 4 + name_length].decode(errors='replace')
    partial = body[data_start:]
    try:
        if compression == 'zstd':
            import zstandard
            partial = zstandard.ZstdDecompressor().decompressobj().decompress(partial)
        elif compression == 'lz4':
            import lz4.frame
            partial = lz4.frame.LZ4FrameDecompressor().decompress(partial)
        elif compression:
            return []
    except Exception:  # noqa: B902 - a broken tail of any kind just ends salvage
        return []
    records, _ = _parse_inner(partial)
    scan.salvaged = sum(isinstance(r, Message) for r in records)
    return records


def scan_records(stream: BinaryIO, scan: _Scan) -> Iterator[object]:
    """
    Yield schema, channel and message records of an MCAP data section, tolerating damage.

    Stops at the summary (DataEnd/Footer) or at the first incomplete record.

    :param stream: binary file positioned at the start.
    :param scan: counters filled in while scanning.
    """
    if stream.read(len(MAGIC)) != MAGIC:
        raise RecoverError('not an MCAP file (bad magic)')
    size = os.fstat(stream.fileno()).st_size
    while True:
        head = stream.read(RECORD_HEAD.size)
        if len(head) < RECORD_HEAD.size:
            scan.truncated_bytes += len(head)
            return
        opcode, length = RECORD_HEAD.unpack(head)
        remaining = size - stream.tell()
        if length > remaining:
            body = stream.read(remaining)
            scan.truncated_bytes += len(head) + len(body)
            if opcode == Opcode.CHUNK:
                yield from _salvage_chunk(body, scan)
            return
        body = stream.read(length)
        if opcode in (Opcode.DATA_END, Opcode.FOOTER):
            return  # the summary section follows
        record_stream = ReadDataStream(BytesIO(body))
        if opcode == Opcode.SCHEMA:
            yield Schema.read(record_stream)
        elif opcode == Opcode.CHANNEL:
            yield Channel.read(record_stream)
        elif opcode == Opcode.MESSAGE:
            yield Message.read(record_stream, length)
        elif opcode == Opcode.CHUNK:
            chunk = Chunk.read(record_stream)
            scan.compression = scan.compression or chunk.compression
            try:
                records = breakup_chunk(chunk, validate_crc=True)
            except Exception:  # noqa: B902 - CRC, decompression or parse error: skip it
                scan.corrupt_chunks += 1
                continue
            yield from records


class _Rebuild:
    """Copy scanned records into a new, complete MCAP file (same chunk compression)."""

    def __init__(self, target: Path, scan: _Scan):
        self.stream = open(target, 'xb')
        self.scan = scan
        self.writer = None
        self.pending = []  # schemas and channels seen before the first chunk
        self.schemas: Dict[int, int] = {}
        self.schema_names: Dict[int, str] = {}
        self.channels: Dict[int, int] = {}
        self.topics: Dict[int, bagfmt.TopicCount] = {}
        self.start_ns: Optional[int] = None
        self.end_ns: Optional[int] = None
        self.messages = 0

    def _start(self) -> None:
        # Created at the first message: by then the first chunk told us its compression.
        kind = {'zstd': CompressionType.ZSTD, 'lz4': CompressionType.LZ4}.get(
            self.scan.compression, CompressionType.NONE)
        self.writer = Writer(self.stream, compression=kind)
        self.writer.start(profile='ros2', library=f'llava_drive-{__version__} recover')
        pending, self.pending = self.pending, []
        for record in pending:
            self.add(record)

    def add(self, record) -> None:
        if self.writer is None:
            if not isinstance(record, Message):
                self.pending.append(record)
                return
            self._start()
        if isinstance(record, Schema) and record.id not in self.schemas:
            self.schemas[record.id] = self.writer.register_schema(record.name, record.encoding,
                                                                  record.data)
            self.schema_names[record.id] = record.name
        elif isinstance(record, Channel) and record.id not in self.channels:
            self.channels[record.id] = self.writer.register_channel(
                record.topic, record.message_encoding, self.schemas.get(record.schema_id, 0),
                record.metadata)
            self.topics[record.id] = bagfmt.TopicCount(
                record.topic, self.schema_names.get(record.schema_id, ''), 0,
                record.metadata.get('offered_qos_profiles', ''),
                record.metadata.get('topic_type_hash', ''))
        elif isinstance(record, Message) and record.channel_id in self.channels:
            self.writer.add_message(self.channels[record.channel_id], record.log_time,
                                    record.data, record.publish_time, record.sequence)
            self.topics[record.channel_id].count += 1
            self.messages += 1
            stamp = record.log_time
            self.start_ns = stamp if self.start_ns is None else min(self.start_ns, stamp)
            self.end_ns = stamp if self.end_ns is None else max(self.end_ns, stamp)

    def finish(self) -> None:
        if self.writer is None:
            self._start()
        self.writer.finish()
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()


def _summary(mcap_path: Path):
    """Return the summary of a complete MCAP, or None when it has none or is damaged."""
    try:
        with open(mcap_path, 'rb') as stream:
            return make_reader(stream).get_summary()
    except Exception:  # noqa: B902 - any failure means the summary is unusable
        return None


def _free_name(path: Path) -> Path:
    candidate, number = path, 1
    while candidate.exists():
        candidate = path.with_name(f'{path.name}.{number}')
        number += 1
    return candidate


def _json_events(bag_dir: Path, topic: str) -> List[dict]:
    with OpenBag(bag_dir) as bag:
        return [json.loads(message.data)
                for _, _, message in bag.messages(bag.connections(topic=topic))]


def _custom_data(bag_dir: Path, report: RecoveryReport) -> Dict[str, str]:
    """Collect recording info and summary from the bag's info topic (written at start/close)."""
    custom = {bagfmt.CUSTOM_FORMAT_KEY: str(bagfmt.BAG_FORMAT_VERSION)}
    try:
        events = _json_events(bag_dir, bagfmt.RECORDING_INFO_TOPIC)
    except Exception as error:  # noqa: B902 - recovery must not fail on a bad info message
        events = []
        report.notes.append(f'recording info unreadable: {error}')
    config = next((e for e in events if e.get('event') == 'config'), None)
    summary = next((e for e in reversed(events) if e.get('event') == 'summary'), None)
    if config is not None:
        custom[bagfmt.CUSTOM_RECORDING_INFO_KEY] = json.dumps(config, sort_keys=True)
    if summary is None:
        summary = {'event': 'summary', 'pairs_written': report.pairs, 'rejected': {},
                   'recovered': True}
    custom[bagfmt.CUSTOM_SUMMARY_KEY] = json.dumps(summary, sort_keys=True)
    custom['llava_drive.recovery'] = json.dumps(
        {k: v for k, v in report.as_dict().items() if k not in ('path', 'notes')},
        sort_keys=True)
    return custom


def _count(bag_dir: Path, report: RecoveryReport) -> None:
    stats = ReadStats()
    for _ in read_pairs(bag_dir, honour_exclusions=False, decode_images=False, stats=stats):
        pass
    report.pairs = stats.pairs
    report.unpaired_images = stats.unpaired_images
    report.unpaired_controls = stats.unpaired_controls


def _single_mcap(bag_dir: Path) -> Path:
    files = bagfmt.mcap_files(bag_dir)
    if not files:
        raise RecoverError(f'{bag_dir} has no .mcap file to recover')
    if len(files) > 1:
        raise RecoverError(f'{bag_dir} has {len(files)} .mcap files; recover handles '
                           'single-file bags (format v1)')
    return files[0]


def _is_healthy(bag_dir: Path) -> bool:
    if not (bag_dir / bagfmt.METADATA_FILE).is_file():
        return False
    try:
        with OpenBag(bag_dir):
            return True
    except Exception:  # noqa: B902 - anything unreadable needs recovery
        return False


def recover_bag(path) -> RecoveryReport:
    """
    Make a bag readable again after its writer died; leave a healthy bag unchanged.

    :param path: bag directory.
    :raises RecoverError: not a recoverable bag.
    """
    bag_dir = Path(path)
    if not bag_dir.is_dir():
        raise RecoverError(f'{bag_dir} is not a bag directory')
    report = RecoveryReport(path=str(bag_dir))
    mcap_path = _single_mcap(bag_dir)
    if _is_healthy(bag_dir):
        with OpenBag(bag_dir) as bag:
            report.messages = sum(c.msgcount for c in bag.reader.connections)
        _count(bag_dir, report)
        return report

    summary = _summary(mcap_path)
    if summary is not None:
        # The MCAP is complete (only metadata.yaml is missing): no need to copy it.
        topics, start_ns, end_ns = _topics_from_summary(summary)
        report.messages = sum(topic.count for topic in topics)
        if report.messages:
            report.first_stamp_ns, report.last_stamp_ns = start_ns, end_ns
        report.action = 'metadata_written'
    else:
        topics, start_ns, end_ns = _rebuild(mcap_path, report)
    # Provisional metadata so the bag opens; then count pairs and add the custom data.
    bagfmt.write_metadata(bag_dir, bagfmt.build_metadata(mcap_path.name, topics, start_ns,
                                                         end_ns))
    _count(bag_dir, report)
    bagfmt.write_metadata(bag_dir, bagfmt.build_metadata(
        mcap_path.name, topics, start_ns, end_ns, _custom_data(bag_dir, report)))
    return report


def _rebuild(mcap_path: Path, report: RecoveryReport):
    """Copy every complete record into a new MCAP; keep the original as ``.orig``."""
    scan = _Scan()
    temporary = _free_name(mcap_path.with_name(mcap_path.name + '.recovering'))
    rebuild = _Rebuild(temporary, scan)
    try:
        with open(mcap_path, 'rb') as stream:
            for record in scan_records(stream, scan):
                rebuild.add(record)
        rebuild.finish()
    except BaseException:
        rebuild.stream.close()
        temporary.unlink(missing_ok=True)
        raise
    report.messages = rebuild.messages
    report.salvaged_from_truncated_chunk = scan.salvaged
    report.truncated_bytes = scan.truncated_bytes
    report.corrupt_chunks = scan.corrupt_chunks
    report.first_stamp_ns, report.last_stamp_ns = rebuild.start_ns, rebuild.end_ns
    original = _free_name(mcap_path.with_name(mcap_path.name + '.orig'))
    os.replace(mcap_path, original)
    os.replace(temporary, mcap_path)
    report.original = str(original)
    report.action = 'rebuilt'
    return list(rebuild.topics.values()), rebuild.start_ns or 0, rebuild.end_ns or 0


def _topics_from_summary(summary):
    """Return topics with counts and the time range from a complete MCAP's summary."""
    counts = summary.statistics.channel_message_counts if summary.statistics else {}
    topics = []
    for channel_id, channel in sorted(summary.channels.items()):
        schema = summary.schemas.get(channel.schema_id)
        topics.append(bagfmt.TopicCount(
            channel.topic, schema.name if schema else '', int(counts.get(channel_id, 0)),
            channel.metadata.get('offered_qos_profiles', ''),
            channel.metadata.get('topic_type_hash', '')))
    statistics = summary.statistics
    if statistics is None or not statistics.message_count:
        return topics, 0, 0
    return topics, statistics.message_start_time, statistics.message_end_time
