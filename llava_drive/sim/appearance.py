"""Seeded visual randomization: colours, lighting, haze and camera mount jitter."""
from dataclasses import dataclass, fields
from typing import Tuple

from llava_drive.config_checks import number_in_range
import numpy as np

BGR = Tuple[int, int, int]
# Closed range of every number field of Appearance.
NUMBER_RANGES = {
    'brightness': (0.2, 2.0), 'haze': (0.0, 1.0), 'texture_strength': (0.0, 3.0),
    'cloud_cover': (0.0, 1.0), 'camera_height_offset_m': (-0.5, 0.5),
    'camera_pitch_offset_deg': (-5.0, 5.0),
}


@dataclass(frozen=True)
class Appearance:
    """
    How one episode looks. Colours are BGR ``uint8`` triples before ``brightness``.

    :param sky_zenith_bgr: sky colour at the top of a tall image
    :param sky_horizon_bgr: sky and haze colour at the horizon
    :param grass_bgr: mean grass colour
    :param grass_patch_bgr: second grass colour blended in large patches
    :param road_bgr: asphalt colour
    :param sidewalk_bgr: sidewalk colour
    :param kerb_bgr: kerb stone colour
    :param marking_bgr: lane marking paint colour
    :param brightness: global multiplier of all colours (lighting)
    :param haze: 0..1 strength of distance haze at the horizon
    :param texture_strength: multiplier of the grass and asphalt noise amplitude
    :param cloud_cover: 0..1, how much of the upper sky is cloud
    :param camera_height_offset_m: added to the configured camera height
    :param camera_pitch_offset_deg: added to the configured downward camera pitch
    """

    sky_zenith_bgr: BGR = (200, 140, 80)
    sky_horizon_bgr: BGR = (235, 215, 195)
    grass_bgr: BGR = (60, 130, 85)
    grass_patch_bgr: BGR = (50, 115, 110)
    road_bgr: BGR = (95, 95, 98)
    sidewalk_bgr: BGR = (165, 170, 175)
    kerb_bgr: BGR = (200, 200, 200)
    marking_bgr: BGR = (235, 235, 235)
    brightness: float = 1.0
    haze: float = 0.8
    texture_strength: float = 1.0
    cloud_cover: float = 0.5
    camera_height_offset_m: float = 0.0
    camera_pitch_offset_deg: float = 0.0

    def __post_init__(self):
        """Check colour triples and that every number is in its range (``NUMBER_RANGES``)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith('_bgr'):
                if len(value) != 3 or any(not 0 <= int(c) <= 255 for c in value):
                    raise ValueError(f'Appearance.{f.name} must be 3 values in 0..255, '
                                     f'got {value!r}')
            else:
                number_in_range(f'Appearance.{f.name}', value, *NUMBER_RANGES[f.name])

    @classmethod
    def sample(cls, rng: np.random.Generator) -> 'Appearance':
        """
        Draw a random appearance around the defaults.

        :param rng: seeded random generator
        """
        base = cls()

        def jitter(colour, spread):
            return tuple(int(np.clip(c + rng.normal(0.0, spread), 0, 255)) for c in colour)

        wear = float(rng.uniform(0.0, 35.0))  # older paint is greyer, never tinted
        grey = float(rng.uniform(-25.0, 35.0))  # darker or paler asphalt, all channels together
        road = tuple(int(np.clip(c + grey + rng.normal(0.0, 2.0), 0, 255))
                     for c in base.road_bgr)
        # Skies range from clear blue to overcast grey, never to an unnatural hue.
        overcast = float(rng.uniform(0.0, 0.8)) if rng.random() < 0.4 else 0.0

        def towards_grey(colour, grey, amount):
            return tuple(int(round(c * (1 - amount) + grey * amount)) for c in colour)

        zenith = tuple(int(np.clip(c * rng.uniform(0.85, 1.1), 0, 255))
                       for c in base.sky_zenith_bgr)
        return cls(
            sky_zenith_bgr=towards_grey(zenith, 175.0, overcast),
            sky_horizon_bgr=towards_grey(jitter(base.sky_horizon_bgr, 6.0), 205.0, overcast),
            grass_bgr=jitter(base.grass_bgr, 15.0),
            grass_patch_bgr=jitter(base.grass_patch_bgr, 15.0),
            road_bgr=road,
            sidewalk_bgr=jitter(base.sidewalk_bgr, 12.0),
            kerb_bgr=jitter(base.kerb_bgr, 10.0),
            marking_bgr=tuple(int(c - wear) for c in base.marking_bgr),
            brightness=float(rng.uniform(0.65, 1.25)),
            haze=float(rng.uniform(0.4, 1.0)),
            texture_strength=float(rng.uniform(0.6, 1.5)),
            cloud_cover=float(rng.uniform(0.0, 1.0)),
            camera_height_offset_m=float(rng.uniform(-0.1, 0.1)),
            camera_pitch_offset_deg=float(rng.uniform(-1.5, 1.5)),
        )
