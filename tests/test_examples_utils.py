"""Tests of the example helpers: the MNIST loader (examples/mnist.py) on the bundled
files and on damaged copies, and the PNG writer, grid and chart (examples/images.py),
checked with a small PNG decoder written here from the format (zlib + CRC-32)."""
import gzip
import hashlib
import shutil
import struct
import zlib

import numpy as np
import pytest

import images
import mnist


# ---------------------------------------------------------------- MNIST loader
@pytest.fixture(scope="module")
def bundled_mnist():
    return mnist.load_mnist()


def test_loader_reads_bundled_files(bundled_mnist):
    train_images, train_labels, test_images, test_labels = bundled_mnist
    assert train_images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert train_labels.shape == (60000,) and test_labels.shape == (10000,)
    for array in bundled_mnist:
        assert array.dtype == np.uint8 and array.flags.writeable
    assert set(np.unique(train_labels)) == set(range(10)) == set(np.unique(test_labels))
    assert train_images.max() == 255 and train_images.min() == 0
    # The decompressed bytes are exactly the published files: rebuild them from the arrays.
    for (name, (md5, magic, shape)), array in zip(mnist.MNIST_FILES.items(), bundled_mnist):
        rebuilt = struct.pack(f">{1 + len(shape)}I", magic, *shape) + array.tobytes()
        assert hashlib.md5(rebuilt).hexdigest() == md5, name


def copy_mnist(tmp_path):
    for path in mnist.DEFAULT_DATA_DIR.glob("*.gz"):
        shutil.copyfile(path, tmp_path / path.name)
    return tmp_path


def test_truncated_file_names_file_and_checksum(tmp_path):
    target = copy_mnist(tmp_path) / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:5000])
    with pytest.raises(mnist.MNISTFileError) as error:
        mnist.load_mnist(tmp_path)
    message = str(error.value)
    assert str(target) in message and "a25bea736e30d166cdddb491f175f624" in message
    assert "truncated" in message and "--data-dir" in message


def test_damaged_gzip_bytes_are_reported(tmp_path):
    target = copy_mnist(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(mnist.MNISTFileError, match="27ae3e4e09519cfbb04c329615203637"):
        mnist.load_mnist(tmp_path)


def test_wrong_contents_fail_the_md5_check(tmp_path):
    # A well-formed gzip whose contents differ by one label: only the MD5 can tell.
    target = copy_mnist(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(target.read_bytes()))
    data[-1] = (data[-1] + 1) % 10
    target.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(mnist.MNISTFileError) as error:
        mnist.load_mnist(tmp_path)
    message = str(error.value)
    assert str(target) in message and "MD5" in message
    assert "27ae3e4e09519cfbb04c329615203637" in message


def test_missing_file_and_missing_folder(tmp_path):
    copy_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz.*2646ac647ad5339d"):
        mnist.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist.*--data-dir"):
        mnist.load_mnist(tmp_path / "nowhere")


def test_uncompressed_files_are_accepted(tmp_path, bundled_mnist):
    copy_mnist(tmp_path)
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        gz_path = tmp_path / (name + ".gz")
        (tmp_path / name).write_bytes(gzip.decompress(gz_path.read_bytes()))
        gz_path.unlink()
    loaded = mnist.load_mnist(tmp_path)
    np.testing.assert_array_equal(loaded[1], bundled_mnist[1])
    np.testing.assert_array_equal(loaded[3], bundled_mnist[3])


def test_idx_header_is_checked():
    labels = struct.pack(">2I", 2049, 3) + bytes([1, 2, 3])
    np.testing.assert_array_equal(mnist.parse_idx(labels, 2049, (3,)), [1, 2, 3])
    with pytest.raises(mnist.MNISTFileError, match="magic number 2051"):
        mnist.parse_idx(labels, 2051, (3,))
    with pytest.raises(mnist.MNISTFileError, match="expected 3"):
        mnist.parse_idx(labels[:-1], 2049, (3,))


# ---------------------------------------------------------------- PNG
def decode_png(data):
    """Decode an 8-bit gray or RGB, non-interlaced PNG whose rows use filter 0."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind, body = data[position + 4:position + 8], data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind}"
        chunks.append((kind, body))
        position += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and color in (0, 2) and interlace == 0
    channels = 1 if color == 0 else 3
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(height, width * channels + 1)
    # write_png only uses row filter 0 ("none"); the other four are not needed here.
    assert np.all(rows[:, 0] == 0), "unexpected PNG row filter"
    pixels = rows[:, 1:]
    return pixels.reshape(height, width) if channels == 1 else pixels.reshape(height, width, 3)


@pytest.mark.parametrize("shape", [(5, 7), (4, 3, 3), (1, 1)])
def test_png_round_trip(tmp_path, shape):
    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    path = images.write_png(tmp_path / "picture.png", pixels)
    np.testing.assert_array_equal(decode_png(path.read_bytes()), pixels)
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"]  # no temp file left


def test_png_round_trip_with_pillow_if_installed(tmp_path):
    pil_image = pytest.importorskip("PIL.Image")
    pixels = np.random.default_rng(1).integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    images.write_png(tmp_path / "rgb.png", pixels)
    np.testing.assert_array_equal(np.asarray(pil_image.open(tmp_path / "rgb.png")), pixels)


def test_write_png_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        images.write_png(tmp_path / "x.png", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        images.write_png(tmp_path / "x.png", np.zeros((2, 2, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_image_grid_shape_and_placement():
    digits = np.random.default_rng(2).random((10, 28, 28))
    grid = images.image_grid(digits, nrow=4, pad=2)
    assert grid.shape == (3 * 30 + 2, 4 * 30 + 2) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[32:60, 2:30], np.round(digits[4] * 255))  # row 1, col 0
    assert np.all(grid[62:, 62:] == 255)  # the two empty cells of the last row stay padding
    flat = images.image_grid(digits.reshape(10, 784), nrow=4, pad=2)
    np.testing.assert_array_equal(flat, grid)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        images.image_grid(digits * 2, nrow=4)


def test_line_plot_png_writes_a_readable_chart(tmp_path):
    steps = np.arange(1, 41)
    path = tmp_path / "loss.png"
    canvas = images.line_plot_png(path, {"train": (steps, 200 / steps + 90),
                                         "test": (steps, 210 / steps + 95)},
                                  title="ELBO loss", xlabel="epoch", ylabel="loss")
    np.testing.assert_array_equal(decode_png(path.read_bytes()), canvas)
    assert canvas.shape == (400, 640, 3)
    for color in images.PALETTE[:2]:  # both curves were drawn
        assert np.all(canvas == color, axis=-1).sum() > 100
    with pytest.raises(ValueError, match="'train'.*index 3"):
        images.line_plot_png(path, {"train": ([0, 1, 2, 3], [1.0, 2.0, 3.0, np.nan])})


def test_text_mask_covers_the_font():
    assert images.text_mask("Loss 1.5e-3", scale=2).shape == (14, 2 * (11 * 6 - 1))
    assert images.text_mask("a").sum() == images.text_mask("A").sum() > 0
    np.testing.assert_array_equal(images.text_mask("~"), images.text_mask("?"))
