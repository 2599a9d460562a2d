"""The contact sheet says what it shows: frame numbers and times, colours that can be told
apart, and a legend of only the bodyparts drawn."""

import numpy as np
import pytest

from jfacemap.skeleton import FACEMAP_BODYPARTS
from jfacemap.synth._font import draw_text
from jfacemap.synth.contact_sheet import (
    bodypart_colours,
    contact_sheet,
    frame_label,
    save_contact_sheet,
)

H = W = 64
GAP = 2


def lab(rgb):
    """CIELAB (D65) of sRGB uint8 colours (..., 3)."""
    c = np.asarray(rgb, np.float64) / 255
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.9505, 1.0, 1.089])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def has_colour(image, colour) -> bool:
    return bool(np.all(image == np.asarray(colour, np.uint8), axis=-1).any())


def test_bodypart_colours_can_be_told_apart():
    colours = bodypart_colours(len(FACEMAP_BODYPARTS))
    assert colours.shape == (15, 3) and colours.dtype == np.uint8
    L = lab(colours)
    delta_e = np.linalg.norm(L[:, None] - L[None], axis=-1) + 1e9 * np.eye(len(L))
    assert delta_e.min() > 40  # the jet map had eye blues < 15 apart
    assert np.hypot(L[:, 1], L[:, 2]).min() > 30  # no grey: the frames are grey
    assert bodypart_colours(25).shape == (25, 3)  # beyond the palette: still one colour each


def test_frame_label_gives_index_and_time():
    assert frame_label(7) == "#7"
    assert frame_label(214, 50.0) == "#214 0:04.28"
    assert frame_label(3001, 50.0) == "#3001 1:00.02"
    assert frame_label(59999, 1000.0) == "#59999 1:00.00"  # rounded before the minutes: never 0:60.00


def test_tiles_carry_their_frame_index_and_time():
    frames = np.full((2, H, W), 100, np.uint8)
    sheet = contact_sheet(frames, None, [], frame_indices=[5, 1200], fps=50.0)
    for i, text in enumerate(["#5 0:00.10", "#1200 0:24.00"]):
        expected = np.repeat(frames[i][:, :, None], 3, axis=2)
        draw_text(expected, text, 3, 3, (255, 255, 0))
        x0 = GAP + i * (W + GAP)
        np.testing.assert_array_equal(sheet[GAP : GAP + H, x0 : x0 + W], expected)
    default = contact_sheet(frames, None, [])  # no indices, no fps: the tile's position, as before
    expected = np.repeat(frames[1][:, :, None], 3, axis=2)
    draw_text(expected, "1", 3, 3, (255, 255, 0))
    np.testing.assert_array_equal(default[GAP : GAP + H, 2 * GAP + W : 2 * GAP + 2 * W], expected)
    with pytest.raises(ValueError, match="frame indices"):
        contact_sheet(frames, None, [], frame_indices=[1, 2, 3])


def test_legend_lists_only_bodyparts_drawn():
    names = ["eye(back)", "nose(tip)", "paw", "whisker(I)"]
    frames = np.full((2, H, W), 100, np.uint8)
    kp = np.full((2, 4, 3), np.nan, np.float32)
    kp[:, 0, :2] = (20, 20)
    kp[1, 1, :2] = (40, 30)  # in one tile only: still in the legend
    kp[:, 3, :2] = (-50, 400)  # outside every tile: not drawn
    colours = bodypart_colours(4)
    sheet = contact_sheet(frames, kp, names, ncols=2)
    grid, legend = sheet[: H + 2 * GAP], sheet[H + 2 * GAP :]
    assert legend.shape[0] > 0
    for k, drawn in enumerate([True, True, False, False]):
        assert has_colour(grid, colours[k]) == drawn, names[k]
        assert has_colour(legend, colours[k]) == drawn, names[k]
    assert has_colour(legend, (96, 96, 96))  # the line naming what is not drawn
    nothing = contact_sheet(frames, np.full_like(kp, np.nan), names)
    assert not any(has_colour(nothing, c) for c in colours)


def test_save_contact_sheet_keeps_the_old_call(tmp_path):
    frames = np.full((3, H, W), 100, np.uint8)
    kp = np.full((3, 15, 3), 30.0, np.float32)
    old = save_contact_sheet(tmp_path / "a.png", frames, kp, FACEMAP_BODYPARTS)
    new = save_contact_sheet(tmp_path / "b.png", frames, kp, FACEMAP_BODYPARTS, frame_indices=[0, 10, 20], fps=25.0)
    assert old.read_bytes().startswith(b"\x89PNG") and new.read_bytes() != old.read_bytes()
