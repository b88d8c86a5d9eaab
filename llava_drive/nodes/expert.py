"""
Expert driver node: follows the route from odometry + waypoints, like carla_ad_agent.

Publishes its clean command on ``label_topic`` (the recorder's label) and, when ``drive`` is
true, the executed command on ``vehicle_control_cmd``, optionally perturbed by seeded noise so
recordings contain recoveries (the label stays clean). Every control carries the stamp of the
odometry it was computed from. Works unchanged against carla_ros_bridge's topics.

With ``privileged_hazards: true`` (the embedded town) it drives as the town expert: it also
waits for the sim bridge's hazards record of each frame (vehicle ahead, stop line it may not
pass) and keeps the gap and stops with an intelligent-driver-model law
(:class:`~llava_drive.expert.town.TownExpert`). Records that do not parse are dropped, counted
and logged; a frame whose record never comes is not driven (the bridge's control timeout
steps on).
"""
import json
import math

from llava_drive.expert.driver import ExpertConfig, ExpertDriver
from llava_drive.expert.noise import ExpertNoise, NoiseConfig
from llava_drive.expert.town import Hazards, TownExpert
from llava_drive.nodes.common import declare_parameters, ParameterSpec as Param, run_node
from llava_drive.nodes.control_codec import (AckermannConfig, ControlCodec, DRIVE_WIRES,
                                             driving_codec, stamp_to_ns)
from llava_drive.nodes.interfaces import (CONTROL_QOS, DEFAULT_ROLE_NAME,
                                          EXPERT_CONTROL_TOPIC, EXPERT_NODE, LATCHED_QOS,
                                          reliable_qos, SIM_HAZARDS_TOPIC, vehicle_topics)
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from std_msgs.msg import String


def quaternion_to_yaw(q) -> float:
    """Return the yaw (rad) of a geometry_msgs/Quaternion."""
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


# ExpertConfig fields set by parameters: parameter -> (field, description, min, max).
CONFIG_PARAMETERS = {
    'target_speed': ('target_speed_mps', 'cruise speed on straights (m/s)', 0.5, 40.0),
    'max_lateral_accel': ('max_lateral_accel_mps2',
                          'curve speed limit: sqrt(max_lateral_accel / curvature) (m/s^2)',
                          0.1, 20.0),
    'max_steer_deg': ('max_steer_deg', 'wheel angle at |steer| = 1: 35 in the embedded '
                      'simulator, about 70 for CARLA cars', 5.0, 90.0),
    'wheelbase': ('wheelbase_m', 'wheelbase of the driven vehicle (m)', 1.0, 10.0),
    'lookahead_time': ('lookahead_time_s', 'pure pursuit lookahead grows by this x speed (s)',
                       0.0, 5.0),
    'min_lookahead': ('min_lookahead_m', 'smallest lookahead distance (m)', 0.5, 50.0),
    'max_lookahead': ('max_lookahead_m', 'largest lookahead distance (m)', 1.0, 100.0),
}
# NoiseConfig fields set by parameters, likewise.
NOISE_PARAMETERS = {
    'noise_ou_sigma': ('ou_sigma', 'std of the slow steering drift (steer units)', 0.0, 1.0),
    'noise_pulse_rate': ('pulse_rate_hz', 'steering pulses per second', 0.0, 10.0),
    'noise_pulse_magnitude': ('pulse_magnitude', 'largest steering pulse (steer units)',
                              0.0, 1.0),
}


def _config_rows(fields: dict, config_class) -> list:
    return [Param(name, getattr(config_class, field), description, low, high)
            for name, (field, description, low, high) in fields.items()]


# Every parameter of the node; all read-only (the driver and its topics are built at start).
PARAMETERS = [
    Param('role_name', DEFAULT_ROLE_NAME, 'CARLA role name of the ego vehicle'),
    *_config_rows(CONFIG_PARAMETERS, ExpertConfig),
    Param('drive', True, 'publish on vehicle_control_cmd (false: only labels, for DAgger)'),
    Param('label_topic', EXPERT_CONTROL_TOPIC,
          'topic for the clean expert command (the recording label)'),
    Param('noise', False, 'perturb the executed steering (recovery data); the label stays '
          'clean'),
    *_config_rows(NOISE_PARAMETERS, NoiseConfig),
    Param('noise_seed', 0, 'seed of the steering noise', 0, 2**31 - 1),
    Param('control_wire', 'auto', f'message type of the driving output, one of {DRIVE_WIRES}; '
          'ackermann publishes AckermannDriveStamped on ackermann_cmd_stamped (the label stays '
          'a control)'),
    Param('privileged_hazards', False, 'drive by the hazards the sim bridge sends on '
          f'{SIM_HAZARDS_TOPIC} (the embedded town: vehicles ahead, lights, giving way)'),
]


