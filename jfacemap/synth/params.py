"""Who the synthetic mouse is and how it is filmed: `FaceParams` and its sampler.

Lengths are in *head units*: the face is laid out in a canonical head frame
(u toward the nose, v down, origin near the middle of the face) whose unit is
one pixel of a 256 x 256 frame at zoom 1. The camera maps the head frame to
the image by a similarity transform (optionally mirrored); see
`jfacemap.synth.geometry.Camera`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# "lab1": the default look (dark background, high contrast, nose to the right).
# "lab2": the "other lab" for fine-tuning experiments: mirrored (nose to the
# left), strongly tilted, grey low-contrast background, vignetting, coarser fur,
# dark whiskers, more blur and noise. Never trained on: the held-out family.
# "wild": domain randomisation for the shipped tracker: every identity, camera
# and imaging parameter drawn from a wide range centred on what the real faces
# measure (bench/render_vs_real.py): blunt bulbous snouts, round eyes, whisker
# pad low and back with its keypoint whiskers as (mostly dark) shafts on the pad's
# fur, soft fine fur radiating from the pad, saturating muzzles, tight crops at 0.7-3x
# zoom that may cut the nose or eye at the frame edge, either facing direction.
STYLES: tuple[str, ...] = ("lab1", "lab2", "wild")


@dataclass(frozen=True)
class FaceParams:
    """Identity (head geometry, fur, whiskers), camera and imaging of one session.

    Every field is a plain Python scalar, so the object is hashable and
    `dataclasses.asdict` gives JSON-ready values.
    """

    style: str
    size: int
    seed: int
    # identity: head geometry (head units)
    eye_u: float
    eye_v: float
    eye_a: float  # half width of the lid opening
    eye_b: float  # half height of the lid opening
    eye_tilt: float  # degrees, front end down
    nose_u: float
    nose_v: float
    nose_r: float  # rhinarium radius
    snout_r: float  # radius of the snout where the whisker pad sits
    jaw_len: float  # mouth corner to lip front
    # identity: fur and whiskers
    fur_brightness: float  # albedo of the fur behind the eye (0-255 scale)
    snout_gain: float  # how much brighter the fur gets toward the snout
    fur_contrast: float
    texture_scale: float  # > 1: coarser fur
    texture_seed: int
    whisker_rows: int
    whisker_arcs: int
    whisker_length: float  # longest (caudal) whisker, head units
    whisker_curvature: float
    whisker_brightness: float  # albedo of the whiskers
    whisker_width: float  # base width in head units
    whisker_seed: int
    rim_strength: float  # pale eye rim, added albedo
    highlight_strength: float  # corneal reflections, added albedo
    # camera
    rotation: float  # degrees, clockwise on screen (y down)
    zoom: float
    shift_x: float  # pixels of a 256 frame
    shift_y: float
    flip: bool  # mirrored: the nose points left
    # imaging
    background: float  # albedo of the background
    light_angle: float  # degrees, direction the light gradient increases toward
    light_strength: float  # relative change across the frame
    vignette: float  # relative darkening at the corners
    gain: float
    noise_std: float  # read noise, grey levels
    shot_noise: float  # variance per grey level of signal
    blur: float  # optical blur sigma, pixels of a 256 frame
    black_level: float  # grey level added to every pixel (glare, sensor offset)
    noise_seed: int
    # identity, "wild" only (0 elsewhere, so older styles render as before):
    # where the whisker pad sits relative to the default layout (head units).
    pad_du: float = 0.0
    pad_dv: float = 0.0
    whisker_sparsity: float = 0.0  # share of the pad's non-keypoint whiskers not drawn
    fur_streak: float = 1.0  # weight of the hair strands in the fur texture (< 1: softer)
    # 0: whiskers have the absolute albedo whisker_brightness; > 0: this times the fur's
    # albedo at the pad (< 1: dark shafts on the pad's fur, as real IR close-ups show them).
    whisker_tone: float = 0.0
    pad_fur: float = 0.0  # 0-1: how much the fur around the whisker pad flows out of it radially
    # The muzzle and where its keypoints sit (defaults: the lab layout). snout_droop
    # raises the snout base, so the snout points further down than the eye-nose line.
    # Angles are around the rhinarium from the snout axis (+ = down); the nostril
    # (nose(r)) sits nostril_dist rhinarium radii from the centre; nose(top) is
    # nose_top_mu of the way along the upper snout contour from its base.
    snout_droop: float = 0.0
    snout_blend: float = 0.0  # head units over which the snout swells out of the head (0: hard union)
    nose_tip_deg: float = 30.0
    nose_bottom_deg: float = 85.0
    nostril_deg: float = -45.0
    nostril_dist: float = 0.55
    nose_top_mu: float = 0.8
    # The eye (defaults: the lab look). eye_upper: the upper lid's height over the
    # lower's (eye_b); real labels put eye(top) further from the back-front line.
    # The corneal reflection's centre in half-widths / half-heights from the eye centre
    # (+ = toward the front / down); a second, smaller one sits up and forward of it
    # with `highlight_second` of its strength.
    eye_upper: float = 1.0
    highlight_u: float = -0.32
    highlight_v: float = -0.30
    highlight_second: float = 0.75
    # How much the muzzle's inner marks show (defaults: the lab look): the rhinarium disc's
    # blend over the fur, the nostril's and the mouth line's darkening. Real close-ups show
    # the nose mostly as the silhouette's end, with faint or no disc and mouth line.
    rhinarium_blend: float = 0.8
    nostril_dark: float = 0.45
    mouth_dark: float = 0.85


# The fields that place the keypoints on the head (head geometry and where each
# keypoint sits on it): a style's "layout", as opposed to its look (fur,
# whiskers, marks, camera, imaging). The lab styles keep the renderer's first
# layout (whiskers high and forward, a pointed snout); "wild" draws the real
# faces' (bench/render_vs_real.py), so e.g. `with_layout(lab2, wild)` tells how
# much of an error on lab2 is its look and how much its keypoint convention.
LAYOUT_FIELDS: tuple[str, ...] = (
    "eye_u", "eye_v", "eye_a", "eye_b", "eye_tilt", "eye_upper",
    "nose_u", "nose_v", "nose_r", "snout_r", "jaw_len", "pad_du", "pad_dv",
    "whisker_rows", "whisker_arcs", "whisker_seed",  # which pad whisker carries each keypoint, and its jitter
    "snout_droop", "snout_blend", "nose_tip_deg", "nose_bottom_deg", "nostril_deg", "nostril_dist", "nose_top_mu",
)


def with_layout(look: FaceParams, layout: FaceParams) -> FaceParams:
    """`look`'s appearance, camera and imaging over `layout`'s `LAYOUT_FIELDS`."""
    return replace(look, **{name: getattr(layout, name) for name in LAYOUT_FIELDS})


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def sample_face_params(seed: int, style: str = "lab1", size: int = 256) -> FaceParams:
    """A random mouse, camera view and imaging for `style` (deterministic per seed)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    # Different streams for the two styles, so lab2 is not lab1 with a few knobs turned.
    rng = np.random.default_rng([int(seed), STYLES.index(style)])
    identity = dict(
        eye_u=_u(rng, -86, -74),
        eye_v=_u(rng, -46, -36),
        eye_a=_u(rng, 23.0, 28.0),
        eye_b=0.0,
        eye_tilt=_u(rng, 6, 18),
        nose_u=_u(rng, 84, 96),
        nose_v=_u(rng, 24, 34),
        nose_r=_u(rng, 11.0, 14.0),
        snout_r=_u(rng, 34, 40),
        jaw_len=_u(rng, 36, 46),
        fur_brightness=_u(rng, 90, 120),
        snout_gain=_u(rng, 0.75, 1.1),
        fur_contrast=_u(rng, 0.25, 0.4),
        texture_scale=_u(rng, 0.8, 1.25),
        texture_seed=int(rng.integers(2**31)),
        whisker_rows=int(rng.integers(4, 6)),
        whisker_arcs=int(rng.integers(5, 7)),
        whisker_length=_u(rng, 120, 170),
        whisker_curvature=_u(rng, 0.15, 0.32),
        whisker_brightness=_u(rng, 165, 200),
        whisker_width=_u(rng, 1.5, 2.1),
        whisker_seed=int(rng.integers(2**31)),
        rim_strength=_u(rng, 50, 80),
        highlight_strength=_u(rng, 170, 230),
    )
    identity["eye_b"] = identity["eye_a"] * _u(rng, 0.66, 0.78)
    if style == "wild":
        # After the lab identity draws on purpose, so the lab streams never move.
        # (The snout/imaging retune of the wild ranges changed every wild session:
        # bench/checkpoints/base-wild-model was trained on the older wild family.)
        return _sample_wild(rng, seed, size)
    if style == "lab1":
        camera = dict(
            rotation=_u(rng, -15, 15),
            zoom=_u(rng, 0.8, 1.15),
            shift_x=_u(rng, -12, 12),
            shift_y=_u(rng, -12, 12),
            flip=False,
        )
        imaging = dict(
            background=_u(rng, 8, 22),
            light_angle=_u(rng, 150, 250),
            light_strength=_u(rng, 0.2, 0.5),
            vignette=_u(rng, 0.0, 0.1),
            gain=_u(rng, 0.9, 1.15),
            noise_std=_u(rng, 2.0, 4.0),
            shot_noise=_u(rng, 0.02, 0.06),
            blur=_u(rng, 0.45, 0.8),
            black_level=_u(rng, 0.0, 4.0),
        )
    else:
        identity.update(
            fur_brightness=_u(rng, 125, 150),
            snout_gain=_u(rng, 0.2, 0.4),
            fur_contrast=_u(rng, 0.35, 0.5),
            texture_scale=_u(rng, 1.5, 1.9),
            whisker_brightness=_u(rng, 45, 75),
            whisker_width=_u(rng, 1.7, 2.3),
            rim_strength=_u(rng, 20, 40),
            highlight_strength=_u(rng, 80, 130),
        )
        camera = dict(
            rotation=_u(rng, -30, -16),
            zoom=_u(rng, 0.8, 1.0),
            shift_x=_u(rng, -8, 8),
            shift_y=_u(rng, -4, 8),
            flip=True,
        )
        imaging = dict(
            background=_u(rng, 120, 160),
            light_angle=_u(rng, -60, 30),
            light_strength=_u(rng, 0.3, 0.6),
            vignette=_u(rng, 0.35, 0.55),
            gain=_u(rng, 0.75, 0.9),
            noise_std=_u(rng, 6.0, 9.0),
            shot_noise=_u(rng, 0.05, 0.12),
            blur=_u(rng, 1.1, 1.6),
            black_level=_u(rng, 35.0, 55.0),
        )
    return FaceParams(
        style=style, size=int(size), seed=int(seed), **identity, **camera, **imaging,
        noise_seed=int(rng.integers(2**31)),
    )


