"""
Route data of a recorded bag: global plans, per-frame route commands, traffic light states.

Town recordings carry each episode's global plan in its start marker (``global_plan``) and the
light states per frame on :data:`~llava_drive.bag.format.TRAFFIC_LIGHTS_TOPIC`; the command in
effect for a frame is :func:`llava_drive.planning.route_command` of that plan and the frame's
recorded odometry, carried along each episode exactly as a live node does. Bags without them
(road worlds, older bags) give no plans, no commands and no lights.
"""
from typing import Dict, List, Tuple

from llava_drive.bag import format as bagfmt
from llava_drive.bag.reader import read_json_topic, read_odometry
from llava_drive.planning import GlobalPlan, route_command, RouteCommand


def read_plans(path) -> Dict[int, GlobalPlan]:
    """
    Return ``{episode: GlobalPlan}`` from the bag's episode start markers.

    :param path: the bag directory
    :raises ValueError: naming the episode whose recorded plan is invalid
    """
    plans = {}
    for _, info in read_json_topic(path, bagfmt.EPISODE_TOPIC):
        if info.get('event') == 'start' and 'global_plan' in info:
            try:
                plans[int(info['episode'])] = GlobalPlan.from_dict(info['global_plan'])
            except (ValueError, TypeError, KeyError) as error:
                raise ValueError(f'{path}: episode {info.get("episode")}: bad global plan: '
                                 f'{error}') from None
    return plans


def read_traffic_lights(path) -> List[Tuple[int, list]]:
    """
    Return ``[(stamp_ns, lights)]`` in stamp order (empty for bags without light states).

    :param path: the bag directory
    """
    return sorted((int(info.get('stamp_ns', stamp)), info['lights'])
                  for stamp, info in read_json_topic(path, bagfmt.TRAFFIC_LIGHTS_TOPIC)
                  if isinstance(info.get('lights'), list))


def frame_commands(path) -> Dict[int, RouteCommand]:
    """
    Return ``{stamp_ns: RouteCommand}`` for every recorded odometry frame of a planned episode.

    :param path: the bag directory
    """
    plans = read_plans(path)
    if not plans:
        return {}
    starts = sorted((stamp, int(info['episode']))
                    for stamp, info in read_json_topic(path, bagfmt.EPISODE_TOPIC)
                    if info.get('event') == 'start')
    commands: Dict[int, RouteCommand] = {}
    episode, progress = None, None
    for stamp, (x, y, yaw) in sorted(read_odometry(path).items()):
        current = episode
        for start, number in starts:
            if start <= stamp:
                current = number
        if current != episode:
            episode, progress = current, None  # a new route: locate from scratch
        plan = plans.get(episode)
        if plan is None:
            continue
        result = route_command(plan, x, y, yaw, progress)
        progress = result.progress
        commands[stamp] = result
    return commands
