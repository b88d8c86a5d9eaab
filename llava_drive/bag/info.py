"""
Summarize a bag: what ``ros2 bag info`` shows plus pairs, gaps, episodes and action statistics.

:func:`bag_info` returns a JSON-ready dict; :func:`format_info` turns it into the table that
``llava-drive bag info`` prints.
"""
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List

from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import OpenBag, read_json_topic, read_pairs, ReadStats
from llava_drive.bag.trim import describe, Exclusions, ExclusionsError, load_exclusions
from llava_drive.planning import RoadOption
import numpy as np

ACTION_NAMES = ('steer', 'throttle', 'brake', 'speed')
LARGEST_GAPS = 5


def _stats(values: np.ndarray) -> Dict[str, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {'mean': None, 'std': None, 'min': None, 'max': None, 'missing': int(values.size)}
    return {'mean': float(finite.mean()), 'std': float(finite.std()),
            'min': float(finite.min()), 'max': float(finite.max()),
            'missing': int(values.size - finite.size)}


def gap_report(stamps_ns: np.ndarray) -> dict:
    """
    Return the median period, the largest gaps and how many gaps exceed 2x the median.

    :param stamps_ns: sorted pair stamps.
    """
    if stamps_ns.size < 2:
        return {'median_period_s': None, 'gaps_over_2x_median': 0, 'largest': []}
    periods = np.diff(stamps_ns)
    median = float(np.median(periods))
    order = np.argsort(periods)[::-1][:LARGEST_GAPS]
    largest = [{'after_s': float((stamps_ns[i] - stamps_ns[0]) / 1e9),
                'gap_s': float(periods[i] / 1e9)} for i in order]
    return {'median_period_s': median / 1e9,
            'gaps_over_2x_median': int(np.count_nonzero(periods > 2 * median)),
            'largest': largest}


def _episodes(markers, episodes: np.ndarray, start_ns: int) -> List[dict]:
    rows = {}
    for log_ns, event in markers:
        episode = event.get('episode')
        if not isinstance(episode, int):
            continue
        row = rows.setdefault(episode, {'episode': episode})
        extra = {k: v for k, v in event.items() if k not in ('event', 'episode')}
        if event.get('event') == 'start':
            row['start_s'] = (log_ns - start_ns) / 1e9
            row.update(extra)
        elif event.get('event') == 'end':
            row['end_s'] = (log_ns - start_ns) / 1e9
            row.update({f'end_{k}': v for k, v in extra.items()})
    for episode, row in rows.items():
        row['pairs'] = int(np.count_nonzero(episodes == episode))
    unassigned = int(np.count_nonzero(episodes == -1))
    result = [rows[k] for k in sorted(rows)]
    if unassigned and rows:
        result.append({'episode': -1, 'pairs': unassigned, 'note': 'outside any episode'})
    return result


def bag_info(path, check_images: bool = False) -> dict:
    """
    Return everything ``llava-drive bag info`` reports, as a JSON-ready dict.

    :param path: bag directory.
    :param check_images: decode every frame to count undecodable ones (slower).
    :raises BagReadError: the bag cannot be read.
    """
    bag_dir = Path(path)
    with OpenBag(bag_dir) as bag:
        connections = bag.reader.connections
        topics = [{'name': c.topic, 'type': c.msgtype, 'count': c.msgcount}
                  for c in connections]
        start_ns, end_ns = bag.reader.start_time, bag.reader.end_time
        message_count = sum(c.msgcount for c in connections)
    metadata = bagfmt.read_metadata(bag_dir) or {}
    start_ns = start_ns if message_count else 0
    end_ns = end_ns - 1 if message_count else 0  # rosbags reports end as last stamp + 1
    try:
        exclusions, exclusions_error = load_exclusions(bag_dir), None
    except ExclusionsError as error:  # report the bag anyway; the caller shows the error
        exclusions, exclusions_error = Exclusions(), str(error)

    stats = ReadStats()
    stamps, actions, speeds, episodes, excluded = [], [], [], [], 0
    for pair in read_pairs(bag_dir, honour_exclusions=False, decode_images=check_images,
                           stats=stats):
        stamps.append(pair.stamp_ns)
        actions.append(pair.control.as_array())
        speeds.append(pair.speed)
        episodes.append(pair.episode)
        excluded += exclusions.excludes(pair.stamp_ns, pair.episode)
    stamps = np.asarray(stamps, dtype=np.int64)
    actions = np.asarray(actions, dtype=np.float64).reshape(-1, 3)
    values = {'steer': actions[:, 0], 'throttle': actions[:, 1], 'brake': actions[:, 2],
              'speed': np.asarray(speeds, dtype=np.float64)}
    span = (stamps[-1] - stamps[0]) / 1e9 if stamps.size > 1 else 0.0

    summary = bagfmt.custom_json(metadata, bagfmt.CUSTOM_SUMMARY_KEY)
    config = bagfmt.custom_json(metadata, bagfmt.CUSTOM_RECORDING_INFO_KEY)
    info_events = read_json_topic(bag_dir, bagfmt.RECORDING_INFO_TOPIC)
    if summary is None:
        summary = next((e for _, e in reversed(info_events) if e.get('event') == 'summary'),
                       None)
    if config is None:
        config = next((e for _, e in info_events if e.get('event') == 'config'), None)
    markers = read_json_topic(bag_dir, bagfmt.EPISODE_TOPIC)
    files = [p for p in bag_dir.iterdir() if p.is_file()]
    return {
        'path': str(bag_dir),
        'bag_format': (metadata.get('custom_data') or {}).get(bagfmt.CUSTOM_FORMAT_KEY),
        'storage': metadata.get('storage_identifier', 'mcap'),
        'metadata_version': metadata.get('version'),
        'files': sorted(p.name for p in files),
        'size_bytes': sum(p.stat().st_size for p in files),
        'start_ns': int(start_ns),
        'end_ns': int(end_ns),
        'duration_s': (end_ns - start_ns) / 1e9 if message_count else 0.0,
        'messages': message_count,
        'topics': topics,
        'pairs': int(stamps.size),
        'pairs_after_exclusions': int(stamps.size - excluded),
        'pair_rate_hz': (stamps.size - 1) / span if span > 0 else None,
        'read': stats.as_dict(),
        'gaps': gap_report(stamps),
        'episodes': _episodes(markers, np.asarray(episodes), int(start_ns)),
        'actions': {name: _stats(values[name]) for name in ACTION_NAMES},
        'rejected': (summary or {}).get('rejected', {}),
        'summary': summary,
        'recording_info': config,
        'exclusions': [describe(e, int(start_ns)) for e in exclusions.items],
        'exclusions_error': exclusions_error,
    }


def _time(stamp_ns: int) -> str:
    moment = datetime.fromtimestamp(stamp_ns / 1e9, tz=timezone.utc)
    return f'{moment:%Y-%m-%d %H:%M:%S.%f}'[:-3] + f' UTC ({stamp_ns / 1e9:.3f})'


def _size(size: int) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if size < 1024 or unit == 'GiB':
            return f'{size:.1f} {unit}' if unit != 'B' else f'{size} B'
        size /= 1024
    return ''


def _number(value) -> str:
    return '-' if value is None else f'{value:.3f}'


def _brief(key: str, value) -> str:
    """Return one short text of an episode marker field (a global plan by its commands)."""
    if key == 'global_plan' and isinstance(value, dict) and isinstance(value.get('options'),
                                                                       list):
        names = {int(option): option.name for option in RoadOption}
        commands = ' '.join(names.get(option, str(option)) for option in value['options']
                            if option != RoadOption.LANEFOLLOW)
        return f'plan: {len(value["options"])} targets, {commands or "no junction"}'
    if isinstance(value, (dict, list)):
        return f'{key}: {len(value)} items'
    return f'{key}: {value}'


def format_info(info: dict) -> str:
    """
    Return the human-readable report of :func:`bag_info`.

    :param info: result of :func:`bag_info`.
    """
    rate = info['pair_rate_hz']
    gaps = info['gaps']
    lines = [
        f'Bag:              {info["path"]}  (format v{info["bag_format"] or "?"}, '
        f'metadata v{info["metadata_version"]})',
        f'Files:            {", ".join(info["files"])}',
        f'Bag size:         {_size(info["size_bytes"])}',
        f'Storage id:       {info["storage"]}',
        f'Duration:         {info["duration_s"]:.3f} s',
        f'Start:            {_time(info["start_ns"])}',
        f'End:              {_time(info["end_ns"])}',
        f'Messages:         {info["messages"]}',
        'Topic information:',
    ]
    width = max([len(t['name']) for t in info['topics']] + [5])
    lines += [f'  {t["name"]:<{width}}  {t["type"]:<40} {t["count"]:>8}'
              for t in info['topics']]
    read = info['read']
    lines += [
        f'Pairs:            {info["pairs"]} ({info["pairs_after_exclusions"]} after exclusions)'
        f', {"-" if rate is None else f"{rate:.2f}"} Hz',
        f'Unpaired:         {read["unpaired_images"]} images, {read["unpaired_controls"]} '
        'controls' + (f'; undecodable frames: {read["undecodable"]}' if read['undecodable']
                      else ''),
        f'Gaps:             median period {_number(gaps["median_period_s"])} s, '
        f'{gaps["gaps_over_2x_median"]} gaps > 2x median',
    ]
    lines += [f'  largest: {g["gap_s"]:.3f} s after {g["after_s"]:.3f} s'
              for g in gaps['largest'][:3]]
    lines.append(f'Episodes:         {len([e for e in info["episodes"] if e["episode"] >= 0])}')
    for episode in info['episodes']:
        # The start marker's fields, a town route's whole plan among them, in a few words.
        extra = ', '.join(_brief(k, v) for k, v in episode.items()
                          if k not in ('episode', 'pairs', 'start_s', 'end_s') and v is not None)
        lines.append(f'  {episode["episode"]:>4}: {episode["pairs"]:>6} pairs  '
                     f'{_number(episode.get("start_s"))} .. {_number(episode.get("end_s"))} s'
                     + (f'  {extra}' if extra else ''))
    lines.append(f'Actions:          {"":<10}{"mean":>9}{"std":>9}{"min":>9}{"max":>9}')
    for name, stat in info['actions'].items():
        cells = ''.join(f'{_number(stat[k]):>9}' for k in ('mean', 'std', 'min', 'max'))
        missing = f'  ({stat["missing"]} missing)' if stat['missing'] else ''
        lines.append(f'  {name:<26}{cells}{missing}')
    rejected = info['rejected']
    lines.append('Rejected samples: ' + (', '.join(f'{k}: {v}' for k, v in sorted(
        rejected.items())) if rejected else 'none recorded'))
    if info['exclusions_error']:
        lines.append('Exclusions:       unreadable (pairs above count none as excluded)')
    else:
        lines.append(f'Exclusions:       {len(info["exclusions"]) or "none"}')
    lines += [f'  {text}' for text in info['exclusions']]
    return '\n'.join(lines)
