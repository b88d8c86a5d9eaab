"""
Exclude time ranges or episodes of a bag without rewriting it (``exclusions.yaml``).

Like cleaning a donkeycar tub: the recording stays untouched, a small YAML file beside it
lists what to leave out, and :func:`llava_drive.bag.reader.read_pairs` honours it by default.

Range specs (``--exclude``):

- ``START:END`` seconds relative to the bag start (either side may be empty: open range),
- ``ns:START:END`` absolute stamps in nanoseconds,
- ``episode:N`` a whole episode.

A spec that covers no pair of the bag is refused rather than stored (a typo would otherwise
silently exclude nothing). A damaged ``exclusions.yaml`` raises :class:`ExclusionsError`, a
:class:`~llava_drive.bag.format.BagReadError`, so tools that skip unreadable bags skip it too.
"""
from dataclasses import asdict, dataclass, field, fields
import math
import os
from pathlib import Path
from typing import List, Optional

from llava_drive.bag import format as bagfmt
from llava_drive.bag.format import BagReadError
import yaml

EXCLUSIONS_VERSION = 1
MAX_STAMP_NS = 2 ** 63 - 1


class ExclusionsError(BagReadError, ValueError):
    """
    A damaged or schema-invalid ``exclusions.yaml``; the message is one line.

    A :class:`BagReadError`, so a multi-bag tool that skips unreadable bags skips this one too.
    """

    def __init__(self, path: Path, problem: str):
        super().__init__(f'{path}: {problem}; fix or remove it (`llava-drive bag trim '
                         f'{path.parent} --clear`)')
        self.path = path


@dataclass(frozen=True)
class Exclusion:
    """
    One excluded stamp range (inclusive) or episode.

    :param start_ns: first excluded stamp (None: from the beginning).
    :param end_ns: last excluded stamp (None: to the end).
    :param episode: excluded episode id (instead of a range).
    :param spec: the text the user gave.
    :param reason: free-form note.
    """

    start_ns: Optional[int] = None
    end_ns: Optional[int] = None
    episode: Optional[int] = None
    spec: str = ''
    reason: str = ''

    def __post_init__(self):
        """Check that the range is ordered and that range and episode are not mixed."""
        if self.episode is not None and (self.start_ns is not None or self.end_ns is not None):
            raise ValueError(f'exclusion {self.spec!r}: an episode or a range, not both')
        if self.start_ns is not None and self.end_ns is not None and self.end_ns < self.start_ns:
            raise ValueError(f'exclusion {self.spec!r}: end {self.end_ns} is before start '
                             f'{self.start_ns}')

    def key(self):
        """Return what the exclusion covers, ignoring spec text and reason."""
        return (self.start_ns, self.end_ns, self.episode)

    def excludes(self, stamp_ns: int, episode: int) -> bool:
        """
        Return True if a pair with this stamp and episode is excluded.

        :param stamp_ns: pair stamp.
        :param episode: pair episode id.
        """
        if self.episode is not None:
            return episode == self.episode
        after_start = self.start_ns is None or stamp_ns >= self.start_ns
        before_end = self.end_ns is None or stamp_ns <= self.end_ns
        return after_start and before_end


@dataclass
class Exclusions:
    """All exclusions of one bag."""

    items: List[Exclusion] = field(default_factory=list)

    def excludes(self, stamp_ns: int, episode: int) -> bool:
        """
        Return True if any exclusion covers the pair.

        :param stamp_ns: pair stamp.
        :param episode: pair episode id.
        """
        return any(item.excludes(stamp_ns, episode) for item in self.items)

    def ranges_ns(self, bag_start_ns: int, bag_end_ns: int):
        """
        Return the stamp ranges as closed ``(start, end)`` tuples (open ends filled in).

        :param bag_start_ns: first stamp of the bag.
        :param bag_end_ns: last stamp of the bag.
        """
        return [(bag_start_ns if item.start_ns is None else item.start_ns,
                 bag_end_ns if item.end_ns is None else item.end_ns)
                for item in self.items if item.episode is None]

    def __len__(self):
        """Return the number of exclusions."""
        return len(self.items)


def bag_start_ns(bag_dir) -> int:
    """
    Return the bag start stamp from ``metadata.yaml``.

    :param bag_dir: bag directory.
    :raises BagReadError: no or damaged metadata.yaml (one line).
    """
    metadata = bagfmt.read_metadata(Path(bag_dir))
    if metadata is None:
        raise BagReadError(f'{bag_dir} has no metadata.yaml; run `llava-drive bag recover '
                           f'{bag_dir}` first')
    try:
        start = metadata['starting_time']['nanoseconds_since_epoch']
    except (KeyError, TypeError):
        start = None
    if isinstance(start, bool) or not isinstance(start, int):
        raise bagfmt.MetadataError(f'{Path(bag_dir) / bagfmt.METADATA_FILE} has no integer '
                                   'starting_time.nanoseconds_since_epoch')
    return start


