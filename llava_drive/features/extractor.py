"""
LLaVA feature extractor: camera frames in, one feature vector per frame out.

Loads a Hugging Face LLaVA checkpoint from a local directory through the real transformers
classes and computes only what the chosen :class:`FeatureMode` needs:

- decoder modes load the decoder with its first L layers only (later layers are never read
  from disk), replace the final norm by identity when L is below the full depth (so the
  output is ``hidden_states[L]`` of the full model, which the tests check) and never touch
  the LM head; the vision tower and projector run once per batch through the model's own
  ``get_image_features`` (which honours ``vision_feature_layer`` and
  ``vision_feature_select_strategy``), inside the base model's forward, ``use_cache=False``;
- vision modes run the vision tower only and load no decoder layer at all.

Supported: LLaVA-1.5-style checkpoints (``model_type`` ``llava``: one square image tile,
e.g. llava-hf/llava-1.5-7b-hf, bakLlava). LLaVA-NeXT / OneVision split images into a
variable number of tiles; their tiling is not reproduced by the tensor preprocessing here,
so they are refused with a clear error rather than fed wrong inputs.
"""
import contextlib
import importlib.util
import math

from llava_drive.features.choices import check_model_dir, ChoiceError, resolve_device
from llava_drive.features.preprocess import ImageNormalization, preprocess_frames
from llava_drive.features.route_prompt import (
    check_phrases, DEFAULT_COMMAND_PHRASES, render_prompt, RouteInput, RoutePromptError,
    template_fields)
from llava_drive.features.spec import (
    DECODER_MODES, DEFAULT_GRID, DEFAULT_MODE, DEFAULT_PROMPT, FeatureMode, FeatureSpec,
    GRID_MODES, model_content_hash, PREPROCESSING_POLICIES, PROMPT_CONDITIONED_MODES,
    VISION_MODES)
# The text the processor puts where the image goes if the model has no chat template.
FALLBACK_TEMPLATE = 'USER: <image>\n{prompt} ASSISTANT:'
# On CPU, batches beyond about this many tokens run slower per frame (the activations and
# attention maps leave the caches): llava-1.5-7b structure at L = 16, 597 tokens,
# benchmarks/bench_extract.py: batch 1 1.00 s CPU/frame, batch 8 1.15 s.
CPU_TOKENS_PER_BATCH = 1024
GPU_BATCH_SIZE = 8
# Tokenised per-frame prompts kept (speeds and commands repeat, so the hit rate is high).
PROMPT_CACHE_SIZE = 4096


class ExtractorError(Exception):
    """The model directory or the requested feature cannot be used."""


def default_layer(mode, num_layers: int):
    """
    Return the default decoder layer for a mode: half the depth, the last for token0.

    :param mode: a :class:`FeatureMode` or its value.
    :param num_layers: decoder depth N.
    """
    mode = FeatureMode(mode)
    if mode in VISION_MODES:
        return None
    return num_layers if mode == FeatureMode.TOKEN0 else num_layers // 2


def pool_grid(tokens, grid: int):
    """
    Average-pool square-grid token states [B, g*g, H] to [B, H*k*k] (channel-major).

    :param tokens: the token states, row-major over the g x g patch grid.
    :param grid: k, the output grid side.
    """
    import torch.nn.functional as functional

    batch, count, hidden = tokens.shape
    side = math.isqrt(count)
    if side * side != count:
        raise ExtractorError('grid pooling needs a square token grid, got %d tokens' % count)
    if grid > side:
        raise ExtractorError('grid %d is larger than the %dx%d token grid' % (grid, side, side))
    planes = tokens.float().reshape(batch, side, side, hidden).permute(0, 3, 1, 2)
    return functional.adaptive_avg_pool2d(planes, grid).flatten(1)


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load-time progress bars and unused-weight reports."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _stop_vision_tower_at_feature_layer(config) -> None:
    """
    Cut the vision tower config after the last layer LLaVA reads (``vision_feature_layer``).

    LLaVA-1.5 reads layer -2, so the full forward runs one CLIP layer for nothing. The
    indices are rewritten as positive ones, which address the same states of the shorter tower
    (``hidden_states`` holds the embeddings and then one entry per layer).
    """
    wanted = config.vision_feature_layer
    depth = config.vision_config.num_hidden_layers
    indices = [wanted] if isinstance(wanted, int) else list(wanted)
    positive = [index if index >= 0 else depth + 1 + index for index in indices]
    if not all(0 <= index <= depth for index in positive):
        raise ExtractorError('vision_feature_layer %r is outside the %d-layer vision tower'
                             % (wanted, depth))
    config.vision_config.num_hidden_layers = max(positive)
    config.vision_feature_layer = positive[0] if isinstance(wanted, int) else positive


