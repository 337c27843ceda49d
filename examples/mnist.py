"""Loads the MNIST digits bundled in examples/data/mnist/ for the VAE example.

Reads the IDX files (gzip-compressed, or plain under the same names without .gz)
with gzip and NumPy only, and checks each file's MD5 so a truncated or corrupt copy
fails loudly instead of training on garbage. Nothing is downloaded or cached.

    train_images, train_labels, test_images, test_labels = load_mnist()

Errors: a missing folder or file raises FileNotFoundError; a truncated, unreadable or
corrupt file raises MNISTFileError (a ValueError). Each names the folder or file and the
fix; a missing, truncated or corrupt file's error also names the expected MD5 of its
decompressed bytes (a missing folder's lists the four file names instead).
"""
import argparse
import gzip
import hashlib
import pathlib
import zlib

import numpy as np

DEFAULT_DATA_DIR = pathlib.Path(__file__).resolve().parent / "data" / "mnist"

# file name (without .gz) -> (MD5 of the decompressed bytes, IDX magic number, shape)
MNIST_FILES = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 2051, (60000, 28, 28)),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 2049, (60000,)),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 2051, (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 2049, (10000,)),
}
FIX = ("Copy the file again from the repository's examples/data/mnist/ "
       "(e.g. `git checkout -- examples/data/mnist/`), or point the loader at a folder "
       "holding intact files: load_mnist(data_dir=...), or --data-dir in the examples.")


class MNISTFileError(ValueError):
    """An MNIST file is present but truncated, not valid gzip, or has the wrong contents."""


def load_mnist(data_dir=None):
    """Return (train_images, train_labels, test_images, test_labels) as uint8 arrays.

    Images have shape (N, 28, 28) with values 0-255 (N = 60000 train, 10000 test);
    labels have shape (N,) with values 0-9. ``data_dir`` defaults to the bundled
    examples/data/mnist/. The returned arrays are fresh and writable.
    """
    data_dir = DEFAULT_DATA_DIR if data_dir is None else pathlib.Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"MNIST data folder {data_dir} does not exist. It should hold the four files "
            f"{', '.join(name + '.gz' for name in MNIST_FILES)}. {FIX}")
    return tuple(read_mnist_file(data_dir, name) for name in MNIST_FILES)


def read_mnist_file(data_dir, name):
    """Read one IDX file ``name`` (.gz preferred, plain accepted), check it, return the array."""
    expected_md5, magic, shape = MNIST_FILES[name]
    path, data = _read_bytes(pathlib.Path(data_dir), name, expected_md5)
    actual_md5 = hashlib.md5(data).hexdigest()
    if actual_md5 != expected_md5:
        raise MNISTFileError(
            f"{path} is corrupt or not the MNIST file it is named after: the MD5 of its "
            f"decompressed bytes is {actual_md5}, expected {expected_md5} "
            f"({len(data)} bytes read). {FIX}")
    return parse_idx(data, magic, shape, path)


def _read_bytes(data_dir, name, expected_md5):
    """Return (path, decompressed bytes) of ``name``.gz, or of ``name`` if no .gz exists."""
    gz_path, plain_path = data_dir / (name + ".gz"), data_dir / name
    if gz_path.is_file():
        try:
            return gz_path, gzip.decompress(gz_path.read_bytes())
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            # EOFError: the file was cut short; BadGzipFile/zlib.error: damaged bytes or CRC.
            raise MNISTFileError(
                f"{gz_path} is truncated or not valid gzip ({type(error).__name__}: {error}); "
                f"its decompressed bytes should have MD5 {expected_md5}. {FIX}") from error
    if plain_path.is_file():
        return plain_path, plain_path.read_bytes()
    raise FileNotFoundError(
        f"MNIST file {gz_path} is missing (nor is there an uncompressed {plain_path}); "
        f"expected decompressed MD5 {expected_md5}. {FIX}")


def parse_idx(data, magic, shape, path="<bytes>"):
    """Decode IDX bytes of unsigned bytes: a big-endian header, then the uint8 data.

    Header: a 4-byte magic number (0x0000 0x08 ndim: 2049 for 1-D labels, 2051 for
    3-D images), then one 4-byte big-endian size per dimension.
    """
    offset = 4 * (1 + len(shape))
    header = [int.from_bytes(data[i:i + 4], "big") for i in range(0, offset, 4)]
    if header != [magic, *shape]:
        raise MNISTFileError(
            f"{path}: IDX header {header} does not match the expected magic number "
            f"{magic} and shape {shape}. {FIX}")
    if len(data) != offset + int(np.prod(shape)):
        raise MNISTFileError(
            f"{path}: holds {len(data) - offset} data bytes after the header, expected "
            f"{int(np.prod(shape))} for shape {shape}. {FIX}")
    # frombuffer shares the read-only bytes; copy once so callers may shuffle in place.
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape).copy()


def main():
    parser = argparse.ArgumentParser(description="Check and summarise the MNIST files.")
    parser.add_argument("--data-dir", default=None, help=f"default: {DEFAULT_DATA_DIR}")
    args = parser.parse_args()
    names = ("train images", "train labels", "test images", "test labels")
    for label, array in zip(names, load_mnist(args.data_dir)):
        print(f"{label:13s} shape={array.shape} dtype={array.dtype} "
              f"min={array.min()} max={array.max()}")


if __name__ == "__main__":
    main()
