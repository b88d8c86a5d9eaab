"""Bag tools: info, review, trim and the ``llava-drive bag`` command line."""
import json

import cv2
from llava_drive.bag import format as bagfmt
from llava_drive.bag.info import bag_info, format_info
from llava_drive.bag.reader import count_pairs
from llava_drive.bag.review import review_bag, ReviewConfig
from llava_drive.bag.trim import add_exclusions, load_exclusions, parse_exclusion
from llava_drive.bag.writer import BagWriter, BagWriterConfig
from llava_drive.cli import main
from llava_drive.control import Control
from llava_drive.visual.overlay import draw_overlay
import numpy as np
import pytest

START_NS = 2_000_000_000
STEP_NS = 100_000_000  # 10 Hz


def lane_frame(index: int) -> np.ndarray:
    """Return a 90x120 BGR frame with a road whose position depends on ``index``."""
    frame = np.full((90, 120, 3), (60, 150, 60), np.uint8)
    frame[:40] = (210, 170, 110)
    centre = 60 + (index % 9 - 4) * 4
    cv2.fillPoly(frame, [np.array([[centre - 6, 40], [centre + 6, 40], [115, 89], [5, 89]],
                                  np.int32)], (85, 85, 85))
    return frame


@pytest.fixture
def recorded(tmp_path):
    """Return a bag with two episodes, a 1 s gap, a summary with rejections."""
    bag = tmp_path / 'run_7'
    stamps = []
    with BagWriter(BagWriterConfig(str(bag))) as writer:
        writer.set_recording_info({'simulator': 'embedded', 'rate_hz': 10})
        index = 0
        for episode, count in ((0, 12), (1, 8)):
            first = START_NS + index * STEP_NS + (1_000_000_000 if episode else 0)
            writer.write_episode_marker(first, {'event': 'start', 'episode': episode,
                                                'route_seed': 40 + episode})
            for k in range(count):
                stamp = first + k * STEP_NS
                writer.write_pair(stamp, lane_frame(index), 'bgr8',
                                  Control(steer=(index % 5 - 2) / 4, throttle=0.4,
                                          brake=0.5 if index == 3 else 0.0),
                                  speed=2.0 + index / 10)
                stamps.append(stamp)
                index += 1
            writer.write_episode_marker(stamps[-1], {'event': 'end', 'episode': episode,
                                                     'reason': 'route_done'})
        writer.close({'rejected': {'stale_control': 2}})
    return bag, stamps


def test_info_reports_pairs_gaps_episodes_and_actions(recorded):
    """Info counts pairs, finds the gap between episodes and computes action statistics."""
    bag, stamps = recorded
    info = bag_info(bag, check_images=True)
    assert info['pairs'] == 20 and info['pairs_after_exclusions'] == 20
    assert info['messages'] == 20 * 3 + 4 + 2
    assert info['start_ns'] == stamps[0] and info['end_ns'] == stamps[-1]
    assert info['duration_s'] == pytest.approx(2.9)
    assert info['pair_rate_hz'] == pytest.approx(19 / 2.9)
    assert info['gaps']['median_period_s'] == pytest.approx(0.1)
    assert info['gaps']['gaps_over_2x_median'] == 1
    assert info['gaps']['largest'][0] == {'after_s': pytest.approx(1.1),
                                          'gap_s': pytest.approx(1.1)}
    assert [(e['episode'], e['pairs'], e['route_seed']) for e in info['episodes']] == \
        [(0, 12, 40), (1, 8, 41)]
    steer = [(i % 5 - 2) / 4 for i in range(20)]
    assert info['actions']['steer']['mean'] == pytest.approx(np.mean(steer), abs=1e-6)
    assert info['actions']['steer']['std'] == pytest.approx(np.std(steer), abs=1e-6)
    assert info['actions']['brake']['max'] == 0.5
    assert info['actions']['speed']['min'] == pytest.approx(2.0)
    assert info['rejected'] == {'stale_control': 2}
    assert info['recording_info']['simulator'] == 'embedded'
    assert info['read']['undecodable'] == {}
    topics = {t['name']: (t['type'], t['count']) for t in info['topics']}
    assert topics[bagfmt.CONTROL_TOPIC] == (bagfmt.CONTROL_TYPE, 20)
    text = format_info(info)
    for expected in ('Duration:         2.900 s', 'Pairs:            20', 'stale_control: 2',
                     '1 gaps > 2x median', bagfmt.CONTROL_TYPE, 'route_seed'):
        assert expected in text


def test_trim_specs_and_reader(recorded):
    """Trim stores relative, absolute and episode exclusions; the reader skips them."""
    bag, stamps = recorded
    start = stamps[0]
    assert parse_exclusion('0.5:1', start).start_ns == start + 500_000_000
    assert parse_exclusion('2:', start).end_ns is None
    assert parse_exclusion(f'ns:{stamps[2]}:{stamps[3]}', start).end_ns == stamps[3]
    for bad in ('abc', '1:x', '3:1', 'episode:x', 'ns:1', ':'):
        with pytest.raises(ValueError, match='exclusion'):
            parse_exclusion(bad, start)
    add_exclusions(bag, ['0.2:0.4', 'episode:1'], reason='curb')
    add_exclusions(bag, ['0.2:0.4'])  # same range again: stored once
    assert len(load_exclusions(bag)) == 2
    assert count_pairs(bag) == 20 - 3 - 8
    info = bag_info(bag)
    assert info['pairs_after_exclusions'] == 9
    assert info['exclusions'][1].startswith('episode 1')
    content = (bag / 'exclusions.yaml').read_text()
    assert 'curb' in content and 'episode: 1' in content
    # The recording is untouched.
    names = sorted(p.name for p in bag.iterdir())
    assert names == ['exclusions.yaml', 'metadata.yaml', 'run_7_0.mcap']