class LlavaFeatureExtractor:
    """
    Turn RGB frames into feature vectors with a local LLaVA checkpoint.

    :param model_dir: a local Hugging Face model directory (never downloaded).
    :param mode: a :class:`FeatureMode` value.
    :param layer: decoder layer L for decoder modes (None: half the depth; token0 always uses
        the last layer); must be None for vision modes.
    :param grid: k for the k x k pooling of grid modes (ignored by other modes).
    :param prompt: user text inside the model's chat template, or a template filled per frame
        with ``{command}``, ``{speed}``, ``{target}`` (last_token and token0 only).
    :param command_phrases: the command vocabulary of a ``{command}`` template (None: the
        default phrases, e.g. LEFT -> 'Turn left at the next intersection.').
    :param device: ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    :param dtype: ``'float32'``, ``'float16'`` or ``'bfloat16'``.
    :param preprocessing: ``'pad'`` or ``'resize'`` (see :mod:`.preprocess`).
    """

    def __init__(self, model_dir, mode=DEFAULT_MODE, layer=None, grid=DEFAULT_GRID,
                 prompt=DEFAULT_PROMPT, device='cpu', dtype='float32', preprocessing='pad',
                 command_phrases=None):
        """Load the processor and the part of the model the feature needs."""
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        try:
            self.model_dir = check_model_dir(model_dir)
            self.device, self.torch_dtype = resolve_device(device, dtype)
        except ChoiceError as error:
            raise ExtractorError(str(error)) from None
        try:
            self.mode = FeatureMode(mode)
        except ValueError:
            raise ExtractorError('unknown feature mode %r; choose from %s'
                                 % (mode, ', '.join(m.value for m in FeatureMode))) from None
        if preprocessing not in PREPROCESSING_POLICIES:
            raise ExtractorError('preprocessing must be one of %s, got %r'
                                 % (PREPROCESSING_POLICIES, preprocessing))
        self.dtype_name = dtype
        self.preprocessing = preprocessing
        self.prompt = prompt
        try:
            self.prompt_fields = template_fields(prompt)
            self.command_phrases = check_phrases(
                DEFAULT_COMMAND_PHRASES if command_phrases is None else command_phrases) \
                if 'command' in self.prompt_fields else ()
        except RoutePromptError as error:
            raise ExtractorError(str(error)) from None
        if self.prompt_fields and self.mode not in PROMPT_CONDITIONED_MODES:
            raise ExtractorError(
                'mode %r cannot see a per-frame prompt: %s; use --mode last_token, or a vision '
                'mode with the command as a head input' % (
                    self.mode.value, 'vision modes never read the prompt'
                    if self.mode in VISION_MODES else 'its image tokens come before the prompt '
                    'text, and a causal decoder never lets them see it'))
        self._prompt_cache = {}

        config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        text_config = config.get_text_config()
        self.num_layers = int(text_config.num_hidden_layers)
        self.layer = self._resolve_layer(layer)
        self.grid = int(grid) if self.mode in GRID_MODES else None
        if self.grid is not None and self.grid < 1:
            raise ExtractorError('grid must be >= 1, got %r' % grid)
        # Load only the decoder layers the feature reads; vision modes load none.
        keep = 0 if self.mode in VISION_MODES else self.layer
        text_config.num_hidden_layers = keep
        if getattr(text_config, 'layer_types', None):
            text_config.layer_types = text_config.layer_types[:keep]
        _stop_vision_tower_at_feature_layer(config)

        placement = {}
        if self.device.type == 'cuda' and importlib.util.find_spec('accelerate'):
            # Load straight onto the GPU instead of staging the weights in host memory.
            placement['device_map'] = str(self.device)
        with _quiet_transformers():
            self.processor = AutoProcessor.from_pretrained(self.model_dir, local_files_only=True)
            full = AutoModelForImageTextToText.from_pretrained(
                self.model_dir, config=config, dtype=self.torch_dtype, local_files_only=True,
                **placement)
        # The base model: vision tower, projector, decoder; the LM head is dropped.
        self.model = full.model.eval().to(self.device)
        del full
        language_model = self.model.language_model
        if self.mode in DECODER_MODES and self.layer < self.num_layers:
            if not hasattr(language_model, 'norm'):
                raise ExtractorError('cannot stop %s after layer %d: no final norm to bypass'
                                     % (type(language_model).__name__, self.layer))
            language_model.norm = torch.nn.Identity()
        self.config = config
        self.normalization = ImageNormalization.from_image_processor(
            self.processor.image_processor)
        self.input_ids, self.image_positions = self._prompt_ids()
        self._spec = FeatureSpec(
            model_name=str(self.model_dir.resolve()),  # absolute: checkpoints are used elsewhere
            model_hash=model_content_hash(self.model_dir),
            mode=self.mode.value, layer=self.layer if self.mode in DECODER_MODES else None,
            grid=self.grid, prompt=prompt, preprocessing=preprocessing,
            image_size=self.normalization.size, dtype=dtype, feature_dim=self._feature_dim(),
            command_phrases=self.command_phrases)

    def _resolve_layer(self, layer):
        """Return the decoder layer to read, checking it against the depth and the mode."""
        if self.mode in VISION_MODES:
            if layer is not None:
                raise ExtractorError('mode %r reads the vision tower; layer must be None, got %r'
                                     % (self.mode.value, layer))
            return None
        if layer is None:
            return default_layer(self.mode, self.num_layers)
        layer = int(layer)
        if self.mode == FeatureMode.TOKEN0 and layer != self.num_layers:
            raise ExtractorError('token0 is defined at the last layer (%d), got layer %d'
                                 % (self.num_layers, layer))
        if not 0 <= layer <= self.num_layers:
            raise ExtractorError('layer must be in 0..%d for this model, got %d'
                                 % (self.num_layers, layer))
        return layer

    def _encode(self, user_text: str):
        """Return the token ids [1, T] of one filled prompt, image placeholders expanded."""
        import numpy as np

        cached = self._prompt_cache.get(user_text)
        if cached is not None:
            return cached
        conversation = [{'role': 'user', 'content': [
            {'type': 'image'}, {'type': 'text', 'text': user_text}]}]
        if getattr(self.processor, 'chat_template', None):
            text = self.processor.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=False)
        else:
            text = FALLBACK_TEMPLATE.format(prompt=user_text)
        side = self.normalization.size
        blank = np.zeros((side, side, 3), np.uint8)
        encoded = self.processor(text=[text], images=[blank], return_tensors='pt')
        input_ids = encoded['input_ids'][:1].to(self.device)
        if len(self._prompt_cache) >= PROMPT_CACHE_SIZE:
            self._prompt_cache.clear()
        self._prompt_cache[user_text] = (input_ids, text)
        return input_ids, text

    def _prompt_ids(self):
        """Tokenise the prompt (a template filled for a standing car following its lane)."""
        input_ids, self.prompt_text = self._encode(self.render(RouteInput()))
        image_token_id = self.config.image_token_id
        positions = (input_ids[0] == image_token_id).nonzero().flatten()
        if positions.numel() == 0:
            raise ExtractorError('the prompt %r has no image token after templating'
                                 % self.prompt_text)
        return input_ids, positions

    @property
    def per_frame_prompt(self) -> bool:
        """Return whether the prompt is a template filled per frame (routes are needed)."""
        return bool(self.prompt_fields)

    def render(self, route) -> str:
        """
        Return the user text for one frame's route input (the prompt itself if fixed).

        :param route: a :class:`~llava_drive.features.route_prompt.RouteInput` or None.
        """
        try:
            return render_prompt(self.prompt, self.command_phrases, route)
        except RoutePromptError as error:
            raise ExtractorError(str(error)) from None

    def prompt_batch(self, routes, batch: int):
        """
        Return ``(input_ids [B, T], lengths [B])`` for a batch, one prompt per frame.

        Different prompts are right-padded to the longest: in a causal decoder no real token
        attends to the padding after it and positions stay 0..n-1, so each frame's states
        equal those of its own unpadded forward (tested); one forward serves the batch.

        :param routes: one route input per frame, or None for a fixed prompt.
        :param batch: number of frames B.
        """
        import torch

        if not self.per_frame_prompt:
            length = self.input_ids.shape[1]
            return (self.input_ids.expand(batch, -1),
                    torch.full((batch,), length, dtype=torch.long, device=self.device))
        if routes is None or len(routes) != batch:
            raise ExtractorError('the prompt %r is a template: pass one route input per frame '
                                 '(%d frames, got %s)' % (self.prompt, batch, 'none'
                                                          if routes is None else len(routes)))
        rows = [self._encode(self.render(route))[0][0] for route in routes]
        lengths = torch.tensor([len(row) for row in rows], device=self.device)
        pad = self.processor.tokenizer.pad_token_id
        input_ids = torch.nn.utils.rnn.pad_sequence(
            rows, batch_first=True, padding_value=0 if pad is None else pad)
        return input_ids, lengths

    def _feature_dim(self) -> int:
        """Return D for the configured mode, from the model configuration."""
        if self.mode in VISION_MODES:
            hidden = self.config.vision_config.hidden_size
            layers = self.config.vision_feature_layer
            hidden *= 1 if isinstance(layers, int) else len(layers)
        else:
            hidden = self.config.get_text_config().hidden_size
        return hidden * self.grid * self.grid if self.mode in GRID_MODES else hidden

    @property
    def batch_size(self) -> int:
        """Return a good number of frames per forward pass on this device."""
        if self.device.type != 'cpu':
            return GPU_BATCH_SIZE
        if self.mode in VISION_MODES:
            side = self.config.vision_config.image_size // self.config.vision_config.patch_size
            tokens = side * side + 1
        else:
            tokens = self.input_ids.shape[1]
        return max(1, CPU_TOKENS_PER_BATCH // tokens)

    @property
    def spec(self) -> FeatureSpec:
        """Return the :class:`FeatureSpec` of the features this extractor produces."""
        return self._spec

    @property
    def feature_dim(self) -> int:
        """Return D, the length of one feature vector."""
        return self._spec.feature_dim

    def pixel_values(self, frames_rgb):
        """
        Preprocess HxWx3 uint8 RGB frames into the vision tower's input.

        :param frames_rgb: a list or array of frames of one size.
        """
        return preprocess_frames(frames_rgb, self.normalization, self.preprocessing,
                                 device=self.device, dtype=self.torch_dtype)

    def decoder_states(self, pixel_values, input_ids=None):
        """
        Return the decoder states at layer L for the prompt and images, [B, T, H].

        Equal to ``hidden_states[L]`` of the full model's forward on the same inputs.

        :param pixel_values: output of :meth:`pixel_values`.
        :param input_ids: [B, T] token ids (None: the fixed prompt for every frame).
        """
        import torch

        if self.mode in VISION_MODES:
            raise ExtractorError('mode %r loads no decoder layers' % self.mode.value)
        if input_ids is None:
            input_ids = self.input_ids.expand(pixel_values.shape[0], -1)
        with torch.inference_mode():
            output = self.model(input_ids=input_ids, pixel_values=pixel_values,
                                use_cache=False)
        return output.last_hidden_state

    def vision_states(self, pixel_values):
        """
        Return the vision tower states at the model's ``vision_feature_layer``, [B, P, Hv].

        :param pixel_values: output of :meth:`pixel_values`.
        """
        import torch

        layers = self.config.vision_feature_layer
        with torch.inference_mode():
            output = self.model.vision_tower(pixel_values, output_hidden_states=True)
        if isinstance(layers, int):
            return output.hidden_states[layers]
        return torch.cat([output.hidden_states[index] for index in layers], dim=-1)

    def extract(self, frames_rgb, routes=None):
        """
        Return the features of a batch of frames as float32 [B, D] on the model's device.

        :param frames_rgb: HxWx3 uint8 RGB frames of one size (list or BxHxWx3 array).
        :param routes: one :class:`~llava_drive.features.route_prompt.RouteInput` per frame
            when the prompt is a template (ignored otherwise).
        """
        import torch

        if self.per_frame_prompt:
            input_ids, lengths = self.prompt_batch(routes, len(frames_rgb))
        pixel_values = self.pixel_values(frames_rgb)
        with torch.inference_mode():
            if self.mode in VISION_MODES:
                states = self.vision_states(pixel_values)
                grid_tokens = states.shape[1] - 1
                has_cls = math.isqrt(grid_tokens) ** 2 == grid_tokens
                if self.mode == FeatureMode.VISION_CLS:
                    if not has_cls:
                        raise ExtractorError('this vision tower has no CLS token')
                    return states[:, 0].float()
                return pool_grid(states[:, 1:] if has_cls else states, self.grid)
            if self.per_frame_prompt:
                states = self.decoder_states(pixel_values, input_ids)
                if self.mode == FeatureMode.LAST_TOKEN:
                    rows = torch.arange(states.shape[0], device=states.device)
                    return states[rows, lengths - 1].float()
                return states[:, 0].float()  # token0 (the only other mode with templates)
            states = self.decoder_states(pixel_values)
            if self.mode == FeatureMode.LAST_TOKEN:
                return states[:, -1].float()
            if self.mode == FeatureMode.TOKEN0:
                return states[:, 0].float()
            image_states = states[:, self.image_positions]
            if self.mode == FeatureMode.IMAGE_MEAN:
                return image_states.float().mean(dim=1)
            return pool_grid(image_states, self.grid)
