"""CarlaSession and the route planner against the fake carla module (no server here)."""
import json
import math

from carla_fakes import install_fake_carla
from llava_drive.carla.route import heading_change_deg, ros_pose, RoutePlanner
from llava_drive.carla.session import (BridgeConfig, CarlaSession, check_versions,
                                       load_objects)
from llava_drive.carla.world import CarlaUnavailable
from llava_drive.control import Control
from llava_drive.planning import RoadOption
import numpy as np
import pytest


@pytest.fixture
def carla(monkeypatch):
    """Start a fake CARLA 0.9.16 server with Town01 loaded."""
    return install_fake_carla(monkeypatch)


def small_objects(tmp_path, width=64, height=48, role='ego_vehicle'):
    """Write an objects file with a small camera; return its path."""
    path = tmp_path / 'objects.json'
    path.write_text(json.dumps({'objects': [{
        'type': 'vehicle.tesla.model3', 'id': role, 'sensors': [
            {'type': 'sensor.camera.rgb', 'id': 'rgb_front', 'image_size_x': width,
             'image_size_y': height, 'fov': 90.0,
             'spawn_point': {'x': 2.0, 'y': 0.0, 'z': 2.0, 'roll': 0.0, 'pitch': 0.0,
                             'yaw': 0.0}},
            {'type': 'sensor.pseudo.speedometer', 'id': 'speedometer'}]}]}))
    return str(path)


def session(tmp_path, **config):
    """Return an open session on the fake server."""
    return CarlaSession(BridgeConfig(objects_file=small_objects(tmp_path), **config)).open()


@pytest.mark.parametrize('server, client, message', [
    ('0.9.13', '0.9.13', r'CARLA server 0\.9\.13 is not supported by carla_bridge '
                         r'\(supported: 0\.9\.14, 0\.9\.15, 0\.9\.16\)'),
    ('0.9.15', '0.9.16', r'the carla Python package is 0\.9\.16 but the server is 0\.9\.15: '
                         r'pip install carla==0\.9\.15'),
    ('dev', '0.9.16', r"cannot read the CARLA version 'dev'"),
])
def test_versions_outside_the_pairing_are_refused(server, client, message):
    with pytest.raises(CarlaUnavailable, match=message):
        check_versions(server, client)


def test_a_dirty_build_of_a_supported_version_is_accepted():
    check_versions('0.9.15-dirty', '0.9.15')


def test_version_mismatch_and_no_server_are_one_clear_error(monkeypatch, tmp_path):
    install_fake_carla(monkeypatch, server_version='0.9.15')
    with pytest.raises(CarlaUnavailable, match=r'pip install carla==0\.9\.15'):
        session(tmp_path)
    install_fake_carla(monkeypatch, down=True)
    with pytest.raises(CarlaUnavailable, match=r'no CARLA server answered at localhost:2000 '
                                               r'within 20\.0 s'):
        session(tmp_path)


def test_town_is_loaded_once_with_the_long_timeout_and_synchronous_mode(monkeypatch, tmp_path):
    fake = install_fake_carla(monkeypatch, load_seconds=60.0)
    opened = session(tmp_path, town='Town02', timeout=20.0, load_timeout=120.0)
    assert fake._SERVER.loads == ['Town02']
    assert fake._SERVER.timeouts == [20.0, 120.0, 20.0]
    settings = opened.world.get_settings()
    assert settings.synchronous_mode and settings.fixed_delta_seconds == 0.05
    again = session(tmp_path, town='Town02')
    assert fake._SERVER.loads == ['Town02'] and again.map.name.endswith('Town02')
    # A 60 s load with a 30 s load timeout fails with the reason.
    with pytest.raises(CarlaUnavailable, match=r'loading Town03 failed within 30\.0 s'):
        session(tmp_path, town='Town03', load_timeout=30.0)


