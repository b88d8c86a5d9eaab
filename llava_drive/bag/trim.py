"""
Exclude time ranges or episodes of a bag without rewriting it (``exclusions.yaml``).

Like cleaning a donkeycar tub: the recording stays untouched, a small YAML file beside it
lists what to leave out, and :func:`llava_drive.bag.reader.read_pairs` honours it by default.

Range specs (``--exclude``):

- ``START:END`` seconds relative to the bag start (either side may be empty: open range),
- ``ns:START:END`` absolute stamps in nanoseconds,
- ``episode:N`` a whole episode.
"""
from dataclasses import asdict, dataclass, field
import os
from pathlib import Path
from typing import List, Optional

from llava_drive.bag import format as bagfmt
import yaml

EXCLUSIONS_VERSION = 1


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
    """
    metadata = bagfmt.read_metadata(Path(bag_dir))
    if metadata is None:
        raise FileNotFoundError(f'{bag_dir} has no metadata.yaml; run `llava-drive bag recover '
                                f'{bag_dir}` first')
    return int(metadata['starting_time']['nanoseconds_since_epoch'])


def _parse_seconds(text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f'exclusion {spec!r}: {text!r} is not a number of seconds') from None


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
        return Exclusion(start_ns=bounds[0], end_ns=bounds[1], spec=spec, reason=reason)
    parts = text.split(':')
    if len(parts) != 2 or parts == ['', '']:
        raise ValueError(f'exclusion {spec!r}: expected START:END in seconds from the bag start '
                         '(e.g. 12.5:20), ns:START:END or episode:N')
    bounds = [None if not p else start_ns + round(_parse_seconds(p, spec) * 1e9) for p in parts]
    return Exclusion(start_ns=bounds[0], end_ns=bounds[1], spec=spec, reason=reason)


def exclusions_path(bag_dir) -> Path:
    """
    Return the path of a bag's ``exclusions.yaml``.

    :param bag_dir: bag directory.
    """
    return Path(bag_dir) / bagfmt.EXCLUSIONS_FILE


def load_exclusions(bag_dir) -> Exclusions:
    """
    Return a bag's exclusions (empty without ``exclusions.yaml``).

    :param bag_dir: bag directory.
    """
    path = exclusions_path(bag_dir)
    if not path.is_file():
        return Exclusions()
    content = yaml.safe_load(path.read_text()) or {}
    if content.get('version', EXCLUSIONS_VERSION) != EXCLUSIONS_VERSION:
        raise ValueError(f'{path}: unsupported exclusions version {content.get("version")!r}')
    return Exclusions([Exclusion(**item) for item in content.get('exclusions') or []])


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
    known = {item.key() for item in exclusions.items}
    for item in new:
        if item.key() not in known:  # the same range twice is stored once
            exclusions.items.append(item)
            known.add(item.key())
    save_exclusions(bag_dir, exclusions)
    return exclusions


def clear_exclusions(bag_dir) -> int:
    """
    Remove every exclusion; return how many there were.

    :param bag_dir: bag directory.
    """
    count = len(load_exclusions(bag_dir))
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
