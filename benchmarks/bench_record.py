"""
Synchronous recording speed and recorder cost of the whole stack over ROS.

Runs ``llava-drive record`` (sim_bridge + expert + recorder as separate processes, DDS on
loopback with the shared-memory profile) for DURATION simulated seconds at 800x600, once with
JPEG and once with raw frames, and prints: real-time factor (simulated seconds per wall second
while recording, start-up excluded), pairs, recorder CPU ms per pair, and bag MB per minute.

    .venv/bin/python benchmarks/bench_record.py [--duration 30] [--width 800 --height 600]
"""
import argparse
from pathlib import Path
import tempfile

from llava_drive.bringup.environment import apply_local_ros_environment
from llava_drive.recording.session import record, RecordingOptions


def main():
    """Run both formats and print one table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--duration', type=float, default=30.0)
    parser.add_argument('--width', type=int, default=800)
    parser.add_argument('--height', type=int, default=600)
    args = parser.parse_args()
    apply_local_ros_environment()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for image_format in ('jpeg', 'raw'):
            out = Path(tmp) / image_format
            result = record(RecordingOptions(duration=args.duration, route_seeds=[3], out=out,
                                             image_format=image_format, width=args.width,
                                             height=args.height), progress=False)
            size_mb = sum(f.stat().st_size for f in out.iterdir()) / 1e6
            rows.append((image_format, result['pairs'], result['realtime_factor'],
                         result['recorder_cpu_ms_per_pair'],
                         size_mb / (result['sim_seconds'] / 60.0)))
    print(f'\nrecording {args.width}x{args.height} at 20 Hz, {args.duration:.0f} s simulated, '
          f'synchronous mode')
    print(f'{"format":<7}{"pairs":>7}{"x real time":>13}{"recorder ms/pair":>18}'
          f'{"MB/min":>9}')
    for image_format, pairs, factor, cpu, mb_min in rows:
        print(f'{image_format:<7}{pairs:>7}{factor:>13.2f}{cpu:>18.2f}{mb_min:>9.1f}')


if __name__ == '__main__':
    main()