def test_planner_commands_match_the_turns_and_poses_are_in_the_ros_frame(carla):
    carla_map = carla.Client().get_world().get_map()
    planner = RoutePlanner(carla_map)
    start = carla_map.get_spawn_points()[0]  # x = 30, heading +x on the first block
    assert ros_pose(start) == pytest.approx((30.0, -1.75, 0.0))
    # Turn right (CARLA yaw +90 is a right turn: its y points right) to the spawn point
    # on the lane heading +y out of the first junction.
    right = next(p for p in carla_map.get_spawn_points()
                 if p.rotation.yaw == pytest.approx(90.0) and 50.0 < p.location.x < 60.0)
    plan = planner.plan(start.location, right.location)
    assert RoadOption.RIGHT in plan.options and RoadOption.LEFT not in plan.options
    assert plan.options[0] == RoadOption.LANEFOLLOW
    # ROS: y flipped, heading -pi/2 (driving towards -y) after the right turn.
    assert plan.poses[-1][2] == pytest.approx(-math.pi / 2, abs=0.05)
    assert plan.dense_poses[-1][:2] == pytest.approx([right.location.x, -right.location.y],
                                                     abs=0.1)
    steps = np.hypot(*np.diff(plan.dense_poses[:, :2], axis=0).T)
    assert steps.max() < 2.5 and steps.min() > 0.5  # no gaps, no doubled joints
    assert heading_change_deg(170.0, -170.0) == pytest.approx(20.0)


def test_no_route_between_disconnected_points_is_a_value_error(carla):
    carla_map = carla.Client().get_world().get_map()
    planner = RoutePlanner(carla_map)
    planner.graph.remove_edges_from(list(planner.graph.edges))
    points = carla_map.get_spawn_points()
    with pytest.raises(ValueError, match='no route from'):
        planner.plan(points[0].location, points[5].location)


def test_steps_tick_once_each_with_the_frame_image_and_score(carla, tmp_path):
    opened = session(tmp_path, route_length=150.0)
    first = opened.start_episode(seed=4)
    assert first.image.shape == (48, 64, 4) and first.image.dtype == np.uint8
    assert 100.0 <= opened.plan.length <= 250.0
    ticks = len(carla._SERVER.ticks)
    frames = [opened.step(Control(throttle=0.6)) for _ in range(60)]
    assert len(carla._SERVER.ticks) == ticks + 60
    assert [f.frame for f in frames] == list(range(first.frame + 1, first.frame + 61))
    stamps = [f.stamp_ns for f in frames]
    assert all(b - a == 50_000_000 for a, b in zip(stamps, stamps[1:]))
    assert frames[-1].speed > 3.0 and frames[-1].summary.route_completion > 5.0
    # One apply_control per tick, each before its tick.
    applied = [c[0] for c in carla._SERVER.controls]
    assert len(applied) == len(set(applied))


def test_the_same_seed_draws_the_same_route_and_another_seed_another(carla, tmp_path):
    opened = session(tmp_path)
    opened.start_episode(seed=7)
    first = opened.plan
    opened.start_episode(seed=7)
    assert first.equals(opened.plan)
    others = []
    for seed in (8, 9, 10):
        opened.start_episode(seed=seed)
        others.append(opened.plan)
    assert not all(first.equals(other) for other in others)


def test_given_spawn_point_and_goal_are_used_and_checked(carla, tmp_path):
    opened = session(tmp_path, spawn_point=0, goal=3)
    points = opened.map.get_spawn_points()
    opened.start_episode(seed=1)
    assert opened.plan.poses[0][:2] == pytest.approx(list(ros_pose(points[0])[:2]), abs=0.1)
    assert opened.plan.poses[-1][:2] == pytest.approx(list(ros_pose(points[3])[:2]), abs=0.1)
    bad = session(tmp_path, goal=99)
    with pytest.raises(ValueError, match=r'goal 99 does not exist: Town01 has 14 spawn points'):
        bad.start_episode(seed=1)


def test_collision_lane_invasion_and_red_light_are_scored(monkeypatch, tmp_path):
    fake = install_fake_carla(monkeypatch, red_lights=True)
    opened = session(tmp_path, spawn_point=0, goal=3)
    opened.start_episode(seed=1)
    ahead = opened.map.get_waypoint(opened.ego.get_location()).next(10.0)[0].transform
    library = opened.world.get_blueprint_library()
    opened.world.spawn_actor(library.find('vehicle.audi.a2'), ahead)
    summary = None
    for _ in range(200):  # straight through the parked car and the red light
        summary = opened.step(Control(throttle=0.7)).summary
        if summary.counts.get('red_light'):
            break
    assert summary.counts.get('collision_vehicle') == 1
    assert summary.counts.get('red_light') == 1
    assert summary.infraction_penalty == pytest.approx(0.6 * 0.7 * (
        1 - summary.outside_lane_percentage / 100))
    assert fake._SERVER.red_lights


