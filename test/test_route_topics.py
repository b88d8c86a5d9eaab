"""Route topics: the plan, light and vehicle codecs, and sim_bridge publishing them live."""
import json
import math
from types import SimpleNamespace

from builtin_interfaces.msg import Time
from llava_drive.bag.reader import read_odometry, read_pairs
from llava_drive.bag.route import frame_commands, read_plans, read_traffic_lights
from llava_drive.nodes import route_codec
from llava_drive.nodes.expert import Expert
from llava_drive.nodes.interfaces import SIM_EPISODE_TOPIC as EPISODE_TOPIC
from llava_drive.nodes.recorder import Recorder
from llava_drive.nodes.route_codec import (decode_lights, decode_plan, encode_lights,
                                           encode_plan, encode_vehicles, RouteMessageError)
from llava_drive.nodes.sim_bridge import SimBridge
from llava_drive.planning import (commands_along, GlobalPlan, JUNCTION_OPTIONS, RoadOption,
                                  route_command)
from nav_msgs.msg import Odometry, Path
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import wait_for
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

PLAN = GlobalPlan([[0.0, 0.0, 0.0], [50.0, 0.0, 0.0], [60.0, 10.0, math.pi / 2],
                   [60.0, 80.0, math.pi / 2]],
                  [RoadOption.LANEFOLLOW, RoadOption.LEFT, RoadOption.LANEFOLLOW,
                   RoadOption.VOID])


class FakeCarlaRoute:
    """Same fields as carla_msgs/msg/CarlaRoute (not installable here)."""

    def __init__(self):
        self.header = SimpleNamespace(stamp=None, frame_id='')
        self.road_options = b''
        self.poses = []


@pytest.mark.parametrize('msg_type', [Path, FakeCarlaRoute])
def test_plan_round_trips_through_both_wire_types(msg_type):
    """Carry the same plan as CarlaRoute (uint8 options, VOID as 255) and as the Path fallback."""
    msg = encode_plan(PLAN, Time(sec=3), msg_type=msg_type)
    assert msg.header.frame_id == 'map' and len(msg.poses) == 4
    if msg_type is FakeCarlaRoute:
        assert list(msg.road_options) == [4, 1, 4, 255]
    else:
        assert [p.header.frame_id for p in msg.poses] == ['LANEFOLLOW', 'LEFT', 'LANEFOLLOW',
                                                          'VOID']
    assert decode_plan(msg).equals(PLAN)


def test_default_plan_type_is_the_fallback_without_carla_msgs():
    """Without carla_msgs the plan goes out as nav_msgs/Path."""
    assert route_codec.plan_type() is (route_codec.CarlaRoute or Path)


def test_bad_plan_and_light_messages_are_refused_with_a_reason():
    """Unknown options, a one-point plan, bad JSON or light states raise RouteMessageError."""
    msg = encode_plan(PLAN, Time(), msg_type=Path)
    msg.poses[1].header.frame_id = 'UP'
    with pytest.raises(RouteMessageError, match='UP'):
        decode_plan(msg)
    msg.poses = msg.poses[:1]
    with pytest.raises(RouteMessageError, match='at least 2'):
        decode_plan(msg)
    route = encode_plan(PLAN, Time(), msg_type=FakeCarlaRoute)
    route.road_options = bytes([4, 1, 4])
    with pytest.raises(RouteMessageError, match='3 options for 4 poses'):
        decode_plan(route)
    for data in ('not json', '{"lights": []}', json.dumps(
            {'stamp_ns': 1, 'lights': [{'id': 0, 'state': 'blue'}]})):
        with pytest.raises(RouteMessageError):
            decode_lights(String(data=data))


def test_lights_and_vehicle_markers():
    """Light JSON round trips; vehicles become cubes, and a DELETEALL clears vanished ones."""
    lights = [{'id': 3, 'junction': 1, 'lane': 7, 'state': 'red', 'x': 1.0, 'y': 2.0,
               'stop_x': 0.5, 'stop_y': 2.0, 'stop_yaw': 0.0}]
    decoded = decode_lights(encode_lights(lights, 42))
    assert decoded['stamp_ns'] == 42 and decoded['lights'][0]['state'] == 'red'
    assert 'lane' not in decoded['lights'][0]
    vehicles = [{'id': 5, 'x': 1.0, 'y': 2.0, 'yaw': math.pi / 2, 'length': 4.0,
                 'width': 2.0}]
    markers = encode_vehicles(vehicles, Time(sec=1), previous=3).markers
    assert [m.action for m in markers] == [Marker.DELETEALL, Marker.ADD]
    cube = markers[1]
    assert cube.id == 5 and cube.type == Marker.CUBE and cube.scale.x == 4.0
    assert cube.pose.orientation.z == pytest.approx(math.sin(math.pi / 4))
    assert len(encode_vehicles(vehicles, Time(), previous=1).markers) == 1


