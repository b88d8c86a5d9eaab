"""Closed-loop evaluation: metrics, options, report files; real graphs: evaluate, drive, DAgger."""
from collections import Counter
import io
import json
import math

import cv2
from fixtures_llava import tiny_llava_dir  # noqa: F401 - pytest fixture
from llava_drive.evaluation.evaluate import EvaluationOptions
from llava_drive.evaluation.metrics import (aggregate, EpisodeResult, junction_outcomes,
                                            lateral_errors, rmse, steering_smoothness,
                                            summary_from_dict, Trajectory, with_time_limit)
from llava_drive.evaluation.report import (plot_route, score_sets, summary_document,
                                           write_markdown)
from llava_drive.sim.road import Route, RouteConfig
from llava_drive.sim.scoring import EpisodeSummary, Event
from llava_drive.visual.video import Mp4Writer
import numpy as np
import pytest

SMALL = {'width': 96, 'height': 72}


def summary(seed, completion, events=(), done_reason='route_finished'):
    """Return a finished episode summary with these events."""
    return EpisodeSummary.from_events(seed, 100.0, completion, 30.0,
                                      [Event(kind, 1.0) for kind in events], True, done_reason)


def result(driver, seed, repetition, completion, events=(), steer=(0.0, 0.0)):
    """Return an episode with a two-frame trajectory."""
    trajectory = Trajectory(time=[0.0, 0.05][:len(steer)], x=[0.0] * len(steer),
                            y=[0.0] * len(steer), yaw=[0.0] * len(steer),
                            speed=[1.0] * len(steer), steer=list(steer),
                            throttle=[0.5] * len(steer), brake=[0.0] * len(steer))
    return EpisodeResult(driver, seed, repetition, summary(seed, completion, events),
                         trajectory, lateral_rmse=0.1 * (seed % 7),
                         steering_smoothness=steering_smoothness(trajectory.time, steer))


# -- pure metrics ------------------------------------------------------------------------

def test_global_score_is_the_mean_of_route_scores_not_mean_rc_times_mean_p():
    # Route 101: full completion, one static collision (P 0.65): DS 65. 102: half, clean: 50.
    results = [result('policy', 101, 0, 100.0, ['collision_static']),
               result('policy', 102, 0, 50.0)]
    scores = aggregate(results)
    assert scores['driving_score'] == pytest.approx((65.0 + 50.0) / 2)
    mean_rc, mean_p = (100.0 + 50.0) / 2, (0.65 + 1.0) / 2
    assert scores['driving_score'] != pytest.approx(mean_rc * mean_p)
    assert scores['route_completion'] == pytest.approx(75.0)
    assert scores['infraction_penalty'] == pytest.approx(0.825)
    assert scores['per_route']['101']['driving_score'] == pytest.approx(65.0)
    assert scores['per_route']['101']['events'] == {'collision_static': 1}
    assert scores['events'] == {'collision_static': 1}
    assert scores['per_route']['101']['success_rate'] == 0.0
    assert scores['scoring'] == 'CARLA Leaderboard 2.0'


def test_spread_is_over_repetitions_of_the_global_score():
    # Repetition 0: DS 100 and 20 (global 60); repetition 1: 100 and 60 (global 80).
    results = [result('policy', 101, 0, 100.0), result('policy', 102, 0, 20.0),
               result('policy', 101, 1, 100.0), result('policy', 102, 1, 60.0)]
    scores = aggregate(results)
    assert scores['driving_score_per_repetition'] == pytest.approx([60.0, 80.0])
    assert scores['driving_score'] == pytest.approx(70.0)
    assert scores['driving_score_std'] == pytest.approx(10.0)
    assert scores['per_route']['102']['driving_score_std'] == pytest.approx(20.0)
    assert scores['repetitions'] == 2 and scores['episodes'] == 4
    with pytest.raises(ValueError, match='one driver'):
        aggregate(results + [result('expert', 101, 0, 100.0)])


