"""Square benchmark inputs content-S.png / style-S.png in OUTDIR for each size S (not committed).

With --content and --style (any photos: JPEG, PNG), each is centre-cropped to a square and
resized to SxS. Without them, the repository's own synthetic pictures are drawn at 1024 px
(deterministic: a landscape-like content with gradients, shapes and fine texture; a style of
coloured strokes over a checkerboard) and resized the same way. Per-step time does not depend on
the pictures (every convolution does the same work); time-to-quality does, a little.

Usage: prep_images.py OUTDIR [--content C --style S] SIZE [SIZE ...]
"""
import argparse
import os

import numpy as np
from PIL import Image

BASE = 1024


def synthetic_content(n=BASE):
    """Sky and hills with gradients, a sun, a house and fine grain: structure at every scale."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / (n - 1)
    ridge = 0.55 + 0.06 * np.sin(x * 11) + 0.03 * np.sin(x * 37 + 1)
    sky = np.stack([0.45 + 0.4 * y, 0.65 + 0.25 * y, 0.95 - 0.1 * y], axis=-1)
    ground = np.stack([0.15 + 0.3 * x, 0.45 + 0.4 * (y - ridge), 0.2 + 0.1 * x], axis=-1)
    img = np.where((y < ridge)[..., None], sky, ground)
    sun = (x - 0.75) ** 2 + (y - 0.2) ** 2 < 0.08 ** 2
    img[sun] = [1.0, 0.85, 0.3]
    house = (np.abs(x - 0.3) < 0.08) & (y > 0.6) & (y < 0.75)
    img[house] = [0.7, 0.25, 0.2]
    roof = (y > 0.52) & (y <= 0.6) & (np.abs(x - 0.3) < (y - 0.52) * 1.2)
    img[roof] = [0.3, 0.2, 0.2]
    img += rng.normal(0, 0.03, img.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8), "RGB")


def synthetic_style(n=BASE):
    """Swirling coloured strokes over a checkerboard: strong texture, like a painting's."""
    rng = np.random.default_rng(2)
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / (n - 1)
    angle = 6 * np.sin(3 * x) + 5 * np.cos(4 * y)
    stroke = np.sin(60 * (x * np.cos(angle) + y * np.sin(angle)))
    palette = np.array([[0.1, 0.2, 0.55], [0.95, 0.8, 0.2], [0.2, 0.45, 0.8], [0.05, 0.1, 0.3]])
    idx = np.clip(((stroke + 1) * 2).astype(int), 0, 3)
    img = palette[idx]
    checks = ((x * n // 16).astype(int) + (y * n // 16).astype(int)) % 2
    img = 0.85 * img + 0.15 * checks[..., None]
    img += rng.normal(0, 0.04, img.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8), "RGB")


def square(im, s):
    im = im.convert("RGB")
    w, h = im.size
    m = min(w, h)
    im = im.crop(((w - m) // 2, (h - m) // 2, (w - m) // 2 + m, (h - m) // 2 + m))
    return im.resize((s, s), Image.BICUBIC)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("sizes", type=int, nargs="+")
    ap.add_argument("--content", help="content photo (default: the synthetic content)")
    ap.add_argument("--style", help="style picture (default: the synthetic style)")
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    content = Image.open(a.content) if a.content else synthetic_content()
    style = Image.open(a.style) if a.style else synthetic_style()
    for s in a.sizes:
        square(content, s).save(os.path.join(a.outdir, f"content-{s}.png"))
        square(style, s).save(os.path.join(a.outdir, f"style-{s}.png"))


if __name__ == "__main__":
    main()
