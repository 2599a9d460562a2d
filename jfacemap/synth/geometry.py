"""Head-frame geometry of the synthetic face: camera, shapes, keypoints.

Conventions
-----------
Head frame: u points toward the nose, v points down (toward the chin), one
head unit = one pixel of a 256 x 256 frame at zoom 1. The face has the same
layout in every session up to the identity parameters: eye upper left, nose
right, whisker pad between them, mouth under the nose, paw below the face.

Image frame: x to the right (column), y down (row); pixel (row i, column j)
has its centre at (x, y) = (j, i), so the image covers [-0.5, W - 0.5) x
[-0.5, H - 0.5). The renderer samples every shape at pixel centres, so a
keypoint at integer (x, y) sits on the centre of pixel [y, x].

Camera: pixel = c + s R(rotation) (f u, v), with s = zoom * size / 256,
f = -1 when mirrored (the nose then points left) and c = ((size - 1) / 2 +
shift_x * size / 256, (size - 1) / 2 + shift_y * size / 256).

Everything that moves is a function of the behavioural latents here, and both
the renderer and the keypoints use these same functions, so the ground truth
is exact by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jfacemap.synth.params import FaceParams

# Whisking angle quantisation: whiskers are pre-rendered at these angles and
# each frame uses the nearest one (the keypoints use the same quantised angle).
WHISK_ANGLE_RANGE = (-35.0, 65.0)
WHISK_LEVELS = 64

JAW_MAX_DEG = 16.0
EYE_SHIFT = (1.5, 1.0)  # head units of eye (lid) shift per unit of eye_x, eye_y


# --------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class Camera:
    scale: float  # pixels per head unit
    angle: float  # radians
    flip: float  # +1 or -1
    cx: float
    cy: float

    @classmethod
    def from_params(cls, p: FaceParams) -> "Camera":
        k = p.size / 256.0
        return cls(
            scale=p.zoom * k,
            angle=np.deg2rad(p.rotation),
            flip=-1.0 if p.flip else 1.0,
            cx=(p.size - 1) / 2.0 + p.shift_x * k,
            cy=(p.size - 1) / 2.0 + p.shift_y * k,
        )

    def to_pixel(self, u, v):
        c, s = np.cos(self.angle), np.sin(self.angle)
        fu = self.flip * u
        return self.cx + self.scale * (c * fu - s * v), self.cy + self.scale * (s * fu + c * v)

    def to_head(self, x, y):
        c, s = np.cos(self.angle), np.sin(self.angle)
        dx, dy = (x - self.cx) / self.scale, (y - self.cy) / self.scale
        return self.flip * (c * dx + s * dy), -s * dx + c * dy

    def head_grid(self, x0: int, x1: int, y0: int, y1: int):
        """Head coordinates (u, v) of the pixel centres of rows y0:y1, columns x0:x1 (float32)."""
        ys, xs = np.mgrid[y0:y1, x0:x1]
        u, v = self.to_head(xs.astype(np.float64), ys.astype(np.float64))
        return u.astype(np.float32), v.astype(np.float32)


# --------------------------------------------------------------------------- shapes


def _trig(angle):
    """cos and sin; Python floats for scalars so float32 arrays stay float32."""
    if np.ndim(angle) == 0:
        return float(np.cos(angle)), float(np.sin(angle))
    return np.cos(angle), np.sin(angle)


def sd_ellipse(u, v, cu, cv, ru, rv, angle=0.0):
    """Approximate signed distance to an ellipse (negative inside), exact on the boundary."""
    c, s = _trig(angle)
    du, dv = u - cu, v - cv
    x, y = c * du + s * dv, -s * du + c * dv
    k0 = np.sqrt((x / ru) ** 2 + (y / rv) ** 2)
    k1 = np.sqrt((x / ru**2) ** 2 + (y / rv**2) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def sd_round_cone(u, v, au, av, ra, bu, bv, rb):
    """Signed distance to the hull of two circles (centre a radius ra, centre b radius rb)."""
    eu, ev = bu - au, bv - av
    h = np.sqrt(eu * eu + ev * ev)
    eu, ev = eu / h, ev / h
    du, dv = u - au, v - av
    y = du * eu + dv * ev
    x = np.abs(du * ev - dv * eu)
    b = (ra - rb) / h
    a = np.sqrt(1.0 - b * b)
    k = -b * x + a * y
    side = a * x + b * y - ra
    near_a = np.sqrt(x * x + y * y) - ra
    near_b = np.sqrt(x * x + (y - h) ** 2) - rb
    return np.where(k < 0, near_a, np.where(k > a * h, near_b, side))


def round_cone_tangent(au, av, ra, bu, bv, rb, mu, upper: bool):
    """Point at fraction mu along the upper (smaller v) or lower tangent of a round cone."""
    eu, ev = bu - au, bv - av
    h = np.sqrt(eu * eu + ev * ev)
    eu, ev = eu / h, ev / h
    b = (ra - rb) / h
    a = np.sqrt(1.0 - b * b)
    # normal (x direction of the local frame); choose the side with smaller v
    nu, nv = ev, -eu
    sign = np.where(nv < 0, 1.0, -1.0) if upper else np.where(nv < 0, -1.0, 1.0)
    nu, nv = nu * sign, nv * sign
    # tangent point on circle a: a*n + b*e scaled by ra; then along (-b n + a e)
    pu = au + ra * (a * nu + b * eu) + mu * a * h * (-b * nu + a * eu)
    pv = av + ra * (a * nv + b * ev) + mu * a * h * (-b * nv + a * ev)
    return pu, pv


def smin(a, b, k):
    """Polynomial smooth minimum (smooth union of two distance fields)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def rotate(u, v, angle):
    c, s = _trig(angle)
    return c * u - s * v, s * u + c * v


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Whiskers:
    """Whisker pad: base positions at rest, directions, lengths; all (N,) arrays."""

    base_u: np.ndarray
    base_v: np.ndarray
    psi0: np.ndarray  # rest direction, radians (pi = straight back)
    gain: np.ndarray  # rotation per unit of whisking angle
    length: np.ndarray
    curvature: np.ndarray
    row: np.ndarray
    arc: np.ndarray
    key: dict  # keypoint name -> whisker index
    opacity: np.ndarray | None = None  # (N,) drawn opacity at the base; None = 0.95 for all

    def bases(self, angle_deg):
        """Base positions (head units) for whisking angle(s): the pad moves with protraction."""
        t = np.deg2rad(np.asarray(angle_deg, np.float64))[..., None]
        return self.base_u + 5.0 * t, self.base_v + 1.5 * t

    def directions(self, angle_deg):
        t = np.deg2rad(np.asarray(angle_deg, np.float64))[..., None]
        return self.psi0 - self.gain * t


