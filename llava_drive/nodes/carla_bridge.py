"""
CARLA bridge node on the CARLA Python API: the sim_bridge topics, from a real CARLA server.

A thin ROS wrapper around :class:`llava_drive.carla.session.CarlaSession`, which owns the
synchronous world (one client ticks, the traffic manager lives in it too). Publishes what
sim_bridge publishes (camera bgra8, camera_info, odometry, speedometer, waypoints, the global
plan with RoadOption commands, ``/clock``, ``/tf``, status and episode JSON) and ticks exactly
once per frame, when the control stamped with that frame has arrived (and the recorder's ack,
when configured); after ``control_timeout`` without one it ticks with a full brake. No
carla_ros_bridge needed.
"""
from collections import OrderedDict
import math
import time

from llava_drive.carla.session import BridgeConfig, CarlaSession
from llava_drive.carla.world import CarlaUnavailable
from llava_drive.control import FULL_BRAKE
from llava_drive.nodes.bridge_common import (camera_image, camera_info, odometry, route_path,
                                             RouteCycle, StartGate, TFMessage, transform)
from llava_drive.nodes.common import declare_parameters, ParameterSpec as Param, run_node
from llava_drive.nodes.control_codec import ControlCodec, ns_to_stamp, stamp_to_ns, WIRE_TYPES
from llava_drive.nodes.interfaces import (CLOCK_TOPIC, CONTROL_QOS, LATCHED_QOS, reliable_qos,
                                          SIM_EPISODE_TOPIC, SIM_STATUS_TOPIC, STATUS_QOS,
                                          TF_STATIC_TOPIC, TF_TOPIC, vehicle_topics)
from llava_drive.nodes.route_codec import encode_plan, plan_type
from llava_drive.nodes.status import SimEpisode, SimStatus
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32, Header, String


# Frames whose control count is kept (for checks and tests), newest last.
RECENT_FRAMES = 1000


# BridgeConfig fields set by the parameter of the same name (fixed_delta comes from
# fixed_delta_seconds, role_name from role_name).
CONFIG_FIELDS = ('host', 'port', 'timeout', 'load_timeout', 'town', 'objects_file',
                 'image_width', 'image_height', 'spawn_point', 'goal', 'route_length', 'traffic',
                 'traffic_manager_port', 'sensor_timeout', 'time_limit')
# Every parameter of the node; all read-only (the CARLA session is opened at start).
PARAMETERS = [
    Param('role_name', BridgeConfig.role_name,
          'role name of the ego vehicle (topic names, CARLA attribute)'),
    Param('host', BridgeConfig.host, 'CARLA server host'),
    Param('port', BridgeConfig.port, 'CARLA server RPC port', 1, 65535),
    Param('timeout', BridgeConfig.timeout, 'seconds for each call to the server', 1.0, 3600.0),
    Param('load_timeout', BridgeConfig.load_timeout, 'seconds for loading the town',
          1.0, 36000.0),
    Param('town', BridgeConfig.town, 'map to load once (kept when it is already loaded)'),
    Param('fixed_delta_seconds', BridgeConfig.fixed_delta, 'simulation step (s)', 0.001, 0.1),
    Param('objects_file', BridgeConfig.objects_file, 'carla_spawn_objects JSON with the ego and '
          'its rgb camera; "" = the installed config/carla_objects.json'),
    Param('image_width', BridgeConfig.image_width,
          "camera width (px); 0 = the objects file's", 0, 8192),
    Param('image_height', BridgeConfig.image_height,
          "camera height (px); 0 = the objects file's", 0, 8192),
    Param('spawn_point', BridgeConfig.spawn_point,
          'index of the ego spawn point; -1 = drawn from the route seed', -1, 100000),
    Param('goal', BridgeConfig.goal, 'index of the goal spawn point; -1 = drawn from the route '
          'seed', -1, 100000),
    Param('route_length', BridgeConfig.route_length,
          'wanted route length when the goal is drawn (m)', 10.0, 100000.0),
    Param('traffic', BridgeConfig.traffic, 'autopilot vehicles (traffic manager in this '
          'client)', 0, 10000),
    Param('traffic_manager_port', BridgeConfig.traffic_manager_port, 'traffic manager port',
          1, 65535),
    Param('sensor_timeout', BridgeConfig.sensor_timeout,
          'seconds to wait for the camera image of a tick', 0.1, 3600.0),
    Param('time_limit', BridgeConfig.time_limit,
          "route time limit (s); 0 = the leaderboard's growing limit", 0.0, 1e6),
    Param('route_seeds', [1], 'route seeds driven one after another (each draws a start and '
          'goal unless spawn_point/goal are set)'),
    Param('loop_routes', False, 'after the last route start again from the first'),
    Param('synchronous_mode_wait_for_ack_topic', '',
          'also wait for a std_msgs/Header stamped with the current frame on this topic '
          '(the recorder\'s ~/frame_done) before ticking; "" = off'),
    Param('control_timeout', 5.0, 'wall seconds to wait for the control of a frame before '
          'ticking with a full brake', 0.01, 600.0),
    Param('wait_for_image_subscribers', 0, 'do not start before this many camera subscribers',
          0, 100),
    Param('start_delay', 1.0, 'wall seconds between the other nodes appearing and the first '
          'frame', 0.0, 60.0),
    Param('control_wire', 'auto', f'control message type, one of {WIRE_TYPES}'),
]


