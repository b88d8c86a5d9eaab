"""Route conditioning: prompt templates, route inputs, per-frame prompts in the extractor."""
import math

from fixtures_llava import scene_frame, tiny_llava_dir, write_bag  # noqa: F401
from llava_drive.features import cli as features_cli
from llava_drive.features.extract_bags import extract_bags
from llava_drive.features.extractor import ExtractorError, LlavaFeatureExtractor
from llava_drive.features.route_prompt import (
    check_phrases, command_one_hot, COMMAND_ORDER, DEFAULT_COMMAND_PHRASES, render_prompt,
    ROUTE_PROMPT, RouteInput, RoutePromptError, target_words, template_fields)
from llava_drive.features.spec import FeatureSpec
from llava_drive.features.store import (FeatureStoreError, load_feature_file,
                                        write_feature_file)
from llava_drive.learning.checkpoint import check_feature_spec, FeatureSpecMismatch
from llava_drive.planning import GlobalPlan, RoadOption
import numpy as np
import pytest
import torch

TEMPLATE = ROUTE_PROMPT + ' {target}'
_EXTRACTORS = {}


def extractor(model_dir, **options):
    """Return a cached extractor for these options."""
    key = (str(model_dir), tuple(sorted(options.items())))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = LlavaFeatureExtractor(model_dir, **options)
    return _EXTRACTORS[key]


def spec_fields(**changes):
    """Return the fields of a valid last_token spec with a route template."""
    fields = {'model_name': 'm', 'model_hash': 'ab' * 32, 'mode': 'last_token', 'layer': 2,
              'grid': None, 'prompt': ROUTE_PROMPT, 'preprocessing': 'pad', 'image_size': 112,
              'dtype': 'float32', 'feature_dim': 128,
              'command_phrases': DEFAULT_COMMAND_PHRASES}
    fields.update(changes)
    return fields


def test_templates_are_parsed_strictly():
    assert template_fields('Drive.') == ()
    assert template_fields(TEMPLATE) == ('command', 'speed', 'target')
    assert template_fields('{{literal}} {speed}') == ('speed',)
    for bad in ('{colour}', '{0}', '{}', '{speed:.1f}', '{command!r}', 'open {', 'close }',
                None, 3):
        with pytest.raises(RoutePromptError):
            template_fields(bad)


def test_vocabulary_must_cover_every_command_once():
    phrases = check_phrases(dict(DEFAULT_COMMAND_PHRASES))
    assert [name for name, _ in phrases] == [o.name for o in COMMAND_ORDER]
    assert check_phrases([(int(RoadOption[n]), p) for n, p in DEFAULT_COMMAND_PHRASES]) \
        == phrases
    partial = dict(DEFAULT_COMMAND_PHRASES)
    del partial['LEFT']
    with pytest.raises(RoutePromptError, match='lacks LEFT'):
        check_phrases(partial)
    for bad in ({**dict(DEFAULT_COMMAND_PHRASES), 'LEFT': ''},
                {**dict(DEFAULT_COMMAND_PHRASES), 'LEFT': 'Go {left}'},
                {**dict(DEFAULT_COMMAND_PHRASES), 'UPWARDS': 'Fly.'},
                list(DEFAULT_COMMAND_PHRASES) + [('LEFT', 'Again.')], 'LEFT', [1, 2]):
        with pytest.raises(RoutePromptError):
            check_phrases(bad)


def test_render_fills_command_speed_and_target_in_words():
    route = RouteInput(RoadOption.LEFT, 6.2, 12.4, 3.0)
    assert render_prompt(TEMPLATE, DEFAULT_COMMAND_PHRASES, route) == (
        'Turn left at the next intersection. Speed 6 m/s. '
        'The next target is 12 m ahead and 3 m to the left.')
    assert render_prompt('Drive.', (), None) == 'Drive.'
    unknown = RouteInput('STRAIGHT')  # speed and target unknown
    assert render_prompt(TEMPLATE, DEFAULT_COMMAND_PHRASES, unknown) == (
        'Go straight at the next intersection. Speed 0 m/s. No target is known.')
    assert target_words(-5.0, -0.2) == 'The next target is 5 m behind and straight on.'
    with pytest.raises(RoutePromptError, match='route input'):
        render_prompt(TEMPLATE, DEFAULT_COMMAND_PHRASES, None)


@pytest.mark.parametrize('bad', [
    {'speed': math.inf}, {'speed': 1e9}, {'target_forward': -math.inf}, {'speed': '6'},
    {'target_left': None}, {'command': 99}, {'command': 'north'}, {'speed': True}])
