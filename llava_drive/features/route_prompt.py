"""
Route conditioning of features: prompt templates filled per frame, and per-frame route inputs.

A decoder-mode prompt may be a template with the fields ``{command}`` (the phrase of the route
command in effect, from a vocabulary the feature specification records), ``{speed}`` (the
speed in whole m/s) and ``{target}`` (the next target point in words), e.g.
``'{command} Speed {speed} m/s.'`` -> ``'Turn left at the next intersection. Speed 6 m/s.'``.
A prompt without fields is the same for every frame. Vision modes never read the prompt;
they take the command (one-hot) and the target point as head inputs instead.

The per-frame command and target come from the recorded global plan and pose through
:func:`llava_drive.planning.route_command`, the same function the live policy calls.
No torch here.
"""
from dataclasses import dataclass
import math
import string
from typing import Dict, Optional, Sequence, Tuple

from llava_drive.planning import GlobalPlan, RoadOption, route_command
import numpy as np

PROMPT_FIELDS = ('command', 'speed', 'target')
# What the command says in words (LMDrive-style navigation instructions).
DEFAULT_COMMAND_PHRASES: Tuple[Tuple[str, str], ...] = (
    ('VOID', 'Drive on.'),
    ('LEFT', 'Turn left at the next intersection.'),
    ('RIGHT', 'Turn right at the next intersection.'),
    ('STRAIGHT', 'Go straight at the next intersection.'),
    ('LANEFOLLOW', 'Follow the lane.'),
    ('CHANGELANELEFT', 'Change to the left lane.'),
    ('CHANGELANERIGHT', 'Change to the right lane.'),
)
# The default route template (the example of the route-conditioning issue).
ROUTE_PROMPT = '{command} Speed {speed} m/s.'
# Order of the one-hot command input of heads: every RoadOption, by value.
COMMAND_ORDER: Tuple[RoadOption, ...] = tuple(sorted(RoadOption, key=int))
# Bags without a global plan (the single-road world) only ever ask to follow the lane.
NO_PLAN_COMMAND = RoadOption.LANEFOLLOW
# Speeds and distances beyond these are corrupt inputs, not driving.
MAX_SPEED_MPS = 150.0
MAX_TARGET_M = 1e5


class RoutePromptError(ValueError):
    """A prompt template or a command vocabulary cannot be used."""


def template_fields(prompt: str) -> Tuple[str, ...]:
    """
    Return the fields a prompt template uses, in order of first use.

    :param prompt: the prompt text.
    :raises RoutePromptError: unknown fields, positional fields, format specs or bad braces.
    """
    if not isinstance(prompt, str):
        raise RoutePromptError(f'prompt must be a string, got {prompt!r}')
    try:
        parsed = list(string.Formatter().parse(prompt))
    except ValueError as error:
        raise RoutePromptError(f'prompt {prompt!r} is no valid template ({error}); write a '
                               f'literal brace as {{{{ or }}}}') from None
    found = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PROMPT_FIELDS:
            raise RoutePromptError(f'prompt field {{{name}}} is unknown; fields: '
                                   + ', '.join('{%s}' % f for f in PROMPT_FIELDS))
        if spec or conversion:
            raise RoutePromptError(f'prompt field {{{name}}} takes no format or conversion')
        if name not in found:
            found.append(name)
    return tuple(found)


def is_template(prompt: str) -> bool:
    """
    Return whether a prompt changes per frame (it uses at least one field).

    :param prompt: the prompt text.
    """
    return bool(template_fields(prompt))


def check_phrases(phrases) -> Tuple[Tuple[str, str], ...]:
    """
    Return a command vocabulary as sorted ``(RoadOption name, phrase)`` pairs, validated.

    :param phrases: pairs or a dict ``{name or value: phrase}``; it must cover every
        :class:`RoadOption` with a non-empty phrase.
    :raises RoutePromptError: naming the bad entry.
    """
    items = phrases.items() if isinstance(phrases, dict) else phrases
    table: Dict[RoadOption, str] = {}
    try:
        for key, phrase in items:
            option = RoadOption.parse(key)
            if not isinstance(phrase, str) or not phrase.strip():
                raise RoutePromptError(f'command {option.name}: phrase must be non-empty text, '
                                       f'got {phrase!r}')
            if '{' in phrase or '}' in phrase:
                raise RoutePromptError(f'command {option.name}: phrase {phrase!r} has braces')
            if option in table:
                raise RoutePromptError(f'command {option.name} has two phrases')
            table[option] = phrase
    except (TypeError, ValueError) as error:
        if isinstance(error, RoutePromptError):
            raise
        raise RoutePromptError(f'command vocabulary must be (command, phrase) pairs: '
                               f'{error}') from None
    missing = [o.name for o in COMMAND_ORDER if o not in table]
    if missing:
        raise RoutePromptError(f'command vocabulary lacks {", ".join(missing)}')
    return tuple((o.name, table[o]) for o in COMMAND_ORDER)


