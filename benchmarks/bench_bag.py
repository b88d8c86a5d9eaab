"""
Bag size and writer cost at 800x600: JPEG (CompressedImage) against raw bgra8 (Image).

Prints, per configuration: MB per minute of recording at the given pair rate, bytes per pair,
writer CPU time per pair (process time of ``write_pair``, JPEG encoding included) and the
reader's decode rate. Frames are synthetic road scenes with sensor-like noise (plain drawings
compress unrealistically well, pure noise unrealistically badly), so treat the JPEG figures
as an estimate for camera images. Then ``bag recover`` speed (MB of original per second) on
the raw bag cut in its last chunk and on the same bag with random bytes at four places.

Run: ``.venv/bin/python benchmarks/bench_bag.py [--pairs 60] [--rate 20]``
"""
import argparse
from pathlib import Path
import shutil
import tempfile
import time

import cv2
from llava_drive.bag.reader import read_pairs
from llava_drive.bag.recover import recover_bag
from llava_drive.bag.writer import BagWriter, BagWriterConfig
from llava_drive.control import Control
import numpy as np

WIDTH, HEIGHT = 800, 600


def road_scene(index: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    """
    Return an 800x600 BGRA road scene that changes with ``index``.

    :param index: frame number (moves the road and the lane marks).
    :param rng: noise generator.
    :param noise: standard deviation of the added sensor noise (0 for none).
    """
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    sky = np.linspace(235, 150, HEIGHT // 2, dtype=np.float32)[:, None]
    frame[:HEIGHT // 2] = np.dstack([sky, sky * 0.8, sky * 0.6]).astype(np.uint8)
    frame[HEIGHT // 2:] = (50, 120, 60)
    shift = int(80 * np.sin(index / 15))
    horizon = HEIGHT // 2
    road = np.array([[WIDTH // 2 - 20 + shift, horizon], [WIDTH // 2 + 20 + shift, horizon],
                     [WIDTH - 40, HEIGHT - 1], [40, HEIGHT - 1]], np.int32)
    cv2.fillPoly(frame, [road], (90, 90, 95))
    for k in range(8):  # dashed centre line moving towards the camera
        t0 = ((k + index * 0.2) % 8) / 8
        t1 = t0 + 0.05
        points = [(int(WIDTH // 2 + shift * (1 - t)), int(HEIGHT // 2 + t * HEIGHT // 2))
                  for t in (t0, min(t1, 1.0))]
        cv2.line(frame, points[0], points[1], (240, 240, 240), max(1, int(8 * t0)))
    for k in range(6):  # trees on the roadside
        x = (k * 150 + index * 7) % WIDTH
        cv2.circle(frame, (x, HEIGHT // 2 - 10), 30, (30, 90 + 10 * k, 40), -1)
    if noise:
        frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)


def measure(directory: Path, name: str, config: dict, frames, rate_hz: float) -> dict:
    """
    Write ``frames`` into a new bag and measure size, writer CPU and read speed.

    :param directory: scratch directory.
    :param name: configuration name.
    :param config: BagWriterConfig keywords.
    :param frames: BGRA frames to write (cycled).
    :param rate_hz: recording rate used for MB per minute.
    """
    path = directory / name
    writer = BagWriter(BagWriterConfig(str(path), backend='mcap', **config))
    cpu = 0.0
    for index, frame in enumerate(frames):
        started = time.process_time()
        writer.write_pair(1_000_000_000 + int(index * 1e9 / rate_hz), frame, 'bgra8',
                          Control(steer=0.1, throttle=0.5), speed=5.0)
        cpu += time.process_time() - started
    writer.close()
    size = sum(p.stat().st_size for p in path.iterdir())
    started = time.perf_counter()
    count = sum(1 for _ in read_pairs(path))
    read_s = time.perf_counter() - started
    per_pair = size / len(frames)
    return {'name': name, 'bytes_per_pair': per_pair,
            'mb_per_minute': per_pair * rate_hz * 60 / 1e6,
            'writer_cpu_ms': 1000 * cpu / len(frames), 'read_pairs_per_s': count / read_s}


def measure_recovery(directory: Path, frames) -> None:
    """
    Print recover speed on a cut bag and on a bag with random bytes at four places.

    :param directory: scratch directory.
    :param frames: BGRA frames to write.
    """
    source = directory / 'recover_source'
    with BagWriter(BagWriterConfig(str(source), backend='mcap', image_format='raw',
                                   flush_interval_s=3600.0)) as writer:
        for index, frame in enumerate(frames):
            writer.write_pair(1_000_000_000 + index * 50_000_000, frame, 'bgra8',
                              Control(steer=0.1, throttle=0.5), speed=5.0)
            if index % 5 == 4:
                writer.flush()
    data = (source / 'recover_source_0.mcap').read_bytes()
    rng = np.random.default_rng(1)
    damaged = bytearray(data)
    for start in rng.integers(100, len(data) - 100, 4):
        damaged[start:start + 40] = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    cases = [('cut in last chunk', data[:len(data) - len(data) // 50]),
             ('random bytes x4', bytes(damaged))]
    print(f'\nrecover, raw bag of {len(frames)} pairs ({len(data) / 1e6:.1f} MB)')
    print(f'{"case":<20}{"MB/s":>8}{"messages":>10}{"salvaged":>10}{"bytes dropped":>15}')
    for name, content in cases:
        bag = directory / name.replace(' ', '_')
        bag.mkdir()
        (bag / f'{bag.name}_0.mcap').write_bytes(content)
        started = time.perf_counter()
        report = recover_bag(bag)
        seconds = time.perf_counter() - started
        print(f'{name:<20}{len(content) / 1e6 / seconds:>8.1f}{report.messages:>10}'
              f'{report.salvaged_from_damaged_chunks:>10}{report.bytes_dropped:>15}')
        shutil.rmtree(bag)


def main() -> None:
    """Run the measurements and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pairs', type=int, default=60, help='pairs per configuration')
    parser.add_argument('--rate', type=float, default=20.0, help='recording rate in Hz')
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    noisy = [road_scene(i, rng, noise=4.0) for i in range(args.pairs)]
    clean = [road_scene(i, rng, noise=0.0) for i in range(args.pairs)]
    configs = [
        ('jpeg90 noisy', {'image_format': 'jpeg', 'jpeg_quality': 90}, noisy),
        ('jpeg90 clean', {'image_format': 'jpeg', 'jpeg_quality': 90}, clean),
        ('jpeg75 noisy', {'image_format': 'jpeg', 'jpeg_quality': 75}, noisy),
        ('raw bgra8', {'image_format': 'raw'}, noisy),
        ('raw bgra8 zstd', {'image_format': 'raw', 'chunk_compression': 'zstd'}, noisy),
    ]
    print(f'{WIDTH}x{HEIGHT} bgra8 input, {args.pairs} pairs per row, MB/min at {args.rate} Hz')
    print(f'{"config":<16}{"KB/pair":>10}{"MB/min":>10}{"writer CPU ms/pair":>20}'
          f'{"read pairs/s":>14}')
    with tempfile.TemporaryDirectory() as scratch:
        for name, config, frames in configs:
            result = measure(Path(scratch), name.replace(' ', '_'), config, frames, args.rate)
            print(f'{name:<16}{result["bytes_per_pair"] / 1e3:>10.1f}'
                  f'{result["mb_per_minute"]:>10.1f}{result["writer_cpu_ms"]:>20.2f}'
                  f'{result["read_pairs_per_s"]:>14.1f}')
        measure_recovery(Path(scratch), noisy)


if __name__ == '__main__':
    main()
