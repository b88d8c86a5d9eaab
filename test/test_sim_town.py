"""Town world: map, lane graph, routes and commands, lights, traffic, events, expert, camera."""
import math

from llava_drive.control import Control
from llava_drive.expert.driver import ExpertDriver
from llava_drive.expert.town import drive_route, TownExpert
from llava_drive.planning import JUNCTION_OPTIONS, RoadOption, route_command
from llava_drive.sim.obstacles import boxes_overlap
from llava_drive.sim.town.benchmark import benchmark_seeds, TOWN_BENCHMARKS
from llava_drive.sim.town.lights import GREEN, RED, TrafficLights
from llava_drive.sim.town.network import TownConfig, TownMap
from llava_drive.sim.town.route import SCENARIOS, TownRoute
from llava_drive.sim.world import SimConfig, Simulator
import numpy as np
import pytest


@pytest.fixture(scope='module')
def town():
    return TownMap.generate(9001)


def test_town_is_deterministic_and_has_three_and_four_way_junctions():
    arms = set()
    for seed in (9001, 9005):
        a, b = TownMap.generate(seed), TownMap.generate(seed)
        assert [(n.x, n.y) for n in a.nodes] == [(n.x, n.y) for n in b.nodes]
        assert len(a.buildings) == len(b.buildings) > 20 and len(a.trees) > 10
        arms |= {len(n.roads) for n in a.nodes if n.is_junction}
    assert arms == {3, 4}
    assert TownMap.generate(9002).nodes[0].x != TownMap.generate(9001).nodes[0].x


def test_lane_graph_is_connected_through_junctions_with_turn_options(town):
    options = set()
    for lane in town.lanes[:town.road_lane_count]:
        assert lane.successors, f'lane {lane.index} is a dead end'
        for c in lane.successors:
            connector = town.lanes[c]
            target = town.lanes[connector.target]
            # Connectors start where the lane ends and end where the next lane starts.
            assert np.allclose(connector.points[0, :2], lane.points[-1, :2])
            assert np.allclose(connector.points[-1, :2], target.points[0, :2])
            assert target.road != lane.road  # no U-turns
            node = town.nodes[connector.start_node]
            if node.is_junction:
                options.add(connector.option)
            else:
                assert connector.option == RoadOption.LANEFOLLOW
            turn = math.degrees(math.atan2(math.sin(target.points[0, 2] - lane.points[-1, 2]),
                                           math.cos(target.points[0, 2] - lane.points[-1, 2])))
            if connector.option == RoadOption.LEFT:
                assert turn > 40
            if connector.option == RoadOption.RIGHT:
                assert turn < -40
    assert options == JUNCTION_OPTIONS


def test_town_config_names_bad_values():
    with pytest.raises(ValueError, match='columns'):
        TownConfig(columns=1)
    with pytest.raises(ValueError, match='min_block_m'):
        TownConfig(min_block_m=20.0)
    with pytest.raises(ValueError, match='signal_probability'):
        TownConfig(signal_probability=1.5)
    with pytest.raises(ValueError, match='map_kind'):
        SimConfig(map_kind='city')
    with pytest.raises(ValueError, match='seed'):
        TownMap.generate(-1)