@dataclass(frozen=True)
class RouteInput:
    """
    What a frame knows about its route: the command, the speed and the next target point.

    :param command: the :class:`RoadOption` in effect.
    :param speed: speed in m/s (NaN: unknown, said as 0).
    :param target_forward: next target point, metres ahead in the vehicle frame (NaN: none).
    :param target_left: metres to the left (NaN: none).
    """

    command: RoadOption = NO_PLAN_COMMAND
    speed: float = math.nan
    target_forward: float = math.nan
    target_left: float = math.nan

    def __post_init__(self):
        """Parse the command; refuse infinite or absurd numbers (NaN means unknown)."""
        try:
            object.__setattr__(self, 'command', RoadOption.parse(self.command))
        except ValueError as error:
            raise RoutePromptError(str(error)) from None
        for name, limit in (('speed', MAX_SPEED_MPS), ('target_forward', MAX_TARGET_M),
                            ('target_left', MAX_TARGET_M)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RoutePromptError(f'RouteInput.{name} must be a number, got {value!r}')
            if not math.isnan(value) and not abs(value) <= limit:
                raise RoutePromptError(f'RouteInput.{name} must be NaN or within +-{limit:g}, '
                                       f'got {value!r}')
            object.__setattr__(self, name, float(value))


def target_words(forward: float, left: float) -> str:
    """
    Say a target point in words, e.g. ``'The next target is 12 m ahead and 3 m to the left.'``.

    :param forward: metres ahead (NaN: no target).
    :param left: metres to the left.
    """
    if not (math.isfinite(forward) and math.isfinite(left)):
        return 'No target is known.'
    ahead = f'{abs(round(forward)):d} m ' + ('ahead' if forward >= 0 else 'behind')
    side = round(left)
    lateral = 'straight on' if side == 0 else \
        f'{abs(side):d} m to the ' + ('left' if side > 0 else 'right')
    return f'The next target is {ahead} and {lateral}.'


def render_prompt(prompt: str, phrases: Sequence[Tuple[str, str]],
                  route: Optional[RouteInput]) -> str:
    """
    Fill a prompt template for one frame (a prompt without fields is returned unchanged).

    :param prompt: the template.
    :param phrases: the command vocabulary (:func:`check_phrases` output).
    :param route: the frame's route input; None only for prompts without fields.
    :raises RoutePromptError: a template without a route input or a vocabulary.
    """
    used = template_fields(prompt)
    if not used:
        return prompt
    if route is None:
        raise RoutePromptError(f'prompt {prompt!r} is a template: each frame needs its route '
                               f'input (command, speed, target)')
    values = {}
    if 'command' in used:
        table = dict(phrases)
        if route.command.name not in table:
            raise RoutePromptError(f'no phrase for command {route.command.name} in the '
                                   f'vocabulary')
        values['command'] = table[route.command.name]
    if 'speed' in used:
        speed = route.speed if math.isfinite(route.speed) else 0.0
        values['speed'] = f'{round(max(speed, 0.0)):d}'
    if 'target' in used:
        values['target'] = target_words(route.target_forward, route.target_left)
    return prompt.format(**values)


def command_one_hot(commands) -> np.ndarray:
    """
    Return the one-hot rows [N, 7] of RoadOption values in :data:`COMMAND_ORDER`.

    :param commands: [N] RoadOption values (ints); unknown values raise.
    """
    values = np.asarray(commands, dtype=np.int64).reshape(-1)
    order = np.array([int(o) for o in COMMAND_ORDER])
    matches = values[:, None] == order[None, :]
    unknown = ~matches.any(axis=1)
    if unknown.any():
        raise RoutePromptError(f'{int(values[unknown][0])} is no RoadOption value')
    return matches.astype(np.float32)


class RouteTracker:
    """
    The route input of each frame of a drive, in order: command and target from plan and pose.

    Offline extraction and the live policy both use it, so their commands agree: progress
    along the plan is carried from frame to frame and restarts with each episode; without a
    plan or a pose the command is :data:`NO_PLAN_COMMAND` and the target unknown.

    :param plan: the route's global plan, or None.
    """

    def __init__(self, plan: Optional[GlobalPlan] = None):
        """Start before the first frame."""
        self.plan = plan
        self.progress = None
        self.episode = None
        self.without_pose = 0
        self.without_route = 0

    def set_plan(self, plan: Optional[GlobalPlan]):
        """
        Follow a new plan (a new route): progress restarts.

        :param plan: the plan, or None.
        """
        self.plan, self.progress = plan, None

    def route(self, pose, speed: float, episode: int = 0):
        """
        Return ``(RouteInput, pose [3] float32)`` for the next frame.

        :param pose: ``(x, y, yaw)`` in the plan's frame, or None when unknown.
        :param speed: the frame's speed in m/s (NaN: unknown).
        :param episode: its episode (progress restarts when it changes).
        """
        if episode != self.episode:
            self.episode, self.progress = episode, None
        speed = float(speed) if math.isfinite(speed) and abs(speed) <= MAX_SPEED_MPS \
            else math.nan
        if pose is not None and not all(math.isfinite(v) for v in pose):
            pose = None
        if pose is None:
            self.without_pose += 1
        if pose is None or self.plan is None:
            self.without_route += 1
            known = np.full(3, np.nan, np.float32) if pose is None else \
                np.asarray(pose, np.float32)
            return RouteInput(NO_PLAN_COMMAND, speed), known
        result = route_command(self.plan, *pose, progress=self.progress)
        self.progress = result.progress
        forward, left = (value if abs(value) <= MAX_TARGET_M else math.nan
                         for value in (result.target_forward, result.target_left))
        return (RouteInput(result.command, speed, forward, left),
                np.asarray(pose, np.float32))
