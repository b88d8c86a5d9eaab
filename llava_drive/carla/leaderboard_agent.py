"""
A CARLA Leaderboard 2.x agent (also for Bench2Drive) driving with a trained checkpoint.

The leaderboard imports this file (``--agent``) and calls :func:`get_entry_point`; the agent
then drives with the same pieces as the policy node: :func:`llava_drive.policy.inference.
load_policy` (extractor + head, feature spec checked), :meth:`InferenceWorker.infer` and the
:class:`SafetyGate` (clamping, throttle/brake separation, steering smoothing and rate limit,
brake on a NaN output or an inference error). Its camera is the ``rgb_front`` of
``config/carla_objects.json``, the one the training data was recorded with.

``--agent-config`` is a checkpoint directory, or a YAML file with ``checkpoint`` and optionally
``model``, ``device``, ``dtype``, ``objects_file`` and ``gate`` (``GateConfig`` fields)::

    checkpoint: trained_models/run
    device: cuda
    gate: {steer_smoothing: 0.6}

Needs leaderboard and scenario_runner on ``PYTHONPATH`` (they provide the base class) and the
``carla`` package of the server.
"""
import math
from pathlib import Path

from llava_drive.carla.session import load_objects, vehicle_control
from llava_drive.carla.world import import_carla
from llava_drive.control import FULL_BRAKE

try:
    from leaderboard.autoagents.autonomous_agent import AutonomousAgent, Track
except ImportError:  # outside the leaderboard: importable, but only usable inside it
    AutonomousAgent, Track = object, None

SPEED_SENSOR = 'speed'


def get_entry_point() -> str:
    """Return the agent class name (the leaderboard's entry point convention)."""
    return 'LlavaDriveAgent'


def read_agent_config(path) -> dict:
    """
    Return the agent settings from a checkpoint directory or a YAML file.

    :param path: ``--agent-config``
    :raises ValueError: naming the path and what is wrong with it
    """
    import yaml
    path = Path(path)
    if path.is_dir():
        return {'checkpoint': str(path)}
    try:
        settings = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f'agent config {path}: {error}') from None
    if not isinstance(settings, dict) or not settings.get('checkpoint'):
        raise ValueError(f'agent config {path} must be a checkpoint directory or a YAML '
                         f'mapping with "checkpoint", got {settings!r}')
    unknown = set(settings) - {'checkpoint', 'model', 'device', 'dtype', 'objects_file', 'gate'}
    if unknown:
        raise ValueError(f'agent config {path}: unknown keys {sorted(unknown)}')
    base = path.parent  # relative paths are relative to the file
    for key in ('checkpoint', 'model', 'objects_file'):
        if settings.get(key) and not Path(settings[key]).is_absolute():
            settings[key] = str(base / settings[key])
    return settings


class LlavaDriveAgent(AutonomousAgent):
    """Leaderboard agent: front camera + speed in, the gated policy control out."""

    def setup(self, path_to_conf_file):
        """Load the checkpoint and its extractor; set the SENSORS track."""
        from llava_drive.policy.inference import InferenceWorker, load_policy
        from llava_drive.policy.safety_gate import GateConfig, SafetyGate

        if Track is None:
            raise RuntimeError('leaderboard is not importable: put carla-simulator/leaderboard '
                               'and scenario_runner on PYTHONPATH')
        self.track = Track.SENSORS
        settings = read_agent_config(path_to_conf_file)
        self.carla = import_carla()
        self.camera = load_objects(settings.get('objects_file')).camera
        self.policy = load_policy(settings['checkpoint'], settings.get('model'),
                                  settings.get('device', 'cpu'), settings.get('dtype'))
        # Run on the leaderboard's thread: it waits for run_step anyway.
        self.worker = InferenceWorker(self.policy, on_result=lambda result: None)
        self.gate = SafetyGate(GateConfig(**settings.get('gate', {})))
        self.steps = 0
        self.inference_errors = 0

    def sensors(self):
        """Return the camera of the objects file and the speedometer."""
        cam = self.camera
        return [
            {'type': 'sensor.camera.rgb', 'id': cam.name, 'x': cam.x, 'y': cam.y, 'z': cam.z,
             'roll': cam.roll, 'pitch': cam.pitch, 'yaw': cam.yaw, 'width': cam.width,
             'height': cam.height, 'fov': cam.fov},
            {'type': 'sensor.speedometer', 'id': SPEED_SENSOR, 'reading_frequency': 20},
        ]

    def run_step(self, input_data, timestamp):
        """Return the ``carla.VehicleControl`` for this tick's camera image and speed."""
        from llava_drive.policy.inference import Frame

        self.steps += 1
        stamp_ns = int(round(float(timestamp) * 1e9))
        # The gate's clock is simulated time: the leaderboard's world waits for run_step, so
        # an image is never stale however long the model takes (wall time would brake).
        now = float(timestamp)
        _, image = input_data[self.camera.name]
        speed = math.nan
        if SPEED_SENSOR in input_data:
            speed = float(input_data[SPEED_SENSOR][1].get('speed', math.nan))
        self.gate.on_image(now, stamp_ns)
        try:
            result = self.worker.infer(Frame(stamp_ns, image, 'bgra8', now, speed))
        except Exception:  # noqa: B902 - a failed frame brakes; the route goes on
            self.inference_errors += 1
            return vehicle_control(self.carla, FULL_BRAKE)
        command = self.gate.on_inference(stamp_ns, result.control, now, now)
        return vehicle_control(self.carla, command.control)

    def destroy(self):
        """Release the model."""
        self.policy = None
        self.worker = None