def test_rmse_and_steering_smoothness():
    assert rmse([3.0, -4.0]) == pytest.approx(math.sqrt(12.5))
    assert math.isnan(rmse([]))
    # |0.1 - 0| / 0.1 = 1 and |-0.1 - 0.1| / 0.1 = 2; the repeated stamp is skipped.
    assert steering_smoothness([0.0, 0.1, 0.2, 0.2], [0.0, 0.1, -0.1, 0.9]) == \
        pytest.approx(1.5)
    assert steering_smoothness([0.0, 1.0], [0.5, 0.5]) == 0.0
    with pytest.raises(ValueError, match='differ in length'):
        steering_smoothness([0.0, 1.0], [0.0])


def test_lateral_error_is_measured_from_the_driven_lane_centre():
    route = Route.generate(101, RouteConfig(length_m=120.0))
    s = np.linspace(5.0, 110.0, 40)
    on_lane = route.poses_at(s, route.right_lane_offset)
    assert np.abs(lateral_errors(route, on_lane[:, 0], on_lane[:, 1])).max() < 0.05
    left = route.poses_at(s, route.right_lane_offset + 0.8)
    errors = lateral_errors(route, left[:, 0], left[:, 1])
    assert errors == pytest.approx(np.full(40, 0.8), abs=0.05)


def test_time_limit_adds_an_unpenalised_timeout_and_summaries_round_trip():
    """The evaluator's own limit ends the route as a route timeout: DS unchanged (43.2)."""
    running = EpisodeSummary.from_events(
        101, 100.0, 80.0, 60.0, [Event('collision_vehicle', 3.0)], False, None,
        outside_lane_m=8.0)
    assert running.driving_score == pytest.approx(43.2)
    ended = with_time_limit(running, 1.0, 2.0, 80.0)
    assert ended.done and ended.done_reason == 'timeout'
    assert ended.infraction_penalty == pytest.approx(0.6 * 0.9)
    assert ended.driving_score == pytest.approx(43.2)
    again = summary_from_dict(json.loads(json.dumps(ended.to_dict())))
    assert again == ended
    # Summaries from before the outside-lane fields read as never outside.
    old = ended.to_dict()
    for key in ('outside_lane_m', 'completed_m', 'outside_lane_percentage', 'success'):
        del old[key]
    assert summary_from_dict(old).driving_score == pytest.approx(80.0 * 0.6)


def test_success_rate_per_scenario_and_junction_success():
    """Bench2Drive success over episodes and per scenario type; junctions followed / crossed."""
    clean = EpisodeSummary.from_events(101, 100.0, 100.0, 30.0, [], True, 'route_finished')
    slow = EpisodeSummary.from_events(102, 100.0, 100.0, 30.0,
                                      [Event('min_speed', 9.0, value=60.0)], True,
                                      'route_finished')
    red = EpisodeSummary.from_events(103, 100.0, 100.0, 30.0, [Event('red_light', 9.0)], True,
                                     'route_finished')
    blocked = EpisodeSummary.from_events(104, 100.0, 70.0, 200.0, [], True, 'blocked')
    assert clean.success and slow.success and not red.success and not blocked.success
    trajectory = Trajectory(time=[0.0], x=[0.0], y=[0.0], yaw=[0.0], speed=[0.0], steer=[0.0],
                            throttle=[0.0], brake=[0.0])
    results = [
        EpisodeResult('policy', 101, 0, clean, trajectory, scenarios=('red_light',),
                      junctions_followed=2),
        EpisodeResult('policy', 102, 0, slow, trajectory, scenarios=('braking_lead',),
                      junctions_followed=1),
        EpisodeResult('policy', 103, 0, red, trajectory, scenarios=('red_light',),
                      junctions_followed=1),
        EpisodeResult('policy', 104, 0, blocked, trajectory, scenarios=('braking_lead',),
                      junctions_missed=1)]
    scores = aggregate(results)
    assert scores['success_rate'] == pytest.approx(50.0)
    assert scores['success_per_scenario'] == {
        'braking_lead': {'episodes': 2, 'success_rate': 50.0},
        'red_light': {'episodes': 2, 'success_rate': 50.0}}
    assert scores['junction_success'] == pytest.approx(80.0)
    assert scores['per_route']['104']['junction_success'] == 0.0
    assert aggregate(results[:1])['junction_success'] == 100.0
    no_junctions = [EpisodeResult('policy', 101, 0, clean, trajectory)]
    assert aggregate(no_junctions)['junction_success'] is None