@pytest.mark.parametrize('seed', [9001, 9002, 9003, 9004, 9101, 9102])
def test_routes_have_length_junctions_commands_and_a_scenario(seed):
    town = TownMap.generate(seed)
    route = TownRoute.generate(seed, town)
    assert 150.0 <= route.length <= 400.0
    assert 1 <= route.junction_count() <= 3
    assert route.scenario == SCENARIOS[seed % 4]
    poses, options = route.dense()
    steps = np.hypot(*np.diff(poses[:, :2], axis=0).T)
    assert steps.max() < 1.01
    # Junction connectors carry their turn, everything else LANEFOLLOW.
    for crossing in route.crossings:
        s = route.path[:, 3]
        inside = route.options[(s >= crossing.s_entry + 0.5) & (s < crossing.s_exit - 0.5)]
        assert set(inside.tolist()) == {crossing.option}
    assert set(options) - JUNCTION_OPTIONS == {RoadOption.LANEFOLLOW}
    plan = route.global_plan()
    assert np.allclose(plan.poses[0], poses[0]) and np.allclose(plan.poses[-1], poses[-1])
    assert len(plan.junctions()) == route.junction_count()
    # Before each junction the command in effect is that junction's turn.
    for crossing in route.crossings:
        if crossing.option == RoadOption.LANEFOLLOW:
            continue  # a bend
        x, y, yaw = route.ego_route().pose_at(crossing.s_entry - 3.0)
        assert route_command(plan, x, y, yaw).command == crossing.option
    again = TownRoute.generate(seed, TownMap.generate(seed))
    assert again.lanes == route.lanes and again.start_s == route.start_s


def test_lights_cycle_and_never_give_two_approaches_green(town):
    lights = TrafficLights(town, offsets={n.index: 7.0 * n.index for n in town.nodes})
    assert lights.lights
    seen = set()
    for t in np.arange(0.0, 130.0, 0.5):
        green = {}
        for light, state in lights.states(float(t)):
            seen.add(state)
            if state == GREEN:
                green[light.node] = green.get(light.node, 0) + 1
        assert all(count == 1 for count in green.values())
    assert seen == {'green', 'yellow', 'red'}
    light = lights.lights[0]
    lights.offsets[light.node] = lights.green_offset(light, 40.0)
    assert lights.state(light, 40.0) == GREEN and lights.state(light, 39.0) == RED


def test_traffic_moves_without_vehicles_overlapping():
    sim = Simulator(SimConfig(map_kind='town', route_seed=9005, traffic_vehicles=24))
    start = [(a.x, a.y) for a in sim.traffic.agents]
    for _ in range(int(90 / sim.config.dt)):
        sim.step(Control(brake=1.0))
        agents = [a for a in sim.traffic.agents if a.active]
        corners = [a.corners() for a in agents]
        for i in range(len(agents)):
            for j in range(i + 1, len(agents)):
                if abs(agents[i].x - agents[j].x) < 6 and abs(agents[i].y - agents[j].y) < 6:
                    assert not boxes_overlap(corners[i], corners[j]), \
                        f'vehicles {agents[i].ident} and {agents[j].ident} collide at {sim.time}'
    moved = [math.hypot(a.x - x, a.y - y) for a, (x, y) in zip(sim.traffic.agents, start)]
    assert sum(m > 50.0 for m in moved) >= len(moved) // 2


def _lane_follow(sim, seconds, speed=8.0):
    """Drive the route ignoring everything but the lane (a driver that breaks the rules)."""
    driver = ExpertDriver()
    driver.config.target_speed_mps = speed
    for _ in range(int(seconds / sim.config.dt)):
        st = sim.state
        sim.step(driver.control(st.x, st.y, st.yaw, st.speed, sim.waypoints_ahead(40),
                                sim.config.dt))
        if sim.done:
            break


def test_running_a_red_light_is_an_event():
    sim = Simulator(SimConfig(map_kind='town', route_seed=9002, traffic_vehicles=0))
    crossing = next(c for c in sim.town_route.crossings if c.node == sim.town_route.scenario_node)
    assert crossing.source in sim.lights.by_lane
    sim.lights.state = lambda light, time: RED  # every light stays red
    _lane_follow(sim, 60.0)
    assert sim.summary().counts.get('red_light') == 1


def test_hitting_a_stopped_vehicle_is_a_collision_event():
    sim = Simulator(SimConfig(map_kind='town', route_seed=9003, traffic_vehicles=0))
    assert sim.town_route.scenario == 'stopped_vehicle'
    _lane_follow(sim, 30.0)
    assert sim.summary().counts.get('collision_vehicle', 0) >= 1


