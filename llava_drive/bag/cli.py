"""
``llava-drive bag info | review | trim | recover``: look at, clean and repair recordings.

Registration only; the work happens in the modules imported inside each command, so
``llava-drive --help`` stays fast (the review options only read their defaults).
"""
import argparse
import json
import sys

from llava_drive.bag.review import ReviewConfig
from llava_drive.config_checks import default_of

BAG_HELP = 'Inspect, review, trim and recover recorded bags (rosbag2 MCAP, format v1).'


def _fail(error) -> int:
    print(f'error: {error}', file=sys.stderr)
    return 1


def run_info(args) -> int:
    """
    Print ``bag info`` for each bag; return 1 if any could not be read.

    :param args: parsed arguments.
    """
    from llava_drive.bag.info import bag_info, format_info
    from llava_drive.bag.reader import BagReadError
    status, reports = 0, []
    for path in args.paths:
        try:
            info = bag_info(path, check_images=args.check_images)
        except BagReadError as error:
            status = _fail(error)
            continue
        reports.append(info)
        if not args.json:
            print(format_info(info) + ('\n' if len(args.paths) > 1 else ''))
        if info['exclusions_error']:
            status = _fail(info['exclusions_error'])
    if args.json:
        print(json.dumps(reports[0] if len(args.paths) == 1 and reports else reports, indent=2))
    return status


def run_review(args) -> int:
    """
    Write review plots, contact sheet and video.

    :param args: parsed arguments.
    """
    from llava_drive.bag.reader import BagReadError
    from llava_drive.bag.review import review_bag
    try:
        outputs = review_bag(args.path, review_config(args))
    except (BagReadError, ValueError, RuntimeError, OSError) as error:  # OSError: --out a file
        return _fail(error)
    for kind, path in outputs.items():
        print(f'{kind:<14} {path}')
    return 0


def review_config(args):
    """
    Return the validated :class:`~llava_drive.bag.review.ReviewConfig` of ``bag review``.

    :param args: parsed arguments.
    """
    return ReviewConfig(out_dir=args.out, sheet_frames=args.frames, video=not args.no_video,
                        max_frames=args.max_frames, fps=args.fps, progress=not args.quiet)


def run_trim(args) -> int:
    """
    Add, list or clear exclusions of a bag.

    :param args: parsed arguments.
    """
    from llava_drive.bag import trim
    from llava_drive.bag.format import BagReadError
    try:
        if args.clear:
            count = trim.clear_exclusions(args.path)
            print(f'removed the damaged {trim.exclusions_path(args.path)}' if count is None
                  else f'removed {count} exclusion(s) from {args.path}')
            return 0
        if args.exclude:
            trim.add_exclusions(args.path, args.exclude, reason=args.reason)
        exclusions = trim.load_exclusions(args.path)
        start = trim.bag_start_ns(args.path)
    except (BagReadError, ValueError, OSError) as error:
        return _fail(error)
    if not exclusions.items:
        print(f'{args.path}: no exclusions')
    else:
        print(f'{args.path}: {len(exclusions)} exclusion(s) in '
              f'{trim.exclusions_path(args.path)}')
        for item in exclusions.items:
            print(f'  {trim.describe(item, start)}')
    return 0


def run_recover(args) -> int:
    """
    Recover each bag; return 1 if any failed.

    :param args: parsed arguments.
    """
    from llava_drive.bag.recover import recover_bag, RecoverError
    status, reports = 0, []
    for path in args.paths:
        try:
            report = recover_bag(path, keep_original=not args.no_backup)
        except (RecoverError, OSError) as error:
            status = _fail(error)
            continue
        reports.append(report.as_dict())
        if not args.json:
            print(report.text())
    if args.json:
        print(json.dumps(reports, indent=2))
    return status