def test_junction_outcomes_follow_the_commanded_exit():
    """Crossing to the planned exit is followed; turning the other way is missed."""
    from llava_drive.planning import GlobalPlan, RoadOption
    poses, options = [], []
    for x in range(0, 50):
        poses.append((float(x), 0.0, 0.0))
        options.append(RoadOption.LANEFOLLOW)
    for k in range(16):  # a left quarter turn of radius 10 m
        angle = 0.5 * math.pi * k / 16
        poses.append((50.0 + 10.0 * math.sin(angle), 10.0 * (1.0 - math.cos(angle)), angle))
        options.append(RoadOption.LEFT)
    for y in range(10, 60):
        poses.append((60.0, float(y), 0.5 * math.pi))
        options.append(RoadOption.LANEFOLLOW)
    plan = GlobalPlan.from_dense(poses, options)
    xy = np.array(poses)[:, :2]
    assert junction_outcomes(plan, xy[:, 0], xy[:, 1]) == (1, 0)
    # Straight on instead of left: leaves the connector without reaching its exit.
    straight = np.array([(float(x), 0.3) for x in range(0, 90)])
    assert junction_outcomes(plan, straight[:, 0], straight[:, 1]) == (0, 1)
    # Stopped inside the junction when the episode ended: neither.
    assert junction_outcomes(plan, xy[:56, 0], xy[:56, 1]) == (0, 0)
    # Never reached the junction; an empty trajectory.
    assert junction_outcomes(plan, xy[:30, 0], xy[:30, 1]) == (0, 0)
    assert junction_outcomes(plan, [], []) == (0, 0)


# -- options -----------------------------------------------------------------------------

def test_options_refuse_training_routes_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r'routes \[5, 100\] are recording'):
        EvaluationOptions(routes=[101, 5, 100], out=tmp_path / 'a')
    assert EvaluationOptions(routes=[5], allow_training_routes=True, out=tmp_path / 'b')
    with pytest.raises(ValueError, match='repetitions must be an integer >= 1, got 0'):
        EvaluationOptions(repetitions=0, out=tmp_path / 'c')
    with pytest.raises(ValueError, match='not a checkpoint'):
        EvaluationOptions(checkpoint=tmp_path, out=tmp_path / 'd')
    with pytest.raises(ValueError, match="baseline name 'expert'"):
        EvaluationOptions(baselines={'expert': tmp_path}, out=tmp_path / 'e')
    with pytest.raises(ValueError, match='nothing to evaluate'):
        EvaluationOptions(expert=False, out=tmp_path / 'f')
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'x').write_text('x')
    with pytest.raises(FileExistsError, match='not empty'):
        EvaluationOptions(out=tmp_path / 'full')


def test_evaluate_command_refuses_training_routes(tmp_path, capsys):
    from llava_drive.cli import main
    assert main(['evaluate', '--routes', '3,101', '--out', str(tmp_path / 'r')]) == 1
    assert 'routes [3] are recording' in capsys.readouterr().err
    assert not (tmp_path / 'r').exists()


# -- report files ------------------------------------------------------------------------

