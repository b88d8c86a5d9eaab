"""
Embedded simulator node speaking the carla_ros_bridge topics (architecture: Topics).

Publishes the front camera (bgra8), camera_info, odometry, speedometer, route waypoints and
``/clock``, and ``/tf`` (map -> vehicle) plus ``/tf_static`` (vehicle -> camera) like the bridge
when ``tf2_msgs`` is importable (every ROS install has it; the standalone wheels do not, and
without ROS there is no RViz to need it). Applies ``vehicle_control_cmd`` with CARLA
VehicleControl semantics. In synchronous mode it waits, like the bridge's
``synchronous_mode_wait_for_vehicle_control_command``, for a control stamped with the current
frame before stepping, so recording and evaluation run as fast as the nodes allow and are
deterministic. Episode progress and infractions go out as JSON on ``/llava_drive/sim/status``
and ``/llava_drive/sim/episode``.

With ``map: town`` the world is a town (junctions, traffic, lights, a scenario per route; route
seeds then name town routes, e.g. the benchmarks' 9001+). Each frame it also publishes, before
the camera, the privileged obstacles the town expert drives by (``SIM_HAZARDS_TOPIC``, JSON:
``stamp_ns`` plus :class:`~llava_drive.expert.town.Hazards`), computed by the world as
CARLA's autopilot reads its world; asking for them also reserves the next junction for the ego
when it is clear. A town also publishes its route's global plan (``/carla/<role>/global_plan``,
transient local, also carried by the episode's start marker so bags keep it), the traffic light
states and the other vehicles as RViz markers (:mod:`llava_drive.nodes.route_codec`).
"""
import json
import math
import time

from llava_drive.control import FULL_BRAKE
from llava_drive.expert.town import TownExpert
from llava_drive.nodes.bridge_common import (camera_image, camera_info, odometry, route_path,
                                             RouteCycle, StartGate, TFMessage, transform)
from llava_drive.nodes.common import declare_parameters, ParameterSpec as Param, run_node
from llava_drive.nodes.control_codec import ControlCodec, ns_to_stamp, stamp_to_ns, WIRE_TYPES
from llava_drive.nodes.interfaces import (CLOCK_TOPIC, CONTROL_QOS, DEFAULT_ROLE_NAME,
                                          FIRST_EVALUATION_SEED, LATCHED_QOS, reliable_qos,
                                          SIM_BRIDGE_NODE, SIM_EPISODE_TOPIC, SIM_HAZARDS_TOPIC,
                                          SIM_STATUS_TOPIC, STATUS_QOS, TF_STATIC_TOPIC,
                                          TF_TOPIC, vehicle_topics)
from llava_drive.nodes.route_codec import (encode_lights, encode_plan, encode_vehicles,
                                           plan_type)
from llava_drive.nodes.status import SimEpisode, SimStatus
from llava_drive.sim.world import MAP_KINDS, SimConfig, Simulator
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32, Header, String
from visualization_msgs.msg import MarkerArray


# Every parameter of the node; all read-only (the world and its topics are built at start).
PARAMETERS = [
    Param('role_name', DEFAULT_ROLE_NAME, 'CARLA role name of the ego vehicle'),
    Param('image_width', SimConfig.width, 'camera width (px)', 16, 4096),
    Param('image_height', SimConfig.height, 'camera height (px)', 16, 4096),
    Param('fov', SimConfig.fov_deg, 'camera horizontal field of view (deg)', 10.0, 170.0),
    Param('fixed_delta_seconds', SimConfig.dt, 'simulation step (s)', 0.001, 1.0),
    Param('synchronous_mode', True, 'step as fast as the nodes allow instead of real time'),
    Param('synchronous_mode_wait_for_vehicle_control_command', True,
          'in synchronous mode, wait for a control stamped with the current frame'),
    Param('synchronous_mode_wait_for_ack_topic', '',
          'in synchronous mode, also wait for a std_msgs/Header stamped with the current frame '
          'on this topic (the recorder\'s ~/frame_done) so no frame is lost; "" = off'),
    Param('control_timeout', 2.0, 'wall seconds to wait for a control before stepping with the '
          'last one', 0.01, 600.0),
    Param('route_seeds', [1], f'route seeds driven one after another (below '
          f'{FIRST_EVALUATION_SEED} for recording; the others are held out for evaluation)'),
    Param('loop_routes', True, 'after the last route start again from the first'),
    Param('route_length', SimConfig.route_length_m, 'route length (m)', 50.0, 20000.0),
    Param('variation', 0, 'appearance draw on the same roads (lighting, colours, camera '
          'jitter); evaluation repetitions use 0, 1, 2 ...', 0, 1000000),
    Param('time_budget', 0.0, 'fixed simulated seconds per route before a route timeout (no '
          'penalty); 0 = the leaderboard limit, 300 s + 1.2 s per metre completed', 0.0, 1e6),
    Param('obstacles', SimConfig.obstacles, 'parked cars at the roadside'),
    Param('randomize', SimConfig.randomize,
          'randomize lighting, colours and camera jitter per episode'),
    Param('wait_for_image_subscribers', 0, 'do not start before this many camera subscribers',
          0, 100),
    Param('start_delay', 1.0, 'wall seconds between the other nodes appearing and the first '
          'frame, so their connections to each other are up too', 0.0, 60.0),
    Param('control_wire', 'auto', f'control message type, one of {WIRE_TYPES}'),
    Param('map', SimConfig.map_kind, f'world: one of {MAP_KINDS} (road: lane keeping; town: '
          'junctions, traffic, lights, scenarios)'),
    Param('traffic_vehicles', SimConfig.traffic_vehicles,
          'vehicles driving a town, scenario vehicles not counted', 0, 200),
]


