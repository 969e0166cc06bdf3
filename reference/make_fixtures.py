"""Deterministic test fixtures for the nst engine's parity tests.

Writes into reference/testdata/ (or --out-dir):

- vgg19-narrow.pth / vgg19-narrow-legacy.pth: a state_dict with exactly torchvision's vgg19
  `features` layout and key names (features.0.weight ... features.34.bias), but channel widths
  4, 8, 16, 16, 16 per block instead of 64, 128, 256, 512, 512, initialised like torchvision's
  VGG (kaiming_normal_ fan_out/relu) plus a small deterministic bias, and a tiny
  classifier.0.weight/bias that a features loader must ignore. Saved with torch.save in the
  default zip format and in the legacy (pre-1.6) format.
- content.png, style.png: 64x64 RGB images (content: smooth gradients and shapes; style:
  high-frequency coloured stripes and checks).

Run with the reference venv: .venv-ref/bin/python reference/make_fixtures.py
"""

import argparse
import os
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

# torchvision's VGG19 configuration "E" with every width divided down: 64->4, 128->8, 256->16,
# 512->16. Pools ("M") stay at torchvision's positions, so module indices are unchanged.
WIDTHS = {64: 4, 128: 8, 256: 16, 512: 16}
NARROW_CFG = [v if v == "M" else WIDTHS[v] for v in cfgs["E"]]


class NarrowVGG19(nn.Module):
    """A module whose state_dict() names come out as torchvision's VGG19 names."""

    def __init__(self):
        super().__init__()
        self.features = make_layers(NARROW_CFG)
        # A tiny stand-in for VGG's classifier: its keys must be ignored by a features loader.
        self.classifier = nn.Sequential(nn.Linear(8, 4))
        for m in self.modules():
            # torchvision.models.VGG's initialisation for convs and linears.
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
        with torch.no_grad():
            # Non-zero biases so the engine's bias path is exercised.
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.bias.normal_(0, 0.01)


def content_image():
    """Smooth colour gradients with a disc, a rectangle and a triangle."""
    n = 64
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / (n - 1)
    img = np.stack([0.15 + 0.7 * x, 0.2 + 0.6 * y, 0.8 - 0.5 * (x + y) / 2], axis=-1)
    disc = (x - 0.32) ** 2 + (y - 0.35) ** 2 < 0.17**2
    img[disc] = (0.95, 0.85, 0.2)
    rect = (x > 0.55) & (x < 0.88) & (y > 0.15) & (y < 0.45)
    img[rect] = (0.1, 0.35, 0.75)
    tri = (y > 0.6) & (y < 0.92) & (np.abs(x - 0.6) < (y - 0.6) * 0.9)
    img[tri] = (0.8, 0.15, 0.25)
    return img


def style_image(rng):
    """High-frequency diagonal coloured stripes over a checkerboard, with a little noise."""
    n = 64
    y, x = np.mgrid[0:n, 0:n]
    stripes = ((x + y) // 3) % 3
    palette = np.array([(0.9, 0.2, 0.1), (0.1, 0.6, 0.9), (0.95, 0.9, 0.2)])
    img = palette[stripes]
    checks = ((x // 4) + (y // 4)) % 2 == 0
    img[checks] *= 0.55
    img += rng.normal(0, 0.04, img.shape)
    return img


def save_checkpoint(state, path, **kwargs):
    """torch.save unless path already holds the same tensors.

    The legacy format pickles storage keys derived from memory addresses, so its bytes differ
    run to run although the tensors do not; skipping equal files keeps regeneration a no-op.
    """
    if os.path.exists(path):
        old = torch.load(path, map_location="cpu")
        if list(old) == list(state) and all(
            old[k].dtype == v.dtype and old[k].shape == v.shape and torch.equal(old[k], v)
            for k, v in state.items()
        ):
            return
    torch.save(state, path, **kwargs)


def save_png(img, path):
    data = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    Image.fromarray(data, "RGB").save(path, optimize=True)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=os.path.join(here, "testdata"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    state = NarrowVGG19().state_dict()
    assert isinstance(state, OrderedDict)
    conv_idx = [k for k in state if k.startswith("features.") and k.endswith(".weight")]
    assert [int(k.split(".")[1]) for k in conv_idx] == [
        0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34
    ], conv_idx
    save_checkpoint(state, os.path.join(args.out_dir, "vgg19-narrow.pth"))
    save_checkpoint(
        state,
        os.path.join(args.out_dir, "vgg19-narrow-legacy.pth"),
        _use_new_zipfile_serialization=False,
    )

    save_png(content_image(), os.path.join(args.out_dir, "content.png"))
    save_png(style_image(rng), os.path.join(args.out_dir, "style.png"))

    for name in sorted(os.listdir(args.out_dir)):
        path = os.path.join(args.out_dir, name)
        print(f"{os.path.getsize(path):8d}  {path}")


if __name__ == "__main__":
    main()