def test_report_files_from_hand_made_episodes(tmp_path):
    route = Route.generate(101, RouteConfig(length_m=80.0))
    path = route.poses_at(np.linspace(0.0, 80.0, 50), route.right_lane_offset)
    trajectory = Trajectory(time=list(np.arange(50) * 0.05), x=list(path[:, 0]),
                            y=list(path[:, 1]), yaw=list(path[:, 2]), speed=[5.0] * 50,
                            steer=[0.0] * 50, throttle=[0.3] * 50, brake=[0.0] * 50)
    crashed = EpisodeSummary.from_events(
        101, 80.0, 40.0, 20.0, [Event('collision_static', 10.0, path[25, 0], path[25, 1])],
        True, 'blocked')
    results = [EpisodeResult.build('policy', 101, 0, crashed, trajectory, route,
                                   rejected_images={'truncated_image': 2, 'bad_step': 1}),
               EpisodeResult.build('expert', 101, 0, summary(101, 100.0), trajectory, route),
               EpisodeResult.build('token0', 101, 0, summary(101, 10.0), trajectory, route)]
    scores = score_sets(results, ['token0'])
    assert list(scores) == ['policy', 'expert', 'token0']
    document = summary_document(scores, ['token0'], {'routes': [101]})
    assert document['driving_score'] == pytest.approx(40.0 * 0.65)
    assert document['expert']['driving_score'] == pytest.approx(100.0)
    assert document['baselines']['token0']['route_completion'] == pytest.approx(10.0)
    assert document['per_route']['101']['events'] == {'collision_static': 1}
    png = plot_route(route, results, tmp_path / 'route.png', list(scores))
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 300 and image.std() > 10
    report = write_markdown(tmp_path / 'report.md', scores, {'routes': [101]}, [png], None)
    text = report.read_text()
    assert '| policy | 26.0 ± 0.0 | 40.0 | 0.650 | 0.0 | - | 0.0 |' in text
    assert '| expert | 100.0 ± 0.0 | 100.0 | 1.000 | 100.0 |' in text
    assert 'Scoring follows CARLA Leaderboard 2.0' in text and 'red light 0.70' in text
    assert document['scoring'] == 'CARLA Leaderboard 2.0'
    assert document['success_rate'] == 0.0 and document['junction_success'] is None
    assert document['expert']['success_rate'] == 100.0
    assert '| 101 | token0 |' in text and '![route](route.png)' in text
    assert document['rejected_images'] == {'truncated_image': 2, 'bad_step': 1}
    assert document['expert']['rejected_images'] == {}
    assert '- policy: bad_step 1, truncated_image 2\n' in text and '- expert' not in text


def test_the_evaluation_monitor_skips_and_counts_malformed_images(ros_graph, tmp_path):
    from llava_drive.evaluation.evaluate import EpisodeWatcher
    from llava_drive.image_codec import raw_fields
    from llava_drive.nodes.interfaces import CAMERA_QOS, POLICY_ANNOTATED_TOPIC, vehicle_topics
    from sensor_msgs.msg import Image
    from ros_helpers import wait_for

    watcher = EpisodeWatcher(ros_graph.context, 101, Mp4Writer(tmp_path / 'v.mp4'))
    ros_graph.add(watcher.node)
    source = ros_graph.node('hostile_camera')
    topics = {'camera': source.create_publisher(Image, vehicle_topics().camera_image,
                                                CAMERA_QOS),
              'annotated': source.create_publisher(Image, POLICY_ANNOTATED_TOPIC, 10)}
    assert wait_for(lambda: all(p.get_subscription_count() for p in topics.values()), 60)

    def frame(**fields):
        msg = Image(encoding='bgr8')
        msg.height, msg.width, msg.step, msg.data = raw_fields(np.zeros((48, 64, 3), np.uint8))
        for name, value in fields.items():
            setattr(msg, name, value)
        return msg

    bad = [(frame(encoding='yuv422'), 'unsupported_encoding'),
           (frame(data=bytes(100)), 'truncated_image'),
           (frame(height=1, width=600, step=1800, data=bytes(1800)), 'image_too_small'),
           (frame(step=2 ** 31), 'bad_step'),
           (frame(data=b''), 'empty_image'),
           (frame(encoding='yuv422'), 'unsupported_encoding')]
    expected = Counter()
    for topic, publisher in topics.items():
        for msg, reason in bad:  # in lock step: the camera keeps only the newest message
            expected[reason] += 1
            publisher.publish(msg)
            assert wait_for(lambda: watcher.rejected_images == expected, 60), (
                topic, reason, dict(watcher.rejected_images))
        publisher.publish(frame())  # the monitor still works: the good frame is written
    assert wait_for(lambda: watcher.video.frames == 1 and watcher.annotated_video is not None
                    and watcher.annotated_video.frames == 1, 60)
    assert expected == {'unsupported_encoding': 4, 'truncated_image': 2, 'image_too_small': 2,
                        'bad_step': 2, 'empty_image': 2}
    path, _ = watcher.finish_video()
    assert path == tmp_path / 'v.mp4' and path.is_file()