def test_sim_bridge_publishes_the_town_plan_lights_and_vehicles(ros_graph):
    """A late subscriber gets the latched plan; lights and vehicles arrive every frame."""
    odometry, lights, markers, episodes = [], [], [], []
    ros_graph.add(SimBridge(context=ros_graph.context, parameter_overrides=[
        Parameter('synchronous_mode', value=False), Parameter('image_width', value=64),
        Parameter('image_height', value=48), Parameter('map', value='town'),
        Parameter('route_seeds', value=[9002]), Parameter('start_delay', value=0.0)]))
    watcher = ros_graph.node('route_watcher')
    watcher.create_subscription(Odometry, '/carla/ego_vehicle/odometry', odometry.append, 100)
    watcher.create_subscription(String, '/carla/ego_vehicle/traffic_lights',
                                lambda m: lights.append(decode_lights(m)), 100)
    watcher.create_subscription(MarkerArray, '/carla/ego_vehicle/other_vehicles',
                                markers.append, 100)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
    watcher.create_subscription(String, EPISODE_TOPIC,
                                lambda m: episodes.append(json.loads(m.data)), latched)
    assert wait_for(lambda: len(odometry) >= 5 and lights and markers, timeout=60)
    # Joining late: the transient-local plan still arrives.
    plans = []
    watcher.create_subscription(route_codec.plan_type(), '/carla/ego_vehicle/global_plan',
                                lambda m: plans.append(decode_plan(m)), latched)
    assert wait_for(lambda: plans and episodes, timeout=60)
    plan = plans[0]
    assert len(plan) >= 3 and set(plan.options) & JUNCTION_OPTIONS
    # The start marker carries the same plan (dense too), so bags keep it.
    start = next(e for e in episodes if e['event'] == 'start')
    assert GlobalPlan.from_dict(start['global_plan']).sparse().equals(plan)
    assert {light['state'] for frame in lights for light in frame['lights']} <= {
        'green', 'yellow', 'red'}
    assert any(m.type == Marker.CUBE for array in markers for m in array.markers)
    # The command for each received pose, from the received plan.
    poses = []
    for msg in odometry:
        q = msg.pose.pose.orientation
        poses.append((msg.pose.pose.position.x, msg.pose.pose.position.y,
                      2.0 * math.atan2(q.z, q.w)))
    commands = commands_along(plan, poses)
    assert commands[0].command == route_command(plan, *poses[0]).command
    assert commands[0].target_forward > 0.0


def test_a_recorded_town_route_keeps_the_plan_commands_and_light_states(ros_graph, tmp_path):
    """Record route 9002 over a real graph; read plan, per-frame command and lights back."""
    bag = tmp_path / 'town'
    statuses = []
    recorder = ros_graph.add(Recorder(context=ros_graph.context, parameter_overrides=[
        Parameter('bag_path', value=str(bag)), Parameter('status_period', value=0.1),
        Parameter('image_format', value='raw')]))
    ros_graph.add(Expert(context=ros_graph.context, parameter_overrides=[
        Parameter('privileged_hazards', value=True)]))
    ros_graph.add(SimBridge(context=ros_graph.context, parameter_overrides=[
        Parameter('map', value='town'), Parameter('image_width', value=64),
        Parameter('image_height', value=48), Parameter('route_seeds', value=[9002]),
        Parameter('loop_routes', value=False), Parameter('start_delay', value=0.5),
        Parameter('traffic_vehicles', value=2)]))
    peer = ros_graph.node('peer')
    peer.create_subscription(String, '/recorder/status',
                             lambda m: statuses.append(json.loads(m.data)), 10)
    bad = peer.create_publisher(String, '/carla/ego_vehicle/traffic_lights', 10)
    assert wait_for(lambda: statuses and statuses[-1].get('pairs_written', 0) >= 60,
                    timeout=180), statuses[-1:]
    bad.publish(String(data='{"stamp_ns": 1, "lights": [{"id": 0, "state": "blue"}]}'))
    assert wait_for(lambda: recorder.rejected['malformed_traffic_lights'] == 1, timeout=30)
    client = peer.create_client(Trigger, '/recorder/stop')
    assert client.wait_for_service(timeout_sec=10)
    response = client.call_async(Trigger.Request())
    assert wait_for(lambda: response.done(), timeout=30)
    assert response.result().success, response.result().message

    plans = read_plans(bag)
    assert list(plans) == [0] and plans[0].has_dense
    assert set(plans[0].options) & JUNCTION_OPTIONS
    pairs = list(read_pairs(bag, decode_images=False))
    commands = frame_commands(bag)
    assert len(pairs) >= 60 and all(pair.stamp_ns in commands for pair in pairs)
    # The same commands a live node gets from the sparse plan and the poses.
    poses = read_odometry(bag)
    stamps = sorted(commands)
    live = commands_along(plans[0].sparse(), [poses[s] for s in stamps])
    assert [c.command for c in live] == [commands[s].command for s in stamps]
    assert commands[stamps[0]].target_forward > 0.0
    lights = read_traffic_lights(bag)
    assert len(lights) >= 60 and all(records for _, records in lights)
    assert {light['state'] for _, records in lights for light in records} <= {
        'green', 'yellow', 'red'}
    assert {stamp for stamp, _ in lights} >= {pair.stamp_ns for pair in pairs[:-1]}
