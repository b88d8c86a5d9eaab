"""``llava-drive carla-setup``: prepare a running CARLA server (town, step, weather, traffic)."""
import argparse
import json
import sys
import time

from llava_drive.carla.world import MAX_FIXED_DELTA, setup_world, WorldSettings
from llava_drive.config_checks import default_of


# (option, carla_bridge parameter, type, help) of --backend carla; unset ones keep
# config/carla_bridge.yaml.
BRIDGE_OPTIONS = [
    ('--carla-host', 'host', str, 'CARLA server host'),
    ('--carla-port', 'port', int, 'CARLA server RPC port'),
    ('--carla-town', 'town', str, 'map, loaded once unless already loaded'),
    ('--carla-traffic', 'traffic', int, 'autopilot cars driven by the traffic manager'),
    ('--carla-spawn-point', 'spawn_point', int,
     'index of the ego spawn point (default: drawn from the route seed)'),
    ('--carla-goal', 'goal', int, 'index of the goal spawn point (default: drawn from the seed)'),
    ('--carla-objects-file', 'objects_file', str,
     'carla_spawn_objects JSON of the ego and its camera (default config/carla_objects.json)'),
]


def add_bridge_arguments(parser) -> None:
    """Add the options of the ``carla`` backend (our carla_bridge node) to ``parser``."""
    group = parser.add_argument_group(
        'CARLA (--backend carla)', 'a running CARLA 0.9.14-0.9.16 server through the '
        'carla_bridge node (pip install carla==<server version>); an option not given keeps '
        'the value of config/carla_bridge.yaml')
    for option, name, kind, text in BRIDGE_OPTIONS:
        # Unset options stay out of args (SUPPRESS): the YAML's defaults apply.
        group.add_argument(option, dest=f'carla_{name}', type=kind, default=argparse.SUPPRESS,
                           help=text)


def bridge_parameters(args) -> dict:
    """Return the carla_bridge parameters given on the command line."""
    return {name: getattr(args, f'carla_{name}') for _, name, _, _ in BRIDGE_OPTIONS
            if getattr(args, f'carla_{name}', None) is not None}


def register(subparsers):
    """
    Add the ``carla-setup`` subcommand.

    :param subparsers: the ``add_subparsers()`` result of the ``llava-drive`` parser.
    """
    parser = subparsers.add_parser(
        'carla-setup', help='prepare a running CARLA server: town, time step, weather, traffic',
        description='Load the town (unless loaded), apply synchronous mode and the fixed time '
                    'step, set the weather and spawn autopilot traffic, for the carla_ros_bridge '
                    'backend: run it after "ros2 launch llava_drive record.launch.py '
                    'backend:=carla_ros_bridge" is up (the bridge loads the town when it '
                    'starts). Only the weather is needed there: the bridge ticks the world in '
                    'synchronous mode and a traffic manager here would not move its cars '
                    '(use --backend carla, whose bridge runs the traffic manager, for '
                    'traffic). With --traffic it keeps running; Ctrl-C removes the traffic.')
    parser.add_argument('--host', default=default_of(setup_world, 'host'),
                        help='CARLA server host (default: %(default)s)')
    parser.add_argument('--port', type=int, default=default_of(setup_world, 'port'),
                        help='CARLA server RPC port (default: %(default)s)')
    parser.add_argument('--town', default=default_of(WorldSettings, 'town'),
                        help='map to load, e.g. Town02 (default: %(default)s)')
    parser.add_argument('--asynchronous', dest='synchronous', action='store_false',
                        help='asynchronous mode (default: synchronous, the bridge ticks)')
    parser.add_argument('--fixed-delta', type=float,
                        default=default_of(WorldSettings, 'fixed_delta'),
                        help=f'simulation step in seconds, at most {MAX_FIXED_DELTA} '
                             '(default: %(default)s)')
    parser.add_argument('--weather', default=default_of(WorldSettings, 'weather'),
                        help='carla.WeatherParameters preset, e.g. WetCloudySunset '
                             '(default: %(default)s)')
    parser.add_argument('--traffic', type=int, default=default_of(WorldSettings, 'traffic'),
                        help='autopilot vehicles to spawn (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=default_of(WorldSettings, 'seed'),
                        help='seed of the traffic (default: %(default)s)')
    parser.add_argument('--timeout', type=float, default=default_of(setup_world, 'timeout'),
                        help='seconds to wait for the server (default: %(default)s)')
    parser.set_defaults(func=run)


def run(args) -> int:
    """Set up the world, print what was applied, and serve the traffic until Ctrl-C."""
    from llava_drive.carla.world import CarlaUnavailable
    try:
        world = setup_world(args.host, args.port, args.town, synchronous=args.synchronous,
                            fixed_delta=args.fixed_delta, weather=args.weather,
                            traffic=args.traffic, seed=args.seed, timeout=args.timeout)
    except (CarlaUnavailable, ValueError) as error:
        print(f'llava-drive carla-setup: {error}', file=sys.stderr)
        return 1
    print(json.dumps(world.summary(), indent=2))
    if not world.vehicles:
        return 0
    print(f'serving the traffic manager for {len(world.vehicles)} vehicles; Ctrl-C removes '
          'them', file=sys.stderr)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print(f'removed {world.destroy_traffic()} vehicles', file=sys.stderr)
    return 0
