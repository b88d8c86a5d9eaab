"""Expert driver node: follows the route from odometry + waypoints, like carla_ad_agent.

Publishes its clean command on ``label_topic`` (the recorder's label) and, when ``drive`` is
true, the executed command on ``vehicle_control_cmd``, optionally perturbed by seeded noise so
recordings contain recoveries (the label stays clean). Every control carries the stamp of the
odometry it was computed from. Works unchanged against carla_ros_bridge's topics.
"""
import math

from nav_msgs.msg import Odometry, Path
from rclpy.node import Node

from llava_drive.control_codec import ControlCodec, stamp_to_ns, WIRE_TYPES
from llava_drive.expert_driver import ExpertConfig, ExpertDriver, SteeringNoise
from llava_drive.nodes.common import CONTROL_QOS, declare, LATCHED_QOS, reliable_qos, run_node


def quaternion_to_yaw(q) -> float:
    """Return the yaw (rad) of a geometry_msgs/Quaternion."""
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


class Expert(Node):
    """Drives the ego vehicle along its route: pure pursuit steering + PID speed."""

    def __init__(self, **node_options):
        super().__init__('expert', **node_options)
        role = declare(self, 'role_name', 'ego_vehicle', 'CARLA role name of the ego vehicle')
        defaults = ExpertConfig()
        config = ExpertConfig(
            target_speed=declare(self, 'target_speed', defaults.target_speed,
                                 'cruise speed on straights (m/s)', 0.5, 40.0),
        )
        self.drive = declare(self, 'drive', True,
                             'publish on vehicle_control_cmd (false: only labels, for DAgger)')
        label_topic = declare(self, 'label_topic', '/llava_drive/expert/control',
                              'topic for the clean expert command (the recording label)')
        noise_std = declare(self, 'noise_steer_std', 0.0,
                            'std of the steering noise added to the executed command '
                            '(0 = off); the label stays clean', 0.0, 1.0)
        noise_seed = declare(self, 'noise_seed', 0, 'seed of the steering noise', 0, 2**31 - 1)
        wire = declare(self, 'control_wire', 'auto', f'control message type, one of {WIRE_TYPES}')

        self.driver = ExpertDriver(config)
        self.noise = SteeringNoise(std=noise_std, seed=noise_seed) if noise_std > 0 else None
        self.codec = ControlCodec(wire)
        self.waypoints = []
        prefix = f'/carla/{role}'
        self.label_pub = self.create_publisher(self.codec.msg_type, label_topic, CONTROL_QOS)
        self.drive_pub = self.create_publisher(self.codec.msg_type,
                                               f'{prefix}/vehicle_control_cmd', CONTROL_QOS)
        self.create_subscription(Path, f'{prefix}/waypoints', self.on_path, LATCHED_QOS)
        self.create_subscription(Odometry, f'{prefix}/odometry', self.on_odometry,
                                 reliable_qos(10))
        self.get_logger().info(f'expert on {prefix}, target {config.target_speed} m/s, '
                               f'noise std {noise_std}, drive={self.drive}')

    def on_path(self, msg: Path):
        """Take a new route (map frame)."""
        self.waypoints = [(p.pose.position.x, p.pose.position.y) for p in msg.poses]
        self.driver.reset()

    def on_odometry(self, msg: Odometry):
        """Compute and publish the command for this odometry sample."""
        if not self.waypoints:
            return
        pose = msg.pose.pose
        speed = math.hypot(msg.twist.twist.linear.x, msg.twist.twist.linear.y)
        stamp_ns = stamp_to_ns(msg.header.stamp)
        control = self.driver.control(pose.position.x, pose.position.y,
                                      quaternion_to_yaw(pose.orientation), speed, self.waypoints)
        self.label_pub.publish(self.codec.encode(control, stamp_ns))
        if self.drive:
            executed = self.noise.perturb(control) if self.noise else control
            self.drive_pub.publish(self.codec.encode(executed, stamp_ns))


def main(args=None):
    """Run the expert node."""
    run_node(Expert, args)


if __name__ == '__main__':
    main()
