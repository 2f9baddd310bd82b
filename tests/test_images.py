"""Training images as a photo's viewer shows them: EXIF orientation, 16-bit PNGs, broken files named."""
from __future__ import annotations

import pytest
from PIL import Image

from trainer.captions.captionset import CaptionRecord, CaptionSet
from trainer.training.dataset import build_samples, load_pixels


def _portrait_jpeg_with_exif_rotation(path):
    """A 48x64 portrait (red top half, blue bottom half) stored sideways, 64x48, with EXIF Orientation=6
    (a camera held upright): viewers, Pillow's `ImageOps.exif_transpose` and SD datasets show it upright."""
    upright = Image.new("RGB", (48, 64), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 48, 32))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 rotates it back by 270
    assert stored.size == (64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif)
    return path


def test_exif_orientation_is_applied_to_bucket_and_pixels(tmp_path):
    path = _portrait_jpeg_with_exif_rotation(tmp_path / "portrait.jpg")
    caps = CaptionSet((CaptionRecord(str(path), "a photo"),), {})
    (sample,) = build_samples(caps, 64, step=16, min_side=16)
    assert sample.bucket[0] < sample.bucket[1], f"a portrait photo bucketed as {sample.bucket}"
    px = load_pixels(str(path), sample.bucket)  # [-1, 1], CHW
    h = px.shape[1]
    top, bottom = px[:, : h // 4].mean(dim=(1, 2)), px[:, -h // 4:].mean(dim=(1, 2))
    assert top[0] > 0.8 and top[2] < -0.8, f"top is not red: {top}"
    assert bottom[2] > 0.8 and bottom[0] < -0.8, f"bottom is not blue: {bottom}"
    from trainer.training.dataset import image_size

    assert image_size(path) == (48, 64)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    import numpy as np

    path = tmp_path / "grey16.png"
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).round().astype(np.uint16)
    Image.fromarray(ramp).save(path)  # a 16-bit greyscale PNG, as scanners and HDR tools write
    flat = tmp_path / "mid.png"
    Image.fromarray(np.full((64, 64), 32768, np.uint16)).save(flat)
    mid = load_pixels(str(flat), (64, 64))
    assert abs(float(mid.mean())) < 0.01, f"50 % grey became {float(mid.mean()):.3f} (1.0 is white)"
    px = load_pixels(str(path), (64, 64))[0].flatten()
    expect = np.rint(ramp.astype(np.float64) * 255 / 65535).flatten() / 127.5 - 1
    assert np.allclose(px.numpy(), expect, atol=1e-6)  # the whole ramp, not clipped at 255/65535 of it
    from trainer.training.dataset import to_rgb8

    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")  # Pillow >= 10 opens it as I;16, older ones (sd-webui's 9.5) as I
        # Pillow < 10's mode for the same file gives the same 8-bit image.
        assert np.array_equal(np.asarray(to_rgb8(check.convert("I"))), np.asarray(to_rgb8(check)))


def _truncated_jpeg(path):
    Image.effect_noise((64, 64), 64).convert("RGB").save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as im:  # its header still opens: the old load check passed it
        assert im.size == (64, 64)
    return path


def test_undecodable_image_error_names_the_file(tmp_path):
    from trainer.captions.load_report import DataError as ImageDecodeError  # the error's base on every version

    path = _truncated_jpeg(tmp_path / "broken.jpg")
    with pytest.raises(ImageDecodeError, match=r"broken\.jpg: cannot decode this training image.*truncated"):
        load_pixels(str(path), (64, 64))
    (tmp_path / "empty.png").write_bytes(b"")
    caps = CaptionSet((CaptionRecord(str(tmp_path / "empty.png"), "a photo"),), {})
    with pytest.raises(ImageDecodeError, match=r"empty\.png: cannot decode"):
        build_samples(caps, 64)
