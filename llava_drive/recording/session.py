"""Run the recording stack (sim_bridge or CARLA, expert, recorder) and watch it to the end."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from llava_drive.bag.writer import BagWriterConfig, IMAGE_FORMATS
from llava_drive.bringup.environment import config_path
from llava_drive.bringup.node_specs import (BACKENDS, bridge_specs, expert_spec, policy_spec,
                                            steps_per_control)
from llava_drive.bringup.stack import NodeSpec
from llava_drive.bringup.supervisor import Supervisor
from llava_drive.nodes.interfaces import (CAMERA_HEIGHT, CAMERA_WIDTH, RECORDER_FRAME_DONE_TOPIC,
                                          RECORDER_STATUS_TOPIC)
from llava_drive.nodes.status import PayloadReader, RecorderStatus
from llava_drive.sim.town.benchmark import TOWN_BENCHMARKS
from llava_drive.sim.world import MAP_KINDS

DRIVERS = ('expert', 'policy')


@dataclass
class RecordingOptions:
    """
    What to record; validated so a bad value fails before any node starts.

    ``driver='policy'`` is DAgger: the policy checkpoint drives while the expert only
    publishes its labels (``drive: false``), which the recorder stores as the controls.
    ``carla`` holds carla_bridge parameters (``host``, ``port``, ``town``...) for the
    ``carla`` backend. ``map_kind`` picks the embedded world (``sim`` backend): ``road`` (one road,
    lane keeping) or ``town`` (junctions, traffic, lights; route seeds name town routes, and the
    held-out benchmark's are refused).
    """

    backend: str = 'sim'
    duration: float = 60.0
    route_seeds: List[int] = field(default_factory=lambda: [1])
    out: Path = Path('bags/run')
    image_format: str = BagWriterConfig.image_format
    width: int = CAMERA_WIDTH
    height: int = CAMERA_HEIGHT
    noise: bool = False
    synchronous: bool = True
    randomize: bool = True
    timeout: Optional[float] = None
    log_dir: Optional[Path] = None
    driver: str = 'expert'
    checkpoint: Optional[Path] = None
    model: Optional[Path] = None
    device: str = 'cpu'
    dtype: Optional[str] = None
    carla: dict = field(default_factory=dict)
    map_kind: str = 'road'

    def __post_init__(self):
        self.out = Path(self.out)
        if self.map_kind not in MAP_KINDS:
            raise ValueError(f'map_kind must be one of {MAP_KINDS}, got {self.map_kind!r}')
        if self.map_kind == 'town':
            if self.backend != 'sim':
                raise ValueError(f"map town is the embedded simulator's; backend "
                                 f'{self.backend!r} has its own world')
            held_out = sorted(set(self.route_seeds) & set(TOWN_BENCHMARKS['town-heldout']))
            if held_out:
                raise ValueError(f'route seeds {held_out} belong to the held-out town benchmark '
                                 'and are never recorded')
        if self.backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got {self.backend!r}')
        if not self.duration > 0:
            raise ValueError(f'duration must be > 0 s, got {self.duration}')
        if not self.route_seeds:
            raise ValueError('route_seeds must name at least one route')
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f'image_format must be one of {IMAGE_FORMATS}, got '
                             f'{self.image_format!r}')
        if self.out.exists() and any(self.out.iterdir()):
            raise FileExistsError(f'{self.out} exists and is not empty; choose another --out')
        if self.driver not in DRIVERS:
            raise ValueError(f'driver must be one of {DRIVERS}, got {self.driver!r}')
        if self.driver == 'policy':
            if self.checkpoint is None or not (Path(self.checkpoint) / 'config.json').is_file():
                raise ValueError(f'driver policy needs a checkpoint directory, got '
                                 f'{self.checkpoint!r}')
            if self.noise:
                raise ValueError("noise perturbs the expert's executed steering; with driver "
                                 'policy the expert does not drive')
        if self.timeout is None:
            self.timeout = 10.0 * self.duration + 60.0

    def node_specs(self) -> List[NodeSpec]:
        """Return the nodes to start, with the installed YAML and these overrides."""
        specs = []
        policy_drives = self.driver == 'policy'
        # The bridge waits for the recorder (and the policy), then for each written frame.
        specs += bridge_specs(
            self.backend, self.route_seeds, self.width, self.height,
            sim={'synchronous_mode': self.synchronous, 'randomize': self.randomize,
                 'map': self.map_kind},
            # Recording runs until the duration: CARLA routes loop like the simulator's.
            carla={'loop_routes': True, **self.carla},
            wait_for_image_subscribers=1 + policy_drives,
            synchronous_mode_wait_for_ack_topic=RECORDER_FRAME_DONE_TOPIC)
        # With the policy driving, the expert still labels every frame (from odometry).
        # In a town the expert drives by the world's hazards (lights, vehicles ahead).
        town = {'privileged_hazards': True} if self.map_kind == 'town' else {}
        specs.append(expert_spec(drive=not policy_drives, noise=self.noise,
                                 backend=self.backend, **town))
        if policy_drives:
            synchronous = steps_per_control(self.backend, self.synchronous)
            specs.append(policy_spec(self.checkpoint, self.model, self.device, self.dtype,
                                     synchronous=synchronous))
        specs.append(NodeSpec('recorder', 'llava_drive.nodes.recorder',
                              config_path('recorder.yaml'), {
                                  'bag_path': str(self.out), 'image_format': self.image_format,
                                  'max_duration': float(self.duration), 'status_period': 0.2}))
        return specs


def record(options: RecordingOptions, progress: bool = True) -> dict:
    """
    Record until ``options.duration`` seconds of stamps are in the bag; return a summary.

    SIGINT or SIGTERM ends the recording early: the recorder closes the bag and the summary
    says ``stopped: interrupted``.

    :raises DomainBusy: another stack runs on the ROS domain (nothing started)
    :raises RuntimeError: the recorder reported an error, a node died, no data arrived, the
        wall-clock limit passed, or the bag was not closed.
    """
    import rclpy
    from std_msgs.msg import String
    from tqdm import tqdm

    latest, first = {}, {}

    def done(elapsed: float):
        # An error first: a full disk also closes the bag, which is no success.
        if latest.get('error'):
            raise RuntimeError(f'recorder error: {latest["error"]}')
        if latest.get('pairs_written') and not first:
            first.update(latest, wall=elapsed)
        bar.n = round(min(latest.get('span_s', 0.0), options.duration), 1)
        bar.set_postfix_str(f'{latest.get("pairs_written", 0)} pairs')
        if latest.get('closed_bags'):
            return 'duration'
        if elapsed > options.timeout:
            raise RuntimeError(f'no complete recording after {elapsed:.0f} s wall time '
                               f'({latest.get("pairs_written", 0)} pairs so far)')
        if options.backend == 'carla_ros_bridge' and elapsed > 30 and \
                not latest.get('pairs_written'):
            raise RuntimeError('no camera frames from carla_ros_bridge after 30 s: start '
                               'CARLA and the bridge (ros2 launch llava_drive record.launch.py '
                               'backend:=carla_ros_bridge) or check role_name')
        return None

    with Supervisor(options.backend, 'llava-drive record') as supervisor:
        node = rclpy.create_node('llava_drive_record_monitor', context=supervisor.context)
        statuses = PayloadReader(RecorderStatus, node.get_logger().warning)

        def on_status(msg):
            status = statuses.parse(msg.data)
            if status is not None:
                latest.update(status.to_dict())

        node.create_subscription(String, RECORDER_STATUS_TOPIC, on_status, 10)
        bar = tqdm(total=round(options.duration, 1), unit='s', desc=f'recording {options.out}',
                   disable=not progress, bar_format='{l_bar}{bar}| {n:.1f}/{total} s sim '
                                                    '[{elapsed}<{remaining}] {postfix}')
        try:
            outcome = supervisor.run(options.node_specs(), node, done, options.log_dir,
                                     stop_order=['recorder'])
            if outcome.reason == 'duration':
                bar.n = bar.total
                bar.refresh()
        finally:
            bar.close()
            node.destroy_node()
    pairs = latest.get('pairs_written', 0)
    if outcome.reason == 'interrupted':
        if latest.get('error'):
            raise RuntimeError(f'recorder error: {latest["error"]}')
        pairs = _closed_pairs(options.out, outcome.exit_codes.get('recorder'))
    span = latest.get('span_s', 0.0)
    # Speed and cost while recording, without node start-up (from the 5 Hz status).
    recording_wall = outcome.seconds - first.get('wall', 0.0)
    cpu_s = latest.get('cpu_s', 0.0) - first.get('cpu_s', 0.0)
    paired = latest.get('pairs_written', 0) - first.get('pairs_written', 0)
    return {'bag': str(options.out), 'stopped': outcome.reason, 'pairs': pairs,
            'rejected': latest.get('rejected', {}), 'sim_seconds': round(span, 2),
            'wall_seconds': round(outcome.seconds, 2),
            'realtime_factor': round(span / max(recording_wall, 1e-3), 2),
            'recorder_cpu_ms_per_pair': round(1e3 * cpu_s / max(1, paired), 2)}


def _closed_pairs(bag: Path, recorder_exit) -> int:
    """
    Return the pairs in a bag the recorder closed on a signal; raise unless it was closed.

    :param bag: the bag directory
    :param recorder_exit: the recorder's exit code
    """
    from llava_drive.bag.format import CONTROL_TOPIC, MetadataError, read_metadata

    if not bag.is_dir():
        raise RuntimeError('interrupted before the recorder opened its bag: nothing recorded')
    try:
        metadata = read_metadata(bag)
    except MetadataError as error:
        raise RuntimeError(f'interrupted; the bag was not closed cleanly: {error}') from None
    if recorder_exit != 0 or metadata is None:
        raise RuntimeError(f'interrupted; the recorder (exit code {recorder_exit}) left {bag} '
                           f'without metadata.yaml: try `llava-drive bag recover {bag}`')
    return sum(topic['message_count'] for topic in metadata['topics_with_message_count']
               if topic['topic_metadata']['name'] == CONTROL_TOPIC)
