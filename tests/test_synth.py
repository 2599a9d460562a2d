"""The synthetic mouse-face generator: determinism, ground truth on the pixels, behaviour statistics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jfacemap.skeleton import FACEMAP_BODYPARTS
from jfacemap.synth import (
    STATE_NAMES,
    STYLES,
    BehaviorLatents,
    contact_sheet,
    make_session,
    render_frames,
    sample_face_params,
    save_contact_sheet,
    simulate_behavior,
)
from jfacemap.synth.behavior import stationary_distribution, transition_matrix
from jfacemap.synth.face import get_renderer
from jfacemap.synth.params import with_layout

K = {name: i for i, name in enumerate(FACEMAP_BODYPARTS)}
EYE = [K["eye(back)"], K["eye(bottom)"], K["eye(front)"], K["eye(top)"]]
FPS = 50.0


def bilinear(frame: np.ndarray, x, y) -> np.ndarray:
    """Sample `frame` at (x, y) with pixel centres at integer coordinates."""
    frame = frame.astype(np.float64)
    x = np.clip(np.asarray(x, np.float64), 0, frame.shape[1] - 1.001)
    y = np.clip(np.asarray(y, np.float64), 0, frame.shape[0] - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return (
        frame[y0, x0] * (1 - fx) * (1 - fy)
        + frame[y0, x0 + 1] * fx * (1 - fy)
        + frame[y0 + 1, x0] * (1 - fx) * fy
        + frame[y0 + 1, x0 + 1] * fx * fy
    )


def peak_frequency(x: np.ndarray, fps: float = FPS) -> float:
    x = np.asarray(x, np.float64)
    x = (x - x.mean()) * np.hanning(len(x))
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / fps)
    power[freqs < 1.0] = 0
    return float(freqs[np.argmax(power)])


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    best, run_start = (0, 0), None
    for i, m in enumerate(np.append(mask, False)):
        if m and run_start is None:
            run_start = i
        elif not m and run_start is not None:
            if i - run_start > best[1] - best[0]:
                best = (run_start, i)
            run_start = None
    return best


@pytest.fixture(scope="module")
def lab1_session():
    return make_session(1500, seed=2)


@pytest.fixture(scope="module")
def lab1_render(lab1_session):
    return lab1_session.render(0, 400)


# --------------------------------------------------------------------------- behaviour


def test_behavior_is_deterministic_and_round_trips(tmp_path):
    a, b, c = simulate_behavior(500, 3), simulate_behavior(500, 3), simulate_behavior(500, 4)
    for name in BehaviorLatents.series_names():
        assert getattr(a, name).shape == (500,)
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.whisk_angle, c.whisk_angle)
    assert a.whisk_angle.dtype == np.float32 and a.state.dtype == np.int32
    np.savez(tmp_path / "lat.npz", **a.to_dict())
    back = BehaviorLatents.from_dict(np.load(tmp_path / "lat.npz"))
    for name in BehaviorLatents.series_names():
        np.testing.assert_array_equal(getattr(a, name), getattr(back, name))
    np.testing.assert_array_equal(a.transition_matrix, back.transition_matrix)
    assert back.fps == a.fps
    part = a.slice(100, 150)
    np.testing.assert_array_equal(part.blink, a.blink[100:150])


def test_behavior_statistics_match_the_stated_structure():
    lat = simulate_behavior(200_000, seed=1)  # about an hour
    P = transition_matrix(FPS)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(lat.transition_matrix, P)
    # occupancy ~ stationary distribution; dwell times of seconds
    occupancy = np.bincount(lat.state, minlength=len(STATE_NAMES)) / len(lat.state)
    np.testing.assert_allclose(occupancy, stationary_distribution(P), atol=0.04)
    changes = np.flatnonzero(np.diff(lat.state)) + 1
    dwell = np.diff(np.r_[0, changes, len(lat.state)]) / FPS
    assert 1.5 < dwell.mean() < 6.0
    # empirical transitions: self-transition probabilities close to the matrix
    same = lat.state[1:] == lat.state[:-1]
    for k in range(len(STATE_NAMES)):
        from_k = lat.state[:-1] == k
        assert abs(same[from_k].mean() - P[k, k]) < 0.01
    # whisking 8-12 Hz; the angle oscillates at that frequency while whisking
    assert lat.whisk_freq.min() >= 8.0 and lat.whisk_freq.max() <= 12.0
    a, b = longest_run(np.isin(lat.state, [1, 2]))
    assert b - a > 100
    assert 8.0 <= peak_frequency(lat.whisk_angle[a:b]) <= 12.0
    whisking = np.isin(lat.state, [1, 2])
    assert lat.whisk_amplitude[whisking].mean() > 3 * lat.whisk_amplitude[lat.state == 0].mean()
    # sniffing bursts 4-10 Hz while exploring, slow breathing at rest
    sniff = lat.sniff_freq[lat.state == 2]
    assert np.percentile(sniff, 5) >= 4.0 and sniff.max() <= 10.0
    assert np.median(lat.sniff_freq[lat.state == 0]) < 4.0
    a, b = longest_run(lat.state == 2)
    assert 4.0 <= peak_frequency(lat.nose_x[a:b]) <= 10.5
    # blinks: brief full closures, 0.2-0.3 s each
    closed = lat.blink > 0.0
    starts = np.flatnonzero(np.diff(closed.astype(int)) == 1) + 1
    ends = np.flatnonzero(np.diff(closed.astype(int)) == -1) + 1
    lengths = (ends[: len(starts)] - starts[: len(ends)]) / FPS if len(ends) else np.array([])
    assert len(lengths) > 50
    assert np.mean((lengths >= 0.18) & (lengths <= 0.34)) > 0.9
    assert lat.blink.max() == pytest.approx(1.0, abs=0.02)
    # eyes: bounded, with saccades (fast jumps) on top of slow drift
    assert np.abs(lat.eye_x).max() <= 1.0 and np.abs(lat.eye_y).max() <= 1.0
    assert 0.15 <= lat.pupil.min() and lat.pupil.max() <= 0.8
    # grooming: the paw is up in grooming bouts and down otherwise
    assert lat.paw_height[lat.state == 3].mean() > 0.7
    assert lat.paw_height[lat.state != 3].mean() < 0.1
    # chewing: rhythmic jaw at ~5 Hz
    assert lat.jaw[lat.state == 4].mean() > 5 * lat.jaw[lat.state == 0].mean()
    a, b = longest_run(lat.state == 4)
    assert 4.0 <= peak_frequency(lat.jaw[a:b]) <= 6.5


# --------------------------------------------------------------------------- faces


def test_face_params_are_deterministic_and_vary():
    assert sample_face_params(5) == sample_face_params(5)
    a, b = sample_face_params(5), sample_face_params(6)
    assert a != b
    assert a.zoom != b.zoom and a.rotation != b.rotation and a.eye_a != b.eye_a
    for style in STYLES:
        p = sample_face_params(1, style=style)
        assert p.style == style and hash(p) is not None
    with pytest.raises(ValueError, match="unknown style"):
        sample_face_params(1, style="lab9")


def test_rendering_is_deterministic_per_seed():
    a = make_session(40, seed=11).render(0, 40)
    get_renderer.cache_clear()  # rebuild the static face from scratch
    b = make_session(40, seed=11).render(0, 40)
    assert a[0].dtype == np.uint8 and a[0].shape == (40, 256, 256)
    assert a[1].dtype == np.float32 and a[1].shape == (40, 15, 3)
    assert a[0].tobytes() == b[0].tobytes()
    np.testing.assert_array_equal(a[1], b[1])


def test_different_seeds_give_different_faces_and_views():
    sessions = [make_session(5, seed=s) for s in (20, 21)]
    (fa, ka), (fb, kb) = (s.render(0, 5) for s in sessions)
    assert np.abs(fa.astype(float) - fb).mean() > 10
    assert sessions[0].params != sessions[1].params
    # different camera views: eye and nose land elsewhere in the frame
    gap = np.nanmax(np.abs(ka[0, :, :2] - kb[0, :, :2]))
    assert gap > 5
    # frames of one session differ from each other too (noise, behaviour)
    assert np.abs(fa[0].astype(float) - fa[4]).mean() > 1


def test_chunked_rendering_equals_one_shot(lab1_session):
    frames, keypoints = lab1_session.render(0, 90)
    # a shorter session with the same seed is the beginning of the longer one
    chunks = list(make_session(90, seed=2).iter_chunks(13))
    assert [len(c[0]) for c in chunks] == [13] * 6 + [12]
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), frames)
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), keypoints)
    f, k = lab1_session.render(37, 38)
    np.testing.assert_array_equal(f[0], frames[37])
    np.testing.assert_array_equal(lab1_session.keypoints(0, 90), keypoints)


def test_keypoints_follow_the_pixel_centre_convention():
    """Pixel (row i, col j) is centred at (x, y) = (j, i): the dark eye opening is centred on its keypoints."""
    for style in STYLES:
        params = dataclasses.replace(
            sample_face_params(4, style=style),
            rotation=0.0, eye_tilt=0.0, noise_std=0.0, shot_noise=0.0, highlight_strength=0.0,
            rim_strength=0.0, blur=0.0, fur_contrast=0.0,  # a plain dark opening, sharp edges, plain fur
            shift_x=0.37, shift_y=-0.21,  # sub-pixel offsets, so rounding errors cannot hide
            zoom=1.0, fur_brightness=110.0, gain=1.0,  # eye in frame, fur brighter than it (wild varies both)
            eye_upper=1.0,  # lids of equal height: the opening is the ellipse through the four points
        )
        lat = simulate_behavior(20, seed=0)
        lat = dataclasses.replace(lat, blink=np.zeros(20, np.float32))
        frames, kp = render_frames(params, lat, 0, 20)
        for t in (0, 10, 19):
            front, back = kp[t, K["eye(front)"], :2], kp[t, K["eye(back)"], :2]
            top, bottom = kp[t, K["eye(top)"], :2], kp[t, K["eye(bottom)"], :2]
            cx, cy = 0.5 * (front[0] + back[0]), 0.5 * (top[1] + bottom[1])
            ax, ay = 0.5 * abs(front[0] - back[0]), 0.5 * abs(bottom[1] - top[1])
            # signed distance (pixels, positive inside) of every pixel centre to the ellipse
            # through the four keypoints (an open eye, camera and eye not rotated)
            yy, xx = np.mgrid[0:256, 0:256].astype(np.float64)
            ell = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
            grad = 2 * np.hypot((xx - cx) / ax**2, (yy - cy) / ay**2)
            d = (1 - ell) / np.maximum(grad, 1e-9)
            frame = frames[t].astype(float)
            inside, outside = d > 0.35, (d < -0.35) & (d > -4)
            threshold = 0.5 * (np.percentile(frame[d > 1], 99) + np.percentile(frame[(d < -1) & (d > -4)], 1))
            # every pixel whose centre is clearly inside is dark, clearly outside is bright:
            # a half-pixel error in the convention would misclassify a ring of pixels
            assert np.all(frame[inside] < threshold), (style, t)
            assert np.all(frame[outside] > threshold), (style, t)


def test_eye_keypoints_sit_on_the_rim_of_the_dark_eye():
    inner_darker = []
    for seed in range(6):
        session = make_session(120, seed=seed)
        frames, kp = session.render(0, 120)
        open_eye = np.flatnonzero(session.latents.blink < 0.1)[::6]
        for t in open_eye:
            pts = kp[t, EYE, :2].astype(np.float64)
            centre = pts.mean(axis=0)
            # inside the polygon of the four eye keypoints vs a ring outside it
            yy, xx = np.mgrid[0:256, 0:256]
            rel = np.stack([xx - centre[0], yy - centre[1]], axis=-1)
            radius = np.linalg.norm(pts - centre, axis=1).mean()
            dist = np.linalg.norm(rel, axis=-1)
            inside = _inside_polygon(xx, yy, pts[[0, 3, 2, 1]])
            ring = (dist > 1.5 * radius) & (dist < 2.0 * radius)
            assert frames[t][inside].mean() < 0.6 * frames[t][ring].mean()
            for p in pts:
                n = (centre - p) / np.linalg.norm(centre - p)
                a = bilinear(frames[t], p[0] + 2.5 * n[0], p[1] + 2.5 * n[1])
                b = bilinear(frames[t], p[0] - 2.5 * n[0], p[1] - 2.5 * n[1])
                inner_darker.append(a + 10 < b)
    assert np.mean(inner_darker) > 0.95


def _inside_polygon(xx, yy, poly):
    inside = np.zeros(xx.shape, bool)
    j = len(poly) - 1
    for i in range(len(poly)):
        xi, yi = poly[i]
        xj, yj = poly[j]
        cross = ((yi > yy) != (yj > yy)) & (xx < (xj - xi) * (yy - yi) / (yj - yi + 1e-12) + xi)
        inside ^= cross
        j = i
    return inside


def test_nose_tip_is_brighter_than_the_background_in_front_of_it(lab1_render):
    frames, kp = lab1_render
    tip, r, bottom = kp[:, K["nose(tip)"], :2], kp[:, K["nose(r)"], :2], kp[:, K["nose(bottom)"], :2]
    ok = []
    for t in range(0, len(frames), 10):
        if not (np.isfinite(tip[t]).all() and np.isfinite(r[t]).all() and np.isfinite(bottom[t]).all()):
            continue
        # outward direction: from the middle of the nose keypoints to the tip
        centre = 0.5 * (r[t] + bottom[t])
        n = (tip[t] - centre) / np.linalg.norm(tip[t] - centre)
        inside = bilinear(frames[t], *(tip[t] - 2.0 * n))
        front = bilinear(frames[t], *(tip[t] + 6.0 * n))
        ok.append(inside > front + 40)
    assert len(ok) > 20 and np.mean(ok) > 0.9


def test_whisker_bases_move_at_the_whisking_frequency():
    session = make_session(6000, seed=8)
    lat = session.latents
    a, b = longest_run(np.isin(lat.state, [1, 2]))
    assert b - a >= 150
    kp = session.keypoints(a, b)
    for name in ("whisker(I)", "whisker(II)", "whisker(III)"):
        xy = kp[:, K[name], :2]
        assert np.isfinite(xy).all()
        motion = xy - xy.mean(axis=0)
        # project on the main direction of motion
        _, _, vt = np.linalg.svd(motion, full_matrices=False)
        trace = motion @ vt[0]
        assert 8.0 <= peak_frequency(trace) <= 12.0, name
        assert np.ptp(trace) > 1.5
    # and the bases stay still while the mouse is quiet
    q0, q1 = longest_run(lat.state == 0)
    quiet = session.keypoints(q0, q1)[:, K["whisker(I)"], :2]
    assert np.std(quiet, axis=0).max() < np.std(kp[:, K["whisker(I)"], :2], axis=0).max()


def test_blinks_close_the_eye(lab1_session):
    lat = lab1_session.latents
    kp = lab1_session.keypoints()
    opening = np.linalg.norm(kp[:, K["eye(top)"], :2] - kp[:, K["eye(bottom)"], :2], axis=1)
    closed, opened = lat.blink > 0.9, lat.blink < 0.05
    assert closed.any() and opened.any()
    assert opening[closed].max() < 0.2 * np.median(opening[opened])
    # keypoints stay on the lid margin (visible) during the blink
    assert np.isfinite(kp[closed][:, EYE]).all()


def test_grooming_shows_the_paw_and_occludes_the_face():
    session = make_session(3000, seed=0)
    lat = session.latents
    kp = session.keypoints()
    paw = K["paw"]
    up, down = lat.paw_height > 0.9, lat.paw_height < 1e-3
    assert up.sum() > 50 and down.sum() > 50
    assert np.isfinite(kp[up, paw, 0]).mean() > 0.95
    assert np.isnan(kp[down, paw, 0]).all()
    face = [K[n] for n in ("nose(tip)", "nose(bottom)", "lowerlip", "mouth", "whisker(I)", "whisker(II)", "whisker(III)")]
    occluded_up = np.isnan(kp[up][:, face, 0]).any(axis=1).mean()
    assert occluded_up > 0.5
    assert not np.isnan(kp[down][:, face, 0]).any()
    # NaN keypoints have likelihood 0, visible ones 1
    visible = np.isfinite(kp[..., 0])
    assert np.all(kp[..., 2][visible] == 1) and np.all(kp[..., 2][~visible] == 0)
    assert np.array_equal(visible, np.isfinite(kp[..., 1]))
    # in the pixels: the bright paw covers the mouth region while grooming
    t_up, t_down = np.flatnonzero(up)[len(np.flatnonzero(up)) // 2], np.flatnonzero(down)[0]
    f_up, k_up = session.render(t_up, t_up + 1)
    x, y = k_up[0, paw, :2]
    f_down, _ = session.render(t_down, t_down + 1)
    assert bilinear(f_up[0], x, y) > bilinear(f_down[0], x, y) + 20


def test_keypoints_are_nan_exactly_where_out_of_frame():
    base = sample_face_params(3)
    lat = simulate_behavior(200, seed=3)
    lat = dataclasses.replace(lat, paw_height=np.zeros(200, np.float32))  # no occlusion
    for shift_x, shift_y in ((95.0, 0.0), (-60.0, 70.0), (0.0, -75.0)):
        params = dataclasses.replace(base, shift_x=shift_x, shift_y=shift_y)
        renderer = get_renderer(params)
        u, v = renderer.keypoints_head(lat)
        x, y = renderer.cam.to_pixel(u, v)
        inside = (x >= -0.5) & (x < 255.5) & (y >= -0.5) & (y < 255.5)
        inside[:, K["paw"]] = False  # the paw is down, below the frame
        assert 0 < inside.mean() < 1
        kp = renderer.keypoints(lat)
        np.testing.assert_array_equal(np.isfinite(kp[..., 0]), inside)
        np.testing.assert_allclose(kp[..., 0][inside], x[inside], rtol=0, atol=1e-3)
        np.testing.assert_allclose(kp[..., 1][inside], y[inside], rtol=0, atol=1e-3)
        frames, kp2 = render_frames(params, lat, 0, 3)
        np.testing.assert_array_equal(kp2, kp[:3])


def test_lab2_differs_visibly_from_lab1():
    stats = {}
    for style in ("lab1", "lab2"):
        means, ranges, nose_right = [], [], []
        for seed in range(4):
            frames, kp = make_session(3, seed=seed, style=style).render(0, 3)
            f = frames[0].astype(float)
            means.append(f.mean())
            ranges.append(np.percentile(f, 99) - np.percentile(f, 1))
            nose = [K[n] for n in ("nose(tip)", "nose(r)", "nose(top)", "nose(bottom)")]
            nose_right.append(np.nanmean(kp[0, nose, 0]) > np.nanmean(kp[0, EYE, 0]))
        stats[style] = (np.mean(means), np.mean(ranges), np.mean(nose_right))
    (m1, r1, n1), (m2, r2, n2) = stats["lab1"], stats["lab2"]
    assert m2 > m1 + 25  # brighter background
    assert r2 < 0.85 * r1  # lower contrast
    assert n1 == 1.0 and n2 == 0.0  # mirrored: the nose points the other way


def test_size_scales_the_view():
    small = make_session(3, seed=5, size=128).render(0, 3)
    big = make_session(3, seed=5).render(0, 3)
    assert small[0].shape == (3, 128, 128)
    np.testing.assert_allclose((small[1][..., :2] + 0.5) * 2, big[1][..., :2] + 0.5, atol=1e-3)


def test_contact_sheet_draws_coloured_keypoints(tmp_path, lab1_render):
    frames, kp = lab1_render
    sheet = contact_sheet(frames[:6], kp[:6], FACEMAP_BODYPARTS, ncols=3)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    assert sheet.shape[1] == 3 * 256 + 4 * 2 and sheet.shape[0] > 2 * 256 + 3 * 2  # legend below
    grid = sheet[: 2 * 258 + 2]
    colourful = np.abs(grid[..., 0].astype(int) - grid[..., 2]).max()
    assert colourful > 100  # the frames are grey, the markers are not
    plain = contact_sheet(frames[:2], None, FACEMAP_BODYPARTS, labels=False)
    assert plain.shape == (256 + 4, 2 * 256 + 6, 3)
    assert np.all(plain[2:258, 2:258, 0] == frames[0])
    path = save_contact_sheet(tmp_path / "sheet.png", frames[:4], kp[:4], FACEMAP_BODYPARTS)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_invalid_requests_fail_clearly(lab1_session):
    with pytest.raises(ValueError, match="outside"):
        lab1_session.render(10, 5)
    with pytest.raises(ValueError):
        simulate_behavior(0, 1)
    with pytest.raises(ValueError):
        list(lab1_session.iter_chunks(0))


def test_wild_family_draws_wide_ranges_and_leaves_other_styles_alone():
    wild = [sample_face_params(s, style="wild") for s in range(60)]
    assert {p.flip for p in wild} == {False, True}  # both facing directions
    zooms = np.array([p.zoom for p in wild])
    assert zooms.min() < 0.85 and zooms.max() > 2.0 and zooms.min() >= 0.7 and zooms.max() <= 3.0
    assert np.ptp([p.rotation for p in wild]) > 40
    assert all(p.pad_dv > 0 and p.whisker_sparsity > 0 and p.fur_streak <= 1 for p in wild)
    assert np.mean([p.nose_r for p in wild]) > 1.5 * np.mean([sample_face_params(s).nose_r for s in range(60)])
    # The older styles keep their look: the new identity fields stay at their neutral values.
    for style in ("lab1", "lab2"):
        p = sample_face_params(3, style=style)
        assert (p.pad_du, p.pad_dv, p.whisker_sparsity, p.fur_streak) == (0.0, 0.0, 0.0, 1.0)
        assert (p.whisker_tone, p.pad_fur) == (0.0, 0.0)


def test_wild_hides_whiskers_but_never_the_keypoint_ones():
    from jfacemap.synth.geometry import make_layout

    for seed in range(5):
        w = make_layout(sample_face_params(seed, style="wild")).whiskers
        keyed = list(w.key.values())
        assert np.all(w.opacity[keyed] >= 0.5)
        others = np.delete(w.opacity, keyed)
        assert np.any(others == 0) and np.any(others > 0)
    assert make_layout(sample_face_params(0)).whiskers.opacity is None


def test_wild_keypoint_whiskers_show_as_dark_shafts_on_the_pad():
    """Real IR close-ups show the keypoint whiskers as dark shafts on the pad's fur. With
    whisker_tone < 1 the frame must be darker along them (where the pad is not clipped at white)
    than the same frame with whiskers of the fur's own albedo (tone 1), and unchanged far from
    the pad."""
    names = ("whisker(I)", "whisker(II)", "whisker(III)")
    checked = 0
    for seed in range(12):
        p = dataclasses.replace(sample_face_params(seed, style="wild"), rotation=0.0, zoom=0.8,
                                shift_x=0.0, shift_y=0.0, flip=False, noise_std=0.0, shot_noise=0.0)
        if not 0 < p.whisker_tone < 1:
            continue
        behavior = simulate_behavior(2, seed=seed)
        dark, kp = render_frames(p, behavior, 0, 1)
        plain = render_frames(dataclasses.replace(p, whisker_tone=1.0), behavior, 0, 1)[0]
        ratios = []
        for name in names:
            x, y = np.round(kp[0, K[name], :2]).astype(int)
            win = (slice(y - 3, y + 4), slice(x - 3, x + 4))
            if plain[0][win].mean() < 250:  # a pad clipped at white may hide a thin shaft's partial pixels
                ratios.append(dark[0][win].astype(float).mean() / max(plain[0][win].astype(float).mean(), 1.0))
        if not ratios:
            continue
        assert max(ratios) <= 1.0 and min(ratios) < 0.97, (seed, ratios)
        corner = (slice(0, 12), slice(0, 12))  # far from the pad: untouched
        assert np.array_equal(dark[0][corner], plain[0][corner])
        checked += 1
    assert checked >= 5


def test_wild_fur_radiates_from_the_whisker_pad_only_near_it():
    from jfacemap.synth.geometry import Camera, make_layout
    from jfacemap.synth.texture import _PAD_FUR_RADIUS, fur_texture, pad_centre

    p = dataclasses.replace(sample_face_params(4, style="wild"), rotation=0.0, zoom=0.6, flip=False,
                            shift_x=0.0, shift_y=0.0, size=128)
    L, cam = make_layout(p), Camera.from_params(p)
    u, v = cam.head_grid(0, p.size, 0, p.size)
    radial = fur_texture(dataclasses.replace(p, pad_fur=1.0), L, cam, u, v)
    plain = fur_texture(dataclasses.replace(p, pad_fur=0.0), L, cam, u, v)
    cu, cv = pad_centre(L)
    r = np.hypot(u - cu, v - cv) / _PAD_FUR_RADIUS
    diff = np.abs(radial - plain)
    near, far = diff[r < 0.5].mean(), diff[r > 4].mean()
    assert near > 0.1 and far < 0.1 * near, (near, far)  # the strands turn near the pad, not far from it


def _eye_nose_uv(style, names, seeds=range(12)):
    """Mean (u, v) of keypoints `names` in the eye -> nose(tip) frame (u along, v below, in axis
    lengths) over whole-face views of sessions `seeds`: an (len(names), 2) array."""
    out = []
    for seed in seeds:
        p = dataclasses.replace(sample_face_params(seed, style=style), rotation=0.0, zoom=0.6,
                                shift_x=0.0, shift_y=0.0, flip=False)
        kp = render_frames(p, simulate_behavior(2, seed=seed), 0, 1)[1][0]
        eye = np.nanmean(kp[EYE, :2], axis=0)
        axis = kp[K["nose(tip)"], :2] - eye
        length = np.hypot(*axis)
        normal = np.array([-axis[1], axis[0]]) / length
        normal = normal if normal[1] > 0 else -normal
        d = kp[[K[name] for name in names], :2] - eye
        out.append(np.stack([d @ axis / length**2, d @ normal / length], axis=1))
    return np.nanmean(np.array(out), axis=0)


def test_wild_whisker_keypoints_sit_low_and_back_like_real_faces():
    """In the eye -> nose(tip) frame (u along, v below, in axis lengths) real
    whisker keypoints average u ~0.56, v ~0.19 (bench/render_vs_real.py);
    lab1's sit at ~0.66, ~0.04. The wild family must move toward the real ones."""
    def whisker_uv(style):
        return _eye_nose_uv(style, ("whisker(I)", "whisker(II)", "whisker(III)")).mean(axis=0)

    (u1, v1), (uw, vw) = whisker_uv("lab1"), whisker_uv("wild")
    assert uw < u1 - 0.04 and vw > v1 + 0.08
    assert 0.45 < uw < 0.65 and 0.08 < vw < 0.3


