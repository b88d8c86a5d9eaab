"""The launch argument checks on their own (no launch needed): values, names, paths."""
from llava_drive.bringup import checks
from llava_drive.bringup.checks import LaunchArgumentError
import pytest

CHECKS = {'bag_path': checks.non_empty, 'duration': checks.number(low=0.0),
          'noise': checks.boolean}


def test_undeclared_arguments_are_all_named_with_their_close_matches():
    with pytest.raises(LaunchArgumentError, match=r'^unknown launch argument bag_pth \(did you '
                                                  r'mean bag_path\?\), zzz; known: bag_path, '
                                                  r'duration, noise$'):
        checks.check_arguments({'bag_path': 'a', 'duration': '1', 'noise': 'true',
                                'bag_pth': 'b', 'zzz': '1'}, CHECKS)
    checks.check_arguments({'bag_path': 'a', 'duration': '1', 'noise': 'true'}, CHECKS)


@pytest.mark.parametrize('check, text, value', [
    (checks.number(low=0.0), '2.5', 2.5),
    (checks.number(1, True, 65535), '2000', 2000),
    (checks.boolean, 'True', True),
    (checks.boolean, '0', False),
    (checks.seed_list, '[1, 2, 5]', [1, 2, 5]),
    (checks.optional_numbers(3), '', []),
    (checks.optional_numbers(3), '1,2,3', [1.0, 2.0, 3.0]),
    (checks.auto_or_boolean, 'auto', 'auto'),
    (checks.ros_name, 'hero_2', 'hero_2'),
])
def test_good_values_parse(check, text, value):
    assert check(text, 'x') == value


@pytest.mark.parametrize('check, text, message', [
    (checks.number(low=0.0), 'nan', r"x must be a number >= 0, got 'nan'"),
    (checks.number(1, True, 65535), '70000', r'x must be an integer >= 1 and <= 65535'),
    (checks.number(1, True, 65535), '2.5', r'x must be an integer'),
    (checks.seed_list, '[true]', r'x must be a YAML list of route seeds'),
    (checks.seed_list, '[]', r'x must be a YAML list of route seeds'),
    (checks.seed_list, '[-1]', r'x must be a YAML list of route seeds'),
    (checks.seed_list, '[1', r'x must be a YAML list of route seeds'),
    (checks.optional_numbers(3), '1,2', r'x must be 3 comma-separated numbers'),
    (checks.ros_name, 'ego-vehicle', r'x must be a ROS name token'),
    (checks.ros_name, '1ego', r'x must be a ROS name token'),
    (checks.non_empty, ' ', r'x must be non-empty'),
])
def test_bad_values_are_one_line_naming_the_argument(check, text, message):
    with pytest.raises(LaunchArgumentError, match=message) as refused:
        check(text, 'x')
    assert '\n' not in str(refused.value)


def test_bag_path_new_or_empty_and_creatable(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'x.mcap').write_text('')
    (tmp_path / 'file').write_text('')
    for good in ('empty', 'new', 'new/deeper/bag'):
        assert checks.new_bag_path(str(tmp_path / good), 'bag_path') == str(tmp_path / good)
    assert sorted(path.name for path in tmp_path.iterdir()) == ['empty', 'file', 'full']
    for bad, message in (('full', 'already exists and is not an empty directory'),
                         ('file', 'already exists and is not an empty directory'),
                         ('file/bag', 'cannot create .*not a directory')):
        with pytest.raises(LaunchArgumentError, match=message):
            checks.new_bag_path(str(tmp_path / bad), 'bag_path')
    with pytest.raises(LaunchArgumentError, match="bag_path must be a bag directory, got ''"):
        checks.new_bag_path('', 'bag_path')


def test_related_arguments():
    checks.related({'backend': 'carla', 'carla_timeout': '5'})
    with pytest.raises(LaunchArgumentError, match='carla_timeout must be >= 20 s for '
                                                  'carla_ros_bridge'):
        checks.related({'backend': 'carla_ros_bridge', 'carla_timeout': '5'})
