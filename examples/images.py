"""Pictures for the examples without matplotlib: a PNG writer, an image grid, a line chart.

``write_png`` encodes uint8 gray or RGB pixels with NumPy and zlib (the whole PNG
format the examples need: one IHDR, one IDAT with filter 0, IEND). ``image_grid`` tiles
digits into one picture; ``line_plot_png`` rasterises a loss curve (or curves with shaded
bands and data points) with axes, ticks and a legend, lettered with a built-in 5x7 bitmap
font (digits, A-Z shown in capitals, and ``. - + : , ( ) / _ = %``; any other character
is drawn as ``?``).
"""
import os
import pathlib
import struct
import tempfile
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind, data):
    # A PNG chunk: length, 4-letter type, data, CRC-32 of type + data.
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels):
    """Return the PNG bytes of uint8 ``pixels``, gray (H, W) or RGB (H, W, 3)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(f"write_png needs uint8 pixels, got {pixels.dtype}; convert floats in "
                        "[0, 1] with (x * 255).round().astype(np.uint8), or use image_grid")
    if pixels.ndim == 2:
        color_type = 0  # gray
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        color_type = 2  # RGB
    else:
        raise ValueError(f"write_png needs shape (H, W) or (H, W, 3), got {pixels.shape}")
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"write_png needs a non-empty image, got shape {pixels.shape}")
    # Each scanline starts with its filter byte; 0 means "none" (zlib does the compressing).
    rows = pixels.reshape(height, -1)
    scanlines = np.hstack([np.zeros((height, 1), np.uint8), rows])
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)) + _chunk(b"IEND", b""))


def write_png(path, pixels):
    """Write uint8 gray (H, W) or RGB (H, W, 3) ``pixels`` to ``path`` as a PNG, atomically.

    The bytes go to a temporary file in the same folder that then replaces ``path``, so a
    reader never sees half a picture. Returns the path.
    """
    path = pathlib.Path(path)
    data = encode_png(pixels)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as temp_file:
            temp_file.write(data)
        os.chmod(temp_name, 0o644)  # mkstemp makes files private; a picture is for sharing
        os.replace(temp_name, path)
    except BaseException:
        os.unlink(temp_name)
        raise
    return path


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


# --- a 5x7 bitmap font: each glyph is 7 rows, each row 5 bits (0x10 = leftmost pixel) ---
_FONT_HEX = {
    "0": "0e11131519110e", "1": "040c040404040e", "2": "0e11010204081f", "3": "1f02040201110e",
    "4": "02060a121f0202", "5": "1f101e0101110e", "6": "0608101e11110e", "7": "1f010204080808",
    "8": "0e11110e11110e", "9": "0e11110f01020c", "A": "0e1111111f1111", "B": "1e11111e11111e",
    "C": "0e11101010110e", "D": "1c12111111121c", "E": "1f10101e10101f", "F": "1f10101e101010",
    "G": "0e11101711110f", "H": "1111111f111111", "I": "0e04040404040e", "J": "0702020202120c",
    "K": "11121418141211", "L": "1010101010101f", "M": "111b1515111111", "N": "11111915131111",
    "O": "0e11111111110e", "P": "1e11111e101010", "Q": "0e11111115120d", "R": "1e11111e141211",
    "S": "0f10100e01011e", "T": "1f040404040404", "U": "1111111111110e", "V": "11111111110a04",
    "W": "1111111515150a", "X": "11110a040a1111", "Y": "1111110a040404", "Z": "1f01020408101f",
    " ": "00000000000000", ".": "00000000000c0c", "-": "0000001f000000", "+": "0004041f040400",
    ":": "000c0c000c0c00", ",": "000000000c0408", "(": "02040808080402", ")": "08040202020408",
    "/": "00010204081000", "_": "0000000000001f", "=": "00001f001f0000", "%": "18190204081303",
    "?": "0e110102040004",
}
_GLYPHS = {char: np.array([[(int(code[2 * row:2 * row + 2], 16) >> (4 - col)) & 1
                            for col in range(5)] for row in range(7)], dtype=bool)
           for char, code in _FONT_HEX.items()}


def text_mask(text, scale=1):
    """Boolean bitmap of ``text`` (height 7*scale), one blank column between glyphs."""
    glyphs = [_GLYPHS.get(char.upper(), _GLYPHS["?"]) for char in text]
    blank = np.zeros((7, 1), bool)
    mask = np.hstack([part for glyph in glyphs for part in (glyph, blank)][:-1] or [blank])
    return np.kron(mask, np.ones((scale, scale), bool)).astype(bool)


def _paint(canvas, mask, top, left, color):
    """Set the pixels of ``canvas`` under the True pixels of ``mask`` placed at (top, left)."""
    height, width = canvas.shape[:2]
    top0, left0 = max(top, 0), max(left, 0)
    bottom, right = min(top + mask.shape[0], height), min(left + mask.shape[1], width)
    if bottom > top0 and right > left0:
        window = mask[top0 - top:bottom - top, left0 - left:right - left]
        canvas[top0:bottom, left0:right][window] = color


def draw_text(canvas, text, x, y, color=(0, 0, 0), scale=1, align="left", vertical=False):
    """Letter ``text`` with its top edge at row ``y``; ``align`` says what column ``x`` is
    ("left", "center" or "right" end of the text). ``vertical`` reads bottom to top."""
    mask = text_mask(text, scale)
    if vertical:
        mask = np.rot90(mask)
    shift = {"left": 0, "center": mask.shape[1] // 2, "right": mask.shape[1]}[align]
    _paint(canvas, mask, y, x - shift, color)


def _draw_polyline(canvas, xs, ys, color, thickness=2):
    """Draw straight segments through pixel points (xs, ys), sampling one dot per pixel."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if xs.size == 1:
        xs, ys = np.repeat(xs, 2), np.repeat(ys, 2)
    steps = np.maximum(np.ceil(np.maximum(np.abs(np.diff(xs)), np.abs(np.diff(ys)))), 1).astype(int)
    segment = np.repeat(np.arange(steps.size), steps)
    # position inside each segment, 0 <= t < 1: 0, 1/steps, ..., then the final point
    t = (np.arange(segment.size) - np.repeat(np.cumsum(steps) - steps, steps)) / steps[segment]
    px = np.append(xs[segment] + t * np.diff(xs)[segment], xs[-1])
    py = np.append(ys[segment] + t * np.diff(ys)[segment], ys[-1])
    for offset_x in range(thickness):
        for offset_y in range(thickness):
            cols = np.clip(np.round(px).astype(int) + offset_x - thickness // 2, 0, canvas.shape[1] - 1)
            rows = np.clip(np.round(py).astype(int) + offset_y - thickness // 2, 0, canvas.shape[0] - 1)
            canvas[rows, cols] = color


def nice_ticks(low, high, count=5):
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten) that
    cover [low, high]; returns (ticks, step). The axis then spans ticks[0]..ticks[-1]."""
    if high <= low:  # a flat series: open up a range around it
        low, high = low - max(abs(low), 1.0) * 0.5, high + max(abs(high), 1.0) * 0.5
    raw = (high - low) / count
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = np.floor(low / step), np.ceil(high / step)
    return np.arange(first, last + 0.5) * step, step


def _tick_label(value, step):
    if abs(value) >= 1e6 or step < 1e-4:
        return f"{value:.3g}"
    decimals = max(0, -int(np.floor(np.log10(step))))
    return f"{value:.{decimals}f}"


PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
           (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def _pale(index):
    """PALETTE[index] mixed with 65% white: the shade of a band."""
    return (np.array(PALETTE[index % len(PALETTE)]) * 0.35 + 255 * 0.65).astype(np.uint8)


def _checked_columns(kind, label, xs, *ys):
    """xs and each ys as flat float arrays of one non-zero length, all finite."""
    columns = [np.asarray(c, float).ravel() for c in (xs, *ys)]
    if columns[0].size == 0 or any(c.shape != columns[0].shape for c in columns):
        raise ValueError(f"{kind} {label!r}: xs and ys need the same non-zero length, "
                         f"got {[c.size for c in columns]}")
    finite = np.all([np.isfinite(c) for c in columns], axis=0)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{kind} {label!r} has a non-finite point at index {bad}: "
                         f"{tuple(float(c[bad]) for c in columns)}; drop it or fix the run that made it")
    return columns


def line_plot_png(path, series, title="", xlabel="", ylabel="", width=640, height=400, bands=None, points=None):
    """Draw ``series`` (dict label -> (xs, ys)) as a line chart and write it to ``path``.

    Axes span all the series, with round ticks, light grid lines, a legend in the top
    right corner, and text in the 5x7 bitmap font. Optional ``bands`` (dict label ->
    (xs, lower, upper)) are shaded under the lines in a pale version of the colour of the
    series with the same position; optional ``points`` (dict label -> (xs, ys)) are drawn
    as dots on top, in the colours after the series'. Returns the RGB pixels written.
    """
    if not series:
        raise ValueError("line_plot_png needs at least one series: {label: (xs, ys)}")
    curves = {str(label): _checked_columns("series", label, *xy) for label, xy in series.items()}
    shades = {str(label): _checked_columns("band", label, *b) for label, b in (bands or {}).items()}
    dots = {str(label): _checked_columns("points", label, *xy) for label, xy in (points or {}).items()}
    groups = (*curves.values(), *shades.values(), *dots.values())
    all_x = np.concatenate([columns[0] for columns in groups])
    all_y = np.concatenate([y for columns in groups for y in columns[1:]])
    x_ticks, x_step = nice_ticks(all_x.min(), all_x.max())
    y_ticks, y_step = nice_ticks(all_y.min(), all_y.max())
    y_labels = [_tick_label(v, y_step) for v in y_ticks]

    # Layout: room for the y tick labels and the vertical y label on the left.
    left = 6 * max(len(s) for s in y_labels) + 24
    right, top, bottom = width - 20, 34, height - 44
    if right - left < 50 or bottom - top < 50:
        raise ValueError(f"a {width}x{height} chart leaves no room to plot; make it larger")
    canvas = np.full((height, width, 3), 255, np.uint8)

    def to_px(x):
        return left + (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (right - left)

    def to_py(y):
        return bottom - (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * (bottom - top)

    gray, dark = (225, 225, 225), (0, 0, 0)
    for value in x_ticks:
        col = int(round(to_px(value)))
        canvas[top:bottom, col] = gray
        canvas[bottom:bottom + 5, col] = dark
        draw_text(canvas, _tick_label(value, x_step), col, bottom + 8, align="center")
    for value, text in zip(y_ticks, y_labels):
        row = int(round(to_py(value)))
        canvas[row, left:right] = gray
        canvas[row, left - 5:left] = dark
        draw_text(canvas, text, left - 8, row - 3, align="right")
    canvas[top:bottom + 1, left] = dark   # y axis
    canvas[bottom, left:right + 1] = dark  # x axis

    for index, (xs, lower, upper) in enumerate(shades.values()):
        order = np.argsort(xs, kind="stable")
        columns = np.arange(int(np.ceil(to_px(xs.min()))), int(np.floor(to_px(xs.max()))) + 1)
        x_at = x_ticks[0] + (columns - left) / (right - left) * (x_ticks[-1] - x_ticks[0])
        tops = np.round(to_py(np.interp(x_at, xs[order], upper[order]))).astype(int)
        bottoms = np.round(to_py(np.interp(x_at, xs[order], lower[order]))).astype(int)
        for col, row_top, row_bottom in zip(columns, tops, bottoms):
            canvas[row_top:row_bottom + 1, col] = _pale(index)
    for index, (xs, ys) in enumerate(curves.values()):
        order = np.argsort(xs, kind="stable")
        _draw_polyline(canvas, to_px(xs[order]), to_py(ys[order]), PALETTE[index % len(PALETTE)])
    for index, (xs, ys) in enumerate(dots.values()):
        color = PALETTE[(len(curves) + index) % len(PALETTE)]
        for px, py in zip(np.round(to_px(xs)).astype(int), np.round(to_py(ys)).astype(int)):
            canvas[max(py - 1, 0):py + 2, max(px - 1, 0):px + 2] = color

    draw_text(canvas, title, (left + right) // 2, 10, scale=2, align="center")
    draw_text(canvas, xlabel, (left + right) // 2, height - 18, align="center")
    ylabel_width = 6 * len(ylabel)
    draw_text(canvas, ylabel, 6, (top + bottom) // 2 - ylabel_width // 2, vertical=True)

    # Legend: a framed white box in the top right corner, one sample per series, band, points.
    entries = [*curves, *shades, *dots]
    box_width = 6 * max(len(label) for label in entries) + 40
    box_height = 12 * len(entries) + 8
    box_left, box_top = right - box_width - 8, top + 8
    canvas[box_top:box_top + box_height, box_left:box_left + box_width] = 255
    canvas[[box_top, box_top + box_height - 1], box_left:box_left + box_width] = (160, 160, 160)
    canvas[box_top:box_top + box_height, [box_left, box_left + box_width - 1]] = (160, 160, 160)
    for index, label in enumerate(entries):
        row = box_top + 6 + 12 * index
        if index < len(curves):
            canvas[row + 2:row + 5, box_left + 6:box_left + 26] = PALETTE[index % len(PALETTE)]
        elif index < len(curves) + len(shades):
            canvas[row:row + 7, box_left + 6:box_left + 26] = _pale(index - len(curves))
        else:
            color = PALETTE[(index - len(shades)) % len(PALETTE)]
            canvas[row + 2:row + 5, box_left + 14:box_left + 17] = color
        draw_text(canvas, label, box_left + 32, row)

    write_png(path, canvas)
    return canvas