def test_route_inputs_refuse_bad_values(bad):
    with pytest.raises(RoutePromptError):
        RouteInput(**bad)


def test_one_hot_follows_the_command_order():
    rows = command_one_hot([int(RoadOption.LEFT), int(RoadOption.VOID)])
    assert rows.shape == (2, len(COMMAND_ORDER)) and rows.sum() == 2
    assert rows[0, COMMAND_ORDER.index(RoadOption.LEFT)] == 1
    with pytest.raises(RoutePromptError):
        command_one_hot([7])


def test_spec_records_template_and_vocabulary_and_refuses_blind_modes():
    spec = FeatureSpec(**spec_fields())
    data = spec.to_dict()
    assert data['command_phrases'][1] == ['LEFT', 'Turn left at the next intersection.']
    import json
    assert FeatureSpec.from_dict(json.loads(json.dumps(data))) == spec
    # Specs written before route prompts have no vocabulary field and still load.
    old = spec_fields(prompt='Drive.')
    del old['command_phrases']
    assert FeatureSpec.from_dict(old).command_phrases == ()
    for mode, grid, layer in (('image_grid', 2, 2), ('image_mean', None, 2),
                              ('vision_grid', 2, None)):
        with pytest.raises(ValueError, match='cannot see a per-frame prompt'):
            FeatureSpec(**spec_fields(mode=mode, grid=grid, layer=layer))
    with pytest.raises(ValueError, match='no {command} field'):
        FeatureSpec(**spec_fields(prompt='Speed {speed}.'))
    with pytest.raises(ValueError, match='lacks'):
        FeatureSpec(**spec_fields(command_phrases=(('LEFT', 'Left.'),)))


def test_decoder_features_follow_the_command_and_token0_does_not(tiny_llava_dir):  # noqa
    frame = scene_frame(3)
    left, right = RouteInput('LEFT', 6.0), RouteInput('RIGHT', 6.0)
    conditioned = extractor(tiny_llava_dir, mode='last_token', prompt=ROUTE_PROMPT)
    features = conditioned.extract([frame, frame], [left, right])
    assert not torch.allclose(features[0], features[1], atol=1e-4)
    token0 = extractor(tiny_llava_dir, mode='token0', prompt=ROUTE_PROMPT)
    baseline = token0.extract([frame, frame], [left, right])
    torch.testing.assert_close(baseline[0], baseline[1])


