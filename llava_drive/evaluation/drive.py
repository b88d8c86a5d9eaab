"""
``llava-drive drive``: run the policy (with the embedded simulator, or against CARLA) live.

Starts the nodes as processes (no ``ros2 launch`` needed) and prints one status line:
speed, steer/throttle/brake, route completion and infractions (simulator), and the policy's
inference latency from ``/diagnostics``. Ends on Ctrl-C, after ``duration`` wall seconds, or
at the end of the route (simulator, unless it loops).
"""
from dataclasses import dataclass, field
import math
from pathlib import Path
import shutil
import sys
import tempfile
from typing import Dict, Optional

from llava_drive.bringup.node_specs import (bridge_specs, expert_spec, policy_spec,
                                            steps_per_control)
from llava_drive.bringup.supervisor import Supervisor
from llava_drive.nodes.interfaces import (BACKENDS, CAMERA_HEIGHT, CAMERA_WIDTH,
                                          DEFAULT_ROLE_NAME, DIAGNOSTICS_TOPIC,
                                          FIRST_EVALUATION_SEED, SIM_EPISODE_TOPIC,
                                          SIM_STATUS_TOPIC, vehicle_topics)
from llava_drive.nodes.status import PayloadReader, SimEpisode, SimStatus
from llava_drive.sim.road import RouteConfig

DRIVERS = ('policy', 'expert')
# The policy node's DiagnosticStatus name (llava_drive/nodes/policy.py).
POLICY_DIAGNOSTIC = 'llava_drive policy'


@dataclass
class DriveOptions:
    """
    What to drive; validated before any node starts.

    :param checkpoint: trained checkpoint (required for the policy driver)
    :param backend: ``sim`` (embedded simulator), ``carla`` (a CARLA server through our
        carla_bridge node) or ``carla_ros_bridge`` (a running carla_ros_bridge)
    :param driver: ``policy`` or ``expert`` (the expert: to watch the simulator alone)
    :param seed: simulator route seed
    :param duration: wall seconds before stopping; None = until Ctrl-C or route end
    :param synchronous: simulator steps when the control for its frame arrived (else real
        time)
    :param loop: simulator starts the route again at its end instead of stopping
    :param width: camera width (sim)
    :param height: camera height (sim)
    :param route_length: route length in metres (sim)
    :param model: LLaVA directory; None = the one stored in the checkpoint
    :param device: torch device of the policy
    :param dtype: model dtype; None = the checkpoint's
    :param log_dir: node logs (default: a temporary directory, kept on failure)
    :param carla: carla_bridge parameters (``host``, ``town``...) for the ``carla`` backend
    :param role_name: CARLA role name of the ego vehicle (its topics; CARLA: the bridge's)
    """

    checkpoint: Optional[Path] = None
    backend: str = 'sim'
    driver: str = 'policy'
    seed: int = FIRST_EVALUATION_SEED
    duration: Optional[float] = None
    synchronous: bool = True
    loop: bool = False
    width: int = CAMERA_WIDTH
    height: int = CAMERA_HEIGHT
    route_length: float = RouteConfig.length_m
    model: Optional[Path] = None
    device: str = 'cpu'
    dtype: Optional[str] = None
    log_dir: Optional[Path] = None
    carla: dict = field(default_factory=dict)
    role_name: str = DEFAULT_ROLE_NAME

    def __post_init__(self):
        """Check every field, naming the bad value."""
        vehicle_topics(self.role_name)  # refuses a role name that makes no topic
        if self.backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got {self.backend!r}')
        if self.driver not in DRIVERS:
            raise ValueError(f'driver must be one of {DRIVERS}, got {self.driver!r}')
        if self.driver == 'policy':
            if self.checkpoint is None:
                raise ValueError('the policy driver needs --checkpoint DIR')
            self.checkpoint = Path(self.checkpoint)
            if not (self.checkpoint / 'config.json').is_file():
                raise ValueError(f'checkpoint {self.checkpoint} has no config.json')
        if self.backend == 'carla_ros_bridge' and self.driver != 'policy':
            raise ValueError('with --backend carla_ros_bridge only the policy drives (use '
                             "CARLA's agents or llava-drive record for the expert)")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f'duration must be > 0 s, got {self.duration}')
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f'seed must be a non-negative integer, got {self.seed!r}')
        if self.log_dir is not None:
            self.log_dir = Path(self.log_dir)

    def node_specs(self) -> list:
        """Return the nodes to start (CARLA: only the policy)."""
        specs = []
        # The bridge waits for the driver and the monitor (see DriveMonitor).
        specs += bridge_specs(
            self.backend, [self.seed], self.width, self.height,
            sim={'synchronous_mode': self.synchronous, 'route_length': float(self.route_length)},
            carla=self.carla, loop_routes=bool(self.loop),
            wait_for_image_subscribers=int(self.driver == 'policy') + 1,
            role_name=self.role_name)
        if self.driver == 'policy':
            synchronous = steps_per_control(self.backend, self.synchronous)
            specs.append(policy_spec(self.checkpoint, self.model, self.device, self.dtype,
                                     role_name=self.role_name, synchronous=synchronous))
        else:
            specs.append(expert_spec(drive=True, noise=False, backend=self.backend,
                                     role_name=self.role_name))
        return specs


