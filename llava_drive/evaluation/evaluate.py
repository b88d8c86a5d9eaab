"""
Closed-loop evaluation over ROS, in the embedded simulator or CARLA (architecture: Evaluation).

For every driver (the policy checkpoint, the expert, named baseline checkpoints), every route
and every repetition, :func:`evaluate` starts the bridge (``sim_bridge``, or ``carla_bridge``
on a CARLA server: synchronous, one route, no looping) and the driver as processes, watches
``/llava_drive/sim/status`` for the trajectory and ``/llava_drive/sim/episode`` for the route
plan and the final score (both bridges score by the same leaderboard rules), then writes
``summary.json``,
``report.md``, ``episodes.json``, one trajectory plot per route and an MP4 of the first
episode (the policy's annotated camera view when it publishes one).
"""
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cached_property
import math
from pathlib import Path
import re
import shutil
import tempfile
from typing import Dict, List, Optional

from llava_drive.bringup.node_specs import bridge_specs, expert_spec, policy_spec
from llava_drive.bringup.supervisor import Supervisor
from llava_drive.evaluation.metrics import (EpisodeResult, summary_from_dict, Trajectory,
                                            with_time_limit)
from llava_drive.evaluation.report import (EXPERT, plot_routes, POLICY,
                                           score_sets, score_table, summary_document,
                                           write_json, write_markdown)
from llava_drive.nodes.interfaces import (CAMERA_HEIGHT, CAMERA_WIDTH, EVALUATION_BACKENDS,
                                          FIRST_EVALUATION_SEED,
                                          POLICY_ANNOTATED_TOPIC, SIM_EPISODE_TOPIC,
                                          SIM_STATUS_TOPIC, vehicle_topics)
from llava_drive.nodes.status import PayloadReader, SimEpisode, SimStatus
from llava_drive.planning import GlobalPlan
from llava_drive.sim.road import Route, RouteConfig
from llava_drive.sim.scoring import time_limit_for
from llava_drive.sim.world import MAP_KINDS, SimConfig
from llava_drive.visual.video import Mp4Writer


def _is_checkpoint(path: Path) -> bool:
    return (path / 'config.json').is_file() and (path / 'model.safetensors').is_file()


