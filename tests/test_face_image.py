"""load_image: every photo flavour becomes uint8 (H, W, 3) RGB; bad files raise InputError."""

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from sdmtalk.errors import InputError
from sdmtalk.face.image import MAX_SIDE, load_image, open_image


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


def _check_rgb8(image, shape):
    assert image.dtype == np.uint8
    assert image.shape == shape


def test_rgb_png_roundtrip(tmp_path, astronaut):
    path = tmp_path / "a.png"
    Image.fromarray(astronaut).save(path)
    np.testing.assert_array_equal(load_image(path), astronaut)


def test_grayscale_becomes_three_equal_channels(tmp_path, astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    path = tmp_path / "g.png"
    Image.fromarray(gray).save(path)
    image = load_image(path)
    _check_rgb8(image, (512, 512, 3))
    np.testing.assert_array_equal(image[..., 0], gray)
    np.testing.assert_array_equal(image[..., 2], gray)


def test_rgba_composited_on_white(tmp_path, astronaut):
    alpha = np.full(astronaut.shape[:2], 255, np.uint8)
    alpha[:100] = 0  # transparent band on top
    alpha[100:110] = 128
    path = tmp_path / "a.png"
    Image.fromarray(np.dstack([astronaut, alpha])).save(path)
    image = load_image(path)
    _check_rgb8(image, (512, 512, 3))
    assert (image[:100] == 255).all()
    np.testing.assert_array_equal(image[110:], astronaut[110:])
    half = (astronaut[100:110].astype(int) + 255) / 2
    assert np.abs(image[100:110] - half).max() <= 1.5


def test_la_and_palette_with_transparency(tmp_path, astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    la = tmp_path / "la.png"
    Image.fromarray(np.dstack([gray, np.full_like(gray, 255)]), mode="LA").save(la)
    np.testing.assert_array_equal(load_image(la)[..., 1], gray)
    palette = Image.fromarray(astronaut).quantize(64)
    palette.info["transparency"] = 0
    p = tmp_path / "p.png"
    palette.save(p, transparency=0)
    image = load_image(p)
    _check_rgb8(image, (512, 512, 3))
    index0 = np.asarray(palette) == 0
    assert index0.any() and (image[index0] == 255).all()
    assert np.abs(image[~index0].astype(int) - astronaut[~index0]).mean() < 12  # 64 colours


def test_16bit_gray_and_rgb(tmp_path, astronaut):
    wide = astronaut.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "rgb16.png"), wide[..., ::-1])
    cv2.imwrite(str(tmp_path / "g16.png"), wide[..., 1])
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_array_equal(load_image(tmp_path / "rgb16.png"), astronaut)
    np.testing.assert_array_equal(load_image(tmp_path / "g16.png")[..., 0], astronaut[..., 1])


def test_float_tiff_in_unit_range(tmp_path, astronaut):
    gray = astronaut[..., 0].astype(np.float32) / 255
    path = tmp_path / "f.tif"
    Image.fromarray(gray, mode="F").save(path)
    assert np.abs(load_image(path)[..., 0].astype(int) - astronaut[..., 0]).max() <= 1


def test_exif_orientation_applied(tmp_path, astronaut):
    crop = astronaut[:, :300]  # not square, so the rotation shows in the shape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    Image.fromarray(crop).save(path, exif=exif, quality=95)
    image = load_image(path)
    _check_rgb8(image, (300, 512, 3))
    expected = np.rot90(crop, k=-1)
    assert np.abs(image.astype(int) - expected).mean() < 4


def test_huge_jpeg_downscaled(tmp_path, astronaut):
    big = cv2.resize(astronaut, (6000, 6000), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((6000, 8000, 3), 200, np.uint8)
    canvas[:, 1000:7000] = big
    path = tmp_path / "huge.jpg"
    Image.fromarray(canvas).save(path, quality=90)
    image = load_image(path)
    _check_rgb8(image, (1536, MAX_SIDE, 3))
    expected = cv2.resize(canvas, (MAX_SIDE, 1536), interpolation=cv2.INTER_AREA)
    assert np.abs(image.astype(int) - expected).mean() < 4


def test_opencv_reads_what_pillow_cannot(tmp_path, astronaut):
    path = tmp_path / "a.hdr"  # Radiance HDR: OpenCV only
    assert cv2.imwrite(str(path), astronaut[..., ::-1].astype(np.float32) / 255)
    image = load_image(path)
    _check_rgb8(image, (512, 512, 3))
    assert np.abs(image.astype(int) - astronaut).mean() < 3


@pytest.mark.parametrize(
    "content, fragment",
    [(None, "not found"), (b"", "empty"), (b"hello, this is text\n" * 10, "not an image")],
)
def test_bad_files_raise_input_error(tmp_path, content, fragment):
    path = tmp_path / "photo.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=fragment) as err:
        load_image(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_png_raises_input_error(tmp_path, astronaut):
    path = tmp_path / "cut.png"
    Image.fromarray(astronaut).save(path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(InputError, match="cut.png"):
        load_image(path)


def test_directory_is_not_a_photo(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path)


def _jpeg_claiming(path, width, height):
    """A small JPEG whose header claims width x height pixels (Pillow checks the header)."""
    Image.new("L", (64, 48), 128).save(path)
    raw = bytearray(path.read_bytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(raw))


def test_a_photo_over_89_megapixels_loads_without_a_warning(tmp_path, recwarn):
    path = tmp_path / "wide.jpg"
    Image.new("L", (10000, 9500), 90).save(path)  # 95 megapixels: Pillow warns from 89.5
    image = load_image(path)
    _check_rgb8(image, (round(MAX_SIDE * 0.95), MAX_SIDE, 3))
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_photo_beyond_the_limit_is_one_clear_line(tmp_path, recwarn):
    path = tmp_path / "bomb.jpg"
    _jpeg_claiming(path, 14000, 14000)
    with pytest.raises(InputError, match="over 179 megapixels") as err:
        load_image(path)
    assert "bomb.jpg" in str(err.value) and "\n" not in str(err.value)
    _jpeg_claiming(path, 12000, 12000)  # 144 megapixels: opens quietly (decoding fails: it is 64 x 48)
    with open_image(path) as img:
        assert img.size == (12000, 12000)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
