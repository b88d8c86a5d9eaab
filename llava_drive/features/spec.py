"""
What a feature vector is: the feature specification shared by extractor, store and heads.

A checkpoint records the :class:`FeatureSpec` it was trained on; the policy node compares it
with its extractor's spec and refuses to drive when :meth:`FeatureSpec.differences` is not
empty. No torch or transformers imports here: the training side reads specs without them.
"""
from dataclasses import asdict, dataclass, fields
import enum
import hashlib
import json
import os
from pathlib import Path
import struct
from typing import Optional

from llava_drive import __version__
from llava_drive.features.route_prompt import check_phrases, RoutePromptError, template_fields


class FeatureMode(str, enum.Enum):
    """
    The named ways to turn one frame into a feature vector.

    Decoder modes read the language decoder's hidden states after layer ``L`` (index ``L`` of
    ``output_hidden_states``); vision modes read the vision tower only and never run the
    decoder.
    """

    LAST_TOKEN = 'last_token'
    """The last prompt token at decoder layer L: it has attended to the image and the prompt."""
    IMAGE_MEAN = 'image_mean'
    """The mean of the image-token states at decoder layer L."""
    IMAGE_GRID = 'image_grid'
    """The image-token states at decoder layer L, average-pooled to k x k and flattened."""
    VISION_CLS = 'vision_cls'
    """The vision tower's CLS state at the layer the model feeds its projector from."""
    VISION_GRID = 'vision_grid'
    """The vision tower's patch states (same layer), average-pooled to k x k and flattened."""
    TOKEN0 = 'token0'
    """
    ``hidden_states[-1][:, 0]``: the original system's feature, kept only as a baseline.

    Position 0 of a causal decoder cannot attend to the image, so this feature is the same
    for every frame.
    """


DECODER_MODES = frozenset({FeatureMode.LAST_TOKEN, FeatureMode.IMAGE_MEAN,
                           FeatureMode.IMAGE_GRID, FeatureMode.TOKEN0})
VISION_MODES = frozenset({FeatureMode.VISION_CLS, FeatureMode.VISION_GRID})
GRID_MODES = frozenset({FeatureMode.IMAGE_GRID, FeatureMode.VISION_GRID})
# Modes whose token can attend to the prompt text (token0 is the constant baseline).
PROMPT_CONDITIONED_MODES = frozenset({FeatureMode.LAST_TOKEN, FeatureMode.TOKEN0})

PREPROCESSING_POLICIES = ('pad', 'resize')
DTYPES = ('float32', 'float16', 'bfloat16')

DEFAULT_MODE = FeatureMode.IMAGE_GRID
# 4 x 4 beat 2 x 2 in every measured condition (benchmarks/feature_modes.py; README table).
# For llava-1.5-7b that is 16 x 4096 = 65,536 floats (256 KB) per frame: --grid 2 saves 4x.
DEFAULT_GRID = 4
DEFAULT_PROMPT = 'What should the driver do next: steer, throttle and brake?'

# Fields that never change the numbers in a feature vector.
_IGNORED_FIELDS = ('package_version',)


