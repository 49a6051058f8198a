"""Small image datasets for evaluators: scikit-learn's digits, ``.npz`` arrays, image folders.

Every loader returns float32 NCHW tensors normalised per channel (zero mean, unit std over the
dataset) and int64 labels, wrapped in a frozen ``ImageData`` record.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgenas import limits
from edgenas.limits import open_regular
from edgenas.errors import InputError
from edgenas.image_folder import check_headers, check_size, list_image_folder, open_rgb


@dataclass(frozen=True)
class ImageData:
    """Images ``x`` (float32, NCHW, normalised), labels ``y`` (int64), class count and a name."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def split(self, val_fraction: float = 0.2, seed: int = 0) -> tuple["ImageData", "ImageData"]:
        """A (train, val) split by a seeded permutation; both parts are non-empty."""
        if not 0.0 < val_fraction < 1.0:
            raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
        n = len(self)
        if n < 2:
            raise InputError(f"dataset '{self.name}' has {n} example(s); a split needs at least 2")
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
        n_val = min(n - 1, max(1, int(round(n * val_fraction))))
        val, train = perm[:n_val], perm[n_val:]
        return (ImageData(self.x[train], self.y[train], self.num_classes, f"{self.name}:train"),
                ImageData(self.x[val], self.y[val], self.num_classes, f"{self.name}:val"))

    def subset(self, n: int, seed: int = 0) -> "ImageData":
        """``n`` examples in their order, each class in proportion to its size (seeded within a class).

        Not the first ``n``: an image folder lists one class after another, so those were a class or two."""
        if n >= len(self):
            return self
        order = np.random.default_rng(seed).permutation(len(self))
        y = self.y.numpy()[order]
        rank = np.empty(len(y))  # the position of each example among its class in the seeded order
        for c in np.unique(y):
            at = np.flatnonzero(y == c)
            rank[at] = (np.arange(at.size) + 0.5) / at.size
        keep = torch.from_numpy(np.sort(order[np.argsort(rank, kind="stable")[:n]]))
        return ImageData(self.x[keep], self.y[keep], self.num_classes, self.name)

    def batch(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded random batch (without replacement; the whole set if it is smaller)."""
        idx = np.random.default_rng(seed).permutation(len(self))[:batch_size]
        idx_t = torch.from_numpy(np.sort(idx))
        return self.x[idx_t], self.y[idx_t]


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return ((x - mean) / std).contiguous()


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if resolution < 1:
        raise InputError(f"resolution must be a positive integer, got {resolution}")
    if x.shape[-2:] == (resolution, resolution):
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


def load_digits_images(resolution: int = 32, n: int | None = None, seed: int = 0,
                       channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8x8 digits, upsampled (bilinear) and replicated to ``channels``.

    ``n`` picks a seeded random subset. Returns ``(x, y)``: float32 NCHW normalised, int64.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    if n is not None:
        if n < 1:
            raise InputError(f"n must be positive, got {n}")
        idx = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
        images, labels = images[idx], labels[idx]
    if channels < 1:
        raise InputError(f"channels must be positive, got {channels}")
    x = torch.from_numpy(images).unsqueeze(1)
    x = _resize(x, resolution).repeat(1, channels, 1, 1)
    return _normalise(x), torch.from_numpy(labels)


def _to_nchw(x: np.ndarray, source: str) -> np.ndarray:
    if x.ndim == 3:  # grey-scale N,H,W
        return x[:, None]
    if x.ndim != 4:
        raise InputError(f"{source}: 'x' must be NCHW or NHWC (4-D), got shape {x.shape}")
    first, last = x.shape[1] in (1, 3, 4), x.shape[-1] in (1, 3, 4)
    if first and last:  # images 1, 3 or 4 pixels wide: the layout whose image is square, if only one is
        first, last = x.shape[2] == x.shape[3], x.shape[1] == x.shape[2]
    if last and not first:
        return np.transpose(x, (0, 3, 1, 2))
    if first and not last:
        return x
    raise InputError(f"{source}: cannot tell the channel axis of shape {x.shape}",
                     hint="store 1, 3 or 4 channels, NCHW or NHWC")


def _check_npz_member(data: Any, key: str, path: Path) -> None:
    """Refuse an array whose header declares more than ``limits.MAX_DATASET_BYTES`` (as float32), before
    it is decompressed: a 10 MB .npz of zeros can declare 10 GB."""
    names = data.zip.namelist()
    member = f"{key}.npy" if f"{key}.npy" in names else key
    with data.zip.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise InputError(f"{path}: array {key!r} is in .npy format {version[0]}.{version[1]}",
                             hint="save it with numpy.savez (format 1.0 or 2.0)")
    if dtype.kind not in "biuf":  # complex numbers, strings, dates, records: not pixels or labels
        raise InputError(f"{path}: array {key!r} holds {dtype} values", hint="store numbers (uint8 or float pixels, "
                                                                               "integer labels)")
    need = math.prod(shape) * max(dtype.itemsize, 4)
    if need > limits.MAX_DATASET_BYTES:
        raise InputError(f"{path}: array {key!r} of shape {shape} needs {need / (1 << 30):.1f} GB of memory, "
                         f"over the {limits.MAX_DATASET_BYTES >> 30} GB limit", hint="use a subset of the dataset")


def load_npz(path: str | Path, resolution: int | None = None) -> ImageData:
    """Arrays ``x`` (NCHW or NHWC, uint8 in 0..255 or float; grey or RGBA become RGB) and ``y`` (integer
    labels)."""
    path = Path(path)
    try:
        fh = open_regular(path, "dataset")  # a FIFO must not hang the command
    except FileNotFoundError:
        raise InputError(f"dataset file {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read dataset {path}: {exc.strerror or exc}") from None
    with fh:
        if not zipfile.is_zipfile(fh):
            raise InputError(f"{path}: not a .npz file (not a zip archive)", hint="save it with numpy.savez")
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as data:
                missing = [k for k in ("x", "y") if k not in data.files]
                if missing:
                    raise InputError(f"{path}: missing array(s) {', '.join(missing)}",
                                     hint=f"found {', '.join(data.files) or 'none'}; expected 'x' and 'y'")
                for key in ("x", "y"):
                    _check_npz_member(data, key, path)
                x, y = data["x"], data["y"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path}: not a readable .npz file ({exc})") from None
    x = _to_nchw(x, str(path))
    if x.shape[1] != 3:  # RGB, as an image folder's and the digits' images: grey repeated, alpha dropped
        x = np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x[:, :3]
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise InputError(f"{path}: 'y' must be 1-D with one label per image "
                         f"({len(x)} images, y shape {y.shape})")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise InputError(f"{path}: 'y' must hold non-negative integer labels, got {y.dtype}")
    if len(x) == 0:
        raise InputError(f"{path}: no images")
    with np.errstate(over="ignore", invalid="ignore"):  # 1e300 in float64 becomes inf, refused below
        xf = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    if not np.isfinite(xf).all():
        raise InputError(f"{path}: 'x' contains NaN or infinite values")
    xt = torch.from_numpy(np.ascontiguousarray(xf))
    if resolution is not None:
        xt = _resize(xt, resolution)
    return ImageData(_normalise(xt), torch.from_numpy(y.astype(np.int64)), int(y.max()) + 1, path.stem)


def load_image_folder(path: str | Path, resolution: int = 32) -> ImageData:
    """A ``class_name/image.ext`` tree, in torchvision ``ImageFolder``'s order, read as untrusted input
    (``edgenas.image_folder``: no FIFO, loop, damaged image or oversized folder gets past one error)."""
    try:
        from torchvision import transforms
    except ImportError:
        raise InputError("reading an image folder needs torchvision",
                         hint="pip install torchvision") from None
    listing = list_image_folder(path)
    files = listing.files
    check_size(len(files), resolution, path)
    tf = transforms.Compose([transforms.Resize((resolution, resolution)), transforms.ToTensor()])
    xs = [tf(open_rgb(file)) for file, _ in files]
    ys = [label for _, label in files]
    return ImageData(_normalise(torch.stack(xs)), torch.tensor(ys, dtype=torch.int64),
                     len(listing.classes), Path(path).name)


def check_dataset(spec: str | Path) -> None:
    """Refuse a dataset that will not load, before a run starts (an image folder is listed and each image's
    header read, not its pixels)."""
    if str(spec) == "digits":
        return
    path = Path(spec)
    if path.suffix == ".npz":
        load_dataset(path)
        return
    if not path.is_dir():
        load_dataset(path)  # raises: unknown dataset
    check_headers(list_image_folder(path))


def load_dataset(spec: str | Path, resolution: int = 32) -> ImageData:
    """``"digits"``, a ``.npz`` file or an image folder, at ``resolution`` x ``resolution``."""
    if str(spec) == "digits":
        x, y = load_digits_images(resolution)
        return ImageData(x, y, 10, "digits")
    path = Path(spec)
    if path.suffix == ".npz":
        return load_npz(path, resolution)
    if path.is_dir():
        return load_image_folder(path, resolution)
    raise InputError(f"unknown dataset {str(spec)!r}",
                     hint="use 'digits', a .npz file with x and y, or an image folder")
