"""The town over a real rclpy graph: sim bridge hazards and the expert node driving by them."""
import json

from llava_drive.nodes.expert import Expert
from llava_drive.nodes.interfaces import SIM_HAZARDS_TOPIC as HAZARDS_TOPIC
from llava_drive.nodes.interfaces import SIM_STATUS_TOPIC as STATUS_TOPIC
from llava_drive.nodes.sim_bridge import SimBridge
from rclpy.parameter import Parameter
from ros_helpers import wait_for, wait_while_progressing
from std_msgs.msg import String


def test_expert_node_drives_a_town_route_by_the_bridge_hazards(ros_graph):
    statuses, hazards = [], []
    watcher = ros_graph.node('town_watcher')
    watcher.create_subscription(String, STATUS_TOPIC,
                                lambda msg: statuses.append(json.loads(msg.data)), 1000)

    def keep(msg):
        if msg.data.startswith('{'):
            hazards.append(json.loads(msg.data))

    watcher.create_subscription(String, HAZARDS_TOPIC, keep, 1000)
    bad = watcher.create_publisher(String, HAZARDS_TOPIC, 10)
    expert = ros_graph.add(Expert(context=ros_graph.context, parameter_overrides=[
        Parameter('privileged_hazards', value=True)]))
    # Route 9002 (the shortest red-light route: 197 m, 46 s simulated): a red light at ~158 m,
    # so the expert must stop there. On a loaded machine a control can take seconds; the bridge
    # must wait for it, since stepping on a stale one is not what this test is about.
    ros_graph.add(SimBridge(context=ros_graph.context, parameter_overrides=[
        Parameter('map', value='town'), Parameter('image_width', value=64),
        Parameter('image_height', value=48), Parameter('route_seeds', value=[9002]),
        Parameter('loop_routes', value=False), Parameter('start_delay', value=0.5),
        Parameter('traffic_vehicles', value=4), Parameter('control_timeout', value=60.0)]))
    assert wait_for(lambda: hazards, timeout=60)
    for text in ('not json', json.dumps({'stamp_ns': -1}), json.dumps({'stamp_ns': 5})):
        bad.publish(String(data=text))
    assert wait_for(lambda: sum(expert.rejected.values()) >= 3, timeout=30), expert.rejected
    # A loaded machine may step slowly (0.15x real time seen): wait while the stamps move.
    assert wait_while_progressing(lambda: statuses and statuses[-1]['done'],
                                  lambda: len(statuses)), statuses[-1:]
    final = statuses[-1]
    assert final['done_reason'] == 'route_finished', final['counts']
    assert final['driving_score'] == 100.0 and set(final['counts']) == {'route_finished'}
    reasons = {h.get('stop_reason') for h in hazards}
    assert 'red light' in reasons
    stamps = [s['stamp_ns'] for s in statuses]
    assert stamps == sorted(stamps)
