"""
Recover a bag whose writer died (SIGKILL, power loss, full disk) or whose file was damaged.

Such a bag has an MCAP without summary and footer, maybe a truncated last record or damaged
bytes anywhere, and maybe no ``metadata.yaml``; rosbags refuses to read it. Recovery scans
the whole file and resynchronises after damage: a record that does not parse is skipped and the
scan goes on at the next chunk that does; channels and schemas come from any copy (in a chunk,
at top level or in the summary); a chunk whose CRC fails, or that is cut short, gives up every
message record that still parses inside it. The kept messages go into a new MCAP with summary
plus ``metadata.yaml``; the original is moved out of the bag directory (rosbag2's ``ros2 bag
info`` on Humble sums every file in it) to ``<parent>/.recover-originals/<bag>/``, or deleted
after the new file was verified when asked to. A healthy bag is left alone; a bag whose
``writer.lock`` is held by a live writer is refused.
"""
from dataclasses import asdict, dataclass, field
import json
import mmap
import os
from pathlib import Path
import shutil
import struct
from typing import Dict, Iterator, List, Optional, Tuple
import zlib

from llava_drive import __version__
from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import OpenBag, read_pairs, ReadStats
from llava_drive.bag.writer import lock_holder
from mcap.writer import CompressionType, Writer

MAGIC = b'\x89MCAP0\r\n'
RECORD_HEAD = struct.Struct('<BQ')
CHUNK_HEAD = struct.Struct('<QQQII')  # start, end, uncompressed size, crc, compression length
MESSAGE_HEAD = struct.Struct('<HIQQ')  # channel id, sequence, log time, publish time
BACKUP_DIR = '.recover-originals'
# MCAP opcodes (https://mcap.dev/spec): what the scan needs to tell apart.
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 1, 2, 3, 4, 5, 6
OP_MESSAGE_INDEX, OP_STATISTICS, OP_DATA_END = 7, 11, 15
KNOWN_OPCODES = frozenset(range(1, 16))
COMPRESSIONS = ('', 'zstd', 'lz4')
MAX_ORPHAN_BYTES = 256 * 1024 * 1024  # messages held while waiting for their channel record


class RecoverError(Exception):
    """The bag cannot be recovered (not a bag, not MCAP, several files, being written ...)."""