def _log_u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _sample_wild(rng: np.random.Generator, seed: int, size: int) -> FaceParams:
    """The "wild" family: wide ranges around the real faces' measurements.

    Real faces (at 256 scale, bench/render_vs_real.py) have nose-point spread
    ~55 px (lab1 renders 27), eye height/width ~1 (0.7), whiskers at u ~0.56,
    v ~0.19 of the eye-nose axis (0.66, 0.04), Laplacian SD 10-16 (16-35),
    up to 9 % of pixels saturated, no pixel below 5, dark backgrounds (5th
    percentile 10-25), little sensor noise (~1.6 grey levels). Ranges reach past
    both the real values and the old renders, so neither is an edge case."""
    eye_a = _u(rng, 21.0, 30.0)
    identity = dict(
        eye_u=_u(rng, -90, -70),
        eye_v=_u(rng, -50, -32),
        eye_a=eye_a,
        eye_b=eye_a * _u(rng, 0.85, 1.1),
        eye_tilt=_u(rng, -28, 4),
        nose_u=_u(rng, 90, 108),
        nose_v=_u(rng, 20, 38),
        nose_r=_u(rng, 14.0, 28.0),
        snout_r=_u(rng, 1.05, 1.6),  # times nose_r (below): a blunt, nearly round-ended muzzle
        jaw_len=_u(rng, 34, 48),
        fur_brightness=_u(rng, 25, 100),
        snout_gain=_u(rng, 0.8, 3.0),
        fur_contrast=_u(rng, 0.1, 0.45),
        texture_scale=_log_u(rng, 0.5, 2.0),
        texture_seed=int(rng.integers(2**31)),
        whisker_rows=int(rng.integers(4, 6)),  # the keypoint whiskers sit on rows 1-3
        whisker_arcs=int(rng.integers(4, 7)),
        whisker_length=_u(rng, 90, 180),
        whisker_curvature=_u(rng, 0.1, 0.4),
        whisker_brightness=_u(rng, 40, 230),
        whisker_width=_u(rng, 0.7, 2.0),
        whisker_seed=int(rng.integers(2**31)),
        rim_strength=_u(rng, 0, 70),
        highlight_strength=_u(rng, 80, 255),
    )
    identity["snout_r"] *= identity["nose_r"]
    flip = bool(rng.random() < 0.5)
    # Mostly views like the real close-ups (zoom ~1 here), a quarter zoomed in to 3x.
    zoom = _log_u(rng, 0.7, 1.6) if rng.random() < 0.75 else _log_u(rng, 1.6, 3.0)
    # nose a little down on average, as in the real views (eye-nose axis ~26 deg below horizontal)
    rotation = _u(rng, -35, 35) + (-8.0 if flip else 8.0)
    # Tight crops: put a head point between the eye and the nose at the frame
    # centre (plus jitter), so at high zoom the frame shows part of the face
    # and the nose or the eye may be cut at the edge, as in real close-ups.
    centre_u, centre_v = _u(rng, -30, 40), _u(rng, -20, 30)
    c, s_ = np.cos(np.deg2rad(rotation)), np.sin(np.deg2rad(rotation))
    fu = -centre_u if flip else centre_u
    camera = dict(
        rotation=rotation,
        zoom=zoom,
        shift_x=-zoom * (c * fu - s_ * centre_v) + _u(rng, -15, 15),
        shift_y=-zoom * (s_ * fu + c * centre_v) + _u(rng, -15, 15),
        flip=flip,
    )
    imaging = dict(
        background=_u(rng, 1, 28),
        light_angle=_u(rng, 0, 360),
        light_strength=_u(rng, 0.15, 0.9),
        vignette=_u(rng, 0.0, 0.5),
        gain=_log_u(rng, 0.9, 2.0),  # > ~1.3 saturates the bright muzzle, as real IR video does
        noise_std=_log_u(rng, 0.3, 2.8),
        shot_noise=_u(rng, 0.0, 0.05),
        blur=_log_u(rng, 0.45, 1.8),
        black_level=_u(rng, 3.0, 10.0),
    )
    noise_seed = int(rng.integers(2**31))
    pad = dict(pad_du=_u(rng, -31, -1), pad_dv=_u(rng, 5, 36), whisker_sparsity=_u(rng, 0.3, 0.9),
               fur_streak=_u(rng, 0.15, 1.0))
    muzzle = _wild_muzzle(rng)
    eye = _wild_eye(rng)
    marks = dict(rhinarium_blend=_u(rng, 0.0, 0.8), nostril_dark=_u(rng, 0.0, 0.45), mouth_dark=_u(rng, 0.0, 0.85))
    # Drawn last, so every earlier draw (the geometry) is as before. Real pads show dark whisker
    # shafts converging on the keypoints through fur that radiates from the pad; renders with an
    # absolute whisker albedo often hid the keypoint whiskers in a bright or dark pad.
    tone = _u(rng, 0.3, 0.75) if rng.random() < 0.8 else _u(rng, 1.25, 1.7)
    pad.update(whisker_tone=tone, pad_fur=_u(rng, 0.3, 1.0))
    # eye_b was drawn as the half height of the whole opening: keep that height
    identity["eye_b"] *= 2.0 / (1.0 + eye["eye_upper"])
    return FaceParams(style="wild", size=int(size), seed=int(seed), **identity, **camera, **imaging,
                      noise_seed=noise_seed, **pad, **muzzle, **eye, **marks)