def test_wild_nose_keypoints_sit_around_a_blunt_muzzle_like_real_faces():
    """Real faces (bench/render_vs_real.py) put nose(bottom) well below the eye -> nose(tip)
    axis (v ~0.19), nose(top) above it (v ~-0.10, u ~0.84) and nose(r) ahead of the tip
    (u ~1.12); lab1 puts nose(bottom) at v ~0.06 and nose(r) behind the tip."""
    names = ("nose(bottom)", "nose(top)", "nose(r)")
    (_, bottom_v), (top_u, top_v), (r_u, r_v) = _eye_nose_uv("wild", names)
    assert 0.14 < bottom_v < 0.24 and -0.14 < top_v < -0.05 and 0.8 < top_u < 0.9
    assert 1.05 < r_u < 1.16 and 0.04 < r_v < 0.14
    # on the picture: bottom and nostril on the rhinarium disc; tip and top on the outline of the
    # muzzle as drawn (it swells out of the face past the disc: real labels sit on the outline)
    from jfacemap.synth import geometry as g

    for seed in range(4):
        r = get_renderer(sample_face_params(seed, style="wild"))
        lat = simulate_behavior(3, seed=seed)
        u, v = r.keypoints_head(lat)
        L = r.L
        assert L.snout_blend > 0
        nu, nv = g.nose_centre(L, lat.nose_x, lat.nose_y)
        phi = g.jaw_angle(lat.jaw)
        for name in ("nose(bottom)", "nose(r)"):
            assert np.all(np.hypot(u[:, K[name]] - nu, v[:, K[name]] - nv) <= L.nose_r + 1e-3)
        for name in ("nose(tip)", "nose(top)"):
            k = K[name]
            d = r._moving_sdf(g.static_head_sdf(L, u[:, k], v[:, k]), u[:, k], v[:, k], nu, nv, phi) * r.px
            np.testing.assert_allclose(d, 0.0, atol=0.05)  # px from the outline
    # lab1 (no swelling) keeps tip and top on the disc and the snout's cone, as before
    r = get_renderer(sample_face_params(0, style="lab1"))
    lat = simulate_behavior(3, seed=0)
    u, v = r.keypoints_head(lat)
    nu, nv = g.nose_centre(r.L, lat.nose_x, lat.nose_y)
    np.testing.assert_allclose(np.hypot(u[:, K["nose(tip)"]] - nu, v[:, K["nose(tip)"]] - nv), r.L.nose_r, atol=1e-3)


