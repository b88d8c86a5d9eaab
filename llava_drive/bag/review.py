"""
Look at a recording: control plots, histograms, a contact sheet and an MP4 with overlays.

``llava-drive bag review PATH --out DIR`` writes ``controls.png`` (steer, throttle, brake and
speed over time, excluded ranges shaded, episode starts marked), ``histograms.png``,
``contact_sheet.png`` (frames evenly spaced over the run, recorded control drawn on each) and
``run.mp4`` (every frame with the same overlay).
"""
from dataclasses import dataclass
import math
from pathlib import Path
from typing import Dict, List, Optional

import cv2
from llava_drive.bag.reader import read_pairs
from llava_drive.bag.trim import load_exclusions
from llava_drive.visual.overlay import draw_overlay
from llava_drive.visual.video import Mp4Writer
import numpy as np
from tqdm import tqdm


@dataclass
class ReviewConfig:
    """
    What ``bag review`` produces.

    :param out_dir: output directory (created).
    :param sheet_frames: frames on the contact sheet.
    :param video: write the MP4.
    :param max_frames: at most this many frames in the MP4 (evenly spaced), None for all.
    :param fps: MP4 frame rate; None uses the recorded pair rate.
    :param progress: show a tqdm progress bar.
    """

    out_dir: str
    sheet_frames: int = 16
    video: bool = True
    max_frames: Optional[int] = None
    fps: Optional[float] = None
    progress: bool = True

    def __post_init__(self):
        """Validate the counts and the rate."""
        if self.sheet_frames < 1:
            raise ValueError(f'sheet_frames {self.sheet_frames!r} must be >= 1')
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f'max_frames {self.max_frames!r} must be >= 1')
        if self.fps is not None and not 0 < self.fps <= 240:
            raise ValueError(f'fps {self.fps!r} must be in (0, 240]')


def _series(path):
    """Read stamps, actions, speeds and episodes without decoding frames."""
    columns = {'stamp_ns': [], 'steer': [], 'throttle': [], 'brake': [], 'speed': [],
               'episode': []}
    for pair in read_pairs(path, honour_exclusions=False, decode_images=False):
        columns['stamp_ns'].append(pair.stamp_ns)
        for name, value in zip(('steer', 'throttle', 'brake'), pair.control.as_array()):
            columns[name].append(value)
        columns['speed'].append(pair.speed)
        columns['episode'].append(pair.episode)
    return {name: np.asarray(values) for name, values in columns.items()}


def plot_controls(series: Dict[str, np.ndarray], shaded, out_path: Path,
                  title: str = '') -> Path:
    """
    Plot steer, throttle, brake and speed over time, excluded ranges shaded.

    :param series: result of reading the bag (stamps, actions, speed, episode).
    :param shaded: ``(start_s, end_s)`` ranges to shade.
    :param out_path: PNG to write.
    :param title: figure title (the bag name).
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    times = (series['stamp_ns'] - series['stamp_ns'][0]) / 1e9 if series['stamp_ns'].size \
        else np.zeros(0)
    figure, axes = pyplot.subplots(4, 1, figsize=(11, 8), sharex=True)
    units = {'steer': '[-1, 1]', 'throttle': '[0, 1]', 'brake': '[0, 1]', 'speed': 'm/s'}
    episode_starts = times[np.flatnonzero(np.diff(series['episode']) != 0) + 1] \
        if times.size else []
    for axis, name in zip(axes, ('steer', 'throttle', 'brake', 'speed')):
        axis.plot(times, series[name], linewidth=0.8)
        axis.set_ylabel(f'{name}\n{units[name]}')
        axis.grid(alpha=0.3)
        for start, end in shaded:
            axis.axvspan(start, end, color='red', alpha=0.2, linewidth=0)
        for start in episode_starts:
            axis.axvline(start, color='grey', linestyle='--', linewidth=0.7)
    axes[-1].set_xlabel('time since bag start [s]  (red: excluded, dashed: episode start)')
    figure.suptitle(f'{title}: {times.size} pairs'.lstrip(': '))
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    pyplot.close(figure)
    return out_path


def plot_histograms(series: Dict[str, np.ndarray], out_path: Path) -> Path:
    """
    Plot histograms of steer, throttle, brake and speed.

    :param series: result of reading the bag.
    :param out_path: PNG to write.
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, 4, figsize=(14, 3.5))
    for axis, name in zip(axes, ('steer', 'throttle', 'brake', 'speed')):
        values = series[name][np.isfinite(series[name])]
        axis.hist(values, bins=41)
        axis.set_title(name)
        axis.set_yscale('log' if values.size and np.ptp(values) > 0 else 'linear')
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    pyplot.close(figure)
    return out_path