@dataclass
class RecoveryReport:
    """
    What :func:`recover_bag` found and did.

    ``action`` is ``healthy`` (nothing changed), ``metadata_written`` (the MCAP was complete
    and undamaged, only metadata.yaml was missing) or ``rebuilt`` (new MCAP written).
    ``messages`` is what the recovered bag holds; ``salvaged_from_damaged_chunks`` of them came
    out of chunks that were cut short or failed their CRC. ``bytes_dropped`` counts every byte
    of the original that is not part of a record recovery could read (damaged regions, the cut
    tail, the unreadable rest of damaged chunks). ``messages_expected`` is the count the file's
    own summary gave, when it had a readable one.
    """

    path: str
    action: str = 'healthy'
    pairs: int = 0
    messages: int = 0
    salvaged_from_damaged_chunks: int = 0
    damaged_chunks: int = 0
    damaged_regions: int = 0
    bytes_dropped: int = 0
    messages_without_channel: int = 0
    messages_undecodable: int = 0
    messages_implausible_stamp: int = 0
    messages_expected: Optional[int] = None
    unpaired_images: int = 0
    unpaired_controls: int = 0
    first_stamp_ns: Optional[int] = None
    last_stamp_ns: Optional[int] = None
    original: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Return the report as a JSON-ready dict."""
        return asdict(self)

    def messages_lost(self) -> Optional[int]:
        """Return the messages the summary counted but recovery could not keep, if known."""
        if self.messages_expected is None:
            return None
        return max(0, self.messages_expected - self.messages)

    def text(self) -> str:
        """Return a short human-readable report."""
        if self.action == 'healthy':
            return f'{self.path}: healthy ({self.pairs} pairs, {self.messages} messages); ' \
                   'nothing changed'
        lost = self.messages_lost()
        lost_text = ('unknown (no readable summary: whatever came after the last recovered '
                     'stamp)' if lost is None else f'{lost} of the {self.messages_expected} '
                     'the summary counted')
        lines = [f'{self.path}: {self.action.replace("_", " ")}',
                 f'  pairs recovered:      {self.pairs}',
                 f'  messages recovered:   {self.messages} ({self.salvaged_from_damaged_chunks}'
                 f' salvaged from {self.damaged_chunks} damaged or cut chunks)',
                 f'  messages lost:        {lost_text}',
                 f'  bytes dropped:        {self.bytes_dropped} ({self.damaged_regions} damaged '
                 'regions skipped)',
                 f'  unpaired messages:    {self.unpaired_images} images, '
                 f'{self.unpaired_controls} controls (not counted as pairs)']
        if self.messages_without_channel:
            lines.append(f'  without channel:      {self.messages_without_channel} messages '
                         '(no copy of their channel record survived; dropped)')
        if self.messages_undecodable or self.messages_implausible_stamp:
            lines.append(f'  damaged messages:     {self.messages_undecodable} that do not '
                         f'deserialize, {self.messages_implausible_stamp} with a log time outside'
                         ' the recording (dropped)')
        if self.first_stamp_ns is not None:
            span = (self.last_stamp_ns - self.first_stamp_ns) / 1e9
            lines.append(f'  stamps:               {self.first_stamp_ns} .. {self.last_stamp_ns}'
                         f' ({span:.2f} s)')
        if self.original:
            lines.append(f'  original kept as:     {self.original}')
        lines.extend(f'  note: {note}' for note in self.notes)
        return '\n'.join(lines)


@dataclass
class Schema:
    """A schema record."""

    id: int  # noqa: A003 - the MCAP field name
    name: str
    encoding: str
    data: bytes
    source: str = ''  # summary, chunk (CRC checked), top (data section), salvage (damaged)


@dataclass
class Channel:
    """A channel record."""

    id: int  # noqa: A003 - the MCAP field name
    schema_id: int
    topic: str
    message_encoding: str
    metadata: Dict[str, str]
    source: str = ''  # as for Schema


@dataclass
class Message:
    """A message record (``data`` may be a view into the mapped file)."""

    channel_id: int
    sequence: int
    log_time: int
    publish_time: int
    data: bytes
    salvaged: bool = False  # from a damaged chunk or region: content not CRC-checked


@dataclass
class Scan:
    """What one pass over an MCAP file found (filled in while scanning)."""

    compression: str = ''
    damaged_chunks: int = 0
    damaged_regions: int = 0
    bytes_dropped: int = 0
    salvaged: int = 0
    data_end: bool = False
    summary_start: int = 0
    summary_damaged: bool = False
    footer: bool = False
    summary_schemas: Dict[int, Schema] = field(default_factory=dict)
    summary_channels: Dict[int, Channel] = field(default_factory=dict)
    summary_message_count: Optional[int] = None
    time_range: Optional[Tuple[int, int]] = None  # message log times, from the summary
    implausible: int = 0

    @property
    def clean(self) -> bool:
        """Return True when nothing was damaged or cut and the file is properly ended."""
        damage = (self.damaged_chunks or self.damaged_regions or self.bytes_dropped
                  or self.summary_damaged)
        return self.data_end and self.footer and not damage


def _string(buf, offset: int, end: int) -> Tuple[str, int]:
    (size,) = struct.unpack_from('<I', buf, offset)
    offset += 4
    if offset + size > end:
        raise ValueError('string beyond the record')
    return bytes(buf[offset:offset + size]).decode('utf-8'), offset + size


def _parse(opcode: int, buf, start: int, end: int):
    """
    Return the schema, channel or message record in ``buf[start:end]``, or None if it is not one.

    Every field must fit exactly: a record that parses only partly is damage, not data.
    """
    try:
        if opcode == OP_MESSAGE:
            if end - start < MESSAGE_HEAD.size:
                return None
            channel_id, sequence, log_time, publish_time = MESSAGE_HEAD.unpack_from(buf, start)
            return Message(channel_id, sequence, log_time, publish_time,
                           buf[start + MESSAGE_HEAD.size:end])
        if opcode == OP_SCHEMA:
            (schema_id,) = struct.unpack_from('<H', buf, start)
            name, offset = _string(buf, start + 2, end)
            encoding, offset = _string(buf, offset, end)
            (size,) = struct.unpack_from('<I', buf, offset)
            if offset + 4 + size != end:
                return None
            return Schema(schema_id, name, encoding, bytes(buf[offset + 4:end]))
        if opcode == OP_CHANNEL:
            channel_id, schema_id = struct.unpack_from('<HH', buf, start)
            topic, offset = _string(buf, start + 4, end)
            encoding, offset = _string(buf, offset, end)
            (size,) = struct.unpack_from('<I', buf, offset)
            offset += 4
            if offset + size != end:
                return None
            metadata = {}
            while offset < end:
                key, offset = _string(buf, offset, end)
                metadata[key], offset = _string(buf, offset, end)
            return Channel(channel_id, schema_id, topic, encoding, metadata)
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    return None


class _Inner:
    """Parse the records inside (possibly damaged) chunk data, resynchronising after damage."""

    def __init__(self, scan: Scan, known_channels):
        self.scan = scan
        self.known_channels = known_channels  # a live set: ids seen anywhere so far

    def _record_at(self, data, offset: int, strict: bool):
        if offset + RECORD_HEAD.size > len(data):
            return None, 0
        opcode, length = RECORD_HEAD.unpack_from(data, offset)
        end = offset + RECORD_HEAD.size + length
        if opcode not in (OP_SCHEMA, OP_CHANNEL, OP_MESSAGE) or end > len(data):
            return None, 0
        record = _parse(opcode, data, offset + RECORD_HEAD.size, end)
        if record is None:
            return None, 0
        if strict and isinstance(record, Message) and (
                self.known_channels and record.channel_id not in self.known_channels):
            return None, 0
        return record, end - offset

    def _chains(self, data, offset: int) -> bool:
        """Return True if a record at ``offset`` is followed by another one (or by the end)."""
        record, size = self._record_at(data, offset, strict=True)
        if record is None:
            return False
        following = offset + size
        if following == len(data) or self._record_at(data, following, strict=True)[0]:
            return True
        # The last record of a chunk is followed by the chunk's message index records.
        if following + RECORD_HEAD.size > len(data):
            return False
        opcode, length = RECORD_HEAD.unpack_from(data, following)
        return opcode == OP_MESSAGE_INDEX and following + RECORD_HEAD.size + length <= len(data)

    def records(self, data, trusted: bool) -> Iterator[object]:
        """
        Yield every record of ``data`` that parses; count the bytes that do not.

        :param data: uncompressed chunk records (maybe cut short or damaged).
        :param trusted: the chunk passed its CRC (no resynchronisation needed).
        """
        offset = 0
        while offset < len(data):
            record, size = self._record_at(data, offset, strict=not trusted)
            if record is not None:
                if isinstance(record, Channel):
                    self.known_channels.add(record.id)
                if not isinstance(record, Message):
                    record.source = 'chunk' if trusted else 'salvage'
                yield record
                offset += size
                continue
            if trusted:
                return
            following = self._resync(data, offset + 1)
            self.scan.bytes_dropped += following - offset
            offset = following

    def _resync(self, data, offset: int) -> int:
        while offset < len(data):
            candidates = [position for position in (
                data.find(bytes([opcode]), offset)
                for opcode in (OP_MESSAGE, OP_CHANNEL, OP_SCHEMA)) if position >= 0]
            if not candidates:
                break
            offset = min(candidates)
            if self._chains(data, offset):
                return offset
            offset += 1
        return len(data)


class Copies:
    """
    Every copy of the schema and channel records met in a scan; :meth:`best` picks one.

    Trust order: the summary (CRC-checked), a chunk that passed its CRC, a record at top level
    of the data section, a record salvaged from damage; among equals, the most frequent.
    """

    RANK = {'summary': 3, 'chunk': 2, 'top': 1, 'salvage': 0, '': 0}

    def __init__(self):
        self.schemas: Dict[int, list] = {}
        self.channels: Dict[int, list] = {}

    def add(self, record) -> None:
        """Remember one schema or channel record."""
        table = self.schemas if isinstance(record, Schema) else self.channels
        table.setdefault(record.id, []).append(record)

    @classmethod
    def _best(cls, copies: list):
        top = max(cls.RANK[copy.source] for copy in copies)
        candidates = [copy for copy in copies if cls.RANK[copy.source] == top]
        return max(candidates, key=candidates.count)

    def best(self):
        """Return ``(schemas, channels)`` by id, one copy each."""
        return ({key: self._best(value) for key, value in self.schemas.items()},
                {key: self._best(value) for key, value in self.channels.items()})


def _decompress(compression: str, data, size_hint: int, partial: bool) -> bytes:
    """Return decompressed chunk data; with ``partial``, as much as a cut stream gives."""
    if compression == '':
        return data
    if compression == 'zstd':
        import zstandard
        if partial:
            return zstandard.ZstdDecompressor().decompressobj().decompress(bytes(data))
        return zstandard.ZstdDecompressor().decompress(bytes(data), max_output_size=size_hint)
    if compression == 'lz4':
        import lz4.frame
        if partial:
            return lz4.frame.LZ4FrameDecompressor().decompress(bytes(data))
        return lz4.frame.decompress(bytes(data))
    raise ValueError(f'unknown chunk compression {compression!r}')


class _Scanner:
    """One tolerant pass over a mapped MCAP file."""

    def __init__(self, buf, scan: Scan, known_channels=()):
        self.buf = buf
        self.size = len(buf)
        self.scan = scan
        self.known_channels = set(scan.summary_channels) | set(known_channels)
        self.inner = _Inner(scan, self.known_channels)

    def _chunk_header(self, offset: int, end: int):
        """Return ``(compression, records start, records length, crc, uncompressed size)``."""
        body = offset + RECORD_HEAD.size
        if body + CHUNK_HEAD.size > end:
            return None
        start_ns, end_ns, size, crc, name_length = CHUNK_HEAD.unpack_from(self.buf, body)
        name_start = body + CHUNK_HEAD.size
        if name_length > 8 or name_start + name_length + 8 > end or start_ns > end_ns:
            return None
        compression = bytes(self.buf[name_start:name_start + name_length]).decode(
            errors='replace')
        if compression not in COMPRESSIONS:
            return None
        (records_length,) = struct.unpack_from('<Q', self.buf, name_start + name_length)
        records_start = name_start + name_length + 8
        return compression, records_start, records_length, crc, size

    def _plausible_chunk(self, offset: int) -> bool:
        """Return True if a complete, self-consistent chunk record starts at ``offset``."""
        opcode, length = RECORD_HEAD.unpack_from(self.buf, offset)
        end = offset + RECORD_HEAD.size + length
        if opcode != OP_CHUNK or end > self.size:
            return False
        header = self._chunk_header(offset, end)
        if header is None:
            return False
        compression, records_start, records_length, _, size = header
        return records_start + records_length == end and (compression or size == records_length)

    def _next_chunk(self, offset: int) -> Optional[int]:
        while True:
            offset = self.buf.find(bytes([OP_CHUNK]), offset)
            if offset < 0 or offset + RECORD_HEAD.size > self.size:
                return None
            if self._plausible_chunk(offset):
                return offset
            offset += 1

    def _chunk(self, offset: int, end: int) -> Iterator[object]:
        """
        Yield the records of the chunk record in ``buf[offset:end]``.

        The whole chunk when it is complete and its CRC holds; otherwise every inner record
        that still parses (for a compressed chunk: those before the first broken byte).
        """
        header = self._chunk_header(offset, end)
        if header is None:  # not even the chunk header: look for records in the bytes
            yield from self._region(offset, end)
            return
        compression, records_start, records_length, crc, size = header
        self.scan.compression = self.scan.compression or compression
        chunk_range = struct.unpack_from('<QQ', self.buf, offset + RECORD_HEAD.size)
        records_end = min(records_start + records_length, end)
        raw = self.buf[records_start:records_end]
        if records_start + records_length == end:
            try:
                data = _decompress(compression, raw, size, partial=False)
                if len(data) == size and (crc == 0 or zlib.crc32(data) == crc):
                    yield from self.inner.records(data, trusted=True)
                    return
            except Exception:  # noqa: B902 - any decompression error is damage
                pass
        self.scan.damaged_chunks += 1
        if not compression:
            # Header and bytes after the records are not kept; the inner parse counts the rest.
            self.scan.bytes_dropped += (records_start - offset) + (end - records_end)
            yield from self._salvage(raw, chunk_range)
            return
        try:
            data = _decompress(compression, raw, size, partial=True)
        except Exception:  # noqa: B902 - a compressed stream broken at its start
            data = b''
        dropped = self.scan.bytes_dropped
        yield from self._salvage(data, chunk_range)
        # Compressed bytes cannot be attributed to records: the whole chunk counts as dropped.
        self.scan.bytes_dropped = dropped + (end - offset)

    def _salvage(self, data, time_range=None) -> Iterator[object]:
        time_range = self.scan.time_range or time_range
        for record in self.inner.records(data, trusted=False):
            if isinstance(record, Message):
                if time_range and not time_range[0] <= record.log_time <= time_range[1]:
                    self.scan.implausible += 1  # a damaged log time
                    continue
                record.salvaged = True
                self.scan.salvaged += 1
            yield record

    def _region(self, offset: int, end: int) -> Iterator[object]:
        """Yield the records that still parse in a damaged stretch of the file."""
        self.scan.damaged_regions += 1
        yield from self._salvage(self.buf[offset:end])

    def records(self) -> Iterator[object]:
        """Yield schema, channel and message records of the data section, in file order."""
        if self.buf[:len(MAGIC)] != MAGIC:
            raise RecoverError('not an MCAP file (bad magic)')
        offset = len(MAGIC)
        data_limit = self.scan.summary_start or self.size
        while offset < data_limit:
            if offset + RECORD_HEAD.size > self.size:
                self.scan.bytes_dropped += self.size - offset
                return
            opcode, length = RECORD_HEAD.unpack_from(self.buf, offset)
            end = offset + RECORD_HEAD.size + length
            if opcode in (OP_DATA_END, OP_FOOTER) and end <= self.size:
                self.scan.data_end = True
                return
            if opcode == OP_CHUNK and self._plausible_chunk(offset):
                yield from self._chunk(offset, end)
                offset = end
                continue
            if opcode in KNOWN_OPCODES and opcode != OP_CHUNK and end <= self.size:
                record = _parse(opcode, self.buf, offset + RECORD_HEAD.size, end)
                structured = opcode in (OP_SCHEMA, OP_CHANNEL, OP_MESSAGE)
                skippable = not structured and self._valid_other(opcode, offset, end)
                if record is not None or skippable:
                    if isinstance(record, Channel):
                        self.known_channels.add(record.id)
                    if isinstance(record, (Schema, Channel)):
                        record.source = 'top'
                    if record is not None:
                        yield record
                    offset = end
                    continue
            # Damage (or the cut end): go on at the next chunk that holds together.
            following = self._next_chunk(offset + 1)
            stop = self.size if following is None else following
            if opcode == OP_CHUNK:  # cut short, or its length field is damaged
                yield from self._chunk(offset, stop)
            else:
                yield from self._region(offset, stop)
            if following is None:
                return
            offset = following

    def _valid_other(self, opcode: int, offset: int, end: int) -> bool:
        """Check the shape of records we skip (header, indexes, metadata, attachments)."""
        body = offset + RECORD_HEAD.size
        if opcode == OP_MESSAGE_INDEX:
            if end - body < 6:
                return False
            (array_length,) = struct.unpack_from('<I', self.buf, body + 2)
            return body + 6 + array_length == end and array_length % 16 == 0
        if opcode == OP_HEADER:
            return offset == len(MAGIC)
        return opcode in (9, 12)  # attachment, metadata: their own lengths delimit them


def _read_summary(buf, scan: Scan) -> None:
    """Read schemas, channels and the message count from the summary, if it passes its CRC."""
    footer = len(buf) - len(MAGIC) - RECORD_HEAD.size - 20
    if footer < len(MAGIC) or buf[-len(MAGIC):] != MAGIC:
        return
    opcode, length = RECORD_HEAD.unpack_from(buf, footer)
    if opcode != OP_FOOTER or length != 20:
        return
    summary_start, _, crc = struct.unpack_from('<QQI', buf, footer + RECORD_HEAD.size)
    if summary_start == 0:  # a valid end without summary (what BagWriter leaves on failure)
        scan.footer = True
        return
    if not len(MAGIC) < summary_start < footer:
        return
    scan.footer = True
    scan.summary_start = summary_start  # the data section ends here either way
    expected = zlib.crc32(buf[footer:footer + RECORD_HEAD.size + 16],
                          zlib.crc32(buf[summary_start:footer]))
    if crc and crc != expected:
        scan.summary_damaged = True
        return
    offset = summary_start
    schemas, channels, count = {}, {}, None
    while offset < footer:
        opcode, length = RECORD_HEAD.unpack_from(buf, offset)
        end = offset + RECORD_HEAD.size + length
        if end > footer:
            scan.summary_damaged = True
            return
        record = _parse(opcode, buf, offset + RECORD_HEAD.size, end)
        if isinstance(record, (Schema, Channel)):
            record.source = 'summary'
        if isinstance(record, Schema):
            schemas[record.id] = record
        elif isinstance(record, Channel):
            channels[record.id] = record
        elif opcode == OP_STATISTICS and length >= 46:
            # message count (8), schema, channel, attachment, metadata, chunk counts
            # (2+4+4+4+4), then message start and end time (8+8)
            (count,) = struct.unpack_from('<Q', buf, offset + RECORD_HEAD.size)
            scan.time_range = struct.unpack_from('<QQ', buf, offset + RECORD_HEAD.size + 26)
        offset = end
    scan.summary_schemas, scan.summary_channels = schemas, channels
    scan.summary_message_count = count


def scan_file(mcap_path: Path, scan: Scan, known_channels=()) -> Iterator[object]:
    """
    Yield schema, channel and message records of an MCAP file, tolerating any damage.

    :param mcap_path: the file.
    :param scan: counters and summary contents, filled in while scanning.
    :param known_channels: channel ids known to exist (from an earlier pass): salvaged
        messages must belong to a known channel, and a channel record may come after them.
    """
    with open(mcap_path, 'rb') as stream:
        if os.fstat(stream.fileno()).st_size == 0:
            raise RecoverError(f'{mcap_path} is empty')
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            _read_summary(buf, scan)
            yield from _Scanner(buf, scan, known_channels).records()


def scan_records(stream, scan: Scan) -> Iterator[object]:
    """
    Yield the records of an open MCAP file (see :func:`scan_file`).

    :param stream: binary file opened for reading.
    :param scan: counters filled in while scanning.
    """
    yield from scan_file(Path(stream.name), scan)


class _Rebuild:
    """Copy scanned records into a new, complete MCAP file (same chunk compression)."""

    def __init__(self, target: Path, scan: Scan, copies: Copies):
        self.target = target
        self.stream = open(target, 'xb')
        self.scan = scan
        self.writer = None
        # The most trusted copies from the first pass; records met now fill only gaps.
        self.resolved_schemas, self.resolved_channels = copies.best()
        self.schemas: Dict[int, Schema] = {}
        self.channels: Dict[int, Channel] = {}
        self.schema_ids: Dict[int, int] = {}
        self.channel_ids: Dict[int, int] = {}
        self.topics: Dict[int, bagfmt.TopicCount] = {}
        self.orphans: List[Message] = []
        self.orphan_bytes = 0
        self.orphans_dropped = 0
        self.undecodable = 0
        self.salvaged = 0
        self.start_ns: Optional[int] = None
        self.end_ns: Optional[int] = None
        self.messages = 0

    def _start(self) -> None:
        kind = {'zstd': CompressionType.ZSTD, 'lz4': CompressionType.LZ4}.get(
            self.scan.compression, CompressionType.NONE)
        self.writer = Writer(self.stream, compression=kind)
        self.writer.start(profile='ros2', library=f'llava_drive-{__version__} recover')

    def _channel(self, channel_id: int) -> Optional[int]:
        if channel_id in self.channel_ids:
            return self.channel_ids[channel_id]
        channel = self.resolved_channels.get(channel_id, self.channels.get(channel_id))
        if channel is None:
            return None
        if self.writer is None:
            self._start()
        schema = self.resolved_schemas.get(channel.schema_id,
                                           self.schemas.get(channel.schema_id))
        schema_id = 0
        if schema is not None:
            if schema.id not in self.schema_ids:
                self.schema_ids[schema.id] = self.writer.register_schema(
                    schema.name, schema.encoding, schema.data)
            schema_id = self.schema_ids[schema.id]
        self.channel_ids[channel_id] = self.writer.register_channel(
            channel.topic, channel.message_encoding, schema_id, channel.metadata)
        self.topics[channel_id] = bagfmt.TopicCount(
            channel.topic, schema.name if schema else '', 0,
            channel.metadata.get('offered_qos_profiles', ''),
            channel.metadata.get('topic_type_hash', ''))
        return self.channel_ids[channel_id]

    def add(self, record) -> None:
        if isinstance(record, Schema):
            self.schemas.setdefault(record.id, record)
        elif isinstance(record, Channel):
            self.channels.setdefault(record.id, record)
            if self.orphans and any(m.channel_id == record.id for m in self.orphans):
                waiting, self.orphans, self.orphan_bytes = self.orphans, [], 0
                for message in waiting:
                    self.add(message)
        elif isinstance(record, Message):
            channel = self._channel(record.channel_id)
            if channel is None:  # its channel record may still come (a later copy)
                if self.orphan_bytes + len(record.data) > MAX_ORPHAN_BYTES:
                    self.orphans_dropped += 1
                else:
                    self.orphans.append(Message(record.channel_id, record.sequence,
                                                record.log_time, record.publish_time,
                                                bytes(record.data)))
                    self.orphan_bytes += len(record.data)
                return
            if record.salvaged and not self._decodes(record):
                self.undecodable += 1
                return
            self.writer.add_message(channel, record.log_time, bytes(record.data),
                                    record.publish_time, record.sequence)
            self.salvaged += record.salvaged
            self.topics[record.channel_id].count += 1
            self.messages += 1
            stamp = record.log_time
            self.start_ns = stamp if self.start_ns is None else min(self.start_ns, stamp)
            self.end_ns = stamp if self.end_ns is None else max(self.end_ns, stamp)

    def _decodes(self, record: Message) -> bool:
        """Return False if a salvaged message of a known type does not deserialize (damage)."""
        msgtype = self.topics[record.channel_id].msgtype
        store = bagfmt.typestore()
        if msgtype not in store.types:
            return True  # another tool's type: nothing to check it against
        try:
            store.deserialize_cdr(bytes(record.data), msgtype)
        except Exception:  # noqa: B902 - rosbags raises several types for broken CDR
            return False
        return True

    def finish(self) -> None:
        if self.writer is None:
            self._start()
        self.writer.finish()
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()

    def discard(self) -> None:
        """Close and delete the partial file (on a full disk too)."""
        try:
            self.stream.close()
        except OSError:
            pass  # the unwritten buffer goes with the file
        finally:
            self.target.unlink(missing_ok=True)


def _json_events(bag_dir: Path, topic: str) -> List[dict]:
    with OpenBag(bag_dir) as bag:
        events = []
        for _, _, message in bag.messages(bag.connections(topic=topic)):
            try:
                value = json.loads(message.data)
            except ValueError:
                continue
            if isinstance(value, dict):
                events.append(value)
        return events


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


def _opens(bag_dir: Path) -> bool:
    if not (bag_dir / bagfmt.METADATA_FILE).is_file():
        return False
    try:
        with OpenBag(bag_dir) as bag:
            return sum(c.msgcount for c in bag.reader.connections) >= 0
    except Exception:  # noqa: B902 - anything unreadable needs recovery
        return False


def _check_not_locked(bag_dir: Path) -> None:
    holder = lock_holder(bag_dir)
    if holder is not None:
        raise RecoverError(
            f'{bag_dir} is being written by pid {holder.get("pid")} on '
            f'{holder.get("host", "this host")} ({bagfmt.LOCK_FILE} is locked); stop that '
            'recording first (recovering now would move the file from under the writer)')


def backup_path(mcap_path: Path) -> Path:
    """
    Return where recovery keeps an original: outside the bag directory, never overwriting.

    :param mcap_path: the bag's MCAP file.
    """
    bag_dir = mcap_path.parent
    folder = bag_dir.parent / BACKUP_DIR / bag_dir.name
    candidate, number = folder / mcap_path.name, 1
    while candidate.exists():
        candidate = folder / f'{mcap_path.name}.{number}'
        number += 1
    return candidate


def recover_bag(path, keep_original: bool = True) -> RecoveryReport:
    """
    Make a bag readable again after its writer died or its file was damaged.

    A healthy bag is left unchanged.

    :param path: bag directory.
    :param keep_original: move the original MCAP to :func:`backup_path` (else delete it once
        the rebuilt file has been read back and holds every kept message).
    :raises RecoverError: not a recoverable bag, or still being written.
    :raises OSError: the rebuilt file could not be written (e.g. a full disk); nothing changed.
    """
    bag_dir = Path(path)
    if not bag_dir.is_dir():
        raise RecoverError(f'{bag_dir} is not a bag directory')
    _check_not_locked(bag_dir)
    report = RecoveryReport(path=str(bag_dir))
    mcap_path = _single_mcap(bag_dir)
    scan = Scan()
    counts: Dict[int, int] = {}
    copies = Copies()
    stamps = [None, None]
    for record in scan_file(mcap_path, scan):  # a read-only pass: is anything damaged?
        if isinstance(record, Message):
            counts[record.channel_id] = counts.get(record.channel_id, 0) + 1
            low, high = stamps
            stamps = [record.log_time if low is None else min(low, record.log_time),
                      record.log_time if high is None else max(high, record.log_time)]
        else:
            copies.add(record)
    for record in [*scan.summary_schemas.values(), *scan.summary_channels.values()]:
        copies.add(record)
    schemas, channels = copies.best()
    report.messages_expected = scan.summary_message_count
    if scan.clean and set(counts) <= set(channels):
        report.messages = sum(counts.values())
        if _opens(bag_dir):
            _count(bag_dir, report)
            (bag_dir / bagfmt.LOCK_FILE).unlink(missing_ok=True)
            return report
        # The MCAP is complete and undamaged (only metadata.yaml is missing): no copy needed.
        topics = [bagfmt.TopicCount(
            channel.topic, schemas[channel.schema_id].name if channel.schema_id in schemas
            else '', counts.get(channel_id, 0), channel.metadata.get('offered_qos_profiles', ''),
            channel.metadata.get('topic_type_hash', ''))
            for channel_id, channel in sorted(channels.items())]
        report.first_stamp_ns, report.last_stamp_ns = stamps
        report.action = 'metadata_written'
        start_ns, end_ns = stamps[0] or 0, stamps[1] or 0
    else:
        topics, start_ns, end_ns = _rebuild(mcap_path, report, keep_original, copies)
    # Provisional metadata so the bag opens; then count pairs and add the custom data.
    bagfmt.write_metadata(bag_dir, bagfmt.build_metadata(mcap_path.name, topics, start_ns,
                                                         end_ns))
    _count(bag_dir, report)
    bagfmt.write_metadata(bag_dir, bagfmt.build_metadata(
        mcap_path.name, topics, start_ns, end_ns, _custom_data(bag_dir, report)))
    (bag_dir / bagfmt.LOCK_FILE).unlink(missing_ok=True)  # a dead writer's; nobody holds it
    return report


def _rebuild(mcap_path: Path, report: RecoveryReport, keep_original: bool, copies: Copies):
    """Copy every readable record into a new MCAP; move the original out of the bag."""
    scan = Scan()
    temporary = mcap_path.with_name(mcap_path.name + '.recovering')
    temporary.unlink(missing_ok=True)  # debris of an interrupted earlier run
    rebuild = _Rebuild(temporary, scan, copies)
    try:
        for record in scan_file(mcap_path, scan, copies.channels):
            rebuild.add(record)
        rebuild.finish()
    except BaseException:
        rebuild.discard()
        raise
    report.messages = rebuild.messages
    report.salvaged_from_damaged_chunks = rebuild.salvaged
    report.damaged_chunks = scan.damaged_chunks
    report.damaged_regions = scan.damaged_regions
    report.bytes_dropped = scan.bytes_dropped
    report.messages_without_channel = len(rebuild.orphans) + rebuild.orphans_dropped
    report.messages_undecodable = rebuild.undecodable
    report.messages_implausible_stamp = scan.implausible
    report.first_stamp_ns, report.last_stamp_ns = rebuild.start_ns, rebuild.end_ns
    if keep_original:
        original = backup_path(mcap_path)
        original.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(mcap_path, original)
        except OSError:  # another filesystem: copy, then drop the original
            shutil.copy2(mcap_path, original)
            mcap_path.unlink()
        report.original = str(original)
        os.replace(temporary, mcap_path)
    else:
        _verify(temporary, rebuild.messages)
        os.replace(temporary, mcap_path)
        report.notes.append('original deleted after the rebuilt file was read back')
    report.action = 'rebuilt'
    return (list(rebuild.topics.values()), rebuild.start_ns or 0, rebuild.end_ns or 0)


def _verify(mcap_path: Path, messages: int) -> None:
    """Read a rebuilt file back; raise RecoverError unless it holds ``messages`` intact."""
    scan = Scan()
    count = sum(isinstance(r, Message) for r in scan_file(mcap_path, scan))
    if not scan.clean or count != messages:
        mcap_path.unlink(missing_ok=True)
        raise RecoverError(f'the rebuilt {mcap_path.name} did not read back ({count} of '
                           f'{messages} messages); the original is unchanged')
