"""Still images: PNG written by us and images of any ffmpeg format read back as gray."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from jfacemap.io.images import ImageError, encode_png, read_image, write_png


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    *args], check=True, stdin=subprocess.DEVNULL)


def test_png_round_trip_is_exact(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (47, 63), dtype=np.uint8)
    path = write_png(tmp_path / "a.png", image)
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == (47, 63)
    np.testing.assert_array_equal(got, image)


def test_colour_becomes_luma(tmp_path):
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[:, :5] = 200  # grey stays grey
    rgb[:, 5:, 1] = 255  # pure green is bright (luma weight ~0.59)
    got = read_image(write_png(tmp_path / "rgb.png", rgb))
    assert np.all(np.abs(got[:, :5].astype(int) - 200) <= 1)
    assert np.all((got[:, 5:] > 130) & (got[:, 5:] < 170))
    rgba = np.concatenate([rgb, np.full((8, 10, 1), 128, np.uint8)], axis=2)
    np.testing.assert_array_equal(read_image(write_png(tmp_path / "rgba.png", rgba)), got)


@pytest.mark.parametrize("name", ["a.jpg", "a.tif", "b16.png", "odd%03d name.png", "star*.png"])
def test_other_formats_and_awkward_names(tmp_path, name):
    image = np.tile(np.arange(0, 240, 5, dtype=np.uint8), (32, 1))
    src = write_png(tmp_path / "src.png", image)
    target = tmp_path / name
    extra = ["-pix_fmt", "gray16be"] if name.startswith("b16") else []
    ffmpeg("-i", str(src), *extra, "-f", "image2", "-update", "1", str(target))
    got = read_image(target)
    assert got.shape == image.shape
    assert np.abs(got.astype(int) - image).max() <= (6 if name.endswith("jpg") else 0)


def test_errors_are_one_line_and_name_the_file(tmp_path):
    text = tmp_path / "not_image.png"
    text.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path, match in [(tmp_path / "missing.png", "no such file"), (empty, "empty file"),
                        (text, "not an image"), (tmp_path, "is a folder")]:
        with pytest.raises(ImageError, match=match) as err:
            read_image(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_encode_png_rejects_bad_input():
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 2), np.uint8))