def contact_sheet(frames: List[np.ndarray], columns: Optional[int] = None) -> np.ndarray:
    """
    Tile BGR frames of equal size into one image (row-major, black padding).

    :param frames: BGR frames.
    :param columns: tiles per row (default: about square).
    """
    columns = columns or math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / columns)
    height, width = frames[0].shape[:2]
    sheet = np.zeros((rows * height, columns * width, 3), np.uint8)
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        sheet[row * height:(row + 1) * height, column * width:(column + 1) * width] = \
            cv2.resize(frame, (width, height))
    return sheet


def _evenly(count: int, total: int) -> List[int]:
    if total <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, min(count, total))})


def review_bag(path, config: ReviewConfig) -> Dict[str, str]:
    """
    Write the review outputs of a bag; return their paths by kind.

    :param path: bag directory.
    :param config: what to write.
    :raises BagReadError: the bag cannot be read.
    """
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    series = _series(path)
    total = int(series['stamp_ns'].size)
    if total == 0:
        raise ValueError(f'bag {path} has no image/control pairs to review')
    start_ns = int(series['stamp_ns'][0])
    exclusions = load_exclusions(path)
    end_ns = int(series['stamp_ns'][-1])
    shaded = [((a - start_ns) / 1e9, (b - start_ns) / 1e9)
              for a, b in exclusions.ranges_ns(start_ns, end_ns)]
    for episode in {e.episode for e in exclusions.items if e.episode is not None}:
        stamps = series['stamp_ns'][series['episode'] == episode]
        if stamps.size:
            shaded.append(((stamps[0] - start_ns) / 1e9, (stamps[-1] - start_ns) / 1e9))
    controls = plot_controls(series, shaded, out_dir / 'controls.png', Path(path).name)
    outputs = {'controls': str(controls),
               'histograms': str(plot_histograms(series, out_dir / 'histograms.png'))}

    # Chosen by stamp: the decoding pass skips frames that do not decode.
    stamps = series['stamp_ns']
    sheet_stamps = {int(stamps[i]) for i in _evenly(config.sheet_frames, total)}
    video_stamps = set()
    if config.video:
        video_stamps = {int(s) for s in stamps} if config.max_frames is None else {
            int(stamps[i]) for i in _evenly(config.max_frames, total)}
    span_s = (end_ns - start_ns) / 1e9
    fps = config.fps or (min(60.0, max(1.0, (total - 1) / span_s)) if span_s > 0 else 10.0)
    if config.max_frames is not None and config.fps is None:
        fps = min(fps, 30.0)
    sheet_frames = []
    video = Mp4Writer(out_dir / 'run.mp4', fps)
    wanted = sheet_stamps | video_stamps
    progress = tqdm(total=total, desc='review', unit='pair', disable=not config.progress)
    try:
        for pair in read_pairs(path, honour_exclusions=False):
            progress.update(1)
            if pair.stamp_ns not in wanted:
                continue
            frame = draw_overlay(pair.image_rgb, pair.control, pair.speed,
                                 (pair.stamp_ns - start_ns) / 1e9, pair.episode,
                                 exclusions.excludes(pair.stamp_ns, pair.episode))
            if pair.stamp_ns in sheet_stamps:
                sheet_frames.append(frame)
            if pair.stamp_ns in video_stamps:
                video.write(frame)
    finally:
        progress.close()
        video_path = video.close()
    if sheet_frames:
        sheet_path = out_dir / 'contact_sheet.png'
        cv2.imwrite(str(sheet_path), contact_sheet(sheet_frames))
        outputs['contact_sheet'] = str(sheet_path)
    if video_path is not None:
        outputs['video'] = str(video_path)
        outputs['video_frames'] = str(video.frames)
        outputs['video_fps'] = f'{fps:.2f}'
    return outputs
