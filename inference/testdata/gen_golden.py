"""Writes the preprocessing golden files (inference/testdata/golden/*.npy).

An independent reference for preprocess_test.go: NumPy for the modality LUT,
VOI and percentiles, Pillow's float ("F") bicubic resize for the antialiased
resampling. Run once with Debian's python3-numpy and python3-pil:
    /usr/bin/python3 inference/testdata/gen_golden.py
The Go tests only read the files it writes.
"""
import os
import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "golden")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def window_linear(x, c, w):
    y = (x - (c - 0.5)) / (w - 1) + 0.5
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, y)
    y = np.where(x > c - 0.5 + (w - 1) / 2, 1.0, y)
    return y


def reference(stored, slope, intercept, voi, mono1, res, patch):
    x = stored.astype(np.float64) * slope + intercept
    if voi[0] == "window":
        g = window_linear(x, voi[1], voi[2])
    else:
        lo, hi = np.percentile(x, [voi[1], voi[2]])
        g = np.clip((x - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(x)
    if mono1:
        g = 1 - g
    rows, cols = g.shape
    if rows <= cols:
        rr, rc = res, res * cols // rows
    else:
        rr, rc = res * rows // cols, res
    img = Image.fromarray(g.astype(np.float32), mode="F").resize((rc, rr), Image.BICUBIC)
    r = np.asarray(img, dtype=np.float32)
    r = r[: (rr // patch) * patch, : (rc // patch) * patch]
    t = (r[None, :, :] - MEAN[:, None, None]) / STD[:, None, None]
    return g.astype(np.float32), t.astype(np.float32)


def case(name, stored, slope, intercept, voi, mono1, res, patch):
    grey, tensor = reference(stored, slope, intercept, voi, mono1, res, patch)
    np.save(os.path.join(OUT, name + "_stored.npy"), stored.astype(np.float32))
    np.save(os.path.join(OUT, name + "_grey.npy"), grey)
    np.save(os.path.join(OUT, name + "_tensor.npy"), tensor)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[0:37, 0:53]
    # CT-like signed values with rescale, a fixed window, odd size, downscale to 28.
    ct = (np.sin(yy / 5.0) * 600 + np.cos(xx / 7.0) * 400 + rng.normal(0, 50, yy.shape)).round().astype(np.int32)
    case("ct_window", ct, 1.0, -24.0, ("window", 40.0, 400.0), False, 28, 14)
    # MR-like unsigned values, percentile VOI, MONOCHROME1, slope 2.5, taller than wide, upscale to 56.
    yy, xx = np.mgrid[0:45, 0:30]
    mr = (np.abs(rng.normal(300, 120, yy.shape)) + 5 * yy).round().astype(np.int32)
    case("mr_percentile_mono1", mr, 2.5, 10.0, ("percentile", 0.5, 99.5), True, 56, 14)
    # Negative slope, percentile, downscale by more than 2 (wide antialiasing support).
    yy, xx = np.mgrid[0:64, 0:100]
    neg = ((yy * 3 + xx * 2) % 97 + rng.integers(0, 20, yy.shape)).astype(np.int32)
    case("neg_slope_percentile", neg, -0.5, 100.0, ("percentile", 0.5, 99.5), False, 28, 14)


if __name__ == "__main__":
    main()
