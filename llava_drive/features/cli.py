"""
``llava-drive extract`` and ``llava-drive model init-tiny``.

Nothing heavy is imported at module level: torch and transformers load inside the commands,
so ``llava-drive --help`` stays fast.
"""
from collections import Counter
import json
import logging
from pathlib import Path
import sys

from llava_drive.config_checks import default_of
from llava_drive.features.extractor import (CPU_TOKENS_PER_BATCH, ExtractorError,
                                            GPU_BATCH_SIZE, LlavaFeatureExtractor)
from llava_drive.features.route_prompt import ROUTE_PROMPT
from llava_drive.features.spec import DEFAULT_GRID, DEFAULT_MODE, DEFAULT_PROMPT, DTYPES
from llava_drive.features.spec import FeatureMode, PREPROCESSING_POLICIES
from llava_drive.features.tiny_model import create_tiny_llava

DEFAULT_TINY_DIR = 'models/llava-tiny'


def register(subparsers) -> None:
    """
    Add the ``extract`` and ``model`` subcommands.

    :param subparsers: the ``llava-drive`` subparsers object.
    """
    extract = subparsers.add_parser(
        'extract', help='extract LLaVA features from bags into the feature store',
        description='Extract one feature file per bag (safetensors + JSON metadata). '
                    'Resumable: bags whose features match the spec are skipped. Unreadable '
                    'bags are logged and skipped, the others still extracted; the exit code '
                    'is 1 if any bag failed. Pairs with non-finite or out-of-range controls, '
                    'no or a non-finite speed, or non-finite features are dropped and '
                    'counted by reason.')
    extract.add_argument('bags', nargs='+', metavar='BAG', help='rosbag2 bag directories')
    extract.add_argument('--model', required=True, metavar='DIR',
                         help='local Hugging Face LLaVA directory (e.g. %s)' % DEFAULT_TINY_DIR)
    extract.add_argument('--out', default='features', metavar='DIR',
                         help='feature directory (default: features)')
    extract.add_argument('--mode', default=DEFAULT_MODE.value,
                         choices=[m.value for m in FeatureMode],
                         help='feature mode (default: %(default)s)')
    extract.add_argument('--layer', type=int, default=None,
                         help='decoder layer L for decoder modes (default: half the depth; '
                              'token0 uses the last layer)')
    extract.add_argument('--grid', type=int, default=DEFAULT_GRID,
                         help='k of the k x k pooling for grid modes (default: %(default)s)')
    extract.add_argument('--prompt', default=DEFAULT_PROMPT,
                         help='user text in the chat template (default: %%(default)r); a '
                              'template with {command}, {speed}, {target} is filled per frame '
                              'from the route (modes last_token and token0), e.g. %r'
                              % ROUTE_PROMPT)
    extract.add_argument('--plan', default=None, metavar='FILE',
                         help='JSON global plan (GlobalPlan.to_dict: poses, options) of the '
                              "bags' route; route commands and target points come from it and "
                              'the odometry (default: none, every frame LANEFOLLOW)')
    extract.add_argument('--batch-size', type=int, default=None,
                         help=f'frames per forward pass (default: {GPU_BATCH_SIZE} on a GPU; '
                              f'on CPU as many frames as fit {CPU_TOKENS_PER_BATCH} tokens, '
                              'e.g. 1 for llava-1.5-7b, where bigger batches run slower)')
    extract.add_argument('--device', default=default_of(LlavaFeatureExtractor, 'device'),
                         help="'cpu', 'cuda' or 'cuda:N' (default: %(default)s)")
    extract.add_argument('--dtype', default=default_of(LlavaFeatureExtractor, 'dtype'),
                         choices=DTYPES,
                         help='model dtype (default: %(default)s; bfloat16 on GPUs)')
    extract.add_argument('--preprocessing', choices=PREPROCESSING_POLICIES,
                         default=default_of(LlavaFeatureExtractor, 'preprocessing'),
                         help='keep the whole frame: pad (letterbox) or resize (squash) '
                              '(default: %(default)s)')
    extract.add_argument('--shard', default='0/1', metavar='I/N',
                         help='take bags whose sorted index is I modulo N (one per GPU)')
    extract.add_argument('--overwrite', action='store_true',
                         help='re-extract bags whose features are up to date')
    extract.add_argument('--no-progress', action='store_true', help='hide progress bars')
    extract.set_defaults(func=run_extract)

    model = subparsers.add_parser('model', help='create or inspect local models')
    model_commands = model.add_subparsers(dest='model_command', metavar='MODEL_COMMAND')
    model_commands.required = True
    tiny = model_commands.add_parser(
        'init-tiny', help='write a small random-weight LLaVA (demo and tests)',
        description='Write a small random-weight LLaVA (CLIP vision tower, Llama decoder, '
                    'real tokenizer and processor) in Hugging Face format; deterministic.')
    tiny.add_argument('--out', default=DEFAULT_TINY_DIR, metavar='DIR',
                      help='destination directory (default: %(default)s)')
    tiny.add_argument('--seed', type=int, default=default_of(create_tiny_llava, 'seed'),
                      help='weight seed (default: %(default)s)')
    tiny.set_defaults(func=run_init_tiny)