def _wild_eye(rng: np.random.Generator) -> dict:
    """The eye as real close-ups show it (bench/render_vs_real.py): eye(top) 0.14-0.34
    half-heights further from the back-front line than eye(bottom) (upper lid 1.3-2x the
    lower), one corneal reflection near the centre or a little below it (renders had it
    up and back, a cue the network learned), sometimes a faint second one. Drawn after
    the muzzle, so the other wild draws are as before."""
    return dict(
        eye_upper=_u(rng, 1.0, 2.0),
        highlight_u=_u(rng, -0.45, 0.15),
        highlight_v=_u(rng, -0.4, 0.3),
        highlight_second=_u(rng, 0.0, 0.75),
    )


def _wild_muzzle(rng: np.random.Generator) -> dict:
    """Snout direction and where the nose keypoints sit on the rhinarium, as real labels put them.

    In the eye -> nose(tip) frame real faces put nose(bottom) at v ~0.19 (below
    the bulb), nose(top) at u ~0.84, v ~-0.10 and nose(r) ahead of the tip (u
    ~1.12, v ~0.09): tip on top of the bulb, nostril at its front, bottom on its
    underside, with a snout pointing further down than the eye-nose line and
    swelling smoothly out of the face (no neck behind a round end). The swelling
    reaches past the rhinarium disc, so the renderer moves nose(tip) and nose(top)
    onto the outline as drawn (`FaceRenderer.keypoints_head`), where real labels
    sit; the angles and nose_top_mu were re-drawn so that the layout still matches
    (python -m bench.render_vs_real --styles wild --per-keypoint). Drawn last,
    so these draws do not shift the other wild draws."""
    return dict(
        snout_droop=_u(rng, 5.0, 25.0),
        snout_blend=_u(rng, 30.0, 70.0),
        nose_tip_deg=_u(rng, -125.0, -100.0),
        nose_bottom_deg=_u(rng, 95.0, 125.0),
        nostril_deg=_u(rng, -70.0, -35.0),
        nostril_dist=_u(rng, 0.85, 1.0),
        nose_top_mu=_u(rng, 0.1, 0.4),
    )