def _eye_frame_stats(style, seeds=range(10)):
    """Per session: where eye(top)/eye(bottom)'s midpoint sits from the eye(back)-eye(front)
    midpoint and where the brightest eye pixel (the corneal reflection) sits from the labels'
    centre, both along the eye's own vertical (down +), in half-heights. (n, 2) array."""
    out = []
    for seed in seeds:
        p = dataclasses.replace(sample_face_params(seed, style=style), rotation=0.0, zoom=1.0, flip=False)
        frames, kp = render_frames(p, simulate_behavior(2, seed=seed), 0, 1)
        back, bottom, front, top = (kp[0, K[n], :2] for n in ("eye(back)", "eye(bottom)", "eye(front)", "eye(top)"))
        if not np.isfinite([back, bottom, front, top]).all():
            continue
        ex = (front - back) / np.hypot(*(front - back))
        ey = np.array([-ex[1], ex[0]]) * np.sign(np.dot(np.array([-ex[1], ex[0]]), bottom - top))
        half = np.dot(bottom - top, ey) / 2
        centre = (back + front) / 2
        offset = np.dot((top + bottom) / 2 - centre, ey) / half
        a = np.hypot(*(front - back)) / 2
        x0, y0 = int(centre[0] - a), int(centre[1] - 1.3 * half)
        patch = frames[0, max(y0, 0) : int(centre[1] + 1.3 * half), max(x0, 0) : int(centre[0] + a)]
        yy, xx = np.unravel_index(np.argmax(patch), patch.shape)
        glint = np.dot(np.array([xx + max(x0, 0), yy + max(y0, 0)]) - centre, ey) / half - offset
        out.append((offset, glint))
    return np.array(out)