class Expert(Node):
    """Drives the ego vehicle along its route: pure pursuit steering + PID speed."""

    def __init__(self, **node_options):
        super().__init__(EXPERT_NODE, **node_options)
        p = declare_parameters(self, PARAMETERS)
        role, self.drive, label_topic = p['role_name'], p['drive'], p['label_topic']
        config = ExpertConfig(**{field: p[name]
                                 for name, (field, *_) in CONFIG_PARAMETERS.items()})
        noise_enabled, noise_seed = p['noise'], p['noise_seed']
        noise_config = NoiseConfig(**{field: p[name]
                                      for name, (field, *_) in NOISE_PARAMETERS.items()})
        wire, privileged = p['control_wire'], p['privileged_hazards']
        if wire not in DRIVE_WIRES:
            raise ValueError(f'control_wire must be one of {DRIVE_WIRES}, got {wire!r}')

        self.driver = ExpertDriver(config)
        self.town = TownExpert(lane=config) if privileged else None
        self.pending_odometry = None
        self.hazards = {}
        self.rejected = {}
        self.noise = ExpertNoise(noise_config, seed=noise_seed) if noise_enabled else None
        self.codec = ControlCodec('auto' if wire == 'ackermann' else wire)  # the label
        self.drive_codec = driving_codec(wire, AckermannConfig(
            max_steer_deg=config.max_steer_deg, wheelbase_m=config.wheelbase_m,
            target_speed_mps=config.target_speed_mps))
        self.waypoints = []
        self.last_stamp = None
        topics = vehicle_topics(role)
        self.label_pub = self.create_publisher(self.codec.msg_type, label_topic, CONTROL_QOS)
        self.drive_pub = self.create_publisher(self.drive_codec.msg_type,
                                               topics.command(self.drive_codec.topic),
                                               CONTROL_QOS)
        self.create_subscription(Path, topics.waypoints, self.on_path, LATCHED_QOS)
        self.create_subscription(Odometry, topics.odometry, self.on_odometry, reliable_qos(10))
        if self.town is not None:
            self.create_subscription(String, SIM_HAZARDS_TOPIC, self.on_hazards,
                                     reliable_qos(10))
        self.get_logger().info(f'expert on {topics.prefix}, target {config.target_speed_mps} m/s, '
                               f'noise {noise_enabled}, drive={self.drive}')

    def on_path(self, msg: Path):
        """Take a new route (map frame)."""
        self.waypoints = [(p.pose.position.x, p.pose.position.y) for p in msg.poses]
        self.driver.reset()
        if self.town is not None:
            self.town.reset()
        self.last_stamp = None

    def reject(self, reason: str, detail: str):
        """Count and log (rate-limited) a dropped hazards record."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.get_logger().warning(f'dropped hazards record ({reason}): {detail}; dropped so '
                                  f'far: {self.rejected}', throttle_duration_sec=5.0)

    def on_hazards(self, msg: String):
        """Keep the hazards of a frame; drive it if its odometry is waiting."""
        try:
            data = json.loads(msg.data)
            stamp_ns = data['stamp_ns']
            if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int) or stamp_ns < 0:
                raise ValueError(f'stamp_ns must be a non-negative integer, got {stamp_ns!r}')
            hazards = Hazards.from_dict(data)
        except (ValueError, KeyError, TypeError) as error:
            self.reject('malformed', str(error)[:200])
            return
        self.hazards[stamp_ns] = hazards
        while len(self.hazards) > 20:
            self.hazards.pop(min(self.hazards))
        if self.pending_odometry is not None and \
                stamp_to_ns(self.pending_odometry.header.stamp) == stamp_ns:
            pending, self.pending_odometry = self.pending_odometry, None
            self.on_odometry(pending)

    def on_odometry(self, msg: Odometry):
        """Compute and publish the command for this odometry sample."""
        if not self.waypoints:
            return
        hazards = None
        if self.town is not None:
            hazards = self.hazards.pop(stamp_to_ns(msg.header.stamp), None)
            if hazards is None:
                self.pending_odometry = msg  # its hazards record is still on the way
                return
        pose = msg.pose.pose
        speed = math.hypot(msg.twist.twist.linear.x, msg.twist.twist.linear.y)
        stamp_ns = stamp_to_ns(msg.header.stamp)
        # The PID integrates over stamp time, so synchronous mode behaves like real time.
        dt = 0.05 if self.last_stamp is None else (stamp_ns - self.last_stamp) / 1e9
        dt = min(max(dt, 0.001), 0.5)
        self.last_stamp = stamp_ns
        yaw = quaternion_to_yaw(pose.orientation)
        if hazards is None:
            control = self.driver.control(pose.position.x, pose.position.y, yaw, speed,
                                          self.waypoints, dt=dt)
        else:
            control = self.town.command(pose.position.x, pose.position.y, yaw, speed,
                                        self.waypoints, hazards, dt)
        self.label_pub.publish(self.codec.encode(control, stamp_ns))
        if self.drive:
            executed = self.noise.perturb(control, dt) if self.noise else control
            self.drive_pub.publish(self.drive_codec.encode(executed, stamp_ns))


def main(args=None):
    """Run the expert node."""
    run_node(Expert, args)


if __name__ == '__main__':
    main()