@dataclass
class EvaluationOptions:
    """
    What to evaluate and how; validated so a bad value fails before any node starts.

    :param checkpoint: trained policy checkpoint; None evaluates only the expert/baselines
    :param routes: route seeds (held out: 101 and up unless ``allow_training_routes``)
    :param repetitions: episodes per route and driver (at least 3 for a spread)
    :param out: report directory (must not exist or be empty)
    :param width: camera width (px)
    :param height: camera height (px)
    :param route_length: route length (m)
    :param max_route_time: simulated seconds per route before the evaluator ends it as a
        route timeout (no penalty); None leaves it to the simulator's leaderboard limit (300 s
        + 1.2 s per metre completed at 30 km/h)
    :param model: LLaVA directory for every checkpoint; None = the path each one stores
    :param device: torch device of the policy nodes
    :param dtype: model dtype of the policy nodes; None = each checkpoint's
    :param baselines: extra checkpoints evaluated under a name (e.g. ``token0``)
    :param expert: also drive the routes with the expert (its score beside the policy's)
    :param allow_training_routes: accept route seeds 1-100
    :param video: write an MP4 of the first episode
    :param control_timeout: wall seconds the simulator waits for a control per frame
    :param episode_timeout: wall seconds per episode before giving up (default from the
        route time)
    :param log_dir: node logs (default: a temporary directory, kept only on failure)
    :param notes: free-text lines added to the report
    :param map_kind: ``road`` (one road) or ``town`` (town routes, e.g. a town benchmark's)
    :param backend: ``sim`` (embedded simulator) or ``carla`` (a CARLA server through
        carla_bridge: each route seed draws a start and goal spawn point on its map)
    :param carla: carla_bridge parameters (``host``, ``town``...) for the ``carla`` backend
    """

    checkpoint: Optional[Path] = None
    routes: List[int] = field(default_factory=lambda: list(range(FIRST_EVALUATION_SEED,
                                                                 FIRST_EVALUATION_SEED + 3)))
    repetitions: int = 3
    out: Path = Path('reports/evaluation')
    width: int = CAMERA_WIDTH
    height: int = CAMERA_HEIGHT
    route_length: float = RouteConfig.length_m
    max_route_time: Optional[float] = None
    model: Optional[Path] = None
    device: str = 'cpu'
    dtype: Optional[str] = None
    baselines: Dict[str, Path] = field(default_factory=dict)
    expert: bool = True
    allow_training_routes: bool = False
    video: bool = True
    control_timeout: float = 10.0
    episode_timeout: Optional[float] = None
    log_dir: Optional[Path] = None
    notes: List[str] = field(default_factory=list)
    map_kind: str = 'road'
    backend: str = 'sim'
    carla: dict = field(default_factory=dict)

    def __post_init__(self):
        """Check every field, naming the bad value."""
        if self.backend not in EVALUATION_BACKENDS:
            raise ValueError(f'backend must be one of {EVALUATION_BACKENDS}, got '
                             f'{self.backend!r}')
        if self.map_kind not in MAP_KINDS:
            raise ValueError(f'map_kind must be one of {MAP_KINDS}, got {self.map_kind!r}')
        if self.backend == 'carla' and self.map_kind != 'road':
            raise ValueError(f"map {self.map_kind} is the embedded simulator's; on CARLA the "
                             'routes are drawn on the --carla-town map')
        self.out = Path(self.out)
        if self.checkpoint is not None:
            self.checkpoint = Path(self.checkpoint)
            if not _is_checkpoint(self.checkpoint):
                raise ValueError(f'checkpoint {self.checkpoint} is not a checkpoint directory '
                                 '(needs config.json and model.safetensors)')
        self.baselines = {str(k): Path(v) for k, v in dict(self.baselines).items()}
        for name, path in self.baselines.items():
            if not re.fullmatch(r'[A-Za-z0-9_.-]+', name) or name in (POLICY, EXPERT):
                raise ValueError(f'baseline name {name!r} must be letters, digits, _ . - and '
                                 f'not {POLICY!r} or {EXPERT!r}')
            if not _is_checkpoint(path):
                raise ValueError(f'baseline {name}: {path} is not a checkpoint directory')
        if self.checkpoint is None and not self.baselines and not self.expert:
            raise ValueError('nothing to evaluate: give a checkpoint, a baseline or the expert')
        if not self.routes or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                  for s in self.routes):
            raise ValueError(f'routes must be non-negative integer seeds, got {self.routes!r}')
        if len(set(self.routes)) != len(self.routes):
            raise ValueError(f'routes repeat a seed: {self.routes!r}')
        training = [s for s in self.routes if s < FIRST_EVALUATION_SEED]
        if training and not self.allow_training_routes:
            raise ValueError(f'routes {training} are recording (training) routes (below '
                             f'{FIRST_EVALUATION_SEED}); evaluate on held-out routes '
                             f'({FIRST_EVALUATION_SEED} and up) or pass --allow-training-routes')
        if isinstance(self.repetitions, bool) or not isinstance(self.repetitions, int) or \
                self.repetitions < 1:
            raise ValueError(f'repetitions must be an integer >= 1, got {self.repetitions!r}')
        for name in ('width', 'height'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 4096:
                raise ValueError(f'{name} must be an integer in [16, 4096], got {value!r}')
        if not 50.0 <= self.route_length <= 20000.0:
            raise ValueError(f'route_length must be in [50, 20000] m, got {self.route_length}')
        if self.max_route_time is not None and not self.max_route_time > 0:
            raise ValueError(f'max_route_time must be > 0 s, got {self.max_route_time}')
        if not self.control_timeout > 0:
            raise ValueError(f'control_timeout must be > 0 s, got {self.control_timeout}')
        if self.model is not None:
            self.model = Path(self.model)
            if not (self.model / 'config.json').is_file():
                raise ValueError(f'model {self.model} is not a Hugging Face model directory')
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise FileExistsError(f'{self.out} exists and is not empty; choose another --out')
        if self.log_dir is not None:
            self.log_dir = Path(self.log_dir)
        if self.episode_timeout is None:
            self.episode_timeout = 120.0 + 10.0 * self.route_time_limit()

    @cached_property
    def route_lengths(self) -> Dict[int, float]:
        """Return each route's length (m): a town route has its own, not ``route_length``."""
        if self.map_kind != 'town':
            return {seed: float(self.route_length) for seed in self.routes}
        from llava_drive.sim.town.world import town_and_route
        return {seed: float(town_and_route(seed)[1].length) for seed in self.routes}

    def route_time_limit(self) -> float:
        """Return the simulated seconds the longest route may take (evaluator's or simulator's)."""
        budget = time_limit_for(max(self.route_lengths.values()), SimConfig.speed_limit_mps)
        return min(budget, self.max_route_time) if self.max_route_time else budget

    def drivers(self) -> Dict[str, Optional[Path]]:
        """Return ``{driver name: checkpoint or None (expert)}`` in report order."""
        drivers = {}
        if self.checkpoint is not None:
            drivers[POLICY] = self.checkpoint
        if self.expert:
            drivers[EXPERT] = None
        drivers.update(self.baselines)
        return drivers

    def node_specs(self, driver: str, seed: int, watch_camera: bool = True,
                   annotate: bool = False, repetition: int = 0) -> list:
        """
        Return the nodes of one episode: the bridge on ``seed`` plus the driver.

        :param driver: a name from :meth:`drivers`
        :param seed: route seed
        :param watch_camera: the evaluator subscribes to the camera too (it does: the
            simulator waits for it, see :class:`EpisodeWatcher`)
        :param annotate: ask the policy for its annotated image
        :param repetition: repetition index: each one draws another appearance of the route
            (embedded simulator; CARLA drives the same route again)
        """
        checkpoint = self.drivers()[driver]
        # The simulator waits for the camera subscribers it expects (policy, evaluator) so
        # no frame is published before they listen.
        subscribers = (checkpoint is not None) + bool(watch_camera)
        # carla_bridge ends the route at the evaluator's limit itself (0: the leaderboard's).
        specs = bridge_specs(
            self.backend, [seed], self.width, self.height,
            sim={'variation': int(repetition), 'map': self.map_kind},
            carla={'time_limit': float(self.max_route_time or 0.0), **self.carla},
            loop_routes=False, route_length=float(self.route_length),
            wait_for_image_subscribers=int(subscribers),
            control_timeout=float(self.control_timeout))
        if checkpoint is None:
            # In a town the expert drives by the world's hazards (lights, vehicles ahead).
            town = {'privileged_hazards': True} if self.map_kind == 'town' else {}
            specs.append(expert_spec(drive=True, noise=False, backend=self.backend, **town))
        else:
            # Both bridges step once per control here: a slow inference is never late.
            specs.append(policy_spec(checkpoint, self.model, self.device, self.dtype,
                                     name=driver, publish_annotated=bool(annotate),
                                     synchronous=True))
        return specs

    def route_of(self, seed: int):
        """
        Return ``(route line, single-road Route or None, GlobalPlan or None, scenarios)``.

        :param seed: route seed
        """
        if self.map_kind == 'town':
            from llava_drive.sim.town.world import town_and_route
            _, town_route = town_and_route(seed)
            return (town_route.ego_route(), None, town_route.global_plan(),
                    (str(town_route.scenario),))
        route = Route.generate(seed, RouteConfig(length_m=float(self.route_length)))
        return route, route, None, ()

    def config(self) -> dict:
        """Return the options as JSON data (paths as strings)."""
        data = asdict(self)
        for key, value in list(data.items()):
            if isinstance(value, Path):
                data[key] = str(value)
        data['baselines'] = {k: str(v) for k, v in self.baselines.items()}
        data['route_time_limit'] = self.route_time_limit()
        data['route_lengths'] = {str(k): v for k, v in self.route_lengths.items()}
        return data


class EpisodeWatcher:
    """
    The evaluator's view of one running episode: status frames, end marker, video frames.

    Its rclpy node is created per episode so no sample of an earlier stack is taken.

    :param context: the rclpy context
    :param video: where to write the video, or None
    :param route_seed: the route this episode drives
    """

    def __init__(self, context, route_seed: int, video: Optional[Mp4Writer] = None):
        import rclpy
        from llava_drive.nodes.interfaces import CAMERA_QOS, LATCHED_QOS, STATUS_QOS
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        self.route_seed = route_seed
        self.trajectory = Trajectory()
        self.last_status: Optional[dict] = None
        self.end: Optional[dict] = None
        self.plan: Optional[GlobalPlan] = None
        self.video = video
        self.annotated_video: Optional[Mp4Writer] = None
        self.node = rclpy.create_node('llava_drive_evaluation_monitor', context=context)
        self.statuses = PayloadReader(SimStatus, self.node.get_logger().warning)
        self.markers = PayloadReader(SimEpisode, self.node.get_logger().warning)
        self.node.create_subscription(String, SIM_STATUS_TOPIC, self.on_status,
                                      STATUS_QOS)
        self.node.create_subscription(String, SIM_EPISODE_TOPIC, self.on_episode, LATCHED_QOS)
        # Always on: the simulator waits for this camera subscriber, which guarantees the
        # watcher is discovered before the first frame (else the first statuses are lost).
        # The evaluation stack runs the simulator's default role name (config/*.yaml).
        self._camera_sub = self.node.create_subscription(
            Image, vehicle_topics().camera_image, self.on_camera, CAMERA_QOS)
        if video is not None:
            self.node.create_subscription(Image, POLICY_ANNOTATED_TOPIC, self.on_annotated, 10)
        self._status_by_stamp: Dict[int, dict] = {}
        self.rejected_images: Counter = Counter()

    def on_status(self, msg) -> None:
        """Keep the frame (trajectory) and the latest score."""
        status = self.statuses.parse(msg.data)
        if status is None or status.route_seed != self.route_seed:
            return
        status = status.to_dict()
        self.last_status = status
        self.trajectory.append_status(status)
        if self.video is not None:
            self._status_by_stamp[int(status['stamp_ns'])] = status
            if len(self._status_by_stamp) > 200:
                self._status_by_stamp.pop(next(iter(self._status_by_stamp)))

    def on_episode(self, msg) -> None:
        """Take the route plan of the start marker, and the end marker of this route."""
        marker = self.markers.parse(msg.data)
        if marker is None or marker.route_seed != self.route_seed:
            return
        if marker.event == 'start' and marker.global_plan is not None:
            try:
                self.plan = GlobalPlan.from_dict(marker.global_plan)
            except ValueError as error:
                self.node.get_logger().warning(f'ignored the route plan of the start marker: '
                                               f'{error}')
        elif marker.event == 'end' and self.last_status is not None:
            self.end = marker.to_dict()

    def on_camera(self, msg) -> None:
        """Video fallback: the raw camera with the control drawn on it."""
        from llava_drive.visual.overlay import draw_overlay
        from llava_drive.control import Control
        from llava_drive.image_codec import to_rgb
        from llava_drive.nodes.control_codec import stamp_to_ns

        if self.video is None:
            return
        image = self.decode(msg)
        if image is None:
            return
        status = self._status_by_stamp.get(stamp_to_ns(msg.header.stamp), self.last_status)
        status = status or {}
        control = Control(*status.get('control', (0.0, 0.0, 0.0)))
        frame = draw_overlay(to_rgb(image, msg.encoding), control,
                             float(status.get('speed', math.nan)), float(status.get('time', 0.0)),
                             int(status.get('episode', -1)))
        self.video.write(frame)

    def on_annotated(self, msg) -> None:
        """Write the policy's annotated frame (beside the fallback, see finish_video)."""
        from llava_drive.image_codec import to_bgr

        image = self.decode(msg)
        if image is None:
            return
        if self.annotated_video is None:
            self.annotated_video = Mp4Writer(self.video.path.with_name(
                self.video.path.stem + '_annotated.mp4'), self.video.fps)
        self.annotated_video.write(to_bgr(image, msg.encoding))

    def decode(self, msg):
        """
        Return the pixels of Image ``msg``, or None for a malformed one.

        Any node on the domain may publish on these topics: a bad frame is counted by reason
        (first one logged) and skipped, never raised into the executor (it would end the run).
        """
        from llava_drive.image_codec import decode_raw, ImageError

        try:
            return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        except ImageError as error:
            self.rejected_images[error.reason] += 1
            if self.rejected_images[error.reason] == 1:
                self.node.get_logger().warning(
                    f'ignored an image ({error}); further ones for this reason are only '
                    f'counted')
            return None

    def finish_video(self):
        """
        Close the video; return ``(path, note)`` or ``(None, '')`` when nothing came.

        The annotated view wins when it covers at least half the frames (its publisher keeps
        only the newest image, so a busy machine drops some); else the raw camera stays.
        """
        if self.video is None:
            return None, ''
        annotated = self.annotated_video
        if annotated is not None and annotated.frames >= 0.5 * self.video.frames:
            self.video.discard()
            annotated.close().replace(self.video.path)
            return self.video.path, '(annotated camera view published by the policy)'
        if annotated is not None:
            annotated.discard()
        return self.video.close(), '(raw camera with the control in effect drawn on it)'

    def destroy(self) -> None:
        """Destroy the node."""
        self.node.destroy_node()


def run_episode(options: EvaluationOptions, supervisor, driver: str, seed: int,
                repetition: int, log_dir: Path, video_path: Optional[Path] = None,
                on_progress=None):
    """
    Run one episode and return ``(EpisodeResult, video path, video note, route plan)``.

    :param options: evaluation options
    :param supervisor: the running :class:`~llava_drive.bringup.supervisor.Supervisor`
    :param driver: driver name
    :param seed: route seed
    :param repetition: repetition index
    :param log_dir: node logs of this episode
    :param video_path: write the video of this episode here, or None
    :param on_progress: called with the latest status dict now and then
    :raises RuntimeError: a node died or the episode did not end in time
    :raises KeyboardInterrupt: SIGINT or SIGTERM stopped the episode
    """
    video = Mp4Writer(video_path) if video_path is not None else None
    watcher = EpisodeWatcher(supervisor.context, seed, video)
    limit = options.route_time_limit()
    reported = [0.0]

    def done(elapsed: float):
        status = watcher.last_status
        if watcher.end is not None:
            return 'simulator'
        if status is not None and status['time'] >= limit and \
                options.max_route_time is not None and options.backend == 'sim':
            return 'time_limit'
        if elapsed > options.episode_timeout:
            raise RuntimeError(
                f'no end of the route after '
                f'{options.episode_timeout:.0f} s wall time (simulated '
                f'{status["time"] if status else 0:.1f} s); logs in {log_dir}')
        if on_progress and status is not None and elapsed - reported[0] > 0.25:
            reported[0] = elapsed
            on_progress(status)
        return None

    specs = options.node_specs(driver, seed, annotate=video is not None, repetition=repetition)
    try:
        outcome = supervisor.run(specs, watcher.node, done, log_dir)
    except RuntimeError as error:
        raise RuntimeError(f'{driver} route {seed}: {error}') from None
    finally:
        video_file, video_note = watcher.finish_video()
        watcher.destroy()
    ended_by = outcome.reason
    if ended_by == 'interrupted':
        raise KeyboardInterrupt
    if ended_by == 'simulator':
        summary = summary_from_dict(watcher.end['summary'])
        timeouts = int((watcher.last_status or {}).get('control_timeouts', 0))
    else:
        status = watcher.last_status
        line, _, _, _ = options.route_of(seed)
        projection = line.project(status['x'], status['y'])
        summary = with_time_limit(summary_from_dict(status), status['x'], status['y'],
                                  projection.s)
        timeouts = int(status.get('control_timeouts', 0))
    if options.backend == 'carla':  # the route CARLA's map gave this seed
        road, plan, scenarios = None, watcher.plan, ()
    else:
        _, road, plan, scenarios = options.route_of(seed)
    result = EpisodeResult.build(driver, seed, repetition, summary, watcher.trajectory, road,
                                 plan, control_timeouts=timeouts,
                                 rejected_images=dict(watcher.rejected_images),
                                 wall_seconds=outcome.seconds, ended_by=ended_by,
                                 scenarios=scenarios)
    return result, video_file, video_note, watcher.plan


def evaluate(options: EvaluationOptions, progress: bool = True) -> dict:
    """
    Drive every route with every driver, write the report and return summary.json's content.

    :param options: what to evaluate
    :param progress: show a tqdm bar with a live summary line
    :raises RuntimeError: a node died or an episode did not finish
    """
    from tqdm import tqdm

    drivers = options.drivers()
    out = options.out
    episodes = [(driver, seed, rep) for driver in drivers for rep in range(options.repetitions)
                for seed in options.routes]
    results: List[EpisodeResult] = []
    plans: Dict[int, GlobalPlan] = {}
    video_file, video_note = None, ''
    with Supervisor(options.backend, 'llava-drive evaluate') as supervisor:
        out.mkdir(parents=True, exist_ok=True)
        log_root = options.log_dir or Path(tempfile.mkdtemp(prefix='llava_drive_evaluate_'))
        bar = tqdm(total=len(episodes), unit='episode', desc='evaluating',
                   disable=not progress, dynamic_ncols=True)
        try:
            for index, (driver, seed, rep) in enumerate(episodes):
                def show(status, driver=driver, seed=seed, rep=rep):
                    bar.set_postfix_str(
                        f'{driver} route {seed} rep {rep + 1}: t {status["time"]:.0f}s '
                        f'RC {status["route_completion"]:.0f}% '
                        f'DS {status["driving_score"]:.0f} {status["speed"]:.1f} m/s',
                        refresh=True)
                want_video = options.video and index == 0
                result, video_path, note, plan = run_episode(
                    options, supervisor, driver, seed, rep,
                    log_root / f'{driver}_route{seed}_rep{rep}',
                    out / f'episode_{driver}_route{seed}.mp4' if want_video else None, show)
                if want_video:
                    video_file, video_note = video_path, note
                results.append(result)
                if plan is not None:
                    plans.setdefault(seed, plan)
                bar.update(1)
                bar.set_postfix_str(
                    f'{driver} route {seed} rep {rep + 1}: '
                    f'RC {result.summary.route_completion:.0f}% '
                    f'DS {result.summary.driving_score:.0f} ({result.summary.done_reason})')
        finally:
            bar.close()
    config = options.config()
    config['notes'] = list(options.notes)
    scores = score_sets(results, list(options.baselines))
    document = summary_document(scores, list(options.baselines), config)
    write_json(out / 'summary.json', document)
    write_json(out / 'episodes.json', [r.to_dict(with_trajectory=True) for r in results])
    plots = plot_routes(results, out, options.route_length, list(scores), options.map_kind,
                        plans if options.backend == 'carla' else None)
    write_markdown(out / 'report.md', scores, config, plots, video_file, video_note)
    if options.log_dir is None:
        shutil.rmtree(log_root, ignore_errors=True)
    document['report'] = str(out / 'report.md')
    document['table'] = score_table(scores)
    return document