def run_extract(args) -> int:
    """
    Run ``llava-drive extract``; return 0, 1 (some bags failed) or 2 (bad arguments/model).

    :param args: parsed arguments.
    """
    from llava_drive.features.extract_bags import extract_bags, parse_shard

    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    try:
        shard = parse_shard(args.shard)
        plan = load_plan_file(args.plan) if args.plan else None
        extractor = LlavaFeatureExtractor(
            args.model, mode=args.mode, layer=args.layer, grid=args.grid, prompt=args.prompt,
            device=args.device, dtype=args.dtype, preprocessing=args.preprocessing)
        results = extract_bags(extractor, args.bags, args.out, batch_size=args.batch_size,
                               shard=shard, overwrite=args.overwrite,
                               progress=not args.no_progress, plan=plan)
    except (ExtractorError, ValueError, OSError) as error:
        print('llava-drive extract: error: %s' % error, file=sys.stderr)
        return 2
    spec = extractor.spec
    print('spec: mode=%s layer=%s grid=%s D=%d model=%s (%s)' % (
        spec.mode, spec.layer, spec.grid, spec.feature_dim, spec.model_name,
        spec.model_hash[:12]))
    dropped = Counter()
    for result in results:
        line = '%-8s %s -> %s' % (result.status, result.bag, result.output)
        if result.status == 'written':
            line += ' (%d frames, %.1f frames/s, %d undecodable skipped, %s)' % (
                result.frames, result.frames / max(result.seconds, 1e-9),
                sum(result.stats.get('undecodable', {}).values()),
                _dropped_text(result.dropped))
            dropped.update(result.dropped)
        elif result.status == 'failed':
            line += ': ' + result.error
        print(line)
    failed = [r for r in results if r.status == 'failed']
    print('%d bag(s) written, %d up to date, %d failed; frames %s' % (
        sum(r.status == 'written' for r in results),
        sum(r.status == 'skipped' for r in results), len(failed), _dropped_text(dropped)))
    if failed:
        names = ' '.join(str(r.bag) for r in failed)
        print('%d of %d bags failed: %s' % (len(failed), len(results), names), file=sys.stderr)
        return 1
    return 0


def _dropped_text(counts) -> str:
    """Return ``'3 dropped (nan_control 2, no_speed 1)'`` or ``'0 dropped'``."""
    if not counts:
        return '0 dropped'
    return '%d dropped (%s)' % (sum(counts.values()), ', '.join(
        '%s %d' % item for item in sorted(counts.items())))


def load_plan_file(path):
    """
    Read a JSON global plan (``GlobalPlan.to_dict`` form); ValueError names the problem.

    :param path: the JSON file.
    """
    from llava_drive.planning import GlobalPlan

    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise ValueError('cannot read plan file %s: %s' % (path, error.strerror)) from None
    except ValueError as error:
        raise ValueError('plan file %s is not JSON: %s' % (path, error)) from None
    try:
        return GlobalPlan.from_dict(data)
    except ValueError as error:
        raise ValueError('plan file %s: %s' % (path, error)) from None


def run_init_tiny(args) -> int:
    """
    Run ``llava-drive model init-tiny``.

    :param args: parsed arguments.
    """
    from llava_drive.features.spec import model_content_hash

    out = Path(args.out)
    # Refuse instead of writing model files into someone's folder (or failing on a file).
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f'llava-drive model init-tiny: {out} exists and is not an empty directory; '
              'choose another --out', file=sys.stderr)
        return 2
    path = create_tiny_llava(out, seed=args.seed)
    print('tiny LLaVA written to %s (seed %d, content hash %s)'
          % (path, args.seed, model_content_hash(path)[:12]))
    return 0