class CarlaBridge(Node):
    """Publishes a CARLA ego vehicle with the carla_ros_bridge topic contract."""

    def __init__(self, **node_options):
        super().__init__('carla_bridge', **node_options)
        p = declare_parameters(self, PARAMETERS)
        self.role = p['role_name']
        config = BridgeConfig(role_name=self.role, fixed_delta=p['fixed_delta_seconds'],
                              **{name: p[name] for name in CONFIG_FIELDS})
        self.routes = RouteCycle(p['route_seeds'], p['loop_routes'])
        self.ack_topic = p['synchronous_mode_wait_for_ack_topic']
        self.control_timeout = p['control_timeout']
        self.min_subscribers = p['wait_for_image_subscribers']
        self.start, wire = StartGate(p['start_delay']), p['control_wire']
        self.codec = ControlCodec(wire)
        try:
            self.session = CarlaSession(config).open()
        except CarlaUnavailable as error:
            raise ValueError(str(error)) from None  # run_node: one line, no traceback

        topics = vehicle_topics(self.role, self.session.ego_spec.camera.name)
        self.camera_frame = topics.camera_frame
        image_qos = reliable_qos(10)
        self.image_pub = self.create_publisher(Image, topics.camera_image, image_qos)
        self.info_pub = self.create_publisher(CameraInfo, topics.camera_info, LATCHED_QOS)
        self.odom_pub = self.create_publisher(Odometry, topics.odometry, image_qos)
        self.speed_pub = self.create_publisher(Float32, topics.speedometer, image_qos)
        self.path_pub = self.create_publisher(Path, topics.waypoints, LATCHED_QOS)
        self.plan_pub = self.create_publisher(plan_type(), topics.global_plan, LATCHED_QOS)
        self.clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, 10)
        self.status_pub = self.create_publisher(String, SIM_STATUS_TOPIC, STATUS_QOS)
        self.episode_pub = self.create_publisher(String, SIM_EPISODE_TOPIC, LATCHED_QOS)
        self.tf_pub = self.tf_static_pub = None
        if TFMessage is not None:
            self.tf_pub = self.create_publisher(TFMessage, TF_TOPIC, 100)
            self.tf_static_pub = self.create_publisher(TFMessage, TF_STATIC_TOPIC, LATCHED_QOS)
        self.control_topic = topics.vehicle_control_cmd
        self.create_subscription(self.codec.msg_type, self.control_topic, self.on_control,
                                 CONTROL_QOS)
        if self.ack_topic:
            self.create_subscription(Header, self.ack_topic, self.on_ack, CONTROL_QOS)

        self.control = FULL_BRAKE
        self.frame = None
        self.awaiting_stamp = None
        self.awaiting_since = 0.0
        self.have_control = self.have_ack = False
        self.control_timeouts = 0
        # Controls per answered frame stamp (the recent ones): the contract is exactly one.
        self.controls_for_frame = OrderedDict()
        self.late_controls = 0
        self.finished = False
        self.create_timer(0.01, self.on_timer)
        self.get_logger().info(
            f'CARLA {self.session.server_version} at {config.host}:{config.port}, '
            f'{config.town}, dt {config.fixed_delta} s, routes {self.routes.seeds}, '
            f'control {self.codec.name}')

    # -- episodes ----------------------------------------------------------------------------
    def next_episode(self) -> bool:
        """Start the next route; return False when there is none left."""
        if self.routes.episode >= 0:
            self.publish_episode('end')
            summary = self.frame.summary
            self.get_logger().info(
                f'episode {self.routes.episode} ended after {summary.time:.1f} s: '
                f'{summary.done_reason}, route completion {summary.route_completion:.1f} %, '
                f'driving score {summary.driving_score:.1f}, events {summary.counts}')
        if not self.routes.next_route():
            self.finished = True
            self.get_logger().info('last route done; ticking stopped')
            return False
        self.control = FULL_BRAKE
        self.frame = self.session.start_episode(self.routes.seed)
        self.publish_route()
        self.publish_episode('start')
        self.get_logger().info(f'episode {self.routes.episode}: route {self.routes.seed}, '
                               f'{self.session.plan.length:.0f} m')
        return True

    def publish_episode(self, event: str):
        """Publish an episode marker (JSON), as sim_bridge does."""
        marker = SimEpisode(event=event, episode=self.routes.episode,
                            route_seed=self.routes.seed, stamp_ns=int(self.frame.stamp_ns),
                            summary=self.frame.summary.to_dict() if event == 'end' else None,
                            # Bags keep the plan through this marker, as sim_bridge's do.
                            global_plan=self.session.plan.to_dict() if event == 'start'
                            else None)
        self.episode_pub.publish(String(data=marker.to_json()))

    def publish_route(self):
        """Publish the dense route (latched), the camera info and the camera mount."""
        path = route_path(self.session.plan.dense_poses, self.frame.stamp_ns)
        self.path_pub.publish(path)
        self.plan_pub.publish(encode_plan(self.session.plan, path.header.stamp))
        camera = self.session.ego_spec.camera
        focal = camera.width / (2.0 * math.tan(math.radians(camera.fov) / 2.0))
        self.info_pub.publish(camera_info(self.camera_frame, camera.width, camera.height,
                                          focal, focal, camera.width / 2.0,
                                          camera.height / 2.0))
        if self.tf_static_pub is not None:
            # CARLA's y points right and its pitch up: both change sign in ROS.
            self.tf_static_pub.publish(TFMessage(transforms=[transform(
                self.role, self.camera_frame, self.frame.stamp_ns, camera.x, -camera.y,
                camera.z, yaw=-math.radians(camera.yaw),
                pitch=-math.radians(camera.pitch))]))

    # -- ticking -----------------------------------------------------------------------------
    def on_control(self, msg):
        """Take a control; the one stamped with the current frame lets the world tick."""
        try:
            stamp_ns, control = self.codec.decode(msg)
        except ValueError as error:
            self.get_logger().warning(f'ignored control: {error}', throttle_duration_sec=2.0)
            return
        if self.awaiting_stamp is None or stamp_ns < self.awaiting_stamp:
            self.late_controls += 1  # answers a frame already ticked past: not applied
            self.get_logger().warning(f'ignored a control for an old frame ({stamp_ns} ns; '
                                      f'{self.late_controls} so far)',
                                      throttle_duration_sec=5.0)
            return
        self.controls_for_frame[stamp_ns] = self.controls_for_frame.get(stamp_ns, 0) + 1
        if len(self.controls_for_frame) > RECENT_FRAMES:
            self.controls_for_frame.popitem(last=False)
        self.control = control  # the session clamps NaN and out-of-range values
        self.have_control = True
        self.advance_when_ready()

    def on_ack(self, msg: Header):
        """Note that the recorder has taken the current frame."""
        if self.awaiting_stamp is not None and stamp_to_ns(msg.stamp) >= self.awaiting_stamp:
            self.have_ack = True
            self.advance_when_ready()

    def advance_when_ready(self):
        """Tick once everything waited for has answered."""
        if self.have_control and self.have_ack:
            self.advance()

    def on_timer(self):
        """Start once the other nodes are up; brake and tick when a control is overdue."""
        if self.finished:
            return
        if not self.start.started:
            if self.start.due(self.ready) and self.next_episode():
                self.publish_frame()
            return
        if self.awaiting_stamp is not None and \
                time.monotonic() - self.awaiting_since > self.control_timeout:
            self.control_timeouts += 1
            self.get_logger().warning(
                f'no {"control" if not self.have_control else "ack"} for frame '
                f'{self.awaiting_stamp} ns within {self.control_timeout} s; ticking with a '
                f'full brake ({self.control_timeouts} timeouts)', throttle_duration_sec=5.0)
            if not self.have_control:
                self.control = FULL_BRAKE
            self.advance()

    def ready(self) -> bool:
        """Return True once the camera subscribers and a control publisher are up."""
        if self.image_pub.get_subscription_count() < self.min_subscribers:
            return False
        if self.ack_topic and self.count_publishers(self.ack_topic) == 0:
            return False
        return self.count_publishers(self.control_topic) > 0

    def advance(self):
        """Tick the world once with the current control and publish the new frame."""
        self.awaiting_stamp = None
        try:
            self.frame = self.session.step(self.control)
        except RuntimeError as error:  # the server went away or a sensor stalled
            self.get_logger().error(f'CARLA tick failed: {error}; stopping')
            self.finished = True
            return
        if self.frame.summary.done:
            self.publish_status()
            if not self.next_episode():
                return
        self.publish_frame()

    def publish_status(self):
        """Publish the route progress, infractions and vehicle state as JSON."""
        frame = self.frame
        status = SimStatus(**frame.summary.to_dict(), stamp_ns=int(frame.stamp_ns),
                           episode=self.routes.episode, x=float(frame.x), y=float(frame.y),
                           yaw=float(frame.yaw), speed=float(frame.speed),
                           control=[float(value) for value in self.control.as_array()],
                           control_timeouts=self.control_timeouts,
                           carla_frame=int(frame.frame), late_controls=self.late_controls)
        self.status_pub.publish(String(data=status.to_json()))

    def publish_frame(self):
        """Publish clock, odometry, speed, status and camera of the current frame."""
        frame = self.frame
        clock = Clock()
        ns_to_stamp(frame.stamp_ns, clock.clock)
        self.clock_pub.publish(clock)
        self.odom_pub.publish(odometry(frame.stamp_ns, self.role, frame.x, frame.y, frame.yaw,
                                       frame.speed))
        if self.tf_pub is not None:
            self.tf_pub.publish(TFMessage(transforms=[transform(
                'map', self.role, frame.stamp_ns, frame.x, frame.y, 0.0, yaw=frame.yaw)]))
        self.speed_pub.publish(Float32(data=frame.speed))
        self.publish_status()
        self.image_pub.publish(camera_image(frame.stamp_ns, self.camera_frame, frame.image))
        self.have_control = False
        self.have_ack = not self.ack_topic
        self.awaiting_stamp = frame.stamp_ns
        self.awaiting_since = time.monotonic()

    def destroy_node(self):
        """Give the world back (asynchronous, our actors removed) before going away."""
        session = getattr(self, 'session', None)
        if session is not None:
            session.close()
        super().destroy_node()


def main(args=None):
    """Run the carla_bridge node."""
    run_node(CarlaBridge, args)


if __name__ == '__main__':
    main()