def test_episode_video_reopens(tmp_path):
    video = Mp4Writer(tmp_path / 'v.mp4', fps=20.0)
    for index in range(12):
        video.write(np.full((61, 81, 3), index * 20, np.uint8))  # odd sizes get trimmed
    assert video.close() == tmp_path / 'v.mp4'
    capture = cv2.VideoCapture(str(tmp_path / 'v.mp4'))
    frames = []
    ok, frame = capture.read()
    while ok:
        frames.append(frame)
        ok, frame = capture.read()
    assert len(frames) == 12 and frames[0].shape == (60, 80, 3)
    assert frames[-1].mean() > frames[1].mean() + 100
    empty = Mp4Writer(tmp_path / 'none.mp4')
    assert empty.close() is None and not (tmp_path / 'none.mp4').exists()


# -- real graphs -------------------------------------------------------------------------

@pytest.fixture(scope='module')
def small_checkpoint(tmp_path_factory, tiny_llava_dir):  # noqa: F811
    """Train a small head on tiny-LLaVA features of expert driving (no ROS, ~10 s)."""
    from llava_drive.expert.driver import ExpertDriver
    from llava_drive.features.extractor import LlavaFeatureExtractor
    from llava_drive.features.store import write_feature_file
    from llava_drive.learning.train import train, TrainConfig
    from llava_drive.sim.world import SimConfig, Simulator

    work = tmp_path_factory.mktemp('policy')
    extractor = LlavaFeatureExtractor(tiny_llava_dir)
    for seed in (1, 2):
        sim = Simulator(SimConfig(route_seed=seed, route_length_m=60.0, **SMALL))
        expert, path = ExpertDriver(), sim.route_waypoints()
        frames, actions, speeds = [], [], []
        for _ in range(40):
            state = sim.state
            control = expert.control(state.x, state.y, state.yaw, state.speed, path, dt=0.05)
            frames.append(cv2.cvtColor(sim.render(), cv2.COLOR_BGRA2RGB))
            actions.append(control.as_array())
            speeds.append(state.speed)
            sim.step(control)
        features = extractor.extract(frames).numpy()
        write_feature_file(work / 'features' / f'route{seed}.safetensors', features,
                           np.asarray(actions), 1_000_000_000 + 50_000_000 * np.arange(40),
                           np.asarray(speeds), np.zeros(40, np.int64), extractor.spec)
    checkpoint = work / 'checkpoint'
    train([work / 'features'], checkpoint,
          TrainConfig(hidden_size=32, epochs=3, use_speed=True, patience=0), progress=False,
          log=None)
    return checkpoint


def test_closed_loop_evaluation_policy_and_expert(small_checkpoint, tiny_llava_dir,  # noqa: F811
                                                  tmp_path):
    from llava_drive.evaluation.evaluate import evaluate
    out = tmp_path / 'report'
    document = evaluate(EvaluationOptions(
        checkpoint=small_checkpoint, model=tiny_llava_dir, routes=[101], repetitions=1,
        out=out, route_length=50.0, max_route_time=6.0, log_dir=tmp_path / 'logs', **SMALL),
        progress=False)
    summary_json = json.loads((out / 'summary.json').read_text())
    assert summary_json['drivers'] == ['policy', 'expert']
    for scores in (summary_json, summary_json['expert']):
        assert 0.0 <= scores['driving_score'] <= 100.0
        assert 0.0 <= scores['route_completion'] <= 100.0
        assert 0.0 <= scores['infraction_penalty'] <= 1.0
        assert set(scores['per_route']) == {'101'}
        route = scores['per_route']['101']
        assert route['driving_score'] == pytest.approx(route['route_completion']
                                                       * route['infraction_penalty'])
    # The expert finishes a 50 m route well inside 6 s? No: 50 m at <= 8 m/s needs ~8 s, so
    # the evaluator's limit ends it as a route timeout, which the leaderboard does not penalise.
    expert = summary_json['expert']['per_route']['101']
    assert expert['done_reasons'] == ['timeout'] and expert['infraction_penalty'] == 1.0
    assert summary_json['scoring'] == 'CARLA Leaderboard 2.0'
    assert 'success_rate' in summary_json and 'junction_success' in summary_json
    assert 20.0 < expert['route_completion'] < 100.0
    assert summary_json['expert']['lateral_error_rmse'] < 0.5
    episodes = json.loads((out / 'episodes.json').read_text())
    assert [e['driver'] for e in episodes] == ['policy', 'expert']
    for episode in episodes:
        # Every frame of the episode reached the evaluator (the simulator waits for it).
        assert episode['frames'] >= 0.9 * 6.0 / 0.05
        assert episode['trajectory']['time'][0] <= 0.1
    assert document['driving_score'] == summary_json['driving_score']
    report = (out / 'report.md').read_text()
    assert '| policy |' in report and '| expert |' in report
    assert '![trajectories_route101](trajectories_route101.png)' in report
    image = cv2.imread(str(out / 'trajectories_route101.png'))
    assert image is not None and image.shape[1] > 300
    capture = cv2.VideoCapture(str(out / 'episode_policy_route101.mp4'))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = capture.read()
    assert ok and frame.shape[2] == 3 and count >= 20
    # The policy's annotated view, or the raw camera when a busy machine dropped too many.
    assert 'annotated camera view' in report or 'raw camera' in report


