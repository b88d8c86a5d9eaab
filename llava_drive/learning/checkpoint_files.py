"""
A checkpoint directory's files checked without torch: names, JSON documents, safetensors header.

:func:`check_checkpoint_files` is what :func:`~.checkpoint.load_checkpoint` checks before it
reads any weight, and what ``policy.launch.py`` checks before any node starts (the policy node
only fails after it imported torch and transformers). Weights that need decoding (non-finite
values, shapes the head does not have) are checked by the loader.
"""
import json
from pathlib import Path
import struct

from llava_drive.features.spec import FeatureSpec

FORMAT_VERSION = 1
WEIGHTS_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'
TRAIN_CONFIG_FILE = 'train_config.json'
CHECKPOINT_FILES = (WEIGHTS_FILE, CONFIG_FILE, TRAIN_CONFIG_FILE)
# Bytes per element of the safetensors dtypes; the header limit is the safetensors library's.
SAFETENSORS_DTYPES = {'BOOL': 1, 'U8': 1, 'I8': 1, 'F8_E5M2': 1, 'F8_E4M3': 1, 'I16': 2,
                      'U16': 2, 'F16': 2, 'BF16': 2, 'I32': 4, 'U32': 4, 'F32': 4, 'I64': 8,
                      'U64': 8, 'F64': 8}
MAX_SAFETENSORS_HEADER = 100_000_000


class CheckpointError(Exception):
    """A checkpoint directory is missing files or its files do not agree."""


def read_json_object(path: Path) -> dict:
    """Return a JSON object file, or raise :class:`CheckpointError` in one line."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f'corrupt {path}: {error}') from None
    if not isinstance(document, dict):
        raise CheckpointError(f'corrupt {path}: a JSON {type(document).__name__}, not an object')
    return document


def read_checkpoint_config(directory) -> dict:
    """
    Return a checkpoint's ``config.json`` without loading any weights.

    :param directory: the checkpoint directory.
    :raises CheckpointError: no or damaged config.json, another format, or a key the loader
        needs missing or of the wrong kind (the head's fields are checked when it is built).
    """
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f'not a checkpoint directory (no {CONFIG_FILE}): {directory}')
    config = read_json_object(path)
    if config.get('format_version') != FORMAT_VERSION:
        raise CheckpointError(
            f'{path}: unsupported checkpoint format_version {config.get("format_version")!r}')
    normalization = config.get('normalization')
    if not isinstance(config.get('head'), dict):
        raise CheckpointError(f'{path}: no head configuration (an object under "head")')
    if not (isinstance(normalization, dict) and all(
            isinstance(normalization.get(key), list)
            for key in ('feature_mean', 'feature_std'))):
        raise CheckpointError(f'{path}: no normalization (feature_mean and feature_std lists)')
    try:
        FeatureSpec.from_dict(config.get('feature_spec'))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f'{path}: no usable feature_spec: {error}') from None
    return config


def check_safetensors_header(path: Path) -> dict:
    """
    Return the header of a safetensors file after checking it against the file's size.

    The layout: an 8-byte little-endian header length, a JSON object naming each tensor's
    dtype, shape and ``data_offsets`` into the data that follows, which they must tile.

    :raises CheckpointError: one line naming the file and what is wrong
    """
    def corrupt(reason: str):
        raise CheckpointError(f'corrupt {path}: {reason}')

    try:
        with open(path, 'rb') as stream:
            size = stream.seek(0, 2)
            stream.seek(0)
            prefix = stream.read(8)
            if len(prefix) < 8:
                corrupt(f'{size} bytes, shorter than a safetensors header')
            (length,) = struct.unpack('<Q', prefix)
            if not 2 <= length <= min(MAX_SAFETENSORS_HEADER, size - 8):
                corrupt(f'header length {length} does not fit the file ({size} bytes)')
            text = stream.read(length)
    except OSError as error:
        raise CheckpointError(f'cannot read {path}: {error.strerror or error}') from None
    try:
        header = json.loads(text.decode('utf-8'))
    except ValueError as error:  # UnicodeDecodeError is one
        corrupt(f'header is not JSON: {error}')
    if not isinstance(header, dict):
        corrupt('header is not a JSON object')
    data_size = size - 8 - length
    spans = []
    for name, entry in header.items():
        if name == '__metadata__':
            continue
        if not (isinstance(entry, dict) and entry.get('dtype') in SAFETENSORS_DTYPES
                and valid_numbers(entry.get('shape'))
                and valid_numbers(entry.get('data_offsets'), 2)):
            corrupt(f'tensor {name!r} has no valid dtype, shape and data_offsets')
        begin, end = entry['data_offsets']
        elements = 1
        for dimension in entry['shape']:
            elements *= dimension
        if end < begin or end - begin != elements * SAFETENSORS_DTYPES[entry['dtype']]:
            corrupt(f'tensor {name!r}: data_offsets {begin}..{end} do not hold its shape')
        if end > data_size:
            corrupt(f'tensor {name!r} ends at data byte {end}, the file holds {data_size} '
                    f'(truncated?)')
        spans.append((begin, end))
    covered = 0
    for begin, end in sorted(spans):
        if begin != covered:
            break
        covered = end
    if covered != data_size:
        corrupt(f'the tensors do not tile the {data_size} data bytes (a gap or overlap at '
                f'byte {covered})')
    return header


def valid_numbers(value, count: int = None) -> bool:
    """Return True for a list of non-negative integers (of length ``count`` if given)."""
    return isinstance(value, list) and (count is None or len(value) == count) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value)


def check_checkpoint_files(directory) -> dict:
    """
    Check every file of a checkpoint directory without torch; return its config.

    :param directory: the checkpoint directory.
    :raises CheckpointError: a missing or damaged file, in one line
    """
    directory = Path(directory)
    config = read_checkpoint_config(directory)
    for name in (WEIGHTS_FILE, TRAIN_CONFIG_FILE):
        if not (directory / name).is_file():
            raise CheckpointError(f'checkpoint {directory} has no {name} (incomplete copy?)')
    read_json_object(directory / TRAIN_CONFIG_FILE)
    check_safetensors_header(directory / WEIGHTS_FILE)
    return config