@dataclass(frozen=True)
class FeatureSpec:
    """
    Everything that determines the feature vector of a frame.

    :param model_name: the model directory or name as given by the user (informational when
        ``model_hash`` is set).
    :param model_hash: :func:`model_content_hash` of the model directory.
    :param mode: a :class:`FeatureMode` value.
    :param layer: decoder layer L for decoder modes (0 = embeddings, as index L of
        ``output_hidden_states``); None for vision modes.
    :param grid: k of the k x k pooling for grid modes; None otherwise.
    :param prompt: the user text inside the model's chat template; a template with the fields
        ``{command}``, ``{speed}``, ``{target}`` is filled per frame
        (:mod:`llava_drive.features.route_prompt`).
    :param preprocessing: ``'pad'`` (letterbox to square) or ``'resize'`` (squash).
    :param image_size: side of the square image fed to the vision tower, in pixels.
    :param dtype: compute dtype of the model (``'float32'``, ``'float16'``, ``'bfloat16'``).
    :param feature_dim: length D of one feature vector.
    :param command_phrases: the command vocabulary of a ``{command}`` template,
        ``((RoadOption name, phrase), ...)``; empty otherwise.
    :param package_version: llava_drive version that produced the features (informational).
    """

    model_name: str
    model_hash: str
    mode: str
    layer: Optional[int]
    grid: Optional[int]
    prompt: str
    preprocessing: str
    image_size: int
    dtype: str
    feature_dim: int
    command_phrases: tuple = ()
    package_version: str = __version__

    def __post_init__(self):
        """Validate every field; errors name the bad value."""
        try:
            mode = FeatureMode(self.mode)
        except ValueError:
            raise ValueError('mode must be one of %s, got %r'
                             % ([m.value for m in FeatureMode], self.mode)) from None
        object.__setattr__(self, 'mode', mode.value)  # store the plain string
        if not self.model_hash:
            raise ValueError('model_hash must not be empty (model_name=%r)' % self.model_name)
        if mode in DECODER_MODES:
            if not isinstance(self.layer, int) or self.layer < 0:
                raise ValueError('layer must be an int >= 0 for mode %r, got %r'
                                 % (mode.value, self.layer))
        elif self.layer is not None:
            raise ValueError('layer must be None for vision mode %r, got %r'
                             % (mode.value, self.layer))
        if mode in GRID_MODES:
            if not isinstance(self.grid, int) or self.grid < 1:
                raise ValueError('grid must be an int >= 1 for mode %r, got %r'
                                 % (mode.value, self.grid))
        elif self.grid is not None:
            raise ValueError('grid must be None for mode %r, got %r' % (mode.value, self.grid))
        if self.preprocessing not in PREPROCESSING_POLICIES:
            raise ValueError('preprocessing must be one of %s, got %r'
                             % (PREPROCESSING_POLICIES, self.preprocessing))
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError('image_size must be a positive int, got %r' % (self.image_size,))
        if self.dtype not in DTYPES:
            raise ValueError('dtype must be one of %s, got %r' % (DTYPES, self.dtype))
        if not isinstance(self.feature_dim, int) or self.feature_dim < 1:
            raise ValueError('feature_dim must be a positive int, got %r' % (self.feature_dim,))
        if not isinstance(self.prompt, str):
            raise ValueError('prompt must be a string, got %r' % (self.prompt,))
        try:
            used = template_fields(self.prompt)
            phrases = check_phrases(self.command_phrases) if 'command' in used else ()
        except RoutePromptError as error:
            raise ValueError(str(error)) from None
        if used and mode not in PROMPT_CONDITIONED_MODES:
            raise ValueError(
                'mode %r cannot see a per-frame prompt (%r): %s; use last_token, or a vision '
                'mode with the command as a head input' % (
                    mode.value, self.prompt, 'vision modes never read the prompt'
                    if mode in VISION_MODES else 'the image tokens come before the prompt '
                    'text in the LLaVA-1.5 layout, and a causal decoder never lets them see it'))
        if self.command_phrases and 'command' not in used:
            raise ValueError('command_phrases are given but the prompt %r has no {command} '
                             'field' % (self.prompt,))
        object.__setattr__(self, 'command_phrases', phrases)

    def to_dict(self) -> dict:
        """Return the spec as a JSON-ready dict (the vocabulary as lists, as JSON reads it)."""
        data = asdict(self)
        data['command_phrases'] = [list(pair) for pair in self.command_phrases]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> 'FeatureSpec':
        """
        Build a spec from :meth:`to_dict` output; unknown or missing keys raise ValueError.

        :param data: the dict, e.g. read from a checkpoint's config.json.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError('unknown feature spec fields: %s' % ', '.join(unknown))
        optional = ('package_version', 'command_phrases')  # the latter added with route prompts
        required = {f.name for f in fields(cls) if f.name not in optional}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError('feature spec is missing fields: %s' % ', '.join(missing))
        return cls(**data)

    def differences(self, other: 'FeatureSpec',
                    labels=('checkpoint', 'extractor')) -> list:
        """
        List the differences that change features, e.g. ``'layer: checkpoint 16, extractor 8'``.

        The package version is ignored, and so is the model name when both hashes are equal.

        :param other: the spec to compare with.
        :param labels: names for ``self`` and ``other`` in the messages.
        """
        mine, theirs = self.to_dict(), other.to_dict()
        result = []
        for name in mine:
            if name in _IGNORED_FIELDS or mine[name] == theirs[name]:
                continue
            if name == 'model_name' and self.model_hash == other.model_hash:
                continue
            result.append('%s: %s %s, %s %s'
                          % (name, labels[0], _show(mine[name]), labels[1], _show(theirs[name])))
        return result


def _show(value) -> str:
    """Format a field value for a difference message (strings quoted, hashes shortened)."""
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


# model_content_hash: files up to this size are hashed in full.
FULL_HASH_LIMIT = 8 * 1024 * 1024
# Larger files: their size, their safetensors header, and this many evenly spaced samples.
SAMPLE_COUNT = 16
SAMPLE_BYTES = 64 * 1024
# Files that define a model's computation: config, weights, tokenizer, processor, template.
HASHED_SUFFIXES = ('.json', '.safetensors', '.bin', '.model', '.txt', '.jinja')
_HASH_VERSION = b'llava_drive model hash v1\n'


def model_content_hash(model_dir) -> str:
    """
    Return a content hash of a Hugging Face model directory (hex sha256).

    Covers every ``*.json``, ``*.safetensors``, ``*.bin``, ``*.model``, ``*.txt`` and
    ``*.jinja`` file (config, weights, tokenizer, processor, chat template), not READMEs.
    Files up to 8 MiB are hashed in full. Larger (weight) files are hashed by size, their full
    safetensors header (tensor names, dtypes, shapes and offsets) and 16 samples of 64 KiB
    spread evenly over the file, so a 14 GB checkpoint hashes in milliseconds. The choice
    trades certainty for speed: a retrained checkpoint changes sampled bytes with near
    certainty, but an edit confined to unsampled bytes would go unnoticed. The hash
    identifies checkpoints; it is not a security check.

    :param model_dir: the model directory.
    """
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError('model directory not found: %s' % root)
    digest = hashlib.sha256(_HASH_VERSION)
    files = sorted(p for p in root.rglob('*')
                   if p.is_file() and p.suffix in HASHED_SUFFIXES
                   and not any(part.startswith('.') for part in p.relative_to(root).parts))
    if not files:
        raise FileNotFoundError('no model files (config, weights) in %s' % root)
    for path in files:
        size = path.stat().st_size
        digest.update(('%s\0%d\0' % (path.relative_to(root).as_posix(), size)).encode())
        with open(path, 'rb') as stream:
            if size <= FULL_HASH_LIMIT:
                digest.update(hashlib.sha256(stream.read()).digest())
                continue
            if path.suffix == '.safetensors':
                (header_len,) = struct.unpack('<Q', stream.read(8))
                digest.update(stream.read(min(header_len, size - 8)))
            step = (size - SAMPLE_BYTES) / (SAMPLE_COUNT - 1)
            for index in range(SAMPLE_COUNT):
                stream.seek(int(index * step), os.SEEK_SET)
                digest.update(stream.read(SAMPLE_BYTES))
    return digest.hexdigest()