@dataclass(frozen=True)
class Layout:
    """The face in head units, derived from FaceParams."""

    eye: tuple  # (u, v)
    eye_a: float
    eye_b: float
    eye_tilt: float  # radians
    nose: tuple  # rest centre of the rhinarium
    nose_r: float
    snout_a: tuple  # base circle of the moving snout
    snout_ra: float
    skull: tuple  # rear circle of the static snout
    skull_r: float
    cheek: tuple  # (cu, cv, ru, rv, angle)
    mouth: tuple  # mouth corner (jaw hinge)
    lip_front: tuple  # front end of the upper lip line
    chin: tuple  # (cu, cv, ru, rv, angle) relative to mouth, in the jaw frame
    lower_lip: tuple  # lower-lip centre relative to mouth, in the jaw frame
    whiskers: Whiskers
    paw_rest: tuple
    paw_target: tuple
    paw_stroke: tuple  # stroke vector (head units per unit of paw_stroke)
    paw_up: tuple  # unit vector from wrist to digits
    nosebridge: tuple = field(default=(np.nan, np.nan))
    # where the nose keypoints sit (see FaceParams): radians around the rhinarium, nostril
    # distance in rhinarium radii, nose(top) fraction along the upper snout contour
    nose_tip_angle: float = float(np.deg2rad(30.0))
    nose_bottom_angle: float = float(np.deg2rad(85.0))
    nostril_angle: float = float(np.deg2rad(-45.0))
    nostril_dist: float = 0.55
    nose_top_mu: float = 0.8
    # upper lid height over the lower's (eye_b): real labels put eye(top) further from the
    # back-front line than eye(bottom)
    eye_upper: float = 1.0
    snout_blend: float = 0.0  # smooth-union width of the snout with the head (0: hard union)
    face_front: tuple | None = None  # (u, v, r) front circle of the static head; None: the snout base