def test_driving_outside_the_route_lanes_adds_up_metres():
    sim = Simulator(SimConfig(map_kind='town', route_seed=9004, traffic_vehicles=0))
    x, y, yaw = sim.route.pose_at(5.0, 3.5)  # the opposite lane
    sim.teleport(x, y, yaw, 5.0)
    for _ in range(40):
        sim.step(Control(throttle=0.3))
    assert sim.summary().counts.get('outside_route_lanes') == 1
    assert 5.0 < sim.outside_route_lanes_m < 20.0


def test_benchmark_sets_are_disjoint():
    dev, held = set(benchmark_seeds('town-dev')), set(benchmark_seeds('town-heldout'))
    assert len(dev) == len(held) == 10 and not dev & held
    assert set(TOWN_BENCHMARKS) == {'town-dev', 'town-heldout'}
    with pytest.raises(ValueError, match='town-dev'):
        benchmark_seeds('town')


@pytest.mark.parametrize('seed,variation', [(9001, 0), (9004, 1), (9102, 2), (9107, 0)])
def test_expert_drives_benchmark_routes_without_infractions(seed, variation):
    sim = drive_route(seed, variation)
    summary = sim.summary()
    assert summary.done_reason == 'route_finished', summary.counts
    assert summary.driving_score == pytest.approx(100.0)
    assert set(summary.counts) == {'route_finished'}
    assert sim.outside_route_lanes_m == 0.0


def test_expert_stops_for_a_red_light_at_the_line():
    sim = Simulator(SimConfig(map_kind='town', route_seed=9002, traffic_vehicles=0))
    crossing = next(c for c in sim.town_route.crossings if c.node == sim.town_route.scenario_node)
    light = sim.lights.by_lane[crossing.source]
    expert = TownExpert()
    waited = 0.0
    while not sim.done and sim.time < 200.0:
        stopped = abs(sim.state.speed) < 0.05
        command = expert.control(sim)
        sim.step(command)
        if sim.lights.state(light, sim.time) == RED and stopped and \
                expert.reason == 'red light':
            waited += sim.config.dt
            # It holds still: no creeping to the line and braking again (chattering labels).
            assert (command.throttle, command.brake) == (0.0, 1.0), (sim.time, command)
            front = sim._projection.s + 0.5 * sim.config.vehicle.length_m
            assert 0.0 < crossing.s_entry - front < 3.0  # just before the stop line
    assert waited > 5.0  # the scenario makes it meet red
    while not sim.done:
        sim.step(expert.control(sim))
    assert sim.summary().driving_score == pytest.approx(100.0)


def test_camera_shows_the_lit_red_lamp_at_both_demo_sizes():
    for width, height in ((800, 600), (200, 150)):
        sim = Simulator(SimConfig(map_kind='town', route_seed=9002, width=width, height=height,
                                  traffic_vehicles=0, randomize=False))
        crossing = next(c for c in sim.town_route.crossings
                        if c.node == sim.town_route.scenario_node)
        light = sim.lights.by_lane[crossing.source]
        sim.lights.offsets[light.node] = sim.lights.green_offset(light, 500.0)
        x, y, yaw = sim.route.pose_at(crossing.s_entry - 8.0, 0.0)
        sim.teleport(x, y, yaw)
        image = sim.render()
        assert image.shape == (height, width, 4) and image.dtype == np.uint8
        b, g, r = (image[..., i].astype(int) for i in range(3))
        red = (r > 170) & (g < 110) & (b < 110)
        assert red.sum() >= (40 if width == 800 else 2), red.sum()
        lights = TrafficLights(sim.town)
        assert len(sim.light_states()) == len(lights.lights)


def test_road_map_stays_the_default():
    sim = Simulator(SimConfig(route_seed=3))
    assert type(sim) is Simulator and sim.config.map_kind == 'road'
    assert sim.waypoints_ahead(1)[0][1] == pytest.approx(-1.75, abs=1e-6)
