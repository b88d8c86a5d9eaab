"""
Feature extraction speed and memory: the new extractor against the original approach.

New path: :class:`LlavaFeatureExtractor` (tensor preprocessing, batched, decoder truncated
at layer L, no LM head, ``inference_mode``). Original approach: PIL image through the
model's ``processor(...)`` one frame at a time, full ``LlavaForConditionalGeneration``
forward with ``output_hidden_states=True`` (LM head included), as the seed system did.

Two models, both random weights created on the spot: the tiny test model and a model with
llava-1.5-7b's layer structure (24 CLIP layers at 336 px / patch 14 = 576 image tokens, 32
decoder layers, vocabulary 32064) at reduced widths. Each measurement runs in its own
subprocess, so its peak RSS (``VmHWM``, model loading included) is its own. Wall time is
reported with the process's CPU time: on a shared machine CPU time per frame is the steadier
figure. FLOPs are
counted analytically (matrix multiplications and attention; norms, activations and
softmax are ignored), which bounds the speed-up a compute-bound run can reach. The script
also prints the same arithmetic for the real llava-1.5-7b on a GPU.

Per-frame prompts (route conditioning): ``--prompts`` also times ``last_token`` with a prompt
template filled per frame (a different command and speed on each frame, right-padded into one
batch) against the same template filled once, on the 7B-structure model, reading decoder layer
``--prompt-layer`` (4 by default, so only 4 of the 32 decoder layers run on CPU), and prints
the ratio (the target: within 10 %).

On a GPU, ``--full-7b --device cuda --dtype bfloat16`` builds llava-1.5-7b at full size
(CLIP ViT-L/14-336, 32-layer 4096-wide Llama; random weights from the published
hyperparameters, nothing downloaded; about 14 GB written to ``--models-dir``) and measures
frames/s of the truncated path (``image_grid`` at L = 16, batch 8) against the original
system's full forward (all layers, LM head, ``output_hidden_states``), plus the per-frame
prompt comparison at L = 16.

Usage: ``python benchmarks/bench_extract.py [--frames 8] [--skip-7b] [--models-dir DIR]
[--prompts [--prompt-layer 4]] [--full-7b --device cuda --dtype bfloat16]``.
Prints figures; asserts nothing.
"""
import argparse
import json
import os
from pathlib import Path
import resource
import subprocess
import sys
import tempfile
import time

PROMPT = 'What should the driver do next: steer, throttle and brake?'
FRAME_SHAPE = (600, 800, 3)  # the CARLA camera of the recorder
THREADS = [1]  # torch threads per worker, set from --threads
DEVICE = ['cpu', 'float32']  # device and dtype of the workers, set from --device and --dtype

# llava-1.5-7b (llava-hf/llava-1.5-7b-hf config.json): CLIP-L/14-336 + Vicuna-7B.
LLAVA_15_7B = {
    'vision': {'hidden': 1024, 'intermediate': 4096, 'layers': 24, 'tokens': 577},
    'text': {'hidden': 4096, 'intermediate': 11008, 'layers': 32, 'vocab': 32064},
    'image_tokens': 576,
}


