"""Tests of the example helpers: the MNIST loader (examples/mnist.py) on the bundled
files and on damaged copies, the digit grid (examples/images.py), and the pictures the VAE
example writes with matplotlib: its digit grids and its loss curve with Pyro's beside it."""
import gzip
import hashlib
import shutil
import struct

import matplotlib.pyplot as plt
import numpy as np
import pytest

import images
import mnist
import vae_mnist


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


# ---------------------------------------------------------------- pictures
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


def test_saved_grids_are_gray_pngs_of_the_grid(tmp_path):
    # vmin/vmax pin the gray map, so a pixel's value is its gray level, whatever the grid's range
    # (within one level: the colormap's 256-entry table rounds).
    vae = vae_mnist.VAE(z_dim=4, hidden_dim=16)
    x_test = np.random.default_rng(3).random((32, 784)).astype(np.float32) * 0.5  # no white pixel
    vae_mnist.save_pictures(vae, x_test, tmp_path, 7, np.random.default_rng(0))
    reconstructions = plt.imread(tmp_path / "reconstructions_epoch_007.png")
    samples = plt.imread(tmp_path / "samples_epoch_007.png")
    assert reconstructions.shape == samples.shape == (8 * 30 + 2, 8 * 30 + 2, 4)  # 64 digits, RGBA
    assert np.all(reconstructions[..., 0] == reconstructions[..., 2])  # gray
    first_original = images.to_uint8(x_test[0].reshape(28, 28))
    np.testing.assert_allclose(reconstructions[2:30, 2:30, 0] * 255, first_original, atol=1)
    assert np.all(reconstructions[0, :, :3] == 1)  # the padding stays white


def test_saved_grids_take_fewer_than_32_test_images(tmp_path):
    # --test-limit under 32: as many (original, reconstruction) pairs as there are test images
    vae = vae_mnist.VAE(z_dim=4, hidden_dim=16)
    x_test = np.random.default_rng(3).random((5, 784)).astype(np.float32)
    vae_mnist.save_pictures(vae, x_test, tmp_path, 1, np.random.default_rng(0))
    reconstructions = plt.imread(tmp_path / "reconstructions_epoch_001.png")
    assert reconstructions.shape == (2 * 30 + 2, 8 * 30 + 2, 4)  # 10 digits: two rows of the 8-wide grid


ROWS = [{"epoch": 1, "train_loss": 193.1, "test_loss": 158.7, "seconds": 2.0},
        {"epoch": 2, "train_loss": 147.8, "test_loss": None, "seconds": 2.0},
        {"epoch": 3, "train_loss": 133.5, "test_loss": 127.5, "seconds": 2.0}]


def test_loss_curve_shows_train_test_and_pyro(tmp_path):
    path = tmp_path / "loss_curve.png"
    fig = vae_mnist.plot_losses(ROWS, path, vae_mnist.PYRO_LOSSES)
    assert plt.imread(path).shape[2] == 4  # a PNG that matplotlib reads back
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["minippl train", "minippl test", "Pyro 1.9.2 train", "Pyro 1.9.2 test"]
    assert list(lines["minippl test"].get_xdata()) == [1, 3]  # only the tested epochs
    # Pyro's curves stop at the run's last epoch
    assert list(lines["Pyro 1.9.2 test"].get_xdata()) == [1, 2, 3]
    assert list(lines["Pyro 1.9.2 train"].get_ydata()) == [191.15, 146.62, 132.88]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == list(lines)
    assert ax.get_xlabel() == "epoch" and "nats" in ax.get_ylabel() and "Pyro" in ax.get_title()
    assert all(tick == int(tick) for tick in ax.get_xticks())  # whole epochs


def test_loss_curve_without_pyro_for_other_settings(tmp_path):
    fig = vae_mnist.plot_losses(ROWS[:1], tmp_path / "loss_curve.png")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["minippl train", "minippl test"]
    low, high = fig.axes[0].get_xlim()
    assert [t for t in fig.axes[0].get_xticks() if low <= t <= high] == [1]  # not 0.9, 1.0, 1.1
    assert "Pyro" not in fig.axes[0].get_title()


@pytest.mark.parametrize("argv, compared", [
    ([], True), (["-n", "3", "--seed", "5", "--resume"], True), (["--binarize"], False),
    (["--train-limit", "512"], False), (["--hidden-dim", "64"], False), (["-lr", "1e-2"], False),
])
def test_pyro_curve_only_for_pyro_settings(argv, compared):
    reference = vae_mnist.pyro_reference(vae_mnist.parse_args(argv))
    assert reference is (vae_mnist.PYRO_LOSSES if compared else None)
