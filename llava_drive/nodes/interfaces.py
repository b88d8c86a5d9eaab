"""
Every name the processes of llava_drive share: topics, QoS profiles, backends, route seeds.

Vehicle topics follow carla_ros_bridge (``/carla/<role_name>/...``) and are built from
``role_name`` by :func:`vehicle_topics`, never written out elsewhere; a test greps
``llava_drive/`` for topic strings defined in more than one module. The topics recorded only
inside bags (control labels, episode markers, recording info) are the bag-file contract and
live in :mod:`llava_drive.bag.format`. Status payloads carried as JSON on the status topics are
defined in :mod:`llava_drive.nodes.status`. Everything but the QoS profiles is importable
without ROS (the bag and sim packages use it offline).
"""
from dataclasses import dataclass
import re

DEFAULT_ROLE_NAME = 'ego_vehicle'
# Last name of the speed topic: bag readers find it under any role name.
SPEEDOMETER_LEAF = 'speedometer'
# Last names of the commands a vehicle takes: a control (carla_ros_bridge), or a stamped
# Ackermann command (carla_ackermann_control).
VEHICLE_CONTROL_CMD_LEAF = 'vehicle_control_cmd'
ACKERMANN_CMD_LEAF = 'ackermann_cmd_stamped'

# sim: embedded simulator; carla: a CARLA server through our carla_bridge node; carla_ros_bridge:
# a running carla_ros_bridge (started by ros2 launch ... backend:=carla_ros_bridge).
BACKENDS = ('sim', 'carla', 'carla_ros_bridge')
CARLA_BACKENDS = ('carla', 'carla_ros_bridge')
# Backends whose bridge llava-drive evaluate starts per episode (and reads the score from).
EVALUATION_BACKENDS = ('sim', 'carla')
DEFAULT_CAMERA = 'rgb_front'
# Default image size of that camera (config/carla_objects.json), in every backend.
CAMERA_WIDTH = 800
CAMERA_HEIGHT = 600

# Route seeds below this are recording (training) routes; this one and above are held out
# for closed-loop evaluation.
FIRST_EVALUATION_SEED = 101

# Node names: their private topics and services (``~/status``) resolve under ``/<name>/``.
SIM_BRIDGE_NODE = 'sim_bridge'
EXPERT_NODE = 'expert'
RECORDER_NODE = 'recorder'
POLICY_NODE = 'policy'


def private_name(node_name: str, leaf: str) -> str:
    """
    Return the absolute name of a node's ``~/<leaf>`` topic or service (no namespace).

    :param node_name: node name, e.g. ``recorder``
    :param leaf: the part after ``~/``, e.g. ``status``
    """
    return f'/{node_name}/{leaf}'


# Topics of the embedded simulator (JSON, see llava_drive.nodes.status).
SIM_STATUS_TOPIC = '/llava_drive/sim/status'
SIM_EPISODE_TOPIC = '/llava_drive/sim/episode'
# Town world: the privileged hazards (vehicle ahead, stop line) the town expert drives by.
SIM_HAZARDS_TOPIC = '/llava_drive/sim/expert_hazards'
# The expert's clean command: the recording label (its executed command may be noisy).
EXPERT_CONTROL_TOPIC = '/llava_drive/expert/control'
# std_msgs/Bool: True brakes the policy until False.
EMERGENCY_STOP_TOPIC = '/llava_drive/emergency_stop'
DIAGNOSTICS_TOPIC = '/diagnostics'
CLOCK_TOPIC = '/clock'
TF_TOPIC = '/tf'
TF_STATIC_TOPIC = '/tf_static'

# Private topics and services (nodes create them as ``~/<leaf>``).
RECORDER_STATUS = 'status'
RECORDER_FRAME_DONE = 'frame_done'
RECORDER_START, RECORDER_STOP, RECORDER_SPLIT = 'start', 'stop', 'split'
POLICY_ANNOTATED_IMAGE = 'annotated_image'
POLICY_PREDICTED_PATH = 'predicted_path'
POLICY_ENABLE = 'enable'
RECORDER_STATUS_TOPIC = private_name(RECORDER_NODE, RECORDER_STATUS)
RECORDER_FRAME_DONE_TOPIC = private_name(RECORDER_NODE, RECORDER_FRAME_DONE)
POLICY_ANNOTATED_TOPIC = private_name(POLICY_NODE, POLICY_ANNOTATED_IMAGE)