def test_wild_eyes_are_taller_above_with_a_central_reflection_like_real_faces():
    """Real labels put eye(top) further from the back-front line than eye(bottom): their midpoint
    sits 0.14-0.34 half-heights above it (bench/render_vs_real.py), and the real reflection sits
    near the centre (0.03-0.21 below it). lab1 keeps its symmetric eye with the reflection up."""
    lab, wild = _eye_frame_stats("lab1"), _eye_frame_stats("wild")
    assert len(lab) >= 6 and len(wild) >= 6
    np.testing.assert_allclose(lab[:, 0], 0.0, atol=0.02)
    assert np.median(lab[:, 1]) < -0.2
    assert -0.34 < np.mean(wild[:, 0]) < -0.12 and (wild[:, 0] < 0.01).all()
    assert -0.15 < np.median(wild[:, 1]) < 0.35


def test_wild_muzzle_marks_fade_to_the_silhouette_alone():
    """rhinarium_blend / nostril_dark / mouth_dark scale the muzzle's inner marks: at 0 the
    rhinarium and mouth pixels are the fur's (only the silhouette tells where the nose is),
    and nothing outside the snout changes. The wild family draws them from ranges reaching 0."""
    p = dataclasses.replace(sample_face_params(3, style="wild"), rotation=0.0, zoom=1.0)
    lat = simulate_behavior(2, seed=3)
    marked = render_frames(dataclasses.replace(p, rhinarium_blend=0.8, nostril_dark=0.45, mouth_dark=0.85), lat, 0, 1)[0]
    plain = render_frames(dataclasses.replace(p, rhinarium_blend=0.0, nostril_dark=0.0, mouth_dark=0.0), lat, 0, 1)[0]
    r = get_renderer(p)
    changed = np.abs(marked.astype(int) - plain.astype(int)) > 2
    snout = np.zeros(marked.shape[1:], bool)
    snout.reshape(-1)[r.snout.idx] = True
    assert changed.any() and not (changed[0] & ~snout).any()
    draws = np.array([[getattr(sample_face_params(s, style="wild"), f) for f in ("rhinarium_blend", "nostril_dark",
                                                                             "mouth_dark")] for s in range(40)])
    assert (draws.min(0) < 0.1).all() and (draws.max(0) > [0.6, 0.3, 0.6]).all()
    lab = sample_face_params(0, style="lab1")
    assert (lab.rhinarium_blend, lab.nostril_dark, lab.mouth_dark) == (0.8, 0.45, 0.85)


