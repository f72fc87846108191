"""Pictures: image grids with optional region outlines, saved atomically as PNG."""
import os

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_uint8(images):
    """``(n, 3, H, W)`` in [-1, 1] -> ``(n, H, W, 3)`` uint8 array."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(images, nrow=8, pad=2, scale=1, labels=None, pad_value=255):
    """A PIL image of a grid of ``(n, 3, H, W)`` images (row-major, ``nrow`` per row), optionally upscaled."""
    arr = to_uint8(images)
    n, H, W, _ = arr.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    canvas = np.full((nrows * (H + pad) + pad, ncol * (W + pad) + pad, 3), pad_value, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = arr[i]
    img = Image.fromarray(canvas)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def outline_mask(img, mask, cell, nrow, n, pad=2, scale=1, color=(255, 40, 40)):
    """Draw the boundary of a ``(H, W)`` mask (>= 0.5) on every cell of a grid made by :func:`image_grid`."""
    m = (torch.as_tensor(mask) >= 0.5).numpy()
    H, W = cell
    draw = ImageDraw.Draw(img)
    ys, xs = np.nonzero(m)
    if len(ys) == 0:
        return img
    # Boundary pixels: inside the mask with a 4-neighbour outside it.
    padded = np.pad(m, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = m & ~interior
    ey, ex = np.nonzero(edge)
    ncol = min(nrow, n)
    for i in range(n):
        r, c = divmod(i, ncol)
        oy, ox = pad + r * (H + pad), pad + c * (W + pad)
        for y, x in zip(ey, ex):
            draw.rectangle([(ox + x) * scale, (oy + y) * scale, (ox + x + 1) * scale - 1, (oy + y + 1) * scale - 1],
                           fill=color)
    return img


def save_png(img, path):
    """Save a PIL image atomically (a unique exclusive temporary file, fsynced, renamed over ``path``: no partial
    file on failure, concurrent saves never mix); creates the folder."""
    import io

    from .fileformat import atomic_write

    path = os.fspath(path)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
    return path
