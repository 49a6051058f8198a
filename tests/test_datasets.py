"""Datasets for evaluators: digits, .npz files, image folders, splits."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from edgenas.errors import InputError
from edgenas.datasets import (
    ImageData, _normalise, check_dataset, load_dataset, load_digits_images, load_image_folder, load_npz,
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
    with pytest.raises(InputError, match="channels must be positive, got 0"):
        load_digits_images(n=4, channels=0)
    with pytest.raises(InputError, match="resolution must be a positive integer, got 0"):
        load_digits_images(resolution=0, n=4)
    assert load_digits_images(resolution=1, n=5)[0].shape == (5, 3, 1, 1)  # the smallest resolution
    assert load_digits_images(resolution=8, n=1)[0].shape == (1, 3, 8, 8)  # the smallest subset
    d, yd = load_digits_images(n=4)  # the defaults: 32 x 32, seed 0, 3 channels
    e, ye = load_digits_images(32, n=4, seed=0, channels=3)
    assert d.shape == (4, 3, 32, 32) and torch.equal(d, e) and torch.equal(yd, ye)


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
    # grey (N, H, W) and RGBA become RGB, as an image folder's images do: a grey file was an internal
    # error in a 3-channel network (supernet, DARTS)
    np.savez(tmp_path / "g.npz", x=x[..., 0], y=y)
    grey = load_npz(tmp_path / "g.npz")
    assert grey.x.shape == (20, 3, 12, 12) and torch.equal(grey.x[:, 0], grey.x[:, 2])
    np.savez(tmp_path / "rgba.npz", x=np.concatenate([x, x[..., :1]], axis=-1), y=y)
    assert torch.equal(load_npz(tmp_path / "rgba.npz").x, data.x)
    # NCHW of 1 and 4 channels too: grey repeated, alpha dropped
    np.savez(tmp_path / "g1.npz", x=x[..., :1].transpose(0, 3, 1, 2), y=y)
    assert torch.equal(load_npz(tmp_path / "g1.npz").x, grey.x)
    np.savez(tmp_path / "rgba_nchw.npz", x=np.concatenate([x, x[..., :1]], axis=-1).transpose(0, 3, 1, 2), y=y)
    assert torch.equal(load_npz(tmp_path / "rgba_nchw.npz").x, data.x)


def test_npz_of_images_as_narrow_as_their_channels(tmp_path):
    """Images 3 or 4 pixels wide: both axes 1 and 3 could hold the channels. NCHW (20, 3, 4, 4) was read as
    NHWC, its pixels shuffled and a channel dropped; the square layout decides, and a tie is one error."""
    rng = np.random.default_rng(0)
    x = rng.random((20, 3, 4, 4), dtype=np.float32)
    y = rng.integers(0, 4, size=20)
    np.savez(tmp_path / "nchw.npz", x=x, y=y)
    np.savez(tmp_path / "nhwc.npz", x=x.transpose(0, 2, 3, 1), y=y)
    a, b = load_npz(tmp_path / "nchw.npz"), load_npz(tmp_path / "nhwc.npz")
    assert a.x.shape == b.x.shape == (20, 3, 4, 4) and torch.equal(a.x, b.x)
    flat = a.x[:, 0].numpy()  # channel 0 normalised over the dataset: x[:, 0]'s own pixels
    assert np.allclose(flat, (x[:, 0] - x[:, 0].mean()) / x[:, 0].std(ddof=1), atol=1e-5)
    np.savez(tmp_path / "cube.npz", x=rng.random((20, 3, 3, 3), dtype=np.float32), y=y)
    with pytest.raises(InputError, match="cannot tell the channel axis of shape"):
        load_npz(tmp_path / "cube.npz")


def test_npz_of_oblong_images_in_either_layout(tmp_path, monkeypatch):
    """10 x 14 images, NCHW and NHWC: one axis of 3 is the channels; at exactly the memory limit, read."""
    import edgenas.limits as limits

    x = np.random.default_rng(0).random((4, 3, 10, 14), dtype=np.float32)
    np.savez(tmp_path / "nchw.npz", x=x, y=np.arange(4))
    np.savez(tmp_path / "nhwc.npz", x=x.transpose(0, 2, 3, 1), y=np.arange(4))
    a, b = load_npz(tmp_path / "nchw.npz"), load_npz(tmp_path / "nhwc.npz")
    assert a.x.shape == b.x.shape == (4, 3, 10, 14) and torch.equal(a.x, b.x)
    monkeypatch.setattr(limits, "MAX_DATASET_BYTES", 4 * 3 * 10 * 14 * 4)  # x as float32
    assert len(load_npz(tmp_path / "nchw.npz")) == 4
    monkeypatch.setattr(limits, "MAX_DATASET_BYTES", 4 * 3 * 10 * 14 * 4 - 1)
    with pytest.raises(InputError, match=r"array 'x' of shape \(4, 3, 10, 14\) needs 0.0 GB"):
        load_npz(tmp_path / "nchw.npz")


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npz_members_in_each_npy_format(tmp_path, version):
    """numpy.savez writes .npy format 1.0, or 2.0 for a header over 64 KiB; 3.0 (UTF-8 field names) is refused."""
    import zipfile

    with zipfile.ZipFile(tmp_path / "v.npz", "w") as z:
        with z.open("x.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros((2, 3, 4, 4), np.float32), version=version)
        with z.open("y.npy", "w") as f:
            np.lib.format.write_array(f, np.arange(2), version=version)
    if version == (3, 0):
        with pytest.raises(InputError, match="array 'x' is in .npy format 3.0"):
            load_npz(tmp_path / "v.npz")
    else:
        assert load_npz(tmp_path / "v.npz").x.shape == (2, 3, 4, 4)


def test_resizing_interpolates_between_pixel_centres(tmp_path):
    """2 pixels 0 and 1 across become 4: the new centres sit at -0.25, 0.25, 0.75 and 1.25 old pixels, so
    0, 0.25, 0.75 and 1 (the ends held); corner-aligned sampling gave 0, 1/3, 2/3, 1."""
    np.savez(tmp_path / "two.npz", x=np.array([[[0.0, 1.0], [0.0, 1.0]]], np.float32), y=np.zeros(1, np.int64))
    row = load_npz(tmp_path / "two.npz", resolution=4).x[0, 0, 2].numpy()  # normalised: an affine map of the pixels
    assert np.allclose((row - row[0]) / (row[3] - row[0]), [0, 0.25, 0.75, 1], atol=1e-6)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 3, 8, 8))}, "missing"),
    ({"x": np.zeros((4, 8)), "y": np.zeros(4, dtype=int)}, "4-D"),
    ({"x": np.zeros((4, 3, 8, 8)), "y": np.zeros(3, dtype=int)}, "one label per image"),
    ({"x": np.zeros((4, 3, 8, 8)), "y": np.zeros(4)}, "integer"),
    ({"x": np.full((4, 3, 8, 8), "a"), "y": np.zeros(4, np.int64)}, "holds <U1 values"),  # an internal error
    ({"x": np.ones((4, 3, 8, 8), np.complex64), "y": np.zeros(4, np.int64)}, "holds complex64 values"),
    ({"x": np.full((4, 3, 8, 8), 1e300), "y": np.zeros(4, np.int64)}, "NaN or infinite"),  # no overflow warning
    ({"x": np.zeros((0, 3, 8, 8)), "y": np.zeros(0, np.int64)}, "no images"),
])
def test_npz_errors(tmp_path, arrays, message):
    import warnings

    np.savez(tmp_path / "bad.npz", **arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's casting warnings reached stderr
        with pytest.raises(InputError, match=message):
            load_npz(tmp_path / "bad.npz")


def test_an_npz_declaring_more_than_memory_is_refused_before_it_is_decompressed(tmp_path):
    """A 300 KB archive whose header declares 13.7 GB of float32 (zeros compress 1,000 to 1)."""
    import zipfile

    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": (300_000, 3, 64, 64)})
            f.write(bytes(1 << 24))
        with z.open("y.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(300_000, np.int64))
    with pytest.raises(InputError, match=r"array 'x' of shape \(300000, 3, 64, 64\) needs 13.7 GB"):
        load_npz(tmp_path / "bomb.npz")


def _save_npy(path, array):
    with open(path, "wb") as fh:
        np.save(fh, array)


@pytest.mark.parametrize("make, fragment", [
    (lambda p: _save_npy(p, np.zeros(3)), "not a zip archive"),  # a .npy file named .npz
    (lambda p: p.write_text("hello"), "not a zip archive"),
    (lambda p: os.mkfifo(p), "not a regular file"),
    (lambda p: p.mkdir(), "cannot read dataset .*d.npz: Is a directory"),
    (lambda p: None, "does not exist"),
])
def test_a_file_that_is_not_an_npz_is_one_error(tmp_path, make, fragment):
    make(tmp_path / "d.npz")
    with pytest.raises(InputError, match=fragment):
        load_dataset(tmp_path / "d.npz")
    with pytest.raises(InputError, match=fragment):
        check_dataset(tmp_path / "d.npz")  # before a run starts


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
    # without a resolution (a search task's data): 32 x 32, through either function
    assert load_dataset(str(tmp_path)).x.shape == load_image_folder(tmp_path).x.shape == (6, 3, 32, 32)
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
    for bad in (0.0, 1.0):
        with pytest.raises(InputError, match="val_fraction must be in"):
            data.split(bad)
    # both parts non-empty: 2 x 0.9 rounds to 2 and 10 x 0.01 to 0, each part keeps one
    assert [len(part) for part in ImageData(data.x[:2], data.y[:2], 10, "two").split(0.9)] == [1, 1]
    ten = ImageData(data.x[:10], data.y[:10], 10, "ten")
    assert [len(part) for part in ten.split(0.01)] == [9, 1] and [len(part) for part in ten.split(0.99)] == [1, 9]
    assert torch.equal(data.batch(32)[0], xb)  # seed 0 by default
    train, val = data.split()  # the defaults: a fifth held out, seed 0
    assert len(val) == round(1797 * 0.2) and torch.equal(val.y, data.split(0.2, seed=0)[1].y)


def test_subset_keeps_each_class_in_proportion_and_the_order():
    """Classes of 2 and 5 images: 2 of them are 2 x 2/7 and 2 x 5/7 of a class, one each; of classes of 1 and
    4 images, 2 x 1/5 rounds to none of the first."""
    x = torch.arange(7, dtype=torch.float32).reshape(7, 1, 1, 1)
    data = ImageData(x, torch.tensor([0, 0, 1, 1, 1, 1, 1]), 2, "d")
    small = ImageData(x[1:6], data.y[1:6], 2, "s")
    for seed in range(4):
        part = data.subset(2, seed=seed)
        assert part.y.tolist() == [0, 1] and part.x.flatten().tolist() == sorted(part.x.flatten().tolist())
        assert small.subset(2, seed=seed).y.tolist() == [1, 1]
        assert data.subset(4, seed=seed).y.tolist() == [0, 1, 1, 1]  # 4 x 2/7 = 1.1 and 4 x 5/7 = 2.9
    assert torch.equal(data.subset(3).x, data.subset(3, seed=0).x)  # the default seed
    assert torch.equal(data.subset(7).x, x) and torch.equal(data.subset(8).x, x)


def _folder(root, classes=("cat", "dog"), n=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size=(10, 14, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_an_image_folder_reads_as_torchvision_reads_it(tmp_path):
    """Same files in the same order, same pixels: grey, RGBA and nested images included."""
    from PIL import Image
    from torchvision import datasets, transforms

    root = _folder(tmp_path / "imgs")
    # folders in the order of their paths as text: "dog/a b" before "dog/a/b" (' ' < '/'), as ImageFolder
    for value, sub in ((7, "a/b"), (9, "a b")):
        (root / "dog" / sub).mkdir(parents=True)
        Image.fromarray(np.full((9, 13), value, np.uint8)).save(root / "dog" / sub / "grey.png")
    Image.fromarray(np.full((9, 13, 4), 200, np.uint8)).save(root / "cat" / "rgba.png")
    tf = transforms.Compose([transforms.Resize((16, 16)), transforms.ToTensor()])
    ref = datasets.ImageFolder(str(root), transform=tf)
    data = load_image_folder(root, resolution=16)
    x = torch.stack([ref[i][0] for i in range(len(ref))])
    assert len(data) == len(ref) == 9
    assert data.y.tolist() == [ref[i][1] for i in range(len(ref))]
    assert torch.equal(data.x, _normalise(x))


@pytest.mark.parametrize("plant, fragment, before_a_run", [
    (lambda d: os.mkfifo(d / "cat" / "x.png"), "not a regular file", True),
    (lambda d: (d / "cat" / "loop").symlink_to(".."), "a folder met twice", True),
    (lambda d: (d / "cat" / "x.jpg").write_bytes(b"junk"), "not an image", True),
    (lambda d: (d / "cat" / "x.png").symlink_to(d / "nothing"), "a link to nothing", True),
    (lambda d: (d / "cat" / "x.png").symlink_to(d / "cat" / "x.png"),  # a loop
     r"cannot read this image \(Too many levels of symbolic links\)", True),
    # PIL warns from 89 million pixels and refuses 179 million
    (lambda d: __import__("PIL.Image").Image.new("1", (10_000, 9_000)).save(d / "cat" / "big.png"),
     "over the limit of 67,108,864 pixels", True),
    (lambda d: __import__("PIL.Image").Image.new("1", (14_000, 13_000)).save(d / "cat" / "big.png"),
     "not a readable image", True),
    (lambda d: __import__("PIL.Image").Image.new("1", (8193, 8192)).save(d / "cat" / "big.png"),
     "over the limit of 67,108,864 pixels", True),
    (lambda d: (d / "bird").mkdir(), "class folder 'bird' holds no", True),
    # a truncated image has a valid header: found when its pixels are read
    (lambda d: (d / "cat" / "t.png").write_bytes((d / "dog" / "0.png").read_bytes()[:200]),
     "not a readable image", False),
])
def test_a_hostile_image_folder_is_one_error(tmp_path, plant, fragment, before_a_run):
    """torchvision's ImageFolder hung on the FIFO and let PIL's errors out as tracebacks."""
    import warnings

    root = _folder(tmp_path / "imgs")
    plant(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not reach stderr
        with pytest.raises(InputError, match=fragment):
            load_image_folder(root, resolution=8)
    if before_a_run:
        with pytest.raises(InputError, match=fragment):
            check_dataset(root)  # listing and headers only, before a run folder exists
    else:
        check_dataset(root)


def test_an_image_folder_too_large_for_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from PIL import Image

    import edgenas.image_folder as image_folder
    import edgenas.limits as limits

    root = _folder(tmp_path / "imgs")
    with pytest.raises(InputError, match="more than 5 images"):
        image_folder.list_image_folder(root, max_images=5)
    assert len(image_folder.list_image_folder(root, max_images=6).files) == 6  # as many as allowed
    monkeypatch.setattr(limits, "MAX_DATASET_BYTES", 6 * 3 * 16 * 16 * 4 - 1)
    assert len(load_image_folder(root, resolution=15)) == 6
    with pytest.raises(InputError, match="need 0.0 GB of memory"):
        load_image_folder(root, resolution=16)
    monkeypatch.setattr(limits, "MAX_DATASET_BYTES", 6 * 3 * 16 * 16 * 4)  # the limit itself fits
    assert len(load_image_folder(root, resolution=16)) == 6
    monkeypatch.undo()
    with pytest.raises(InputError, match="r: 10,000,000 images at 64x64 need 457.8 GB of memory, over the 4 GB limit"):
        image_folder.check_size(10_000_000, 64, "r")  # 10 million x 3 x 64 x 64 x 4 bytes
    Image.new("1", (8192, 8192)).save(root / "cat" / "big.png")  # as many pixels as allowed: a header to read
    check_dataset(root)
    (root / "dog" / "loop").symlink_to(root / "dog" / "loop")  # a link to itself, not an image: skipped
    assert len(image_folder.list_image_folder(root).files) == 7


def test_an_image_removed_after_the_listing_is_one_error(tmp_path):
    from edgenas.image_folder import check_headers, list_image_folder, open_rgb

    listing = list_image_folder(_folder(tmp_path / "imgs"))
    (tmp_path / "imgs" / "dog" / "1.png").unlink()
    with pytest.raises(InputError, match=r"1.png: cannot read this image \(No such file or directory\)"):
        check_headers(listing)
    with pytest.raises(InputError, match=r"1.png: cannot read this image \(No such file or directory\)"):
        open_rgb(tmp_path / "imgs" / "dog" / "1.png")


def test_a_folder_nested_past_the_longest_path_is_one_error(tmp_path):
    """Folders nested deeper than a path can name (PATH_MAX, 4096 bytes) cannot be read by their path."""
    root = _folder(tmp_path / "imgs")
    fd = os.open(root / "cat", os.O_RDONLY)
    for _ in range(20):  # 20 x 251 bytes
        os.mkdir("d" * 250, dir_fd=fd)
        fd, old = os.open("d" * 250, os.O_RDONLY, dir_fd=fd), fd
        os.close(old)
    os.close(fd)
    for load in (load_image_folder, check_dataset):
        with pytest.raises(InputError, match=r"cannot read this folder of the image folder \(File name too long\)"):
            load(root)


def test_listing_what_is_not_a_folder_is_one_error(tmp_path):
    from edgenas.image_folder import list_image_folder

    (tmp_path / "file").write_text("x")
    for path, fragment in ((tmp_path / "missing", "no such folder"), (tmp_path / "file", "a file"),
                           (tmp_path / ("x" * 300), r"cannot read the image folder \(File name too long\)")):
        with pytest.raises(InputError, match=fragment):
            list_image_folder(path)


@pytest.mark.parametrize("plant", [lambda d: None, lambda d: (d / "a.png").write_bytes(b"")])
def test_a_folder_without_class_folders_is_one_error(tmp_path, plant):
    """No class folder (an empty folder, or images with no class folder around them): one error, not an empty
    listing that torch.stack refuses with an internal error."""
    plant(tmp_path)
    for load in (load_image_folder, check_dataset):
        with pytest.raises(InputError, match="not an image folder \\(no class sub-folders\\)"):
            load(tmp_path)


def test_an_npz_whose_image_data_is_damaged_is_one_error(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4), y=np.array([0, 1]))
    raw = bytearray((tmp_path / "d.npz").read_bytes())
    at = raw.index(bytes(range(16, 32)))      # the first pixels' bytes: the header is whole, the CRC no longer holds
    raw[at] ^= 0xFF
    (tmp_path / "d.npz").write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"d.npz: not a readable .npz file \(Bad CRC-32"):
        load_npz(tmp_path / "d.npz")