class DriveMonitor:
    """
    Collects what the status line shows from the running graph.

    :param context: rclpy context to create the monitor node in
    :param role_name: CARLA role name of the ego vehicle
    """

    def __init__(self, context, role_name: str = DEFAULT_ROLE_NAME):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from llava_drive.nodes.interfaces import CAMERA_QOS, CONTROL_QOS, LATCHED_QOS, STATUS_QOS
        from llava_drive.nodes.control_codec import ControlCodec
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32, String

        self.node = rclpy.create_node('llava_drive_drive_monitor', context=context)
        self.codec = ControlCodec('auto')
        self.status: Optional[dict] = None
        self.end: Optional[dict] = None
        self.statuses = PayloadReader(SimStatus, self.node.get_logger().warning)
        self.markers = PayloadReader(SimEpisode, self.node.get_logger().warning)
        self.control = None
        self.speed = math.nan
        self.latency_ms = math.nan
        self.gate = ''
        self.rejected: Dict[str, int] = {}
        topics = vehicle_topics(role_name)
        self.node.create_subscription(String, SIM_STATUS_TOPIC, self.on_status,
                                      STATUS_QOS)
        self.node.create_subscription(String, SIM_EPISODE_TOPIC, self.on_episode, LATCHED_QOS)
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self.on_diagnostics,
                                      10)
        self.node.create_subscription(self.codec.msg_type, topics.vehicle_control_cmd,
                                      self.on_control, CONTROL_QOS)
        self.node.create_subscription(Float32, topics.speedometer, self.on_speed, 10)
        # The simulator waits for this subscriber: the monitor is discovered before frame 1.
        self.node.create_subscription(Image, topics.camera_image, lambda msg: None, CAMERA_QOS)

    def on_status(self, msg) -> None:
        """Keep the simulator's latest status."""
        status = self.statuses.parse(msg.data)
        if status is not None:
            self.status = status.to_dict()

    def on_episode(self, msg) -> None:
        """Keep the end-of-route marker."""
        marker = self.markers.parse(msg.data)
        if marker is not None and marker.event == 'end':
            self.end = marker.to_dict()

    def on_diagnostics(self, msg) -> None:
        """Take the policy's inference latency and gate state."""
        for status in msg.status:
            if status.name != POLICY_DIAGNOSTIC:
                continue
            values = {kv.key: kv.value for kv in status.values}
            try:
                self.latency_ms = float(values.get('inference_latency_p50_ms', 'nan'))
            except ValueError as error:
                self.reject('bad_latency', error)
            self.gate = '' if status.message == 'driving' else status.message

    def on_control(self, msg) -> None:
        """Keep the latest control on the wire."""
        try:
            self.control = self.codec.decode(msg)[1]
        except ValueError as error:
            self.reject('bad_control', error)

    def reject(self, reason: str, error: Exception) -> None:
        """Count a message the status line cannot use; log the first of each reason."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if self.rejected[reason] == 1:
            self.node.get_logger().warning(f'ignoring messages: {reason}: {error}')

    def on_speed(self, msg) -> None:
        """Keep the speedometer (m/s)."""
        self.speed = float(msg.data)

    def line(self, elapsed: float) -> str:
        """
        Return the one-line status.

        :param elapsed: wall seconds since the start
        """
        parts = [f'{elapsed:6.1f}s']
        speed = self.status['speed'] if self.status else self.speed
        parts.append(f'{speed:5.1f} m/s' if math.isfinite(speed) else '  --- m/s')
        if self.control is not None:
            c = self.control
            parts.append(f'steer {c.steer:+.2f} thr {c.throttle:.2f} brk {c.brake:.2f}')
        else:
            parts.append('no control yet')
        if self.status:
            s = self.status
            infractions = sum(n for kind, n in s.get('counts', {}).items()
                              if kind not in ('route_finished', 'lane_crossing'))
            parts.append(f'route {s["route_seed"]} RC {s["route_completion"]:5.1f}% '
                         f'infractions {infractions} DS {s["driving_score"]:5.1f}')
        if math.isfinite(self.latency_ms):
            parts.append(f'inference {self.latency_ms:.0f} ms')
        if self.gate:
            parts.append(self.gate)
        if self.rejected:
            parts.append('ignored ' + ', '.join(f'{n} {reason}'
                                                for reason, n in sorted(self.rejected.items())))
        return ' | '.join(parts)


def drive(options: DriveOptions, out=None) -> dict:
    """
    Run the nodes and print the status line until Ctrl-C, ``duration`` or the route end.

    :param options: what to drive
    :param out: text stream for the status line (default stdout)
    :return: ``{'reason', 'seconds', 'status', 'summary'}``
    :raises DomainBusy: another stack runs on the ROS domain (nothing started)
    :raises RuntimeError: a node exited early (its log stays)
    """
    out = out or sys.stdout
    tty = hasattr(out, 'isatty') and out.isatty()
    printed = [0.0]

    def done(elapsed: float):
        if monitor.end is not None and options.backend != 'carla_ros_bridge' and \
                not options.loop:
            return 'route finished'
        if options.duration is not None and elapsed >= options.duration:
            return 'duration'
        # A terminal gets the line rewritten in place; a log gets one line a second.
        if elapsed - printed[0] >= (0.2 if tty else 1.0):
            printed[0] = elapsed
            text = monitor.line(elapsed)
            out.write(f'\r{text:<110}' if tty else text + '\n')
            out.flush()
        return None

    with Supervisor(options.backend, 'llava-drive drive') as supervisor:
        log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix='llava_drive_drive_'))
        monitor = DriveMonitor(supervisor.context, options.role_name)
        try:
            outcome = supervisor.run(options.node_specs(), monitor.node, done, log_dir)
        finally:
            monitor.node.destroy_node()
    if options.log_dir is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    final = monitor.line(outcome.seconds)
    out.write(('\r' if tty else '') + final + '\n')
    summary = (monitor.end or {}).get('summary')
    out.write(f'stopped: {outcome.reason}' + (
        f'; route {summary["route_seed"]}: RC {summary["route_completion"]:.1f}%, '
        f'DS {summary["driving_score"]:.1f}, {summary["done_reason"]}' if summary else '')
        + '\n')
    return {'reason': outcome.reason, 'seconds': round(outcome.seconds, 2),
            'status': monitor.status, 'summary': summary, 'line': final}