def test_drive_runs_and_stops_with_a_status_line(small_checkpoint, tiny_llava_dir,  # noqa
                                                 tmp_path):
    from llava_drive.evaluation.drive import drive, DriveOptions
    out = io.StringIO()
    # No wall-clock duration: on a loaded machine the policy may take longer than any fixed
    # time to load; the simulated route (50 m, its own time budget) always ends the drive.
    result = drive(DriveOptions(checkpoint=small_checkpoint, model=tiny_llava_dir,
                                route_length=50.0, log_dir=tmp_path / 'logs', **SMALL), out=out)
    text = out.getvalue()
    assert result['reason'] == 'route finished'
    assert 'steer' in text and 'route 101 RC' in text and 'stopped:' in text
    assert result['status'] is not None and result['status']['route_seed'] == 101
    assert 'inference' in result['line'] or 'inference' in text


def test_dagger_records_expert_labels_while_the_policy_drives(
        small_checkpoint, tiny_llava_dir, ros_graph, tmp_path):  # noqa: F811
    from llava_drive.bag.reader import read_pairs
    from llava_drive.nodes.interfaces import CONTROL_QOS
    from llava_drive.nodes.control_codec import ControlCodec
    from llava_drive.recording.session import record, RecordingOptions

    codec = ControlCodec('auto')
    executed = {}

    def on_control(msg):
        stamp_ns, control = codec.decode(msg)
        executed.setdefault(stamp_ns, control)  # the first one for a frame steps the sim

    listener = ros_graph.node('dagger_listener')
    listener.create_subscription(codec.msg_type, '/carla/ego_vehicle/vehicle_control_cmd',
                                 on_control, CONTROL_QOS)
    options = RecordingOptions(duration=4.0, route_seeds=[7], out=tmp_path / 'bag',
                               log_dir=tmp_path / 'logs', driver='policy',
                               checkpoint=small_checkpoint, model=tiny_llava_dir, **SMALL)
    names = [spec.name for spec in options.node_specs()]
    assert names == ['sim_bridge', 'expert', 'policy', 'recorder']
    assert options.node_specs()[1].overrides['drive'] is False
    result = record(options, progress=False)
    pairs = list(read_pairs(tmp_path / 'bag'))
    assert len(pairs) >= 0.9 * 4.0 / 0.05 and result['pairs'] == len(pairs)
    matched = [(p.control, executed[p.stamp_ns]) for p in pairs if p.stamp_ns in executed]
    # The listener shares the test process with busy executors and may miss commands; a
    # quarter of the frames is plenty to compare labels with what was executed.
    assert len(matched) >= 0.25 * len(pairs)
    differences = [abs(label.steer - command.steer) + abs(label.throttle - command.throttle)
                   for label, command in matched]
    # The labels are the expert's, not what the policy sent to the car.
    assert sum(d > 0.02 for d in differences) >= 0.5 * len(matched)
    with pytest.raises(ValueError, match='needs a checkpoint'):
        RecordingOptions(driver='policy', out=tmp_path / 'x')


