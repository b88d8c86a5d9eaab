r"""
Topic remapping for CARLA's native ROS 2 interface (``CarlaUE4.sh --ros2``, 0.9.15+).

With ``--ros2`` the server publishes a sensor whose ``enable_for_ros()`` was called on
``/carla/<vehicle ros_name>/<sensor ros_name>/image`` and ``.../camera_info`` (Fast DDS only;
``ros_name`` is a blueprint attribute), and nothing else our nodes read: no odometry, no
speedometer, no waypoints. Our nodes keep their contract names (``/carla/<role>/rgb_front/...``)
and are remapped onto the native ones with :func:`remap_arguments`, e.g.::

    python -m llava_drive.nodes.policy --ros-args --params-file config/policy.yaml \\
        -p checkpoint:=trained_models/run \\
        -r /carla/ego_vehicle/rgb_front/image:=/carla/hero/front_camera/image

So the policy drives from the native camera (a head trained ``--use-speed`` needs the
speedometer, which native ROS 2 lacks); the control still goes to a bridge that applies it
(``backend carla`` or ``carla_ros_bridge``). No ROS imports.
"""
import re
from typing import Dict, List

from llava_drive.nodes.interfaces import vehicle_topics

# What our nodes read from the camera, relative to /carla/<role>/<camera>/.
CAMERA_STREAMS = ('image', 'camera_info')
_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*')


def native_camera_remaps(role_name: str = 'ego_vehicle', vehicle_ros_name: str = 'hero',
                         camera_ros_name: str = 'rgb_front',
                         camera: str = 'rgb_front') -> Dict[str, str]:
    """
    Return ``{our topic: native topic}`` for the front camera.

    :param role_name: our nodes' ``role_name`` parameter
    :param vehicle_ros_name: the ego's ``ros_name`` attribute in CARLA
    :param camera_ros_name: the camera's ``ros_name`` attribute in CARLA
    :param camera: the camera id our nodes use (``rgb_front``)
    :raises ValueError: a name that is no valid ROS name token
    """
    for name, value in (('role_name', role_name), ('vehicle_ros_name', vehicle_ros_name),
                        ('camera_ros_name', camera_ros_name), ('camera', camera)):
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise ValueError(f'{name} must be a ROS name token (letters, digits, _; not '
                             f'starting with a digit), got {value!r}')
    ours = vehicle_topics(role_name, camera)
    native = vehicle_topics(vehicle_ros_name, camera_ros_name)
    return {ours.camera_stream(stream): native.camera_stream(stream) for stream in CAMERA_STREAMS}


def remap_arguments(remaps: Dict[str, str]) -> List[str]:
    """Return ``['-r', 'from:=to', ...]`` for a node's ``--ros-args``."""
    arguments = []
    for source, target in remaps.items():
        arguments += ['-r', f'{source}:={target}']
    return arguments