def make_layout(p: FaceParams) -> Layout:
    rng = np.random.default_rng(p.whisker_seed)
    nose = (p.nose_u, p.nose_v)
    snout_a = (p.nose_u - 52.0, p.nose_v - 22.0 - p.snout_droop)
    skull = (p.eye_u - 90.0, p.eye_v + 35.0)
    mouth = (p.nose_u - p.jaw_len - 9.0, p.nose_v + p.nose_r + 3.0)
    lip_front = (p.nose_u - 9.0, p.nose_v + p.nose_r + 2.0)
    jaw_angle = np.arctan2(lip_front[1] - mouth[1], lip_front[0] - mouth[0])
    chin = (0.3 * p.jaw_len, 7.5, 0.47 * p.jaw_len, 9.5, jaw_angle)
    ll = (0.66 * p.jaw_len, 2.5)
    lower_lip = (ll[0] * np.cos(jaw_angle) - ll[1] * np.sin(jaw_angle),
                 ll[0] * np.sin(jaw_angle) + ll[1] * np.cos(jaw_angle))

    rows, arcs = p.whisker_rows, p.whisker_arcs
    r, c = np.meshgrid(np.arange(rows), np.arange(arcs), indexing="ij")
    r, c = r.ravel().astype(float), c.ravel().astype(float)
    p0 = (snout_a[0] - 30.0 + p.pad_du, snout_a[1] - 10.0 + p.pad_dv)
    arc_step = 46.0 / (arcs - 1)
    row_step = 34.0 / (rows - 1)
    base_u = p0[0] + c * arc_step + r * 1.5 + rng.normal(0, 0.6, r.size)
    base_v = p0[1] + c * 1.2 + r * row_step + rng.normal(0, 0.6, r.size)
    rf, cf = r / (rows - 1), c / (arcs - 1)
    psi0 = np.deg2rad(186.0 - 44.0 * rf + rng.normal(0, 2.5, r.size))
    gain = 0.8 + 0.4 * cf
    length = p.whisker_length * (1.0 - 0.62 * cf) * (1.0 - 0.2 * np.abs(rf - 0.5)) * rng.uniform(0.85, 1.1, r.size)
    curvature = p.whisker_curvature * rng.uniform(0.7, 1.3, r.size)
    index = lambda row, arc: int(row * arcs + arc)  # noqa: E731
    key = {
        "whisker(I)": index(1, arcs - 3),
        "whisker(II)": index(2, arcs - 4),
        "whisker(III)": index(3, arcs - 3),
    }
    opacity = None
    if p.whisker_sparsity > 0:
        # Real side views show a few whiskers, not a painted fan: hide a share
        # of the pad's whiskers (never those that carry keypoints) and vary
        # the contrast of the rest. Its own stream, so other styles are unchanged.
        rng_o = np.random.default_rng([p.whisker_seed, 1])
        opacity = np.where(rng_o.random(r.size) < p.whisker_sparsity, 0.0, rng_o.uniform(0.35, 0.95, r.size))
        opacity[list(key.values())] = rng_o.uniform(0.5, 0.95, len(key))
    whiskers = Whiskers(base_u, base_v, psi0, gain, length, curvature, r.astype(int), c.astype(int), key, opacity)

    up = np.array([0.35, -1.0])
    up /= np.linalg.norm(up)
    stroke = np.array([-0.45, -1.0])
    stroke = 18.0 * stroke / np.linalg.norm(stroke)
    return Layout(
        eye=(p.eye_u, p.eye_v),
        eye_a=p.eye_a,
        eye_b=p.eye_b,
        eye_upper=p.eye_upper,
        eye_tilt=np.deg2rad(p.eye_tilt),
        nose=nose,
        nose_r=p.nose_r,
        snout_a=snout_a,
        snout_ra=p.snout_r,
        skull=skull,
        skull_r=130.0,
        cheek=(p.eye_u + 5.0, p.eye_v + 160.0, 115.0, 75.0, np.deg2rad(-10.0)),
        mouth=mouth,
        lip_front=lip_front,
        chin=chin,
        lower_lip=lower_lip,
        whiskers=whiskers,
        paw_rest=(nose[0] - 60.0, nose[1] + 300.0),
        paw_target=(nose[0] - 22.0, nose[1] + 8.0),
        paw_stroke=(float(stroke[0]), float(stroke[1])),
        paw_up=(float(up[0]), float(up[1])),
        nose_tip_angle=float(np.deg2rad(p.nose_tip_deg)),
        nose_bottom_angle=float(np.deg2rad(p.nose_bottom_deg)),
        nostril_angle=float(np.deg2rad(p.nostril_deg)),
        nostril_dist=p.nostril_dist,
        nose_top_mu=p.nose_top_mu,
        snout_blend=p.snout_blend,
        face_front=_face_front(p),
    )


def _face_front(p: FaceParams):
    """Front circle of the static head when the snout droops or blends in (else None: the snout base).

    The face keeps its depth under a raised, narrower snout base: no gap opens between snout and chin."""
    if p.snout_droop == 0 and p.snout_blend == 0:
        return None
    return (p.nose_u - 52.0, p.nose_v - 22.0, p.nose_r + 20.0)


def static_head_sdf(L: Layout, u, v):
    """Signed distance (head units) to the head without the moving snout tip and jaw."""
    front = L.face_front if L.face_front is not None else (*L.snout_a, L.snout_ra)
    d = sd_round_cone(u, v, *L.skull, L.skull_r, *front)
    d = smin(d, sd_ellipse(u, v, *L.cheek), 20.0)
    throat = sd_round_cone(u, v, L.mouth[0] - 4.0, L.mouth[1] + 9.0, 13.0, L.eye[0] + 30.0, L.eye[1] + 150.0, 60.0)
    return smin(d, throat, 15.0)