def model_shape(config: dict) -> dict:
    """
    Read the sizes that FLOPs depend on from a LLaVA config.json.

    :param config: the parsed config.json.
    """
    vision, text = config['vision_config'], config['text_config']
    patches = (vision['image_size'] // vision['patch_size']) ** 2
    return {
        'vision': {'hidden': vision['hidden_size'], 'intermediate': vision['intermediate_size'],
                   'layers': vision['num_hidden_layers'], 'tokens': patches + 1},
        'text': {'hidden': text['hidden_size'], 'intermediate': text['intermediate_size'],
                 'layers': text['num_hidden_layers'], 'vocab': text['vocab_size']},
        'image_tokens': patches,
    }


def flops_per_frame(shape: dict, seq_len: int, decoder_layers: int, lm_head: bool) -> dict:
    """
    Count the FLOPs (2 per multiply-add) of one frame, by part.

    :param shape: output of :func:`model_shape`.
    :param seq_len: decoder sequence length (image tokens + prompt tokens).
    :param decoder_layers: decoder layers run.
    :param lm_head: whether logits are computed for every position.
    """
    v, t = shape['vision'], shape['text']
    n = v['tokens']
    vision_layer = 2 * n * (4 * v['hidden'] ** 2 + 2 * v['hidden'] * v['intermediate']) \
        + 4 * n * n * v['hidden']
    projector = 2 * shape['image_tokens'] * (v['hidden'] * t['hidden'] + t['hidden'] ** 2)
    # Llama layer: q, k, v, o projections, gated MLP (3 matrices), attention scores and mix.
    text_layer = 2 * seq_len * (4 * t['hidden'] ** 2 + 3 * t['hidden'] * t['intermediate']) \
        + 4 * seq_len * seq_len * t['hidden']
    parts = {
        'vision': v['layers'] * vision_layer,
        'projector': projector,
        'decoder': decoder_layers * text_layer,
        'lm_head': 2 * seq_len * t['hidden'] * t['vocab'] if lm_head else 0,
    }
    parts['total'] = sum(parts.values())
    return parts


def _frames(count: int):
    """Return ``count`` different synthetic camera frames."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
    return [np.roll(base, 13 * index, axis=1) for index in range(count)]


def _max_rss_mb() -> float:
    """
    Return this process's peak resident set size in MiB.

    ``VmHWM`` belongs to the process image, so unlike ``ru_maxrss`` it does not inherit the
    parent's peak across fork and exec.
    """
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _routes(count: int, per_frame: bool):
    """
    Return route inputs: all different (commands and speeds vary) or all the same.

    The fixed one is the longest prompt of the varying set, since a padded batch costs what
    its longest prompt costs: the comparison measures what per-frame prompts add.
    """
    from llava_drive.features.route_prompt import RouteInput
    from llava_drive.planning import RoadOption

    commands = [RoadOption.LANEFOLLOW, RoadOption.LEFT, RoadOption.STRAIGHT, RoadOption.RIGHT]
    if not per_frame:
        return [RouteInput(RoadOption.STRAIGHT, 14.0)] * count
    return [RouteInput(commands[i % 4], float(i % 15)) for i in range(count)]


def worker_new(model_dir, frames, layer, batch_size, mode, device='cpu', dtype='float32',
               prompt_kind='plain'):
    """Time the new extractor; return its figures."""
    import torch  # noqa: F401  (import cost outside the measured RSS delta)
    from llava_drive.features.extractor import LlavaFeatureExtractor
    from llava_drive.features.route_prompt import ROUTE_PROMPT
    from llava_drive.features.spec import FeatureMode, VISION_MODES

    rss_import = _max_rss_mb()
    if FeatureMode(mode) in VISION_MODES:
        layer = None  # the vision tower only
    prompt = PROMPT if prompt_kind == 'plain' else ROUTE_PROMPT
    extractor = LlavaFeatureExtractor(model_dir, mode=mode, layer=layer, prompt=prompt,
                                      device=device, dtype=dtype)
    batch_size = batch_size or extractor.batch_size  # 0: the extractor's choice
    images = _frames(frames + batch_size)
    routes = _routes(frames + batch_size, prompt_kind == 'per-frame')

    def run(first):
        extractor.extract(images[first:first + batch_size], routes[first:first + batch_size])

    run(0)  # warm-up batch, not timed
    if extractor.device.type == 'cuda':
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    for first in range(batch_size, batch_size + frames, batch_size):
        run(first)
    if extractor.device.type == 'cuda':
        torch.cuda.synchronize()  # kernels run asynchronously: wait before reading the clock
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {'seconds': seconds, 'cpu_seconds': cpu, 'frames': frames,
            'seq_len': int(extractor.input_ids.shape[1]), 'layer': extractor.layer,
            'batch_size': batch_size, 'rss_import_mb': rss_import}


def worker_original(model_dir, frames, layer, batch_size, mode, device='cpu', dtype='float32',
                    prompt_kind='plain'):
    """Time the original approach (PIL processor, batch 1, full forward); return figures."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    rss_import = _max_rss_mb()
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    model = LlavaForConditionalGeneration.from_pretrained(
        model_dir, local_files_only=True, dtype=getattr(torch, dtype)).to(device)
    model.eval()
    text = 'USER: <image>\n%s ASSISTANT:' % PROMPT
    images = _frames(frames + 1)

    def one(frame):
        inputs = processor(images=Image.fromarray(frame), text=text, return_tensors='pt')
        inputs = {name: value.to(device) for name, value in inputs.items()}
        inputs['pixel_values'] = inputs['pixel_values'].to(getattr(torch, dtype))
        with torch.no_grad():
            output = model(**inputs, output_hidden_states=True)
        return output.hidden_states[-1][:, 0], inputs['input_ids'].shape[1]

    one(images[0])  # warm-up, not timed
    start, cpu = time.perf_counter(), time.process_time()
    for frame in images[1:]:
        _, seq_len = one(frame)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {'seconds': seconds, 'cpu_seconds': cpu, 'frames': frames, 'seq_len': int(seq_len),
            'layer': model.config.text_config.num_hidden_layers, 'rss_import_mb': rss_import}


def run_worker(kind, model_dir, frames, layer, batch_size, mode, prompt_kind='plain') -> dict:
    """Run one measurement in a fresh subprocess and return its JSON figures."""
    command = [sys.executable, __file__, '--worker', kind, '--model', str(model_dir),
               '--frames', str(frames), '--layer', str(layer), '--batch-size', str(batch_size),
               '--mode', mode, '--threads', str(THREADS[0]), '--device', DEVICE[0],
               '--dtype', DEVICE[1], '--prompt-kind', prompt_kind]
    result = subprocess.run(command, capture_output=True, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1'))
    if result.returncode != 0:
        raise RuntimeError('%s worker failed:\n%s' % (kind, result.stderr[-3000:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


def gpu_arithmetic(layer: int, seq_len: int, tflops: float, utilisation: float):
    """Print FLOPs per frame and a frames/s bound for llava-1.5-7b on a GPU."""
    full = flops_per_frame(LLAVA_15_7B, seq_len, 32, lm_head=True)
    new = flops_per_frame(LLAVA_15_7B, seq_len, layer, lm_head=False)
    vision_only = flops_per_frame(LLAVA_15_7B, seq_len, 0, lm_head=False)
    vision_only['total'] -= vision_only['projector']
    print('\nllava-1.5-7b, %d decoder tokens, GPU at %.0f TFLOP/s x %.0f%% utilisation:'
          % (seq_len, tflops, utilisation * 100))
    rows = [('original (32 layers + LM head)', full), ('new, layer %d' % layer, new),
            ('vision modes (tower only)', vision_only)]
    for name, parts in rows:
        rate = tflops * 1e12 * utilisation / parts['total']
        print('  %-32s %5.2f TFLOP/frame (vision %.2f, decoder %.2f, lm_head %.2f)'
              ' -> <= %4.0f frames/s' % (name, parts['total'] / 1e12, parts['vision'] / 1e12,
                                         parts['decoder'] / 1e12, parts['lm_head'] / 1e12,
                                         rate))
    ratios = ['L=%d %.2fx' % (depth, full['total'] / flops_per_frame(
        LLAVA_15_7B, seq_len, depth, lm_head=False)['total']) for depth in (4, 8, 16, 24, 32)]
    print('  FLOP ratio original/new by layer: ' + ', '.join(ratios))


def benchmark(label, model_dir, frames, batch_size, mode):
    """Measure both paths on one model and print the comparison."""
    config = json.loads((Path(model_dir) / 'config.json').read_text())
    shape = model_shape(config)
    layer = shape['text']['layers'] // 2
    new = run_worker('new', model_dir, frames, layer, batch_size, mode)
    old = run_worker('original', model_dir, frames, layer, batch_size, mode)
    if new['layer'] is None:  # vision mode: no projector, no decoder
        flops_new = flops_per_frame(shape, new['seq_len'], 0, lm_head=False)
        flops_new['total'] -= flops_new['projector']
    else:
        flops_new = flops_per_frame(shape, new['seq_len'], layer, lm_head=False)
    flops_old = flops_per_frame(shape, old['seq_len'], shape['text']['layers'], lm_head=True)
    rate_new = new['frames'] / new['seconds']
    rate_old = old['frames'] / old['seconds']
    cpu_new = new['cpu_seconds'] / new['frames']
    cpu_old = old['cpu_seconds'] / old['frames']
    print('\n%s: vision %d layers x %d wide, %d image tokens; decoder %d layers x %d wide, '
          'vocab %d; %d frames %dx%d' % (
              label, shape['vision']['layers'], shape['vision']['hidden'],
              shape['image_tokens'], shape['text']['layers'], shape['text']['hidden'],
              shape['text']['vocab'], frames, FRAME_SHAPE[1], FRAME_SHAPE[0]))
    print('  %-50s %8s %9s %11s %9s %10s' % ('path', 'frames/s', 'CPU s/fr', 'GFLOP/fr',
                                             'peak MiB', 'at import'))
    print('  %-50s %8.3f %9.3f %11.2f %9.0f %10.0f' % (
        'original: PIL processor, batch 1, full + LM head', rate_old, cpu_old,
        flops_old['total'] / 1e9, old['max_rss_mb'], old['rss_import_mb']))
    print('  %-50s %8.3f %9.3f %11.2f %9.0f %10.0f' % (
        'new: %s L=%s, batch %d, tensor preprocessing' % (mode, new['layer'],
                                                          new['batch_size']),
        rate_new,
        cpu_new, flops_new['total'] / 1e9, new['max_rss_mb'], new['rss_import_mb']))
    print('  speed-up: wall %.2fx, CPU time %.2fx; FLOP ratio %.2fx (decoder tokens: new %d, '
          'original %d)' % (rate_new / rate_old, cpu_old / cpu_new,
                            flops_old['total'] / flops_new['total'], new['seq_len'],
                            old['seq_len']))
    return new['seq_len']


def prompt_comparison(label, model_dir, frames, layer, batch_size):
    """Time last_token with one prompt per frame against one prompt for all; print the ratio."""
    fixed = run_worker('new', model_dir, frames, layer, batch_size, 'last_token', 'fixed')
    varied = run_worker('new', model_dir, frames, layer, batch_size, 'last_token', 'per-frame')
    print('\n%s: last_token at layer %d, batch %d, %d frames, %s %s' % (
        label, fixed['layer'], fixed['batch_size'], frames, DEVICE[0], DEVICE[1]))
    for name, figures in (('template filled once (fixed prompt)', fixed),
                          ('template filled per frame (command, speed vary)', varied)):
        print('  %-50s %8.3f frames/s %8.3f CPU s/frame' % (
            name, figures['frames'] / figures['seconds'],
            figures['cpu_seconds'] / figures['frames']))
    ratio = (varied['frames'] / varied['seconds']) / (fixed['frames'] / fixed['seconds'])
    cpu_ratio = (fixed['cpu_seconds'] / fixed['frames']) \
        / (varied['cpu_seconds'] / varied['frames'])
    print('  per-frame / fixed: wall %.3f, CPU time %.3f (target: within 10 %%)'
          % (ratio, cpu_ratio))


def main(argv=None) -> int:
    """Parse arguments, run the benchmark (or one worker) and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=32, help='timed frames per path')
    parser.add_argument('--frames-7b', type=int, default=4,
                        help='timed frames per path on the 7B-structure model')
    parser.add_argument('--batch-size', type=int, default=0,
                        help="new path's frames per pass; 0 = the extractor's choice")
    parser.add_argument('--mode', default='image_grid')
    parser.add_argument('--skip-7b', action='store_true', help='only the tiny model')
    parser.add_argument('--models-dir', default=None,
                        help='keep the generated models here (default: a temp dir)')
    parser.add_argument('--gpu-tflops', type=float, default=312.0,
                        help='GPU peak (A100 bf16 dense: 312)')
    parser.add_argument('--gpu-utilisation', type=float, default=0.4)
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads per measurement (default 1: OpenMP threads that '
                             'spin on a shared, loaded machine inflate both times erratically)')
    parser.add_argument('--prompts', action='store_true',
                        help='only compare per-frame prompts with a fixed prompt (7B structure)')
    parser.add_argument('--prompt-layer', type=int, default=4,
                        help='decoder layer read in the prompt comparison on the 7B structure '
                             '(default 4: only 4 of 32 layers run, to stay within minutes on '
                             'CPU; --full-7b uses 16)')
    parser.add_argument('--full-7b', action='store_true',
                        help='build llava-1.5-7b at full size with random weights (for GPUs: '
                             'use with --device cuda --dtype bfloat16)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16', 'float16'))
    parser.add_argument('--prompt-kind', default='plain', help=argparse.SUPPRESS)
    parser.add_argument('--worker', choices=('new', 'original'), help=argparse.SUPPRESS)
    parser.add_argument('--model', help=argparse.SUPPRESS)
    parser.add_argument('--layer', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    THREADS[0] = args.threads
    DEVICE[:] = [args.device, args.dtype]
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        work = worker_new if args.worker == 'new' else worker_original
        figures = work(args.model, args.frames, args.layer, args.batch_size, args.mode,
                       args.device, args.dtype, args.prompt_kind)
        figures['max_rss_mb'] = _max_rss_mb()
        print(json.dumps(figures))
        return 0

    from llava_drive.features.tiny_model import (create_llava_7b_structure, create_tiny_llava,
                                                 LLAVA_15_7B)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.models_dir or scratch)
        if args.full_7b:
            full = root / 'llava-1.5-7b-random'
            if not (full / 'config.json').is_file():
                start = time.perf_counter()
                create_tiny_llava(full, size=LLAVA_15_7B, dtype=args.dtype, device=args.device)
                print('created full-size llava-1.5-7b (random %s) in %.0f s'
                      % (args.dtype, time.perf_counter() - start))
            batch = args.batch_size or 8
            benchmark('llava-1.5-7b, full size, %s %s' % (args.device, args.dtype), full,
                      args.frames, batch, args.mode)
            prompt_comparison('llava-1.5-7b, full size', full, args.frames, 16, batch)
            return 0
        print('load average at start: %.2f %.2f %.2f; %d torch thread(s); %d CPUs'
              % (*os.getloadavg(), args.threads, os.cpu_count()))
        tiny = root / 'llava-tiny'
        if not (tiny / 'config.json').is_file():
            create_tiny_llava(tiny)
        if not args.prompts:
            benchmark('tiny', tiny, args.frames, args.batch_size, args.mode)
        seq_len = 600
        if not args.skip_7b:
            big = root / 'llava-7b-structure'
            if not (big / 'config.json').is_file():
                start = time.perf_counter()
                create_llava_7b_structure(big)
                print('\n(created 7B-structure model in %.0f s)' % (time.perf_counter() - start))
            if args.prompts:
                prompt_comparison('7B structure, reduced widths', big, args.frames_7b,
                                  args.prompt_layer, args.batch_size)
                return 0
            seq_len = benchmark('7B structure, reduced widths', big, args.frames_7b,
                                min(args.batch_size, args.frames_7b) if args.batch_size else 0,
                                args.mode)
        gpu_arithmetic(16, seq_len, args.gpu_tflops, args.gpu_utilisation)
    return 0


if __name__ == '__main__':
    sys.exit(main())
