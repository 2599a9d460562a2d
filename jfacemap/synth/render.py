"""The per-session renderer: static parts once, moving parts per frame in small patches.

Setup (once per FaceParams): head, fur, background, lighting and the
pre-blurred static image; whisker layers at every quantised whisking angle; a
bank of noise frames. Per frame: the eye patch (lids, eyeball, pupil,
highlights), the snout patch (moving nose, mouth, jaw), the whisker layer of
the frame's angle, the paw when it is up, then gain, sensor noise and
quantisation. Optical blur is part of the rendering: the static image is
blurred once, and every moving edge is drawn with the blurred edge profile.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from jfacemap.skeleton import FACEMAP_BODYPARTS
from jfacemap.synth import geometry as g
from jfacemap.synth.behavior import BehaviorLatents
from jfacemap.synth.params import FaceParams
from jfacemap.synth.texture import background, coverage, fur_albedo, fur_base, gain_map, pad_centre, shade
from jfacemap.synth.whiskers import WhiskerLayers

_NOISE_BANK = 16
_JAW_BLEND = 12.0  # head units over which the jaw blends into the head
_NOISE_PAD = 32


class _PixelSet:
    """The pixels (flat indices) that a moving part can change, with their static maps."""

    def __init__(self, renderer: "FaceRenderer", mask: np.ndarray):
        self.idx = np.flatnonzero(mask)
        self.empty = self.idx.size == 0
        take = lambda a: np.ascontiguousarray(a.reshape(-1)[self.idx])  # noqa: E731
        self.u, self.v = take(renderer.u), take(renderer.v)
        self.static, self.fur, self.bg = take(renderer.static), take(renderer.fur_shaded), take(renderer.bg)
        self.sdf, self.tex = take(renderer.sdf), take(renderer.paw_texture)
        self.mask = mask

    def subset(self, mask: np.ndarray) -> np.ndarray:
        """Positions within this set of the pixels of `mask` (which must lie in the set)."""
        return np.flatnonzero(mask.reshape(-1)[self.idx])


def _segment_distance(u, v, au, av, bu, bv):
    """Distance from (u, v) to the segment a-b."""
    eu, ev = bu - au, bv - av
    t = np.clip(((u - au) * eu + (v - av) * ev) / (eu * eu + ev * ev), 0.0, 1.0)
    return np.hypot(u - au - t * eu, v - av - t * ev)


def _hash_frames(seed: int, frames: np.ndarray) -> np.ndarray:
    """splitmix64 of (seed, frame): per-frame random numbers independent of chunking."""
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) ^ frames.astype(np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class FaceRenderer:
    """Renders frames and ground-truth keypoints of one synthetic mouse (FaceParams)."""

    def __init__(self, params: FaceParams):
        p = self.p = params
        self.size = size = p.size
        self.cam = cam = g.Camera.from_params(p)
        layout = g.make_layout(p)
        self.L = L = dataclasses.replace(layout, nosebridge=g.find_nosebridge(layout))
        self.px = cam.scale
        blur_px = p.blur * size / 256.0
        self.edge = float(np.sqrt(1.0 + (2.5 * blur_px) ** 2))
        self.u, self.v = cam.head_grid(0, size, 0, size)
        u64, v64 = self.u.astype(np.float64), self.v.astype(np.float64)

        fur, hair = fur_albedo(p, L, cam, u64, v64)
        # hairs break the silhouette up a little (head units)
        self.sdf = (g.static_head_sdf(L, u64, v64) + 0.8 * hair).astype(np.float32)
        bg = background(p, cam, (size, size))
        if blur_px > 0:
            fur = ndimage.gaussian_filter(fur, blur_px, mode="nearest")
            bg = ndimage.gaussian_filter(bg, blur_px, mode="nearest")
        self.fur, self.bg = fur.astype(np.float32), bg.astype(np.float32)
        # the paw and the rhinarium reuse the fur texture, turned around (another pattern)
        self.paw_texture = ndimage.gaussian_filter(hair[::-1, ::-1], max(blur_px, 0.3)).astype(np.float32)

        # The head with snout and jaw at rest gives the static image and the shading.
        nu, nv = L.nose
        rest = self._moving_sdf(self.sdf.astype(np.float64), u64, v64, nu, nv, 0.0)
        d_px = rest * self.px
        cov = coverage(d_px, self.edge)
        self.fur_shaded = (self.fur * shade(d_px, 8.0 * self.px)).astype(np.float32)
        self.static = (self.bg * (1.0 - cov) + self.fur_shaded * cov).astype(np.float32)

        # Pixels the eye can change: the lid opening, grown by the eye shift, the rim and the edge.
        self.rim_width = max(1.0, 1.1 * self.px)
        margin = max(g.EYE_SHIFT) + (5.0 * self.rim_width + self.edge) / self.px
        reach_b = L.eye_b * max(1.0, L.eye_upper)  # the taller (upper) half of the opening
        self.eye = _PixelSet(self, g.sd_ellipse(u64, v64, *L.eye, L.eye_a, reach_b, L.eye_tilt) <= margin)
        # Pixels the snout and jaw can change: a band around the rest silhouette as wide as the
        # largest displacement (distance fields move by at most that), plus nose and mouth.
        cu, cv, ru, rv, _ = L.chin
        jaw_reach = np.deg2rad(g.JAW_MAX_DEG) * (np.hypot(cu, cv) + max(ru, rv))
        grow = 1.0 + self.edge / self.px
        cone, chin = self._snout_sdf(u64, v64, nu, nv, 0.0)
        head = self.sdf.astype(np.float64)
        # the jaw changes a pixel only where it is not blended away and near the silhouette
        jaw_blends = chin - jaw_reach < head + _JAW_BLEND
        jaw_matters = jaw_blends & (np.abs(g.smin(head, chin, _JAW_BLEND)) <= jaw_reach + grow)
        nose_reach = g.NOSE_MAX_SHIFT
        band = self._snout_band(head, cone, chin, nose_reach, grow) | jaw_matters
        nose_mask = np.hypot(u64 - nu, v64 - nv) <= L.nose_r + nose_reach + grow
        mu, mv = L.mouth
        lip_reach = np.deg2rad(g.JAW_MAX_DEG) * np.hypot(*L.lower_lip) + 5.0
        mouth_mask = _segment_distance(u64, v64, mu, mv, *L.lip_front) <= max(jaw_reach, lip_reach) + 1.0 + grow
        self.snout = _PixelSet(self, band | nose_mask | mouth_mask)
        self.snout_nose = self.snout.subset(nose_mask)
        self.snout_mouth = self.snout.subset(mouth_mask)

        brightness = None
        if p.whisker_tone > 0:
            # Relative to the pad's fur as the camera records it (clipped at white, so a dark shaft
            # shows on a saturated pad, as in real IR video): no pad hides its keypoint whiskers.
            brightness = p.whisker_tone * min(float(fur_base(p, L, *pad_centre(L))), 250.0 / p.gain)
        self.whiskers = WhiskerLayers(p, L, cam, cov, blur_px, brightness)
        self.gain = gain_map(p, (size, size)).astype(np.float32)
        signal = np.maximum(self.static * self.gain, 0.0)
        self.noise_scale = np.sqrt(p.noise_std**2 + p.shot_noise * signal).astype(np.float32)
        rng = np.random.default_rng(p.noise_seed)
        n = size + _NOISE_PAD
        self.noise_bank = rng.standard_normal((_NOISE_BANK, n, n), np.float32)

    def _snout_band(self, head, cone, chin, reach, grow):
        """Pixels whose silhouette a nose shift of up to `reach` can move (head units, at rest)."""
        k = self.L.snout_blend
        if not k > 0:
            return np.abs(cone) <= reach + grow
        # smin is monotone: the blended surface lies between its values for cone -/+ reach
        rest = g.smin(head, chin, _JAW_BLEND)
        return (g.smin(rest, cone - reach, k) <= grow) & (g.smin(rest, cone + reach, k) >= -grow)

    # ------------------------------------------------------------------ shapes

    def _moving_sdf(self, static_sdf, u, v, nu, nv, phi):
        """Head with the moving snout and jaw: the jaw blends into the head, the snout is on top (or blends in)."""
        cone, chin = self._snout_sdf(u, v, nu, nv, phi)
        head = g.smin(static_sdf, chin, _JAW_BLEND)
        if self.L.snout_blend > 0:  # a muzzle that swells out of the face, no neck behind the nose
            return g.smin(head, cone, self.L.snout_blend)
        return np.minimum(head, cone)

    def _onto_silhouette(self, u, v, nu, nv, phi, steps: int = 6, h: float = 0.25):
        """Head-frame points (B,) moved to the nearest point of the moving head's outline (Newton
        steps along the signed distance's numerical gradient; the hairs' ruffle is left out)."""
        L = self.L

        def sdf(a, b):
            return self._moving_sdf(g.static_head_sdf(L, a, b), a, b, nu, nv, phi)

        u, v = np.array(u, np.float64), np.array(v, np.float64)
        for _ in range(steps):
            d = sdf(u, v)
            gu = (sdf(u + h, v) - sdf(u - h, v)) / (2 * h)
            gv = (sdf(u, v + h) - sdf(u, v - h)) / (2 * h)
            n2 = np.maximum(gu * gu + gv * gv, 1e-12)
            u, v = u - d * gu / n2, v - d * gv / n2
        return u, v

    def _snout_sdf(self, u, v, nu, nv, phi):
        """Moving snout tip (round cone to the nose) and lower jaw (rotated by phi about the mouth)."""
        L = self.L
        cone = g.sd_round_cone(u, v, L.snout_a[0], L.snout_a[1], L.snout_ra, nu, nv, L.nose_r)
        mu, mv = L.mouth
        c, s = g._trig(phi)
        du, dv = u - mu, v - mv
        ju, jv = c * du + s * dv, -s * du + c * dv  # jaw frame
        cu, cv, ru, rv, ang = L.chin
        ca, sa = g._trig(ang)
        chin = g.sd_ellipse(ju, jv, cu * ca - cv * sa, cu * sa + cv * ca, ru, rv, ang)
        return cone, chin

    # ------------------------------------------------------------------ patches

    def _draw_eye(self, canvas, lat: BehaviorLatents, iris: float = 0.0):
        P, L, p = self.eye, self.L, self.p
        if P.empty:
            return
        col = lambda x: np.asarray(x, np.float32)[:, None]  # noqa: E731
        cu, cv, ku, kl = g.eye_state(L, col(lat.eye_x), col(lat.eye_y), col(lat.blink))
        a, b, t = L.eye_a, L.eye_b, L.eye_tilt
        ct, st = float(np.cos(t)), float(np.sin(t))
        du, dv = P.u - cu, P.v - cv
        x = du * ct + dv * st
        y = dv * ct - du * st
        s = np.sqrt(np.clip(1.0 - (x / a) ** 2, 0.0025, 1.0))
        ds = -x / (a * a * s)
        # vertical distance to each lid, corrected for its slope (capped near the corners)
        d_up = (y - ku * b * s) / np.sqrt(1.0 + np.minimum((ku * b * ds) ** 2, 9.0))
        d_lo = (kl * b * s - y) / np.sqrt(1.0 + np.minimum((kl * b * ds) ** 2, 9.0))
        ax = np.abs(x)
        d_in = np.minimum(np.minimum(d_up, d_lo), a - ax)
        d = np.where(ax < a, d_in, -np.sqrt((ax - a) ** 2 + y * y)) * self.px  # pixels, positive inside
        cin = np.clip(0.5 + d / self.edge, 0.0, 1.0)
        rw = self.rim_width
        # pale rim just outside the opening, strongest along the lower lid
        rim_gain = p.rim_strength * (0.25 + 0.75 * np.clip(0.5 * y / b + 0.5, 0.0, 1.0))
        rim = np.exp(-(((d + 1.3 * rw) / (1.2 * rw)) ** 2)) * rim_gain
        # eyeball: dark, a little lighter at the bottom; darker pupil; corneal reflections
        ball = 20.0 + 8.0 * np.clip(y / b, -1.0, 1.0)
        pu, pv = col(lat.eye_x) * (0.35 * a), col(lat.eye_y) * (0.3 * b)
        rp = col(lat.pupil) * b
        dp = (np.sqrt((x - pu) ** 2 + (y - pv) ** 2) - rp) * self.px
        in_pupil = np.clip(0.5 - dp / self.edge, 0.0, 1.0)
        ball = ball - 14.0 * in_pupil
        if iris:  # opt-in (ROI ground truth): a lit iris around the pupil, as under IR
            ball = ball + iris * (1.0 - in_pupil)
        sig = float(np.sqrt((0.11 * b) ** 2 + (0.5 * self.edge / self.px) ** 2))
        hu, hv = p.highlight_u, p.highlight_v
        h1 = np.exp(-((x - hu * a) ** 2 + (y - hv * b) ** 2) * (0.5 / sig**2))
        h2 = np.exp(-((x - (hu + 0.27) * a) ** 2 + (y - (hv - 0.08) * b) ** 2) * (0.5 / (0.7 * sig) ** 2))
        ball = ball + p.highlight_strength * (h1 + p.highlight_second * h2)
        out = (P.static + rim * (1.0 - cin)) * (1.0 - cin) + ball * cin
        canvas.reshape(len(canvas), -1)[:, P.idx] = out

    def _draw_snout(self, canvas, lat: BehaviorLatents):
        S, L, p = self.snout, self.L, self.p
        if S.empty:
            return
        col = lambda x: np.asarray(x, np.float32)[:, None]  # noqa: E731
        nu, nv = g.nose_centre(L, col(lat.nose_x), col(lat.nose_y))
        phi = col(g.jaw_angle(lat.jaw))
        d = self._moving_sdf(S.sdf, S.u, S.v, nu, nv, phi) * self.px
        cov = coverage(d, self.edge)
        skin = np.repeat(S.fur[None], len(canvas), axis=0)

        # rhinarium: a bright, smooth disk at the end of the snout, with a darker nostril
        k = self.snout_nose
        u, v = S.u[k], S.v[k]
        rr = np.sqrt((u - nu) ** 2 + (v - nv) ** 2)
        rc = p.rhinarium_blend * np.clip(0.5 - (rr - 0.92 * L.nose_r) * (self.px / self.edge), 0.0, 1.0)
        # no darker than the fur of a bright muzzle (a high snout_gain; lab styles stay at 1.9)
        nose_gain = max(1.9, 0.62 + p.snout_gain)
        nose_col = min(245.0, nose_gain * p.fur_brightness) * (1.0 - 0.2 * (rr / L.nose_r) ** 2)
        nose_col = nose_col * (1.0 + 0.3 * p.fur_contrast * S.tex[k])
        sk = skin[:, k] * (1.0 - rc) + nose_col * rc
        ncu, ncv = g.nostril_centre(L, nu, nv)
        eu, ev = g.snout_axis(L, nu, nv)
        n_ang = np.arctan2(ev, eu) + (L.nostril_angle + float(np.deg2rad(90.0)))  # the slit runs along the rim
        dn = g.sd_ellipse(u, v, ncu, ncv, 0.42 * L.nose_r, 0.12 * L.nose_r, n_ang) * self.px
        skin[:, k] = sk * (1.0 - p.nostril_dark * coverage(dn, 1.5 * self.edge))

        # mouth: a dark wedge from the corner to under the nose, opening with the jaw
        k = self.snout_mouth
        u, v = S.u[k], S.v[k]
        mu, mv = L.mouth
        fu, fv = L.lip_front
        length = float(np.hypot(fu - mu, fv - mv))
        eu0, ev0 = (fu - mu) / length, (fv - mv) / length
        elu, elv = g.rotate(eu0, ev0, phi)
        ru, rv = u - mu, v - mv
        along = ru * eu0 + rv * ev0
        below_upper = rv * eu0 - ru * ev0
        below_lower = rv * elu - ru * elv
        w0 = 0.55
        dm = np.minimum(np.minimum(below_upper + w0, w0 - below_lower), np.minimum(along, length - along))
        mc = p.mouth_dark * np.clip(0.5 + dm * (self.px / self.edge), 0.0, 1.0)
        sk = skin[:, k] * (1.0 - mc) + 16.0 * mc
        # lower lip: a pale pad on the front of the jaw
        lu, lv = g.rotate(L.lower_lip[0], L.lower_lip[1], phi)
        dl = g.sd_ellipse(u, v, mu + lu, mv + lv, 4.0, 2.2, np.arctan2(elv, elu)) * self.px
        lc = 0.45 * coverage(dl, 1.5 * self.edge)
        skin[:, k] = sk * (1.0 - lc) + min(230.0, 1.45 * p.fur_brightness) * lc

        canvas.reshape(len(canvas), -1)[:, S.idx] = S.bg * (1.0 - cov) + skin * cov

    def _draw_whiskers(self, canvas, levels):
        W = self.whiskers
        h, w = W.h, W.w
        if not (h and w):
            return
        W.ensure(levels)
        region = canvas[:, W.y0 : W.y0 + h, W.x0 : W.x0 + w]
        region *= W.mul[levels]
        region += W.add[levels]

    def _draw_paw(self, canvas, lat: BehaviorLatents):
        L, p, size = self.L, self.p, self.size
        pu, pv = g.paw_centre(L, lat.paw_height, lat.paw_stroke)
        upu, upv = L.paw_up
        for i in np.flatnonzero(np.asarray(lat.paw_height) > g.PAW_PRESENT):
            cu = np.array([pu[i] - 36, pu[i] + 36, pu[i] - 36, pu[i] + 36, pu[i] - 175 * upu - 22, pu[i] - 175 * upu + 22])
            cv = np.array([pv[i] - 36, pv[i] - 36, pv[i] + 36, pv[i] + 36, pv[i] - 175 * upv, pv[i] - 175 * upv])
            xs, ys = self.cam.to_pixel(cu, cv)
            x0, x1 = int(np.clip(np.floor(xs.min()), 0, size)), int(np.clip(np.ceil(xs.max()) + 1, 0, size))
            y0, y1 = int(np.clip(np.floor(ys.min()), 0, size)), int(np.clip(np.ceil(ys.max()) + 1, 0, size))
            if x1 <= x0 or y1 <= y0:
                continue
            u, v = self.u[y0:y1, x0:x1], self.v[y0:y1, x0:x1]
            cu_i, cv_i = float(pu[i]), float(pv[i])
            d = g.paw_sdf(L, u, v, cu_i, cv_i) * self.px
            if d.min() > self.edge:
                continue
            cov = coverage(d, self.edge)
            along = (u - cu_i) * upu + (v - cv_i) * upv
            arm = np.clip(-(along + 10.0) / 30.0, 0.0, 1.0)
            colour = min(230.0, 1.7 * p.fur_brightness) * (1.0 - 0.45 * arm)
            colour = colour * (1.0 + 0.5 * p.fur_contrast * self.paw_texture[y0:y1, x0:x1]) * shade(d, 5.0 * self.px)
            region = canvas[i, y0:y1, x0:x1]
            region *= 1.0 - cov
            region += colour * cov

    # ------------------------------------------------------------------ frames

    def render(self, lat: BehaviorLatents, start: int, iris: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Frames (B, H, W) uint8 and keypoints (B, 15, 3) for latents `lat` (frame `start` onward).

        iris: grey levels added to the eyeball outside the pupil (0, the default, draws the
        dark eye of every existing session; the ROI scenes of `roi_scene` light it).
        """
        n = lat.n_frames
        size = self.size
        levels = g.quantise_whisk(lat.whisk_angle)
        canvas = np.empty((n, size, size), np.float32)
        canvas[:] = self.static
        self._draw_eye(canvas, lat, iris)
        self._draw_snout(canvas, lat)
        self._draw_whiskers(canvas, levels)
        self._draw_paw(canvas, lat)
        canvas *= self.gain
        draws = _hash_frames(self.p.noise_seed, np.arange(start, start + n))
        pad = np.uint64(_NOISE_PAD)
        bank = (draws % np.uint64(_NOISE_BANK)).astype(np.int64)
        oy = ((draws >> np.uint64(8)) % pad).astype(np.int64)
        ox = ((draws >> np.uint64(16)) % pad).astype(np.int64)
        for i in range(n):
            canvas[i] += self.noise_bank[bank[i], oy[i] : oy[i] + size, ox[i] : ox[i] + size] * self.noise_scale
        canvas += 0.5 + self.p.black_level
        np.clip(canvas, 0.0, 255.5, out=canvas)
        frames = canvas.astype(np.uint8)
        return frames, self.keypoints(lat, levels)

    def keypoints_head(self, lat: BehaviorLatents, levels=None) -> tuple[np.ndarray, np.ndarray]:
        """Head-frame (u, v) of every bodypart, each (B, 15), in FACEMAP_BODYPARTS order."""
        L = self.L
        if levels is None:
            levels = g.quantise_whisk(lat.whisk_angle)
        f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
        n = lat.n_frames
        cu, cv, ku, kl = g.eye_state(L, f64(lat.eye_x), f64(lat.eye_y), f64(lat.blink))
        t = L.eye_tilt

        def eye_point(x, y):
            ru, rv = g.rotate(x, y, t)
            return cu + ru, cv + rv

        nu, nv = g.nose_centre(L, f64(lat.nose_x), f64(lat.nose_y))
        eu, ev = g.snout_axis(L, nu, nv)
        tip = g.rotate(eu, ev, L.nose_tip_angle)
        bottom = g.rotate(eu, ev, L.nose_bottom_angle)
        phi = g.jaw_angle(f64(lat.jaw))
        lu, lv = g.rotate(L.lower_lip[0], L.lower_lip[1], phi)
        bu, bv = L.whiskers.bases(g.whisk_level_angle(levels))
        zeros = np.zeros(n)
        points = {
            "eye(back)": eye_point(-L.eye_a + zeros, zeros),
            "eye(bottom)": eye_point(zeros, kl * L.eye_b),
            "eye(front)": eye_point(L.eye_a + zeros, zeros),
            "eye(top)": eye_point(zeros, ku * L.eye_b),
            "lowerlip": (L.mouth[0] + lu, L.mouth[1] + lv),
            "mouth": (L.mouth[0] + zeros, L.mouth[1] + zeros),
            "nose(bottom)": (nu + L.nose_r * bottom[0], nv + L.nose_r * bottom[1]),
            "nose(r)": g.nostril_centre(L, nu, nv),
            "nose(tip)": (nu + L.nose_r * tip[0], nv + L.nose_r * tip[1]),
            "nose(top)": g.round_cone_tangent(*L.snout_a, L.snout_ra, nu, nv, L.nose_r, L.nose_top_mu, upper=True),
            "nosebridge": (L.nosebridge[0] + zeros, L.nosebridge[1] + zeros),
            "paw": g.paw_centre(L, f64(lat.paw_height), f64(lat.paw_stroke)),
        }
        for name, index in L.whiskers.key.items():
            points[name] = (bu[:, index], bv[:, index])
        if L.snout_blend > 0:
            # A muzzle that swells out of the face (smooth union) reaches past the rhinarium circle
            # the nose points are placed on (median 11-17 px at 256 px inside the outline); real
            # labels sit on the outline, so they are moved onto it.
            for name in ("nose(tip)", "nose(top)"):
                points[name] = self._onto_silhouette(*points[name], nu, nv, phi)
        u = np.stack([points[name][0] for name in FACEMAP_BODYPARTS], axis=1)
        v = np.stack([points[name][1] for name in FACEMAP_BODYPARTS], axis=1)
        return u, v

    def keypoints(self, lat: BehaviorLatents, levels=None) -> np.ndarray:
        """(B, 15, 3) float32: x, y in pixels and 1 where visible; NaN, NaN, 0 where not."""
        u, v = self.keypoints_head(lat, levels)
        x, y = self.cam.to_pixel(u, v)
        lo, hi = -0.5, self.size - 0.5
        inside = (x >= lo) & (x < hi) & (y >= lo) & (y < hi)
        pu, pv = g.paw_centre(self.L, np.asarray(lat.paw_height, np.float64), np.asarray(lat.paw_stroke, np.float64))
        occluded = g.paw_sdf(self.L, u, v, pu[:, None], pv[:, None]) < 0.0
        paw = FACEMAP_BODYPARTS.index("paw")
        occluded[:, paw] = np.asarray(lat.paw_height) <= g.PAW_PRESENT  # not drawn: not visible
        visible = inside & ~occluded
        out = np.stack([x, y, np.ones_like(x)], axis=-1)
        out[~visible] = (np.nan, np.nan, 0.0)
        return out.astype(np.float32)