def test_leaving_the_lane_counts_lane_crossings_and_outside_distance(carla, tmp_path):
    opened = session(tmp_path, spawn_point=0, goal=3)
    opened.start_episode(seed=1)
    summary = None
    for steer in [0.0] * 30 + [-0.2] * 10 + [0.0] * 30:
        summary = opened.step(Control(throttle=1.0, steer=steer)).summary
    assert summary.counts.get('lane_crossing', 0) >= 1
    assert summary.outside_lane_m > 0.0 and summary.infraction_penalty < 1.0


def test_traffic_moves_on_the_ticks_of_this_client(carla, tmp_path):
    opened = session(tmp_path, traffic=3)
    opened.start_episode(seed=2)
    assert len(opened.traffic) == 3
    manager = carla._SERVER.traffic_managers[8000]
    assert manager._synchronous  # set by the same client that ticks
    before = [v.get_location() for v in opened.traffic]
    for _ in range(20):
        opened.step(Control(brake=1.0))
    moved = [a.distance(v.get_location()) for a, v in zip(before, opened.traffic)]
    assert min(moved) > 5.0
    assert all(v.attributes['role_name'] == 'autopilot' for v in opened.traffic)


def test_close_removes_our_actors_and_leaves_synchronous_mode(carla, tmp_path):
    opened = session(tmp_path, traffic=2)
    opened.start_episode(seed=2)
    world = opened.world
    assert len(world.get_actors()) == 1 + 3 + 2
    opened.close()
    assert len(world.get_actors()) == 0
    assert not world.get_settings().synchronous_mode
    assert not carla._SERVER.traffic_managers[8000]._synchronous


def test_role_name_replaces_the_files_vehicle_id(tmp_path, carla):
    spec = load_objects(small_objects(tmp_path, role='ego_vehicle'), role_name='hero')
    assert spec.role_name == 'hero' and spec.camera.name == 'rgb_front'
    opened = session(tmp_path, role_name='hero')
    opened.start_episode(seed=1)
    assert opened.ego.attributes['role_name'] == 'hero'
    assert opened.sensors[0].attributes['image_size_x'] == '64'


@pytest.mark.parametrize('content, message', [
    ('{}', r"KeyError: 'objects'"),
    ('{"objects": [{"type": "vehicle.x", "sensors": []}]}', 'StopIteration'),
    ('not json', 'JSONDecodeError'),
])
def test_bad_objects_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / 'bad.json'
    path.write_text(content)
    with pytest.raises(ValueError, match=f'objects file {path} needs a vehicle.*{message}'):
        load_objects(str(path))


@pytest.mark.parametrize('kwargs, message', [
    ({'fixed_delta': 0.2}, r'fixed_delta must be in \(0, 0\.1\], got 0\.2'),
    ({'timeout': 0.0}, r'timeout must be in \(0, 3600\], got 0\.0'),
    ({'port': 70000}, r'port must be in \[1, 65535\], got 70000'),
    ({'role_name': 'ego/vehicle'}, r"role_name must be letters.*got 'ego/vehicle'"),
    ({'town': ''}, 'town must name a CARLA map'),
    ({'spawn_point': -2}, r'spawn_point must be in \[-1, 100000\], got -2'),
])
def test_bad_config_names_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BridgeConfig(**kwargs)


def test_nan_control_brakes(carla, tmp_path):
    opened = session(tmp_path)
    opened.start_episode(seed=1)
    opened.step(Control(throttle=float('nan'), steer=float('inf'), brake=float('nan')))
    _, _, throttle, steer, brake = carla._SERVER.controls[-1]
    assert (throttle, steer, brake) == (0.0, 0.0, 1.0)