def find_nosebridge(L: Layout) -> tuple[float, float]:
    """The dorsal contour of the static head, 55 % of the way from the eye to the snout base."""
    u = L.eye[0] + 0.55 * (L.snout_a[0] - L.eye[0])
    inside, outside = L.eye[1], L.eye[1] - 300.0
    for _ in range(60):
        mid = 0.5 * (inside + outside)
        if static_head_sdf(L, np.float64(u), np.float64(mid)) < 0:
            inside = mid
        else:
            outside = mid
    return float(u), float(0.5 * (inside + outside))


# --------------------------------------------------------------------------- moving parts


def quantise_whisk(angle_deg) -> np.ndarray:
    """Index of the pre-rendered whisking level nearest to each angle."""
    lo, hi = WHISK_ANGLE_RANGE
    q = np.rint((np.asarray(angle_deg, np.float64) - lo) / (hi - lo) * (WHISK_LEVELS - 1))
    return np.clip(q, 0, WHISK_LEVELS - 1).astype(np.int64)


def whisk_level_angle(level) -> np.ndarray:
    lo, hi = WHISK_ANGLE_RANGE
    return lo + np.asarray(level, np.float64) * (hi - lo) / (WHISK_LEVELS - 1)


def eye_state(L: Layout, eye_x, eye_y, blink):
    """Eye centre (u, v) and lid factors: lids at v_local = k * b * sqrt(1 - (x/a)^2)."""
    cu = L.eye[0] + EYE_SHIFT[0] * eye_x
    cv = L.eye[1] + EYE_SHIFT[1] * eye_y
    k_upper = -L.eye_upper + (L.eye_upper + 0.25) * blink  # closed: 0.25 whatever the upper height
    k_lower = 1.0 - 0.75 * blink
    return cu, cv, k_upper, k_lower


PAW_PRESENT = 1e-3  # paw_height above which the paw is drawn (and can be visible)
NOSE_MAX_SHIFT = 6.0  # head units; the renderer only redraws pixels the nose can reach


def nose_centre(L: Layout, nose_x, nose_y):
    """Rhinarium centre; the sniffing offset is clipped to a length of NOSE_MAX_SHIFT."""
    length = np.sqrt(nose_x * nose_x + nose_y * nose_y)
    k = NOSE_MAX_SHIFT / np.maximum(length, NOSE_MAX_SHIFT)
    return L.nose[0] + k * nose_x, L.nose[1] + k * nose_y


def snout_axis(L: Layout, nu, nv):
    eu, ev = nu - L.snout_a[0], nv - L.snout_a[1]
    n = np.sqrt(eu * eu + ev * ev)
    return eu / n, ev / n


def nostril_centre(L: Layout, nu, nv):
    eu, ev = snout_axis(L, nu, nv)
    du, dv = rotate(eu, ev, L.nostril_angle)
    return nu + L.nostril_dist * L.nose_r * du, nv + L.nostril_dist * L.nose_r * dv


def jaw_angle(jaw):
    return np.deg2rad(JAW_MAX_DEG) * np.asarray(jaw, np.float64)


def paw_centre(L: Layout, height, stroke):
    h = np.asarray(height, np.float64)
    s = np.asarray(stroke, np.float64)
    pu = L.paw_rest[0] + h * (L.paw_target[0] - L.paw_rest[0]) + h * s * L.paw_stroke[0]
    pv = L.paw_rest[1] + h * (L.paw_target[1] - L.paw_rest[1]) + h * s * L.paw_stroke[1]
    return pu, pv


def paw_sdf(L: Layout, u, v, pu, pv):
    """Signed distance to the paw (palm, four digits, forearm) centred at (pu, pv)."""
    upu, upv = L.paw_up
    sdu, sdv = -upv, upu  # sideways
    angle = np.arctan2(upv, upu) + np.pi / 2  # long palm axis across the up direction
    d = sd_ellipse(u, v, pu, pv, 21.0, 14.0, angle)
    for k, fan in enumerate((-0.55, -0.18, 0.18, 0.55)):
        # fingers fan out from the palm toward the face
        fu, fv = rotate(upu, upv, fan)
        reach = 16.0 + (2.5 if k in (1, 2) else 0.0)
        du = pu + reach * fu + 9.0 * fan * sdu
        dv = pv + reach * fv + 9.0 * fan * sdv
        d = np.minimum(d, sd_ellipse(u, v, du, dv, 3.6, 7.5, np.arctan2(fv, fu) + np.pi / 2))
    arm = sd_round_cone(u, v, pu - 8.0 * upu, pv - 8.0 * upv, 11.0, pu - 170.0 * upu, pv - 170.0 * upv, 16.0)
    return np.minimum(d, arm)
