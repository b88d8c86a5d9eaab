"""``llava-drive record``: the recording stack without ``ros2 launch`` (same nodes and YAML)."""
import argparse
import json
from pathlib import Path
import shutil
import sys
import tempfile
import time

from llava_drive.bag.writer import IMAGE_FORMATS
from llava_drive.carla.cli import add_bridge_arguments, bridge_parameters
from llava_drive.config_checks import default_of
from llava_drive.features.choices import ChoiceError, resolve_device
from llava_drive.features.spec import DTYPES
from llava_drive.nodes.interfaces import BACKENDS, FIRST_EVALUATION_SEED
from llava_drive.recording.session import DRIVERS, RecordingOptions
from llava_drive.sim.world import MAP_KINDS


def seed_list(text: str):
    """Parse ``3``, ``1,2,5`` or ranges such as ``1-24,30`` into a list of route seeds."""
    seeds = []
    for part in filter(None, (p.strip() for p in text.split(','))):
        first, _, last = part.partition('-')
        try:
            first, last = int(first), int(last or first)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'route seeds must be integers >= 0 or ranges like 3, 1,2,5 or 1-24: '
                f'{text!r}') from None
        if last < first:
            raise argparse.ArgumentTypeError(f'route seed range {part!r} goes downwards')
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise argparse.ArgumentTypeError(f'no route seed in {text!r}')
    return seeds


POLICY_MODEL_HELP = "LLaVA directory (default: the checkpoint's)"


def add_policy_model_arguments(parser, options, model_help: str = POLICY_MODEL_HELP) -> None:
    """
    Add ``--model``, ``--device`` and ``--dtype``: how a policy loads its LLaVA.

    :param parser: the (sub)parser or argument group
    :param options: the options dataclass the command fills (source of the defaults)
    :param model_help: help of ``--model``
    """
    parser.add_argument('--model', type=Path, default=default_of(options, 'model'),
                        metavar='DIR', help=model_help)
    parser.add_argument('--device', default=default_of(options, 'device'), type=torch_device,
                        help='policy device: cpu, cuda, cuda:1 (default: %(default)s)')
    parser.add_argument('--dtype', default=default_of(options, 'dtype'), choices=DTYPES,
                        help="model dtype (default: the checkpoint's)")


def torch_device(text: str) -> str:
    """Return ``text`` if this torch has that device (refused before any node starts)."""
    if text != 'cpu':  # cpu is always there: no torch import for the default
        try:
            resolve_device(text)
        except ChoiceError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_log_dir_argument(parser) -> None:
    """Add ``--log-dir`` for the logs of the node processes a command starts."""
    parser.add_argument('--log-dir', type=Path, default=None,
                        help='node logs (default: a temporary directory, kept on failure)')


