"""
Device, dtype and model choices, refused in one line before anything loads.

``llava-drive extract|train``, the policy node and the launch files all go through here, so a
``cuda`` device on a CPU-only torch is one sentence and exit status 2, not a traceback from
deep inside torch.
"""
import json
from pathlib import Path
from typing import Optional, Tuple

from llava_drive.features.spec import DTYPES

SUPPORTED_MODEL_TYPES = ('llava',)


class ChoiceError(ValueError):
    """A device, dtype or model directory that cannot be used (the message is one line)."""


def resolve_device(device, dtype: Optional[str] = None) -> Tuple[object, Optional[object]]:
    """
    Return ``(torch.device, torch dtype or None)`` for ``device`` and ``dtype``.

    :param device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'mps'``.
    :param dtype: one of :data:`DTYPES`, or None (not checked).
    :raises ChoiceError: a device this torch does not have, or a dtype it cannot compute in.
    """
    import torch
    text = str(device).strip()
    try:
        resolved = torch.device(text)
    except (RuntimeError, ValueError):
        raise ChoiceError(f'device {text!r} is not a torch device (cpu, cuda, cuda:N)') from None
    if resolved.type == 'cuda':
        if not torch.cuda.is_available():
            raise ChoiceError(f'device {text!r} requested but this torch ({torch.__version__}) '
                              f'has no usable CUDA device; use device cpu')
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ChoiceError(f'device {text!r} requested but only {count} CUDA device(s) '
                              f'exist (cuda:0..cuda:{count - 1})')
    elif resolved.type == 'mps':
        if not torch.backends.mps.is_available():
            raise ChoiceError(f'device {text!r} requested but MPS is not available here')
    elif resolved.type != 'cpu':
        raise ChoiceError(f'device {text!r} is not supported (cpu, cuda, cuda:N, mps)')
    if dtype is None:
        return resolved, None
    if dtype not in DTYPES:
        raise ChoiceError(f'dtype must be one of {", ".join(DTYPES)}, got {dtype!r}')
    if dtype == 'bfloat16' and resolved.type == 'cuda' and not torch.cuda.is_bf16_supported(
            including_emulation=False):
        raise ChoiceError(f'dtype bfloat16 is not supported on {text} '
                          f'({torch.cuda.get_device_name(resolved)}); use float16 or float32')
    return resolved, getattr(torch, dtype)


def check_model_dir(path) -> Path:
    """
    Return ``path`` if it is a local model directory of a supported (LLaVA) model type.

    Read from its ``config.json`` directly: transformers' own refusal of an unknown type is a
    paragraph listing every architecture it knows.

    :raises ChoiceError: no directory, no or unreadable ``config.json``, or another model type.
    """
    path = Path(path)
    config = path / 'config.json'
    if not config.is_file():
        raise ChoiceError(f'not a model directory (no config.json): {path}')
    try:
        model_type = json.loads(config.read_text()).get('model_type')
    except (OSError, ValueError, AttributeError) as error:
        raise ChoiceError(f'{config} is not a readable model config: '
                          f'{str(error).splitlines()[0] if str(error) else type(error).__name__}'
                          ) from None
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ChoiceError(f'{path} is not a LLaVA model: model_type {model_type!r} '
                          f'(supported: {", ".join(SUPPORTED_MODEL_TYPES)})')
    return path
