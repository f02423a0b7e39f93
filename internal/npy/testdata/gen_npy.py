"""Writes the arrays numpy.save itself wrote (internal/npy/testdata/*.npy).

An independent reference for npy_test.go's reader and writer. Run once with
Debian's python3-numpy:
    /usr/bin/python3 internal/npy/testdata/gen_npy.py
The Go tests only read the files it writes.
"""
import os
import numpy as np


def npy_files():
    """Arrays written by numpy.save itself, for the .npy reader's tests."""
    d = os.path.dirname(os.path.abspath(__file__))
    x = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5) / 4
    np.save(os.path.join(d, "f4_3x4.npy"), x)
    np.save(os.path.join(d, "f2_3x4.npy"), x.astype(np.float16))
    np.save(os.path.join(d, "f8_3x4.npy"), x.astype(np.float64))
    np.save(os.path.join(d, "u1_2x3.npy"), np.array([[0, 1, 255], [7, 0, 1]], dtype=np.uint8))
    np.save(os.path.join(d, "b1_4.npy"), np.array([True, False, False, True]))
    np.save(os.path.join(d, "f4_be_2.npy"), np.array([1.5, -2.25], dtype=">f4"))


if __name__ == "__main__":
    npy_files()
