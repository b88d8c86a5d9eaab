"""
The policy node's own cost per frame at 800x600 bgra8, and its controls per frame.

A camera process publishes 800x600 bgra8 frames at RATE Hz on the CARLA camera topic and
records when each frame went out and when controls came back (``time.monotonic`` is one
clock for every process on the host). This process runs the policy node (tiny LLaVA and a
constant head unless --checkpoint is given) with its timing taps on the inference worker.
Per frame answered by an inference it prints, as p50 / p99 over the frames:

- node overhead: frame handed to the worker -> control published, minus the model's forward
  time (extractor + head): waking the worker, bgra->rgb, the gate, encoding, publishing;
- end-to-end overhead: frame published -> control received by the camera process, minus the
  forward time: the same plus both DDS transfers and rclpy's (de)serialisation of the frame;
- forward time itself (not overhead; subtracted above);

and the controls that came back per frame answered (target: exactly 1, the gate timer silent
while results are fresh; architecture: Control rate).
With ``--waypoints`` the head predicts waypoints and a target speed and the node drives
through the waypoint controller; the controller runs after the forward pass, so its cost is
counted in the node overhead (target: p99 under 3 ms).

    .venv/bin/python benchmarks/bench_policy.py [--frames 200] [--rate 20] [--threads 1]
        [--waypoints]
"""
import argparse
import json
import math
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def camera_process(args):
    """Publish frames, record send and control arrival times; print them as JSON."""
    import rclpy
    from llava_drive.image_codec import raw_fields
    from llava_drive.nodes.control_codec import ControlCodec, ns_to_stamp
    from llava_drive.nodes.interfaces import vehicle_topics
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('bench_camera')
    codec = ControlCodec()
    arrivals = []  # (wall time, stamp_ns)
    node.create_subscription(codec.msg_type, vehicle_topics().vehicle_control_cmd,
                             lambda msg: arrivals.append((time.monotonic(),
                                                          codec.decode(msg)[0])), 1000)
    publisher = node.create_publisher(Image, vehicle_topics().camera_image, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    deadline = time.monotonic() + 60
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # let the policy's control publisher match us too
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (args.height, args.width, 4), np.uint8) for _ in range(4)]
    fields = [raw_fields(frame) for frame in frames]
    sent = []
    start = time.monotonic()
    for index in range(args.frames):
        target = start + index / args.rate
        time.sleep(max(0.0, target - time.monotonic()))
        image = Image()
        stamp_ns = 1_000_000_000 + index * int(1e9 / args.rate)
        ns_to_stamp(stamp_ns, image.header.stamp)
        image.encoding = 'bgra8'
        image.height, image.width, image.step, image.data = fields[index % len(fields)]
        sent.append((time.monotonic(), stamp_ns))
        publisher.publish(image)
    end = time.monotonic()
    time.sleep(1.0)
    print(json.dumps({'sent': sent, 'arrivals': list(arrivals), 'start': start, 'end': end}),
          flush=True)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


def constant_checkpoint(out_dir: Path, model_dir: Path, waypoints: bool = False) -> Path:
    """
    Write a checkpoint for the tiny model whose head always says throttle 0.62.

    With ``waypoints`` the head always predicts a gentle left bend at 6 m/s instead.
    """
    import numpy as np
    import torch
    from llava_drive.features.extractor import LlavaFeatureExtractor
    from llava_drive.learning.checkpoint import save_checkpoint
    from llava_drive.learning.heads import build_head, HeadConfig

    extractor = LlavaFeatureExtractor(model_dir)
    head = build_head(HeadConfig(feature_dim=extractor.feature_dim, hidden_size=64,
                                 output='waypoints' if waypoints else 'control'))
    with torch.no_grad():
        head.layers[-1].weight.zero_()
        if waypoints:
            head.layers[-1].bias.zero_()
            head.set_output_normalization([2.0, 0.1, 4.0, 0.4, 6.0, 0.9, 8.0, 1.6, 6.0],
                                          np.ones(9))
        else:
            head.layers[-1].bias.copy_(torch.tensor([0.0, 0.5, -4.0]))
    return save_checkpoint(out_dir, head, extractor.spec)


def percentiles_ms(values) -> str:
    """Format p50 / p99 of seconds as milliseconds."""
    if not len(values):
        return 'n/a'
    return f'{np.percentile(values, 50) * 1e3:7.2f} / {np.percentile(values, 99) * 1e3:7.2f}'


