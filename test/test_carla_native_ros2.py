"""Native CARLA ROS 2 topics reach our nodes' contract names through the remapping."""
from llava_drive.carla.native_ros2 import native_camera_remaps, remap_arguments
from llava_drive.nodes.interfaces import CAMERA_QOS
import pytest
import rclpy
from ros_helpers import wait_for
from sensor_msgs.msg import CameraInfo, Image


def test_remaps_map_the_contract_names_onto_the_native_ones():
    remaps = native_camera_remaps('ego_vehicle', 'hero', 'front_camera')
    assert remaps == {
        '/carla/ego_vehicle/rgb_front/image': '/carla/hero/front_camera/image',
        '/carla/ego_vehicle/rgb_front/camera_info': '/carla/hero/front_camera/camera_info'}
    assert remap_arguments(remaps)[:2] == [
        '-r', '/carla/ego_vehicle/rgb_front/image:=/carla/hero/front_camera/image']


@pytest.mark.parametrize('kwargs', [{'vehicle_ros_name': 'hero/x'}, {'role_name': ''},
                                    {'camera_ros_name': '1cam'}])
def test_bad_names_are_refused(kwargs):
    with pytest.raises(ValueError, match='must be a ROS name token'):
        native_camera_remaps(**kwargs)


def test_a_remapped_node_receives_the_native_camera(ros_graph):
    remaps = native_camera_remaps('ego_vehicle', 'hero', 'front_camera')
    # A node written against our contract, started with the remap arguments.
    ours = ros_graph.add(rclpy.create_node(
        'contract_reader', context=ros_graph.context,
        cli_args=['--ros-args', *remap_arguments(remaps)]))
    images, infos = [], []
    ours.create_subscription(Image, '/carla/ego_vehicle/rgb_front/image', images.append,
                             CAMERA_QOS)
    ours.create_subscription(CameraInfo, '/carla/ego_vehicle/rgb_front/camera_info',
                             infos.append, CAMERA_QOS)
    # Stand-in for the server's native publishers (same names and types).
    native = ros_graph.node('carla_native')
    image_pub = native.create_publisher(Image, '/carla/hero/front_camera/image', 10)
    info_pub = native.create_publisher(CameraInfo, '/carla/hero/front_camera/camera_info', 10)

    def publish():
        image_pub.publish(Image(encoding='bgra8', width=4, height=2, step=16,
                                data=bytes(32)))
        info_pub.publish(CameraInfo(width=4, height=2))
        return images and infos
    assert wait_for(publish, timeout=30, interval=0.1)
    assert images[-1].encoding == 'bgra8' and infos[-1].width == 4
