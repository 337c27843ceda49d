"""The VAE example's digit grid: N small gray images tiled into one uint8 NumPy array.

matplotlib writes the grid to a file (``plt.imsave(path, grid, cmap="gray", vmin=0, vmax=255)``);
the charts of the examples are drawn with matplotlib directly.
"""
import numpy as np


def to_uint8(images):
    """uint8 images pass through; float images must lie in [0, 1] and are scaled to 0-255."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    if not np.all((images >= 0) & (images <= 1)):  # also rejects NaN
        raise ValueError("float images must lie in [0, 1] (NaN not allowed); got range "
                         f"[{np.nanmin(images)}, {np.nanmax(images)}]. Apply a sigmoid or clip")
    return np.round(images * 255).astype(np.uint8)


def image_grid(images, nrow, pad=2, pad_value=255):
    """Tile N gray images into one uint8 picture with ``nrow`` images per row.

    ``images``: (N, H, W), or (N, D) with D a square (e.g. 784 -> 28x28), uint8 or float in
    [0, 1]. Tiles are separated (and framed) by ``pad`` pixels of ``pad_value``; empty cells
    of the last row are left at ``pad_value``. Returns shape
    (rows * (H + pad) + pad, nrow * (W + pad) + pad).
    """
    images = to_uint8(images)
    if images.ndim == 2:
        side = int(round(np.sqrt(images.shape[1])))
        if side * side != images.shape[1]:
            raise ValueError(f"flat images of size {images.shape[1]} are not square; "
                             "reshape them to (N, H, W) first")
        images = images.reshape(-1, side, side)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"image_grid needs (N, H, W) with N >= 1, got {images.shape}")
    if nrow < 1 or pad < 0:
        raise ValueError(f"need nrow >= 1 and pad >= 0, got nrow={nrow}, pad={pad}")
    count, height, width = images.shape
    rows = -(-count // nrow)  # ceiling division
    grid = np.full((rows * (height + pad) + pad, nrow * (width + pad) + pad), pad_value, np.uint8)
    for index, image in enumerate(images):
        top = pad + (index // nrow) * (height + pad)
        left = pad + (index % nrow) * (width + pad)
        grid[top:top + height, left:left + width] = image
    return grid