def _parse_seconds(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f'exclusion {spec!r}: {text!r} is not a number of seconds') from None
    if not math.isfinite(value) or abs(value) * 1e9 > MAX_STAMP_NS:
        raise ValueError(f'exclusion {spec!r}: {text!r} is not a finite number of seconds '
                         'within the range of stamps')
    return value


def _check_stamp(value: Optional[int], spec: str) -> Optional[int]:
    if value is not None and not 0 <= value <= MAX_STAMP_NS:
        raise ValueError(f'exclusion {spec!r}: stamp {value} ns is outside 0..{MAX_STAMP_NS}')
    return value


def parse_exclusion(spec: str, start_ns: int, reason: str = '') -> Exclusion:
    """
    Parse one ``--exclude`` spec (see the module docstring).

    :param spec: e.g. ``12.5:20``, ``ns:1700000000000000000:1700000005000000000``, ``episode:3``.
    :param start_ns: bag start stamp for relative ranges.
    :param reason: note stored with the exclusion.
    """
    text = spec.strip()
    if text.startswith('episode:'):
        try:
            return Exclusion(episode=int(text.split(':', 1)[1]), spec=spec, reason=reason)
        except ValueError:
            raise ValueError(f'exclusion {spec!r}: episode id must be an integer') from None
    if text.startswith('ns:'):
        parts = text[3:].split(':')
        if len(parts) != 2:
            raise ValueError(f'exclusion {spec!r}: expected ns:START:END')
        try:
            bounds = [int(p) if p else None for p in parts]
        except ValueError:
            raise ValueError(f'exclusion {spec!r}: stamps must be integers (ns)') from None
        return Exclusion(start_ns=_check_stamp(bounds[0], spec),
                         end_ns=_check_stamp(bounds[1], spec), spec=spec, reason=reason)
    parts = text.split(':')
    if len(parts) != 2 or parts == ['', '']:
        raise ValueError(f'exclusion {spec!r}: expected START:END in seconds from the bag start '
                         '(e.g. 12.5:20), ns:START:END or episode:N')
    bounds = [None if not p else start_ns + round(_parse_seconds(p, spec) * 1e9) for p in parts]
    # A range reaching before the bag start or past int64 is clipped to what stamps can be.
    bounds = [None if b is None else min(max(b, 0), MAX_STAMP_NS) for b in bounds]
    return Exclusion(start_ns=bounds[0], end_ns=bounds[1], spec=spec, reason=reason)


def exclusions_path(bag_dir) -> Path:
    """
    Return the path of a bag's ``exclusions.yaml``.

    :param bag_dir: bag directory.
    """
    return Path(bag_dir) / bagfmt.EXCLUSIONS_FILE


_FIELD_TYPES = {'start_ns': int, 'end_ns': int, 'episode': int, 'spec': str, 'reason': str}


def _exclusion(item, index: int, path: Path) -> Exclusion:
    """Return one entry of exclusions.yaml as an :class:`Exclusion`, or raise one line."""
    where = f'entry {index}'
    if not isinstance(item, dict):
        raise ExclusionsError(path, f'{where} is a {type(item).__name__}, not a mapping')
    unknown = sorted(set(map(str, item)) - {f.name for f in fields(Exclusion)})
    if unknown:
        raise ExclusionsError(path, f'{where} has unknown keys {unknown}')
    for key, value in item.items():
        wanted = _FIELD_TYPES[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, wanted)):
            raise ExclusionsError(path, f'{where}: {key} {value!r} is not {wanted.__name__}')
    if item.get('episode') is None and item.get('start_ns') is None and \
            item.get('end_ns') is None:
        raise ExclusionsError(path, f'{where} has neither a range nor an episode')
    for key in ('start_ns', 'end_ns'):
        if item.get(key) is not None and not 0 <= item[key] <= MAX_STAMP_NS:
            raise ExclusionsError(path, f'{where}: {key} {item[key]} is outside 0..{MAX_STAMP_NS}')
    try:
        return Exclusion(**item)
    except ValueError as error:
        raise ExclusionsError(path, f'{where}: {error}') from None