class SimBridge(Node):
    """Publishes the embedded simulator with the carla_ros_bridge contract."""

    def __init__(self, **node_options):
        super().__init__(SIM_BRIDGE_NODE, **node_options)
        p = declare_parameters(self, PARAMETERS)
        self.role, self.dt = p['role_name'], p['fixed_delta_seconds']
        self.synchronous = p['synchronous_mode']
        self.wait_for_control = p['synchronous_mode_wait_for_vehicle_control_command']
        self.ack_topic = p['synchronous_mode_wait_for_ack_topic']
        self.control_timeout = p['control_timeout']
        self.routes = RouteCycle(p['route_seeds'], p['loop_routes'])
        self.variation = p['variation']
        self.min_subscribers = p['wait_for_image_subscribers']
        self.start = StartGate(p['start_delay'])
        width, height, wire, map_kind = (p['image_width'], p['image_height'], p['control_wire'],
                                         p['map'])
        time_budget = p['time_budget']
        if map_kind not in MAP_KINDS:
            raise ValueError(f'map must be one of {MAP_KINDS}, got {map_kind!r}')

        self.codec = ControlCodec(wire)
        self.sim = Simulator(SimConfig(
            width=width, height=height, fov_deg=p['fov'], dt=self.dt,
            route_seed=self.routes.seeds[0], route_length_m=p['route_length'],
            obstacles=p['obstacles'], randomize=p['randomize'],
            time_budget_s=time_budget if time_budget > 0 else None, map_kind=map_kind,
            traffic_vehicles=p['traffic_vehicles']))
        self.hazard_source = TownExpert() if map_kind == 'town' else None
        topics = vehicle_topics(self.role)
        self.camera_frame = topics.camera_frame
        image_qos = reliable_qos(10)
        self.image_pub = self.create_publisher(Image, topics.camera_image, image_qos)
        self.info_pub = self.create_publisher(CameraInfo, topics.camera_info, LATCHED_QOS)
        self.odom_pub = self.create_publisher(Odometry, topics.odometry, image_qos)
        self.speed_pub = self.create_publisher(Float32, topics.speedometer, image_qos)
        self.path_pub = self.create_publisher(Path, topics.waypoints, LATCHED_QOS)
        self.clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, 10)
        self.status_pub = self.create_publisher(String, SIM_STATUS_TOPIC, STATUS_QOS)
        self.episode_pub = self.create_publisher(String, SIM_EPISODE_TOPIC, LATCHED_QOS)
        self.hazards_pub = self.create_publisher(String, SIM_HAZARDS_TOPIC, image_qos) \
            if self.hazard_source is not None else None
        self.plan_pub = self.lights_pub = self.vehicles_pub = None
        self.vehicles_sent = 0
        if hasattr(self.sim, 'global_plan'):
            self.plan_pub = self.create_publisher(plan_type(), topics.global_plan, LATCHED_QOS)
            self.lights_pub = self.create_publisher(String, topics.traffic_lights, image_qos)
            self.vehicles_pub = self.create_publisher(MarkerArray, topics.other_vehicles,
                                                      image_qos)
        self.tf_pub = self.tf_static_pub = None
        if TFMessage is not None:
            self.tf_pub = self.create_publisher(TFMessage, TF_TOPIC, 100)
            self.tf_static_pub = self.create_publisher(TFMessage, TF_STATIC_TOPIC, LATCHED_QOS)
        else:
            self.get_logger().info('tf2_msgs is not installed: no /tf (RViz needs a ROS '
                                   'install, which has it)')
        self.control_topic = topics.vehicle_control_cmd
        self.create_subscription(self.codec.msg_type, self.control_topic, self.on_control,
                                 CONTROL_QOS)
        if self.ack_topic:
            self.create_subscription(Header, self.ack_topic, self.on_ack, CONTROL_QOS)

        self.control = FULL_BRAKE
        self.sim_time_ns = int(round(self.dt * 1e9))  # a zero stamp reads as "unset" in ROS
        self.awaiting_stamp = None
        self.awaiting_since = 0.0
        self.have_control = self.have_ack = False
        self.last_frame_stamp = 0
        self.control_timeouts = 0
        self.finished = False
        period = self.dt if not self.synchronous else 0.01
        self.create_timer(period, self.on_timer)
        self.get_logger().info(
            f'{width}x{height} camera, dt {self.dt} s, '
            f'{"synchronous" if self.synchronous else "real-time"} mode, '
            f'routes {self.routes.seeds}, '
            f'control {self.codec.name}')

    # -- episodes ------------------------------------------------------------------------
    def next_episode(self) -> bool:
        """Start the next route; return False when there is none left."""
        if self.routes.episode >= 0:
            self.publish_episode('end')
            summary = self.sim.summary()
            self.get_logger().info(
                f'episode {self.routes.episode} ended: {summary.done_reason}, route completion '
                f'{summary.route_completion:.1f} %, driving score {summary.driving_score:.1f}')
        if not self.routes.next_route():
            self.finished = True
            self.get_logger().info('last route done; stepping stopped')
            return False
        # Each pass over the route list draws a new appearance.
        self.sim.reset(self.routes.seed, variation=self.variation + self.routes.lap)
        if self.hazard_source is not None:
            self.hazard_source.reset()
        self.control = FULL_BRAKE
        self.publish_route()
        if self.plan_pub is not None:
            stamp = Header().stamp
            ns_to_stamp(self.sim_time_ns, stamp)
            self.plan_pub.publish(encode_plan(self.sim.global_plan(), stamp))
        self.publish_camera_mount()
        self.publish_episode('start')
        self.get_logger().info(f'episode {self.routes.episode}: route {self.routes.seed}')
        return True

    def publish_episode(self, event: str):
        """Publish an episode marker (JSON) for recorders and evaluators."""
        # An episode ends at its last frame and the next starts at its first: readers
        # assign frames to episodes by these stamps.
        stamp_ns = self.last_frame_stamp if event == 'end' else self.sim_time_ns
        marker = SimEpisode(
            event=event, episode=self.routes.episode, route_seed=self.routes.seed,
            stamp_ns=int(stamp_ns),
            summary=self.sim.summary().to_dict() if event == 'end' else None,
            # Bags keep the plan through this marker: commands derive from it and odometry.
            global_plan=self.sim.global_plan().to_dict()
            if event == 'start' and self.plan_pub is not None else None)
        self.episode_pub.publish(String(data=marker.to_json()))

    def publish_camera_mount(self):
        """Publish vehicle -> camera on /tf_static (the mount can change per episode)."""
        if self.tf_static_pub is None:
            return
        camera = self.sim.camera_config()
        self.tf_static_pub.publish(TFMessage(transforms=[transform(
            self.role, self.camera_frame, self.sim_time_ns, camera.mount_forward_m, 0.0,
            camera.mount_height_m, pitch=math.radians(camera.pitch_deg))]))

    def publish_route(self):
        """Publish the route's driving path (latched), like carla_waypoint_publisher."""
        self.path_pub.publish(route_path(self.sim.route_waypoints(), self.sim_time_ns))
        self.info_pub.publish(camera_info(self.camera_frame, self.sim.config.width,
                                          self.sim.config.height,
                                          *self.sim.camera_intrinsics()))

    # -- stepping ------------------------------------------------------------------------
    def on_control(self, msg):
        """Take a control; in synchronous mode, a control for the current frame steps."""
        try:
            stamp_ns, control = self.codec.decode(msg)
        except ValueError as error:
            self.get_logger().warning(f'ignored control: {error}', throttle_duration_sec=2.0)
            return
        self.control = control  # the simulator sanitizes NaN and out-of-range values
        if self.awaiting_stamp is not None and stamp_ns >= self.awaiting_stamp:
            self.have_control = True
            self.advance_when_ready()

    def on_ack(self, msg: Header):
        """Note that the recorder has taken the current frame."""
        if self.awaiting_stamp is not None and stamp_to_ns(msg.stamp) >= self.awaiting_stamp:
            self.have_ack = True
            self.advance_when_ready()

    def advance_when_ready(self):
        """In synchronous mode, step once everything waited for has answered."""
        if self.synchronous and self.wait_for_control and self.have_control and self.have_ack:
            self.advance()

    def on_timer(self):
        """Start, step in real time, or step on a control timeout."""
        if self.finished:
            return
        if not self.start.started:
            if self.start.due(self.ready) and self.next_episode():
                self.publish_frame()
            return
        if not self.synchronous or not self.wait_for_control:
            self.advance()
        elif time.monotonic() - self.awaiting_since > self.control_timeout:
            self.control_timeouts += 1
            self.get_logger().warning(
                f'no {"control" if not self.have_control else "ack"} for frame '
                f'{self.awaiting_stamp} ns within {self.control_timeout} s; stepping with the '
                f'last control ({self.control_timeouts} timeouts)',
                throttle_duration_sec=5.0)
            self.advance()

    def ready(self) -> bool:
        """Return True once the nodes we wait for are on the graph."""
        if self.image_pub.get_subscription_count() < self.min_subscribers:
            return False
        if self.synchronous and self.wait_for_control:
            if self.ack_topic and self.count_publishers(self.ack_topic) == 0:
                return False
            return self.count_publishers(self.control_topic) > 0
        return True

    def advance(self):
        """Step the simulator once with the current control and publish the new frame."""
        self.awaiting_stamp = None
        self.sim.step(self.control)
        self.sim_time_ns += int(round(self.dt * 1e9))
        if self.sim.summary().done:
            self.publish_status(self.sim_time_ns)  # the finished episode's end, done: true
            if not self.next_episode():
                return
        self.publish_frame()

    def publish_status(self, stamp_ns: int):
        """Publish the episode's progress and the vehicle state as JSON."""
        state = self.sim.state
        status = SimStatus(**self.sim.summary().to_dict(), stamp_ns=int(stamp_ns),
                           episode=self.routes.episode, x=float(state.x), y=float(state.y),
                           yaw=float(state.yaw), speed=float(state.speed),
                           control=[float(value) for value in self.control.as_array()],
                           control_timeouts=self.control_timeouts)
        self.status_pub.publish(String(data=status.to_json()))

    def publish_frame(self):
        """Publish clock, odometry, speed, status and camera for the current state."""
        stamp_ns = self.sim_time_ns
        clock = Clock()
        ns_to_stamp(stamp_ns, clock.clock)
        self.clock_pub.publish(clock)
        state = self.sim.state
        self.odom_pub.publish(odometry(stamp_ns, self.role, state.x, state.y, state.yaw,
                                       state.speed))
        if self.tf_pub is not None:
            self.tf_pub.publish(TFMessage(transforms=[transform(
                'map', self.role, stamp_ns, state.x, state.y, 0.0, yaw=state.yaw)]))
        self.speed_pub.publish(Float32(data=float(state.speed)))
        self.publish_status(stamp_ns)
        if self.hazards_pub is not None:
            hazards = dict(self.hazard_source.hazards(self.sim).to_dict(), stamp_ns=stamp_ns)
            self.hazards_pub.publish(String(data=json.dumps(hazards)))
        if self.lights_pub is not None:
            self.lights_pub.publish(encode_lights(self.sim.light_states(), stamp_ns))
            vehicles = self.sim.other_vehicles()
            self.vehicles_pub.publish(encode_vehicles(vehicles, clock.clock,
                                                      previous=self.vehicles_sent))
            self.vehicles_sent = len(vehicles)
        self.image_pub.publish(camera_image(stamp_ns, self.camera_frame, self.sim.render()))
        self.last_frame_stamp = stamp_ns
        self.have_control = False
        self.have_ack = not self.ack_topic
        self.awaiting_stamp = stamp_ns
        self.awaiting_since = time.monotonic()


def main(args=None):
    """Run the sim_bridge node."""
    run_node(SimBridge, args)


if __name__ == '__main__':
    main()
