"""Status payload schemas: producers and consumers share them; malformed ones are refused."""
import json

from llava_drive.nodes.status import (PayloadError, PayloadReader, RecorderStatus, SimEpisode,
                                      SimStatus)
from llava_drive.sim.world import SimConfig, Simulator
import pytest

GOOD_MARKER = {'version': 1, 'event': 'start', 'episode': 0, 'route_seed': 3, 'stamp_ns': 50}


def sim_status(**changes) -> SimStatus:
    sim = Simulator(SimConfig(width=32, height=24, route_seed=1, route_length_m=50.0))
    values = dict(sim.summary().to_dict(), stamp_ns=50_000_000, episode=0, route_seed=1, x=0.0,
                  y=0.0, yaw=0.0, speed=0.0, control=[0.0, 0.0, 1.0], control_timeouts=0)
    values.update(changes)
    return SimStatus(**values)


def test_payloads_round_trip_through_json():
    status = sim_status()
    assert SimStatus.from_json(status.to_json()) == status
    marker = SimEpisode(event='end', episode=2, route_seed=7, stamp_ns=10,
                        summary=status.to_dict())
    assert SimEpisode.from_json(marker.to_json()) == marker
    recorder = RecorderStatus(recording=True, bag='bags/x', pairs_written=3,
                              rejected={'bad_stamp': 1}, error=None, span_s=0.1,
                              last_stamp_ns=5, cpu_s=1.0, pending=0)
    assert RecorderStatus.from_json(recorder.to_json()) == recorder
    assert json.loads(recorder.to_json())['version'] == RecorderStatus.VERSION


@pytest.mark.parametrize('text, reason', [
    ('not json', 'not_json'),
    ('[' * 100000, 'not_json'),
    ('[1, 2]', 'not_an_object'),
    ('"text"', 'not_an_object'),
    ('null', 'not_an_object'),
    (json.dumps(dict(GOOD_MARKER, version=2)), 'bad_version'),
    (json.dumps({k: v for k, v in GOOD_MARKER.items() if k != 'version'}), 'bad_version'),
    (json.dumps({k: v for k, v in GOOD_MARKER.items() if k != 'stamp_ns'}), 'missing_field'),
    (json.dumps(dict(GOOD_MARKER, extra=1)), 'unknown_field'),
    (json.dumps(dict(GOOD_MARKER, stamp_ns=-1)), 'out_of_range'),
    (json.dumps(dict(GOOD_MARKER, stamp_ns=2 ** 64)), 'out_of_range'),
    (json.dumps(dict(GOOD_MARKER, stamp_ns=1.5)), 'bad_type'),
    (json.dumps(dict(GOOD_MARKER, stamp_ns='5')), 'bad_type'),
    (json.dumps(dict(GOOD_MARKER, episode=True)), 'bad_type'),
    (json.dumps(dict(GOOD_MARKER, event='middle')), 'out_of_range'),
    (json.dumps(dict(GOOD_MARKER, summary=[1])), 'bad_type'),
])
def test_malformed_markers_are_refused_by_reason(text, reason):
    with pytest.raises(PayloadError) as raised:
        SimEpisode.from_json(text)
    assert raised.value.reason == reason


@pytest.mark.parametrize('change, reason', [
    ({'speed': float('nan')}, 'bad_type'),
    ({'x': float('inf')}, 'bad_type'),
    ({'control': [0.0, 1.0]}, 'bad_type'),
    ({'control': [0.0, 'a', 1.0]}, 'bad_type'),
    ({'route_completion': 101.0}, 'out_of_range'),
    ({'counts': {'collision': 1.5}}, 'bad_type'),
])
def test_a_producer_cannot_build_a_bad_status(change, reason):
    with pytest.raises(PayloadError) as raised:
        sim_status(**change)
    assert raised.value.reason == reason


def test_nan_on_the_wire_is_refused():
    data = sim_status().to_dict()
    data['speed'] = float('nan')
    with pytest.raises(PayloadError, match='speed'):
        SimStatus.from_json(json.dumps(data))


def test_the_reader_counts_every_refusal_and_logs_once_per_reason():
    lines = []
    reader = PayloadReader(SimEpisode, lines.append)
    texts = ['x', 'y', '[]', json.dumps(GOOD_MARKER), json.dumps(dict(GOOD_MARKER, episode=-1))]
    parsed = [reader.parse(text) for text in texts]
    assert [p is not None for p in parsed] == [False, False, False, True, False]
    assert reader.rejected == {'not_json': 2, 'not_an_object': 1, 'out_of_range': 1}
    assert len(lines) == 3 and all('SimEpisode' in line for line in lines)