def test_review_writes_plots_sheet_and_video(recorded, tmp_path):
    """Review writes readable PNGs and an MP4 that reopens with the right frame count."""
    bag, _ = recorded
    add_exclusions(bag, ['0.3:0.6'])
    out = tmp_path / 'review'
    outputs = review_bag(bag, ReviewConfig(str(out), sheet_frames=6, max_frames=15, fps=5,
                                           progress=False))
    for kind in ('controls', 'histograms', 'contact_sheet'):
        image = cv2.imread(outputs[kind])
        assert image is not None and image.shape[0] > 100, kind
        assert image.std() > 10, kind  # not blank
    sheet = cv2.imread(outputs['contact_sheet'])
    assert sheet.shape == (2 * 240, 3 * 320, 3)  # 6 frames upscaled to 320x240, 3 columns
    capture = cv2.VideoCapture(outputs['video'])
    assert capture.isOpened()
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames += 1
        assert frame.shape == (240, 320, 3)
    capture.release()
    assert frames == 15 == int(outputs['video_frames'])
    with pytest.raises(ValueError, match='max_frames 0'):
        ReviewConfig(str(out), max_frames=0)


def test_overlay_draws_the_control():
    """Steering left and right draw different pictures; throttle and brake bars fill."""
    frame = cv2.cvtColor(lane_frame(0), cv2.COLOR_BGR2RGB)
    left = draw_overlay(frame, Control(steer=-1.0), 1.0, 0.0, 0)
    right = draw_overlay(frame, Control(steer=1.0), 1.0, 0.0, 0)
    assert left.shape == (240, 320, 3)
    yellow = np.array([0, 255, 255])
    left_half = (left[:, :160] == yellow).all(axis=2).sum()
    right_half = (right[:, :160] == yellow).all(axis=2).sum()
    assert left_half > 3 * right_half
    braking = draw_overlay(frame, Control(brake=1.0), 1.0, 0.0, 0)
    assert (braking == np.array([0, 0, 255])).all(axis=2).sum() > 200


def test_cli_commands(recorded, tmp_path, capsys):
    """The bag subcommands run end to end through the llava-drive entry point."""
    bag, _ = recorded
    assert main(['bag', 'info', str(bag), '--json']) == 0
    assert json.loads(capsys.readouterr().out)['pairs'] == 20
    assert main(['bag', 'info', str(bag)]) == 0
    assert 'Topic information' in capsys.readouterr().out
    assert main(['bag', 'trim', str(bag), '--exclude', '0:0.05', '--reason', 'start']) == 0
    assert '1 exclusion(s)' in capsys.readouterr().out
    assert main(['bag', 'trim', str(bag), '--list']) == 0
    assert '0.000 s .. 0.050 s' in capsys.readouterr().out
    assert count_pairs(bag) == 19
    assert main(['bag', 'trim', str(bag), '--clear']) == 0
    assert count_pairs(bag) == 20
    assert main(['bag', 'trim', str(bag), '--exclude', 'nonsense']) == 1
    assert 'nonsense' in capsys.readouterr().err
    assert main(['bag', 'recover', str(bag)]) == 0
    assert 'healthy' in capsys.readouterr().out
    out = tmp_path / 'r'
    assert main(['bag', 'review', str(bag), '--out', str(out), '--no-video', '--quiet']) == 0
    assert (out / 'contact_sheet.png').is_file() and not (out / 'run.mp4').exists()
    assert main(['bag', 'info', str(tmp_path / 'missing')]) == 1
    assert 'does not exist' in capsys.readouterr().err
    for command in ('info', 'review', 'trim', 'recover'):
        with pytest.raises(SystemExit) as done:
            main(['bag', command, '--help'])
        assert done.value.code == 0
        assert 'example' in capsys.readouterr().out


def test_review_into_a_file_is_one_line_error(recorded, tmp_path, capsys):
    (tmp_path / 'afile').write_text('x')
    assert main(['bag', 'review', str(recorded), '--out', str(tmp_path / 'afile'),
                 '--no-video', '--quiet']) == 1
    error = capsys.readouterr().err.strip()
    assert 'afile' in error and '\n' not in error and 'Traceback' not in error


def test_info_text_names_a_town_plan_by_its_commands(recorded):
    """A start marker's global plan (thousands of numbers) reads as its junction commands."""
    bag, _ = recorded
    info = bag_info(bag)
    info['episodes'][0]['global_plan'] = {'options': [4, 3, 4, 1, 4, 2], 'poses': [[0, 0, 0]] * 6,
                                          'dense_poses': [[0.0, 0.0, 0.0]] * 5000}
    info['episodes'][0]['summary'] = None
    text = format_info(info)
    assert 'plan: 6 targets, STRAIGHT LEFT RIGHT' in text
    assert 'dense_poses' not in text and 'summary' not in text
    assert max(len(line) for line in text.splitlines()) < 200