def register(subparsers):
    """Add the ``record`` subcommand."""
    parser = subparsers.add_parser(
        'record', help='record image/control pairs from the simulator or CARLA',
        description='Run a bridge (sim_bridge, carla_bridge, or expect a running '
                    'carla_ros_bridge), the expert and the recorder as ROS 2 nodes with the '
                    'parameters of config/*.yaml, record for DURATION seconds of simulated '
                    'time, close the bag and print its summary. In the simulator the stack '
                    'runs in synchronous mode (unless --realtime), faster than real time.')
    parser.add_argument('--backend', choices=BACKENDS,
                        default=default_of(RecordingOptions, 'backend'),
                        help='sim: embedded simulator; carla: a CARLA server through our '
                             'carla_bridge node; carla_ros_bridge: a running carla_ros_bridge '
                             '(default: %(default)s)')
    parser.add_argument('--duration', type=float,
                        default=default_of(RecordingOptions, 'duration'),
                        help='seconds of recorded (simulated) time (default: %(default)s)')
    parser.add_argument('--map', choices=MAP_KINDS,
                        default=default_of(RecordingOptions, 'map_kind'),
                        help='embedded world: road (one road, lane keeping) or '
                             'town (junctions, traffic, lights; seeds name town routes such '
                             "as the town-dev benchmark's 9001-9010) (default: %(default)s)")
    parser.add_argument('--seed', '--seeds', dest='seeds', type=seed_list,
                        default=default_of(RecordingOptions, 'route_seeds'),
                        help='route seed(s), e.g. 3, 1,2,5 or 1-24 (training routes are below '
                             f'{FIRST_EVALUATION_SEED}) (default: %(default)s)')
    parser.add_argument('--out', type=Path, default=None,
                        help='bag directory (default bags/<backend>_<time>)')
    parser.add_argument('--image-format', choices=IMAGE_FORMATS,
                        default=default_of(RecordingOptions, 'image_format'),
                        help='image storage in the bag (default: %(default)s)')
    parser.add_argument('--width', type=int, default=default_of(RecordingOptions, 'width'),
                        help='camera width (sim, carla) (default: %(default)s)')
    parser.add_argument('--height', type=int, default=default_of(RecordingOptions, 'height'),
                        help='camera height (sim, carla) (default: %(default)s)')
    parser.add_argument('--noise', action='store_true',
                        help="perturb the expert's executed steering (labels stay clean): "
                             'recovery data, tuned in config/expert.yaml')
    parser.add_argument('--realtime', action='store_true',
                        help='sim: step in real time instead of synchronous mode')
    parser.add_argument('--no-randomize', dest='randomize', action='store_false',
                        help='sim: fixed lighting, colours and camera')
    parser.add_argument('--timeout', type=float, default=default_of(RecordingOptions, 'timeout'),
                        help='wall-clock limit in seconds (default: 10 x duration + 60)')
    add_log_dir_argument(parser)
    add_bridge_arguments(parser)
    dagger = parser.add_argument_group(
        'DAgger', 'let a trained policy drive while the expert only labels (its clean '
                  'command is recorded as the control)')
    dagger.add_argument('--driver', choices=DRIVERS,
                        default=default_of(RecordingOptions, 'driver'),
                        help='who drives the car (default: %(default)s)')
    dagger.add_argument('--checkpoint', type=Path, default=None, metavar='DIR',
                        help='trained checkpoint (--driver policy)')
    add_policy_model_arguments(dagger, RecordingOptions)
    parser.set_defaults(func=run, make_options=recording_options)


def recording_options(args, log_dir=None) -> RecordingOptions:
    """
    Return the validated options of ``llava-drive record``.

    :param args: parsed arguments
    :param log_dir: node log directory when ``--log-dir`` is not given
    """
    out = args.out or Path('bags') / time.strftime(f'{args.backend}_%Y%m%d_%H%M%S')
    return RecordingOptions(
        backend=args.backend, duration=args.duration, route_seeds=args.seeds, out=out,
        image_format=args.image_format, width=args.width, height=args.height,
        noise=args.noise, synchronous=not args.realtime,
        randomize=args.randomize, timeout=args.timeout, log_dir=args.log_dir or log_dir,
        driver=args.driver, checkpoint=args.checkpoint, model=args.model,
        device=args.device, dtype=args.dtype, carla=bridge_parameters(args),
        map_kind=args.map)


def run(args) -> int:
    """
    Run the recording stack; return 0, 1 when it failed (any recorder error), 2 when busy.

    :param args: parsed arguments
    """
    from llava_drive.bringup.supervisor import DomainBusy
    from llava_drive.recording.session import record
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix='llava_drive_record_'))
    try:
        result = record(recording_options(args, log_dir), progress=True)
    except DomainBusy as error:  # nothing started, nothing to keep
        print(f'llava-drive record: {error}', file=sys.stderr)
        if args.log_dir is None:
            shutil.rmtree(log_dir, ignore_errors=True)
        return 2
    except (RuntimeError, ValueError, FileExistsError) as error:
        print(f'llava-drive record: {error}', file=sys.stderr)
        print(f'node logs: {log_dir}', file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    if args.log_dir is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0