def test_per_frame_prompts_batch_equals_one_forward_per_frame(tiny_llava_dir):  # noqa: F811
    ex = extractor(tiny_llava_dir, mode='last_token', prompt=TEMPLATE)
    frames = [scene_frame(i) for i in range(4)]
    routes = [RouteInput('LEFT', 6.0, 12.0, 3.0), RouteInput('LANEFOLLOW'),
              RouteInput('STRAIGHT', 13.0, 40.0, -2.0), RouteInput('VOID', 0.4)]
    input_ids, lengths = ex.prompt_batch(routes, 4)
    assert len(set(lengths.tolist())) > 1  # really padded
    batched = ex.extract(frames, routes)
    single = torch.cat([ex.extract([f], [r]) for f, r in zip(frames, routes)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    with pytest.raises(ExtractorError, match='one route input per frame'):
        ex.extract(frames)
    with pytest.raises(ExtractorError, match='one route input per frame'):
        ex.extract(frames, routes[:3])


def test_extractor_refuses_templates_its_mode_cannot_see(tiny_llava_dir):  # noqa: F811
    for mode in ('image_grid', 'vision_grid'):
        with pytest.raises(ExtractorError, match='cannot see a per-frame prompt'):
            LlavaFeatureExtractor(tiny_llava_dir, mode=mode, prompt=ROUTE_PROMPT)
    with pytest.raises(ExtractorError, match='unknown'):
        LlavaFeatureExtractor(tiny_llava_dir, mode='last_token', prompt='{destination}')


def test_checkpoint_refused_by_an_extractor_with_another_template(tiny_llava_dir):  # noqa
    trained = extractor(tiny_llava_dir, mode='last_token', prompt=ROUTE_PROMPT)
    other = extractor(tiny_llava_dir, mode='last_token', prompt=TEMPLATE)
    config = {'feature_spec': trained.spec.to_dict()}
    check_feature_spec(config, trained.spec)
    with pytest.raises(FeatureSpecMismatch, match='prompt: checkpoint'):
        check_feature_spec(config, other.spec)
    phrases = dict(DEFAULT_COMMAND_PHRASES, LEFT='Take the next left.')
    reworded = LlavaFeatureExtractor(tiny_llava_dir, mode='last_token', prompt=ROUTE_PROMPT,
                                     command_phrases=phrases)
    with pytest.raises(FeatureSpecMismatch, match='command_phrases'):
        check_feature_spec(config, reworded.spec)


def _left_turn_plan():
    """Return a plan: 10 m of lane, then a left turn at a junction 30 m ahead."""
    return GlobalPlan([(0, 0, 0), (10, 0, 0), (30, 0, 0), (40, 10, math.pi / 2),
                       (40, 60, math.pi / 2)],
                      ['LANEFOLLOW', 'LANEFOLLOW', 'LEFT', 'LANEFOLLOW', 'LANEFOLLOW'])


def test_extraction_fills_prompts_from_plan_and_odometry(tmp_path, tiny_llava_dir):  # noqa
    poses = [(1.5 * i, 0.2, 0.0) for i in range(9)]
    write_bag(tmp_path / 'turn', count=9, poses=poses)
    write_bag(tmp_path / 'no_odometry', count=4, start_ns=1_800_000_000_000_000_000)
    ex = extractor(tiny_llava_dir, mode='last_token', prompt=TEMPLATE)
    results = extract_bags(ex, [tmp_path / 'turn', tmp_path / 'no_odometry'],
                           tmp_path / 'features', batch_size=4, progress=False,
                           plan=_left_turn_plan())
    assert [r.status for r in results] == ['written', 'written']
    turn = load_feature_file(tmp_path / 'features' / 'turn.safetensors')
    expected = [RoadOption.LANEFOLLOW] * 5 + [RoadOption.LEFT] * 4  # 10 m point: 4 m at 7.5
    assert turn.command.tolist() == [int(c) for c in expected]
    np.testing.assert_allclose(turn.pose, np.array(poses, np.float32))
    np.testing.assert_allclose(turn.target[0], [10.0, -0.2], atol=1e-5)
    np.testing.assert_allclose(turn.target[-1], [30.0 - 12.0, -0.2], atol=1e-5)
    # The stored features are those of each frame's own filled prompt.
    last = ex.extract([scene_frame(8)], [RouteInput('LEFT', 8.0, 18.0, -0.2)])
    np.testing.assert_allclose(turn.features[-1], last[0].numpy(), rtol=1e-4, atol=1e-5)
    assert turn.meta['route_source'] == 'plan' and turn.meta['frames_without_pose'] == 0
    blind = load_feature_file(tmp_path / 'features' / 'no_odometry.safetensors')
    assert set(blind.command.tolist()) == {int(RoadOption.LANEFOLLOW)}
    assert np.isnan(blind.target).all() and np.isnan(blind.pose).all()
    assert blind.meta['frames_without_pose'] == 4 and blind.meta['frames_without_route'] == 4
    # A different plan makes the files stale; the same plan leaves them up to date.
    again = extract_bags(ex, [tmp_path / 'turn'], tmp_path / 'features', progress=False,
                         plan=_left_turn_plan())
    assert again[0].status == 'skipped'
    moved = GlobalPlan(_left_turn_plan().poses + [5, 0, 0], _left_turn_plan().options)
    assert extract_bags(ex, [tmp_path / 'turn'], tmp_path / 'features', progress=False,
                        plan=moved)[0].status == 'written'


def test_extract_command_reads_a_plan_file_and_refuses_bad_ones(
        tmp_path, tiny_llava_dir, capsys):  # noqa: F811
    import argparse
    import json

    write_bag(tmp_path / 'bag', count=3, poses=[(0, 0, 0), (1, 0, 0), (2, 0, 0)])
    parser = argparse.ArgumentParser(prog='llava-drive')
    features_cli.register(parser.add_subparsers(dest='command'))

    def run(*argv):
        args = parser.parse_args([str(a) for a in argv])
        return args.func(args)

    good = tmp_path / 'plan.json'
    good.write_text(json.dumps(_left_turn_plan().to_dict()))
    common = ['extract', tmp_path / 'bag', '--model', tiny_llava_dir, '--mode', 'last_token',
              '--prompt', ROUTE_PROMPT, '--no-progress', '--out', tmp_path / 'f']
    assert run(*common, '--plan', good) == 0
    stored = load_feature_file(tmp_path / 'f' / 'bag.safetensors')
    assert stored.spec.prompt == ROUTE_PROMPT and stored.spec.command_phrases
    for content, message in (('{', 'not JSON'), ('{"poses": [[0, 0, 0]], "options": [4]}',
                                                 'at least 2')):
        bad = tmp_path / 'bad.json'
        bad.write_text(content)
        assert run(*common, '--plan', bad) == 2
        assert message in capsys.readouterr().err
    assert run(*common, '--plan', tmp_path / 'missing.json') == 2
    assert run('extract', tmp_path / 'bag', '--model', tiny_llava_dir, '--prompt',
               ROUTE_PROMPT, '--no-progress', '--out', tmp_path / 'g') == 2
    assert 'cannot see a per-frame prompt' in capsys.readouterr().err


def test_store_keeps_route_tensors_and_refuses_bad_ones(tmp_path):
    from learning_data import synthetic_spec

    spec = synthetic_spec(feature_dim=4)
    args = (np.zeros((3, 4)), np.zeros((3, 3)), np.arange(3), np.zeros(3), np.zeros(3), spec)
    path = write_feature_file(tmp_path / 'a.safetensors', *args, command=[1, 2, 4],
                              target=np.ones((3, 2)), pose=np.zeros((3, 3)))
    loaded = load_feature_file(path)
    assert loaded.command.tolist() == [1, 2, 4] and loaded.target.shape == (3, 2)
    default = load_feature_file(write_feature_file(tmp_path / 'b.safetensors', *args))
    assert default.command.tolist() == [int(RoadOption.LANEFOLLOW)] * 3
    assert np.isnan(default.pose).all()
    for bad, message in (({'command': [1, 2, 9]}, 'no RoadOption'),
                         ({'target': np.full((3, 2), np.inf)}, 'infinite'),
                         ({'pose': np.zeros((3, 2))}, r'\[N, 3\]'),
                         ({'command': [1, 2]}, 'lengths differ')):
        with pytest.raises(FeatureStoreError, match=message):
            write_feature_file(tmp_path / 'c.safetensors', *args, **bad)


def test_route_tracker_carries_progress_and_refuses_bad_poses():
    from llava_drive.features.route_prompt import RouteTracker

    tracker = RouteTracker()
    route, pose = tracker.route((1.0, 0.0, 0.0), 5.0)
    assert route.command == RoadOption.LANEFOLLOW and math.isnan(route.target_forward)
    assert pose.tolist() == [1.0, 0.0, 0.0]
    tracker.set_plan(_left_turn_plan())
    commands = [tracker.route((x, 0.0, 0.0), 5.0)[0].command for x in (0.0, 8.0, 20.0)]
    assert commands == [RoadOption.LANEFOLLOW, RoadOption.LEFT, RoadOption.LEFT]
    # A non-finite pose or an absurd speed is unknown, never an exception.
    route, pose = tracker.route((math.nan, 0.0, 0.0), math.inf)
    assert route.command == RoadOption.LANEFOLLOW and np.isnan(pose).all()
    assert math.isnan(route.speed) and tracker.without_pose == 1
    # A new episode starts from the beginning of the plan again.
    assert tracker.route((0.0, 0.0, 0.0), 1.0, episode=1)[0].command == RoadOption.LANEFOLLOW


def test_extraction_takes_the_plan_the_bag_recorded(tmp_path, tiny_llava_dir):  # noqa: F811
    poses = [(1.5 * i, 0.2, 0.0) for i in range(9)]
    write_bag(tmp_path / 'town', count=9, poses=poses, plan=_left_turn_plan().to_dict())
    write_bag(tmp_path / 'broken', count=3, poses=poses[:3], plan={'poses': [[0, 0, 0]]},
              start_ns=1_800_000_000_000_000_000)
    ex = extractor(tiny_llava_dir, mode='last_token', prompt=TEMPLATE)
    results = extract_bags(ex, [tmp_path / 'town', tmp_path / 'broken'], tmp_path / 'f',
                           progress=False)
    assert [r.status for r in results] == ['written', 'written']
    town = load_feature_file(tmp_path / 'f' / 'town.safetensors')
    assert town.command.tolist() == [4] * 5 + [1] * 4 and town.meta['route_source'] == 'bag'
    broken = load_feature_file(tmp_path / 'f' / 'broken.safetensors')
    assert broken.command.tolist() == [4] * 3 and broken.meta['frames_without_route'] == 3
