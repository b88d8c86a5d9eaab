"""
Routes over a CARLA map's lane graph, with ``RoadOption`` commands, and CARLA -> ROS poses.

CARLA's own ``GlobalRoutePlanner`` lives in the ``agents`` package, which the ``carla`` wheel
does not ship, so this is a small planner of the same kind over ``Map.get_topology()``: one
graph edge per lane segment, A* by length, LANEFOLLOW on roads and LEFT/RIGHT/STRAIGHT on
junction lanes by their change of heading. Works on any object with the ``carla.Map`` methods
used here (the real one, or the tests' fake). No ROS imports.

CARLA's frame is left-handed (y to the right, yaw clockwise); ROS is right-handed, so y and
yaw change sign, as carla_ros_bridge does (:func:`ros_pose`).
"""
import math
from typing import List, Tuple

from llava_drive.planning import GlobalPlan, RoadOption
import networkx

# A junction lane whose heading changes less than this goes straight on.
STRAIGHT_MAX_DEG = 30.0


def ros_pose(transform) -> Tuple[float, float, float]:
    """Return ``(x, y, yaw)`` in the ROS map frame (m, m, rad) of a ``carla.Transform``."""
    return (float(transform.location.x), -float(transform.location.y),
            -math.radians(float(transform.rotation.yaw)))


def heading_change_deg(start_yaw: float, end_yaw: float) -> float:
    """Return ``end - start`` in (-180, 180] degrees (CARLA: positive turns right)."""
    return (end_yaw - start_yaw + 180.0) % 360.0 - 180.0


def junction_option(entry, exit_) -> RoadOption:
    """Return the command of a junction lane from its entry and exit waypoints."""
    change = heading_change_deg(entry.transform.rotation.yaw, exit_.transform.rotation.yaw)
    if abs(change) < STRAIGHT_MAX_DEG:
        return RoadOption.STRAIGHT
    return RoadOption.RIGHT if change > 0 else RoadOption.LEFT


def _node(location) -> Tuple[int, int]:
    # Segment ends meet to the centimetre; decimetres absorb rounding in the OpenDRIVE data.
    return round(location.x * 10), round(location.y * 10)


class RoutePlanner:
    """
    Plans routes on one CARLA map.

    :param carla_map: a ``carla.Map``
    :param resolution: distance between dense route points (m)
    """

    def __init__(self, carla_map, resolution: float = 2.0):
        if not 0.1 <= resolution <= 50.0:
            raise ValueError(f'route resolution must be in [0.1, 50] m, got {resolution}')
        self.map = carla_map
        self.resolution = float(resolution)
        self.graph = networkx.DiGraph()
        self.lane_edges = {}
        for entry, exit_ in carla_map.get_topology():
            start, end = _node(entry.transform.location), _node(exit_.transform.location)
            if start == end:
                continue  # a degenerate segment
            path = [entry]
            waypoint = entry
            while True:
                ahead = waypoint.next(self.resolution)
                # Stay on this segment: the branch closest to its end.
                waypoint = min(ahead, key=lambda w: w.transform.location.distance(
                    exit_.transform.location))
                if waypoint.transform.location.distance(exit_.transform.location) \
                        < 0.5 * self.resolution:
                    break  # the exit itself, appended below
                path.append(waypoint)
            path.append(exit_)
            option = junction_option(entry, exit_) if entry.is_junction \
                else RoadOption.LANEFOLLOW
            length = sum(a.transform.location.distance(b.transform.location)
                         for a, b in zip(path, path[1:]))
            for node, location in ((start, entry), (end, exit_)):
                self.graph.add_node(node, x=location.transform.location.x,
                                    y=location.transform.location.y)
            self.graph.add_edge(start, end, path=path, option=option, length=length)
            self.lane_edges[(entry.road_id, entry.section_id, entry.lane_id)] = (start, end)

    def _edge_of(self, waypoint):
        key = (waypoint.road_id, waypoint.section_id, waypoint.lane_id)
        if key not in self.lane_edges:
            raise ValueError(f'no lane segment for road {key[0]} section {key[1]} lane '
                             f'{key[2]} in the map topology')
        return self.lane_edges[key]

    def trace(self, start_location, goal_location) -> List[Tuple[object, RoadOption]]:
        """
        Return ``(waypoint, option)`` pairs from ``start`` to ``goal`` along the lanes.

        :param start_location: a ``carla.Location`` (projected onto its lane)
        :param goal_location: a ``carla.Location`` (projected onto its lane)
        :raises ValueError: when no lane path leads from start to goal
        """
        start = self.map.get_waypoint(start_location)
        goal = self.map.get_waypoint(goal_location)
        start_edge, goal_edge = self._edge_of(start), self._edge_of(goal)
        if start_edge == goal_edge and goal.s >= start.s:
            edges = [start_edge]
        else:
            def distance(a, b):
                na, nb = self.graph.nodes[a], self.graph.nodes[b]
                return math.hypot(na['x'] - nb['x'], na['y'] - nb['y'])
            try:
                nodes = networkx.astar_path(self.graph, start_edge[1], goal_edge[0],
                                            heuristic=distance, weight='length')
            except networkx.NetworkXNoPath:
                raise ValueError(f'no route from {start_location} to {goal_location} '
                                 f'along the lanes') from None
            edges = [start_edge] + list(zip(nodes, nodes[1:])) + [goal_edge]
        route = []
        for k, (u, v) in enumerate(edges):
            data = self.graph.edges[u, v]
            for waypoint in data['path']:
                if k == 0 and waypoint.s < start.s - 1e-6 and len(edges) > 0:
                    continue  # behind the start
                if k == len(edges) - 1 and waypoint.s > goal.s + 1e-6:
                    break  # past the goal
                if route and route[-1][0].transform.location.distance(
                        waypoint.transform.location) < 0.5 * self.resolution:
                    continue  # the joint of two segments
                route.append((waypoint, data['option']))
        if not route or route[0][0].transform.location.distance(start.transform.location) > \
                self.resolution:
            route.insert(0, (start, self.graph.edges[start_edge]['option']))
        if route[-1][0].transform.location.distance(goal.transform.location) > 0.1:
            route.append((goal, self.graph.edges[goal_edge]['option']))
        return route

    def plan(self, start_location, goal_location) -> GlobalPlan:
        """Return the route from ``start`` to ``goal`` as a plan in the ROS map frame."""
        route = self.trace(start_location, goal_location)
        if len(route) < 2:
            raise ValueError(f'the route from {start_location} to {goal_location} is shorter '
                             f'than {self.resolution} m')
        return GlobalPlan.from_dense([ros_pose(w.transform) for w, _ in route],
                                     [option for _, option in route])
