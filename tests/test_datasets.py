"""Datasets for evaluators: digits, .npz files, image folders, splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgenas.errors import InputError
from edgenas.datasets import (
    ImageData, load_dataset, load_digits_images, load_image_folder, load_npz,
)


def test_digits_shape_dtype_normalised():
    x, y = load_digits_images(resolution=32)
    assert x.shape == (1797, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    assert torch.equal(x[:, 0], x[:, 2])  # replicated grey channel


def test_digits_subset_is_seeded():
    a, ya = load_digits_images(resolution=16, n=50, seed=1, channels=1)
    b, yb = load_digits_images(resolution=16, n=50, seed=1, channels=1)
    c, _ = load_digits_images(resolution=16, n=50, seed=2, channels=1)
    assert a.shape == (50, 1, 16, 16)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, c)
    with pytest.raises(InputError):
        load_digits_images(n=0)


def test_npz_nhwc_uint8_and_nchw_float(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 12, 12, 3), dtype=np.uint8)
    y = rng.integers(0, 4, size=20)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    data = load_npz(tmp_path / "a.npz")
    assert data.x.shape == (20, 3, 12, 12) and data.num_classes == int(y.max()) + 1
    assert torch.equal(data.y, torch.from_numpy(y.astype(np.int64)))
    # NHWC -> NCHW keeps pixel values: channel 1 of image 0 is x[0, :, :, 1] after normalising
    raw = x[..., 1].astype(np.float32) / 255
    expect = (raw[0] - raw.mean()) / raw.std(ddof=1)
    assert np.allclose(data.x[0, 1].numpy(), expect, atol=1e-4)
    np.savez(tmp_path / "b.npz", x=x.transpose(0, 3, 1, 2).astype(np.float32), y=y)
    assert load_dataset(tmp_path / "b.npz", resolution=8).x.shape == (20, 3, 8, 8)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 3, 8, 8))}, "missing"),
    ({"x": np.zeros((4, 8)), "y": np.zeros(4, dtype=int)}, "4-D"),
    ({"x": np.zeros((4, 3, 8, 8)), "y": np.zeros(3, dtype=int)}, "one label per image"),
    ({"x": np.zeros((4, 3, 8, 8)), "y": np.zeros(4)}, "integer"),
])
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=message):
        load_npz(tmp_path / "bad.npz")


def test_image_folder_and_dispatch(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            img = rng.integers(0, 256, size=(10, 14, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / cls / f"{i}.png")
    data = load_image_folder(tmp_path, resolution=16)
    assert data.x.shape == (6, 3, 16, 16) and data.num_classes == 2
    assert data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert load_dataset(str(tmp_path), resolution=8).x.shape == (6, 3, 8, 8)
    with pytest.raises(InputError):
        load_dataset(tmp_path / "nothing-here")
    with pytest.raises(InputError):
        load_dataset(tmp_path / "missing.npz")


def test_split_and_batch_are_seeded_and_disjoint():
    data = load_dataset("digits", resolution=8)
    assert data.num_classes == 10 and len(data) == 1797
    train, val = data.split(0.25, seed=3)
    assert len(train) + len(val) == len(data) and len(val) == round(1797 * 0.25)
    train2, val2 = data.split(0.25, seed=3)
    assert torch.equal(val.x, val2.x) and torch.equal(train.y, train2.y)
    # disjoint: no validation image equals a training image index-wise (images are distinct rows)
    flat_t = {tuple(r) for r in train.x.reshape(len(train), -1)[:, ::7].tolist()}
    assert sum(tuple(r) in flat_t for r in val.x.reshape(len(val), -1)[:, ::7].tolist()) < len(val) * 0.05
    xb, yb = data.batch(32, seed=0)
    assert xb.shape == (32, 3, 8, 8) and torch.equal(xb, data.batch(32, seed=0)[0])
    with pytest.raises(InputError):
        data.split(1.5)
    tiny = ImageData(data.x[:1], data.y[:1], 10, "tiny")
    with pytest.raises(InputError):
        tiny.split()