def test_with_layout_moves_the_keypoints_and_keeps_the_look():
    """lab2's look over wild's layout: in a common view the keypoints are wild's
    (LAYOUT_FIELDS is all that places them) and the image keeps lab2's grey background."""
    seed = 3
    lab2, wild = sample_face_params(seed, style="lab2"), sample_face_params(seed, style="wild")
    mixed = with_layout(lab2, wild)
    assert (mixed.style, mixed.flip, mixed.background) == (lab2.style, lab2.flip, lab2.background)
    view = dict(rotation=0.0, zoom=0.6, shift_x=0.0, shift_y=0.0, flip=False)
    lat = simulate_behavior(2, seed=seed)
    frame_m, kp_m = render_frames(dataclasses.replace(mixed, **view), lat, 0, 1)
    frame_w, kp_w = render_frames(dataclasses.replace(wild, **view), lat, 0, 1)
    _, kp_l = render_frames(dataclasses.replace(lab2, **view), lat, 0, 1)
    np.testing.assert_allclose(kp_m, kp_w, atol=1e-3)
    assert np.nanmax(np.abs(kp_m - kp_l)) > 5.0  # the layouts really differ
    corner = (slice(0, 12), slice(0, 12))  # background: lab2's grey, not wild's dark
    assert frame_m[0][corner].mean() > frame_w[0][corner].mean() + 40
