"""Square benchmark inputs: centre-crop a content and a style image and resize them to SxS
for each size S given, as PNGs content-S.png / style-S.png in OUTDIR (not committed).

Usage: prep_images.py OUTDIR CONTENT STYLE S [S ...]
"""
import os
import sys

from PIL import Image


def square(path, s):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    m = min(w, h)
    im = im.crop(((w - m) // 2, (h - m) // 2, (w - m) // 2 + m, (h - m) // 2 + m))
    return im.resize((s, s), Image.BICUBIC)


def main():
    out, content, style, sizes = sys.argv[1], sys.argv[2], sys.argv[3], [int(v) for v in sys.argv[4:]]
    os.makedirs(out, exist_ok=True)
    for s in sizes:
        square(content, s).save(os.path.join(out, f"content-{s}.png"))
        square(style, s).save(os.path.join(out, f"style-{s}.png"))


if __name__ == "__main__":
    main()