def main():
    """Run the camera process against an in-process policy node and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=200)
    parser.add_argument('--rate', type=float, default=20.0)
    parser.add_argument('--width', type=int, default=800)
    parser.add_argument('--height', type=int, default=600)
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    parser.add_argument('--gate-rate', type=float, default=20.0)
    parser.add_argument('--checkpoint', default='', help='default: tiny LLaVA, constant head')
    parser.add_argument('--model', default='')
    parser.add_argument('--waypoints', action='store_true',
                        help='constant waypoint head driven through the waypoint controller')
    parser.add_argument('--camera', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()

    from llava_drive.bringup.environment import apply_local_ros_environment
    os.environ.setdefault('ROS_DOMAIN_ID', str(150 + os.getpid() % 50))
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    apply_local_ros_environment()
    if args.camera:
        camera_process(args)
        return

    import rclpy
    from llava_drive.nodes.policy import Policy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    tmp = tempfile.TemporaryDirectory()
    checkpoint = args.checkpoint
    if not checkpoint:
        from llava_drive.features.tiny_model import create_tiny_llava
        model = create_tiny_llava(Path(tmp.name) / 'tiny', seed=0)
        checkpoint = str(constant_checkpoint(Path(tmp.name) / 'head', model, args.waypoints))
    rclpy.init()
    policy = Policy(parameter_overrides=[
        Parameter('checkpoint', value=checkpoint), Parameter('model', value=args.model),
        Parameter('cpu_threads', value=args.threads),
        Parameter('gate_rate', value=args.gate_rate), Parameter('publish_annotated', value=False)])
    # Timing taps: when the worker got each frame, its forward time, when the control was out.
    taps = {}
    submit, on_result, infer = policy.worker.submit, policy.worker.on_result, policy.worker.infer

    def tapped_submit(frame):
        taps[frame.stamp_ns] = {'submitted': time.monotonic()}
        submit(frame)

    def tapped_infer(frame):
        started = time.monotonic()
        result = infer(frame)
        taps[frame.stamp_ns].update(started=started, inferred=time.monotonic())
        return result

    def tapped_result(result):
        on_result(result)
        taps[result.stamp_ns].update(published=time.monotonic(), forward=result.forward_s)

    policy.worker.submit, policy.worker.on_result = tapped_submit, tapped_result
    policy.worker.infer = tapped_infer
    executor = SingleThreadedExecutor()
    executor.add_node(policy)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    command = [sys.executable, __file__, '--camera', '--frames', str(args.frames),
               '--rate', str(args.rate), '--width', str(args.width), '--height', str(args.height)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        executor.shutdown()
        policy.destroy_node()
        rclpy.try_shutdown()
    lines = [line for line in completed.stdout.splitlines() if line.startswith('{')]
    if not lines:
        sys.exit(f'camera process failed ({completed.returncode}):\n{completed.stderr[-3000:]}')
    camera = json.loads(lines[-1])
    sent = {stamp: when for when, stamp in camera['sent']}
    first_arrival = {}
    for when, stamp in camera['arrivals']:
        first_arrival.setdefault(stamp, when)
    warmup = sorted(sent)[5]  # the first frames also pay for the first forward pass
    node, end_to_end, forward, wake, convert, publish = [], [], [], [], [], []
    for stamp, tap in taps.items():
        if 'published' not in tap or stamp < warmup:
            continue
        forward.append(tap['forward'])
        node.append(tap['published'] - tap['submitted'] - tap['forward'])
        wake.append(tap['started'] - tap['submitted'])
        convert.append(tap['inferred'] - tap['started'] - tap['forward'])
        publish.append(tap['published'] - tap['inferred'])
        if stamp in sent and stamp in first_arrival:
            end_to_end.append(first_arrival[stamp] - sent[stamp] - tap['forward'])
    answered = sum(1 for tap in taps.values() if 'published' in tap)
    inside = [when for when, _ in camera['arrivals'] if camera['start'] <= when <= camera['end']]
    results = sum(1 for stamp, when in first_arrival.items()
                  if camera['start'] <= when <= camera['end'])
    span = camera['end'] - camera['start']
    per_frame = len(inside) / results if results else math.nan
    stats = policy.worker.stats()
    head = 'waypoint head + controller' if policy.worker.controller is not None else 'control head'
    print(f'\npolicy node ({head}), {args.width}x{args.height} bgra8 at {args.rate:g} Hz, '
          f'{args.frames} frames, torch threads {args.threads}')
    print(f'frames answered {answered}, dropped as stale {stats["dropped_stale"]}, '
          f'measured {len(node)} (first 5 skipped)')
    print(f'{"per frame (ms)":<44}{"p50 / p99":>18}')
    print(f'{"node overhead (worker in -> control out)":<44}{percentiles_ms(node):>18}')
    print(f'{"  worker wake-up":<44}{percentiles_ms(wake):>18}')
    print(f'{"  bgra->rgb and the rest of infer()":<44}{percentiles_ms(convert):>18}')
    print(f'{"  gate, encode, publish":<44}{percentiles_ms(publish):>18}')
    print(f'{"end-to-end overhead (publish -> receive)":<44}{percentiles_ms(end_to_end):>18}')
    print(f'{"model forward (subtracted, not overhead)":<44}{percentiles_ms(forward):>18}')
    print(f'controls per frame answered {per_frame:.3f} (target 1); all controls '
          f'{len(inside) / span:.1f} Hz')
    tmp.cleanup()


if __name__ == '__main__':
    main()