@dataclass(frozen=True)
class VehicleTopics:
    """
    The carla_ros_bridge topics of one ego vehicle.

    :param role_name: CARLA role name of the ego vehicle
    :param camera: id of the front camera under the vehicle's topics
    """

    role_name: str = DEFAULT_ROLE_NAME
    camera: str = DEFAULT_CAMERA

    def __post_init__(self):
        # ROS name tokens: they become part of every topic.
        for name in ('role_name', 'camera'):
            value = getattr(self, name)
            if not isinstance(value, str) or not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', value):
                raise ValueError(f'{name} must be ASCII letters, digits and _ (not first), got '
                                 f'{value!r}')

    @property
    def prefix(self) -> str:
        """Return ``/carla/<role_name>``."""
        return f'/carla/{self.role_name}'

    def camera_stream(self, stream: str) -> str:
        """
        Return a topic of the front camera.

        :param stream: ``image``, ``camera_info``...
        """
        return f'{self.prefix}/{self.camera}/{stream}'

    @property
    def camera_image(self) -> str:
        """Return the front camera's sensor_msgs/Image topic."""
        return self.camera_stream('image')

    @property
    def camera_info(self) -> str:
        """Return the front camera's CameraInfo topic (latched)."""
        return self.camera_stream('camera_info')

    @property
    def camera_frame(self) -> str:
        """Return the front camera's frame id."""
        return f'{self.role_name}/{self.camera}'

    @property
    def goal(self) -> str:
        """Return carla_waypoint_publisher's goal topic (geometry_msgs/PoseStamped)."""
        return f'{self.prefix}/goal'

    @property
    def odometry(self) -> str:
        """Return the nav_msgs/Odometry topic."""
        return f'{self.prefix}/odometry'

    @property
    def speedometer(self) -> str:
        """Return the std_msgs/Float32 speed topic (m/s)."""
        return f'{self.prefix}/{SPEEDOMETER_LEAF}'

    @property
    def waypoints(self) -> str:
        """Return the nav_msgs/Path route topic (latched)."""
        return f'{self.prefix}/waypoints'

    @property
    def vehicle_control_cmd(self) -> str:
        """Return the control topic the bridge applies."""
        return self.command(VEHICLE_CONTROL_CMD_LEAF)

    @property
    def global_plan(self) -> str:
        """Return the route's global plan topic (latched; CarlaRoute or its Path fallback)."""
        return f'{self.prefix}/global_plan'

    @property
    def traffic_lights(self) -> str:
        """Return the traffic light states topic (String JSON, town world)."""
        return f'{self.prefix}/traffic_lights'

    @property
    def other_vehicles(self) -> str:
        """Return the other vehicles topic (MarkerArray, town world)."""
        return f'{self.prefix}/other_vehicles'

    def command(self, leaf: str) -> str:
        """
        Return the command topic ``leaf`` of this vehicle.

        :param leaf: :data:`VEHICLE_CONTROL_CMD_LEAF` or :data:`ACKERMANN_CMD_LEAF` (a
            codec's ``topic``)
        """
        if leaf not in (VEHICLE_CONTROL_CMD_LEAF, ACKERMANN_CMD_LEAF):
            raise ValueError(f'no vehicle command topic {leaf!r}')
        return f'{self.prefix}/{leaf}'


def vehicle_topics(role_name: str = DEFAULT_ROLE_NAME,
                   camera: str = DEFAULT_CAMERA) -> VehicleTopics:
    """
    Return the topics of the ego vehicle ``role_name``.

    :param role_name: CARLA role name of the ego vehicle
    :param camera: id of its front camera
    """
    return VehicleTopics(role_name, camera)


try:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
except ImportError:  # bag tools without ROS need only the names above
    QoSProfile = None


def reliable_qos(depth: int):
    """Return a reliable keep-last profile of ``depth`` (sensor streams that must not drop)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE)


if QoSProfile is not None:
    # Camera subscribers: best-effort depth 1 matches reliable and best-effort publishers.
    CAMERA_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                            reliability=ReliabilityPolicy.BEST_EFFORT)
    # Control: reliable, like carla_ros_bridge's subscription.
    CONTROL_QOS = reliable_qos(10)
    # Simulator status, one per frame: the evaluator's trajectory needs every one, and a
    # reliable keep-last writer overwrites what a slow (loaded) reader has not yet taken.
    STATUS_QOS = reliable_qos(200)
    # Latched info (waypoints, camera_info, episode markers): late joiners get the last one.
    LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