def register(subparsers) -> None:
    """
    Add the ``bag`` command and its subcommands.

    :param subparsers: the top-level ``add_subparsers()`` object.
    """
    formatter = argparse.RawDescriptionHelpFormatter
    bag = subparsers.add_parser(
        'bag', help=BAG_HELP, description=BAG_HELP, formatter_class=formatter,
        epilog='A bag is a rosbag2 directory (metadata.yaml + <run>_0.mcap) written by the\n'
               'recorder: image/control pairs with equal header stamps, speed, odometry,\n'
               'episode markers and the recording configuration.')
    commands = bag.add_subparsers(dest='bag_command', metavar='SUBCOMMAND')
    commands.required = True

    info = commands.add_parser(
        'info', help='summary like `ros2 bag info` plus pairs, gaps, episodes and actions',
        formatter_class=formatter,
        description='Show duration, start/end, size, storage, topics with types and counts,\n'
                    'image/control pairs and pair rate, stamp gaps, episodes, action\n'
                    'statistics, rejected-sample counts and exclusions.',
        epilog='examples:\n  llava-drive bag info bags/run_001\n'
               '  llava-drive bag info bags/* --json > info.json')
    info.add_argument('paths', nargs='+', metavar='PATH', help='bag directory (one or more)')
    info.add_argument('--json', action='store_true', help='print JSON instead of a table')
    info.add_argument('--check-images', action='store_true',
                      help='decode every frame to count undecodable ones (slower)')
    info.set_defaults(func=run_info)

    review = commands.add_parser(
        'review', help='plots, histograms, contact sheet and MP4 of a run',
        formatter_class=formatter,
        description='Write to --out: controls.png (steer, throttle, brake, speed over time;\n'
                    'excluded ranges shaded), histograms.png, contact_sheet.png (frames evenly\n'
                    'spaced, recorded control drawn on each) and run.mp4 (every frame with the\n'
                    'overlay: steering arrow and bar, throttle (T) and brake (B) bars, text).',
        epilog='example:\n  llava-drive bag review bags/run_001 --out review/run_001 '
               '--max-frames 600')
    review.add_argument('path', metavar='PATH', help='bag directory')
    review.add_argument('--out', required=True, metavar='DIR', help='output directory')
    review.add_argument('--frames', type=int, metavar='N',
                        default=default_of(ReviewConfig, 'sheet_frames'),
                        help='frames on the contact sheet (default: %(default)s)')
    review.add_argument('--max-frames', type=int, metavar='N',
                        default=default_of(ReviewConfig, 'max_frames'),
                        help='at most N frames in the MP4, evenly spaced (default: all)')
    review.add_argument('--fps', type=float, default=default_of(ReviewConfig, 'fps'),
                        help='MP4 frame rate (default: the recorded pair rate)')
    review.add_argument('--no-video', action='store_true', help='skip the MP4')
    review.add_argument('--quiet', action='store_true', help='no progress bar')
    review.set_defaults(func=run_review, make_options=review_config)

    trim = commands.add_parser(
        'trim', help='exclude time ranges or episodes without rewriting the bag',
        formatter_class=formatter,
        description='Store exclusions in <bag>/exclusions.yaml; the bag itself is untouched\n'
                    'and feature extraction/training skip excluded pairs.\n\n'
                    'SPEC forms:\n'
                    '  START:END      seconds from the bag start (open ends allowed: 30: or :5)\n'
                    '  ns:START:END   absolute header stamps in nanoseconds\n'
                    '  episode:N      a whole episode\n\n'
                    'A spec that covers no pair, or with an infinite or NaN bound, is refused\n'
                    '(nothing is stored). --clear also removes a damaged exclusions.yaml.',
        epilog='examples:\n'
               '  llava-drive bag trim bags/run_001 --exclude 12.5:20 --reason "hit curb"\n'
               '  llava-drive bag trim bags/run_001 --exclude episode:3 --exclude 95:\n'
               '  llava-drive bag trim bags/run_001 --list\n'
               '  llava-drive bag trim bags/run_001 --clear')
    trim.add_argument('path', metavar='PATH', help='bag directory')
    action = trim.add_mutually_exclusive_group(required=True)
    action.add_argument('--exclude', action='append', metavar='SPEC',
                        help='add an exclusion (repeatable)')
    action.add_argument('--list', action='store_true', help='list the exclusions')
    action.add_argument('--clear', action='store_true', help='remove every exclusion')
    trim.add_argument('--reason', default='', help='note stored with the new exclusions')
    trim.set_defaults(func=run_trim)

    recover = commands.add_parser(
        'recover', help='make a bag readable after the recorder was killed',
        formatter_class=formatter,
        description='For a bag whose writer died (SIGKILL, power loss, full disk) or whose\n'
                    'file was damaged: scan the whole MCAP, skip damaged records and go on at\n'
                    'the next readable chunk, keep every message record that still parses\n'
                    '(also from chunks that fail their CRC or were cut short), rewrite the MCAP\n'
                    'with its summary and write metadata.yaml. The original is moved out of\n'
                    'the bag to <parent>/.recover-originals/<bag>/ (ros2 bag info counts every\n'
                    'file in the bag directory). A healthy bag is left unchanged; a bag still\n'
                    'being written (writer.lock held by a live process) is refused.',
        epilog='examples:\n  llava-drive bag recover bags/run_001\n'
               '  llava-drive bag recover bags/run_001 --no-backup   # delete the original '
               'once the\n'
               '                                                    # new file reads back')
    recover.add_argument('paths', nargs='+', metavar='PATH', help='bag directory (one or more)')
    recover.add_argument('--json', action='store_true', help='print the reports as JSON')
    recover.add_argument('--no-backup', action='store_true',
                         help='delete the original after the rebuilt file was read back and '
                              'verified, instead of moving it to .recover-originals/')
    recover.set_defaults(func=run_recover)