def load_exclusions(bag_dir) -> Exclusions:
    """
    Return a bag's exclusions (empty without ``exclusions.yaml``).

    :param bag_dir: bag directory.
    :raises ExclusionsError: the file is unreadable, not YAML or not the expected schema.
    """
    path = exclusions_path(bag_dir)
    if not path.is_file():
        return Exclusions()
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ExclusionsError(path, f'cannot be read ({problem})') from None
    content = {} if content is None else content
    if not isinstance(content, dict):
        raise ExclusionsError(path, f'is a {type(content).__name__}, not a mapping with '
                                    '"version" and "exclusions"')
    unknown = sorted(set(map(str, content)) - {'version', 'exclusions'})
    if unknown:
        raise ExclusionsError(path, f'has unknown keys {unknown}')
    if content.get('version', EXCLUSIONS_VERSION) != EXCLUSIONS_VERSION:
        raise ExclusionsError(path, f'unsupported exclusions version {content.get("version")!r}')
    items = content.get('exclusions') or []
    if not isinstance(items, list):
        raise ExclusionsError(path, f'"exclusions" is a {type(items).__name__}, not a list')
    return Exclusions([_exclusion(item, index, path) for index, item in enumerate(items)])


def save_exclusions(bag_dir, exclusions: Exclusions) -> Path:
    """
    Write ``exclusions.yaml`` atomically (removes it when there are none).

    :param bag_dir: bag directory.
    :param exclusions: what to store.
    """
    path = exclusions_path(bag_dir)
    if not exclusions.items:
        path.unlink(missing_ok=True)
        return path
    items = [{k: v for k, v in asdict(item).items() if v not in (None, '')}
             for item in exclusions.items]
    temporary = path.with_suffix('.yaml.tmp')
    temporary.write_text(yaml.safe_dump({'version': EXCLUSIONS_VERSION, 'exclusions': items},
                                        sort_keys=False))
    os.replace(temporary, path)
    return path


def add_exclusions(bag_dir, specs: List[str], reason: str = '') -> Exclusions:
    """
    Parse specs and append them to the bag's exclusions.

    :param bag_dir: bag directory (with metadata.yaml, for the start stamp).
    :param specs: ``--exclude`` specs.
    :param reason: note stored with each.
    """
    start = bag_start_ns(bag_dir)
    exclusions = load_exclusions(bag_dir)
    new = [parse_exclusion(spec, start, reason) for spec in specs]  # all valid, or none added
    _refuse_empty(bag_dir, new, start)
    known = {item.key() for item in exclusions.items}
    for item in new:
        if item.key() not in known:  # the same range twice is stored once
            exclusions.items.append(item)
            known.add(item.key())
    save_exclusions(bag_dir, exclusions)
    return exclusions


def _refuse_empty(bag_dir, new: List[Exclusion], start_ns: int) -> None:
    """Refuse exclusions that cover no pair of the bag (a typo would be stored silently)."""
    from llava_drive.bag.reader import read_pairs  # reader imports this module
    pairs = [(pair.stamp_ns, pair.episode)
             for pair in read_pairs(bag_dir, honour_exclusions=False, decode_images=False)]
    for item in new:
        if not any(item.excludes(stamp, episode) for stamp, episode in pairs):
            if not pairs:
                raise ValueError(f'exclusion {item.spec!r} covers no pair: the bag has none')
            first, last = min(p[0] for p in pairs), max(p[0] for p in pairs)
            episodes = sorted({episode for _, episode in pairs if episode >= 0})
            raise ValueError(
                f'exclusion {item.spec!r} covers no pair (pairs span '
                f'{(first - start_ns) / 1e9:.3f} .. {(last - start_ns) / 1e9:.3f} s from the '
                f'start; episodes {episodes or "none"}); nothing was stored')


def clear_exclusions(bag_dir) -> Optional[int]:
    """
    Remove every exclusion; return how many there were (None: the file was damaged).

    :param bag_dir: bag directory.
    """
    try:
        count = len(load_exclusions(bag_dir))
    except ExclusionsError:
        count = None  # clearing is how a damaged file is fixed: remove it unread
    save_exclusions(bag_dir, Exclusions())
    return count


def describe(exclusion: Exclusion, start_ns: int) -> str:
    """
    Return a one-line description relative to the bag start.

    :param exclusion: the exclusion.
    :param start_ns: bag start stamp.
    """
    if exclusion.episode is not None:
        text = f'episode {exclusion.episode}'
    else:
        begin = 'start' if exclusion.start_ns is None else (
            f'{(exclusion.start_ns - start_ns) / 1e9:.3f} s')
        end = 'end' if exclusion.end_ns is None else f'{(exclusion.end_ns - start_ns) / 1e9:.3f} s'
        text = f'{begin} .. {end}'
    return f'{text}  ({exclusion.spec})' + (f'  # {exclusion.reason}' if exclusion.reason else '')
