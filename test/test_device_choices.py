"""Device, dtype and model choices: one-line refusals, exit status 2, before anything loads."""
import json
import subprocess
import sys

from fixtures_llava import tiny_llava_dir  # noqa: F401
from llava_drive.cli import main
from llava_drive.features.choices import check_model_dir, ChoiceError, resolve_device
from llava_drive.policy.inference import load_policy, PolicyLoadError
import pytest
import torch

# No machine has 99 CUDA devices: refused with or without CUDA.
ABSENT_GPU = 'cuda:99'


def test_cpu_and_its_dtypes_resolve():
    assert resolve_device('cpu') == (torch.device('cpu'), None)
    assert resolve_device('cpu', 'bfloat16') == (torch.device('cpu'), torch.bfloat16)


@pytest.mark.parametrize('device, dtype, message', [
    (ABSENT_GPU, None, r"device 'cuda:99' requested but (this torch \(.*\) has no usable CUDA "
                       r'device; use device cpu|only \d+ CUDA device)'),
    ('gpu', None, r"device 'gpu' is not a torch device \(cpu, cuda, cuda:N\)"),
    ('meta', None, r"device 'meta' is not supported"),
    ('cpu', 'float8', r"dtype must be one of float32, float16, bfloat16, got 'float8'"),
])
def test_bad_choices_are_one_line(device, dtype, message):
    with pytest.raises(ChoiceError, match=message) as refused:
        resolve_device(device, dtype)
    assert '\n' not in str(refused.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a torch without CUDA')
def test_plain_cuda_on_a_cpu_only_torch():
    with pytest.raises(ChoiceError, match=r"device 'cuda' requested but this torch"):
        resolve_device('cuda')


def test_a_model_directory_must_be_llava(tmp_path, tiny_llava_dir):  # noqa: F811
    assert check_model_dir(tiny_llava_dir) == tiny_llava_dir
    with pytest.raises(ChoiceError, match='no config.json'):
        check_model_dir(tmp_path)
    (tmp_path / 'config.json').write_text('{"model_type": "bert"}')
    with pytest.raises(ChoiceError, match="is not a LLaVA model: model_type 'bert'"):
        check_model_dir(tmp_path)
    (tmp_path / 'config.json').write_text('{not json')
    with pytest.raises(ChoiceError, match='is not a readable model config: Expecting'):
        check_model_dir(tmp_path)


@pytest.fixture
def head(tmp_path):
    """Return a directory that is no checkpoint: the device is refused before it is read."""
    return tmp_path / 'head'


def test_load_policy_refuses_the_device_before_loading(head):
    with pytest.raises(PolicyLoadError, match="device 'cuda:99' requested"):
        load_policy(head, device=ABSENT_GPU)
    with pytest.raises(PolicyLoadError, match="dtype must be one of .* got 'int8'"):
        load_policy(head, device='cpu', dtype='int8')


def test_cli_commands_refuse_a_device_with_status_2(tmp_path, tiny_llava_dir, capsys):  # noqa
    bag = tmp_path / 'bag'
    bag.mkdir()
    assert main(['extract', str(bag), '--model', str(tiny_llava_dir), '--out',
                 str(tmp_path / 'features'), '--device', ABSENT_GPU]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("llava-drive extract: error: device 'cuda:99' requested")
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'config.json').write_text(json.dumps({'model_type': 'bert'}))
    assert main(['extract', str(bag), '--model', str(tmp_path / 'other'), '--out',
                 str(tmp_path / 'features')]) == 2
    assert 'is not a LLaVA model' in capsys.readouterr().err
    assert main(['train', str(tmp_path / 'features'), '--out', str(tmp_path / 'head'),
                 '--device', ABSENT_GPU]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("llava-drive train: error: device 'cuda:99' requested")
    for command in (['record', '--driver', 'policy'], ['drive']):
        with pytest.raises(SystemExit) as exited:  # argparse: before any node starts
            main(command + ['--device', ABSENT_GPU])
        assert exited.value.code == 2
        assert "argument --device: device 'cuda:99' requested" in capsys.readouterr().err


def test_policy_node_refuses_a_device_in_one_line_with_status_2(tmp_path):
    completed = subprocess.run(
        [sys.executable, '-m', 'llava_drive.nodes.policy', '--ros-args', '-p',
         f'checkpoint:={tmp_path}', '-p', f'device:={ABSENT_GPU}'],
        capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2, completed.stderr[-2000:]
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("[Policy] refused to start: device 'cuda:99' requested"), line