def test_town_evaluation_options_and_command_line(tmp_path, capsys):
    """Town routes run the town world with the hazard-driven expert; --driver expert alone."""
    options = EvaluationOptions(map_kind='town', routes=[9002], repetitions=1,
                                out=tmp_path / 'a')
    specs = {spec.name: spec for spec in options.node_specs('expert', 9002)}
    assert specs['sim_bridge'].overrides['map'] == 'town'
    assert specs['expert'].overrides['privileged_hazards'] is True
    line, road, plan, scenarios = options.route_of(9002)
    assert road is None and plan.junctions() and scenarios == ('red_light',)
    assert line.length == pytest.approx(plan.length, rel=0.05)
    # Its own length sets the time limit and the report, not the single-road default 500 m.
    assert options.route_lengths[9002] == pytest.approx(plan.length, rel=0.05)
    assert options.route_time_limit() == pytest.approx(
        300.0 + 1.2 * options.route_lengths[9002], rel=0.01)
    config = options.config()
    assert config['route_lengths'] == {'9002': options.route_lengths[9002]}
    text = write_markdown(tmp_path / 'report.md', {}, config, [], None).read_text()
    assert f'Routes: 9002 ({options.route_lengths[9002]:.0f} m each)' in text
    config['route_lengths']['9003'] = 306.4
    text = write_markdown(tmp_path / 'report.md', {}, config, [], None).read_text()
    assert f'Routes: 9002 ({options.route_lengths[9002]:.0f}-306 m)' in text
    with pytest.raises(ValueError, match='map_kind must be one of'):
        EvaluationOptions(map_kind='city', out=tmp_path / 'b')
    from llava_drive.cli import main
    assert main(['evaluate', '--driver', 'expert', '--checkpoint', str(tmp_path),
                 '--out', str(tmp_path / 'c')]) == 1
    assert '--driver expert evaluates the expert alone' in capsys.readouterr().err


def test_town_trajectory_plot_draws_the_town_route_and_the_driven_path(tmp_path):
    from llava_drive.evaluation.report import plot_routes
    from llava_drive.sim.town.world import town_and_route
    dense, _ = town_and_route(9002)[1].dense()
    path = dense[:120]
    trajectory = Trajectory(time=list(np.arange(120) * 0.05), x=list(path[:, 0]),
                            y=list(path[:, 1]), yaw=list(path[:, 2]), speed=[5.0] * 120,
                            steer=[0.0] * 120, throttle=[0.3] * 120, brake=[0.0] * 120)
    crashed = EpisodeSummary.from_events(
        9002, 197.0, 60.0, 20.0, [Event('collision_static', 6.0, path[-1, 0], path[-1, 1])],
        True, 'blocked')
    [png] = plot_routes([EpisodeResult('expert', 9002, 0, crashed, trajectory)], tmp_path,
                        500.0, ['expert'], 'town')
    assert png == tmp_path / 'trajectories_route9002.png'
    image = cv2.imread(str(png)).astype(int)

    def pixels(bgr):
        return int((np.abs(image - bgr).max(axis=2) < 30).sum())

    # Signal stop lines (orange), the driven path (green), the collision marker (red).
    assert pixels((0, 165, 255)) > 50 and pixels((44, 160, 44)) > 200
    assert pixels((0, 0, 255)) > 20


def test_drive_status_line_counts_controls_it_cannot_read():
    # A control another process publishes on the domain must not vanish silently.
    import rclpy
    from llava_drive.control import Control
    from llava_drive.evaluation.drive import DriveMonitor
    from llava_drive.nodes.control_codec import ControlCodec
    from sensor_msgs.msg import Joy

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        monitor = DriveMonitor(context)
        codec = ControlCodec('joy')
        monitor.on_control(Joy(axes=[0.1]))
        monitor.on_control(Joy(axes=[0.1, 0.2]))
        assert monitor.rejected == {'bad_control': 2} and monitor.control is None
        monitor.codec = codec
        monitor.on_control(codec.encode(Control(steer=0.25, throttle=0.5), 1))
        line = monitor.line(1.0)
        assert 'steer +0.25' in line and 'ignored 2 bad_control' in line, line
        monitor.node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
