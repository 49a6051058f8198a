"""An image folder (``class_name/.../image.ext``) listed and read as untrusted input.

torchvision's ``ImageFolder`` walks with every link followed and no memory of where it has been, opens a
FIFO named ``x.png`` and waits for ever, and lets PIL's errors out as tracebacks. Here the folder is
listed once, in ``ImageFolder``'s order (classes sorted, then folders and files sorted), and

* a folder reached twice (a link back up, or to a folder already read) is one ``InputError``;
* anything with an image extension that is not a regular file (a FIFO, a device, a link to nothing) is
  one ``InputError``, found while listing, before anything is read;
* a file PIL cannot read, or an image of more than ``MAX_IMAGE_PIXELS``, is one ``InputError`` naming it;
* more than ``MAX_IMAGES`` files, or more than ``limits.MAX_DATASET_BYTES`` of tensors at the resolution asked
  for, is refused before the images are read.

Links are followed, as ``ImageFolder`` follows them: a subset of a large dataset made of links to its
class folders is a common layout.
"""

from __future__ import annotations

import os
import stat
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgenas import limits
from edgenas.errors import InputError

#: the extensions torchvision's ImageFolder reads
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: more files than this are not a dataset edgenas reads into memory
MAX_IMAGES = 1_000_000
#: 8192 x 8192: larger images are refused before they are decoded (PIL warns from about 89 million)
MAX_IMAGE_PIXELS = 1 << 26

_HINT = "expected one sub-folder per class holding images"
_BAD_IMAGE = "remove the file or replace it with a valid image"


@dataclass(frozen=True)
class FolderListing:
    """The class names (sorted) and every image file with its class index, in ``ImageFolder``'s order."""

    classes: tuple[str, ...]
    files: tuple[tuple[Path, int], ...]


def list_image_folder(root: str | Path, max_images: int = MAX_IMAGES) -> FolderListing:
    """List ``root`` without reading an image; every problem is one ``InputError``."""
    root = Path(root)
    try:
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    except FileNotFoundError:
        raise InputError(f"{root}: not an image folder (no such folder)", hint=_HINT) from None
    except NotADirectoryError:
        raise InputError(f"{root}: not an image folder (a file)", hint=_HINT) from None
    except OSError as exc:
        raise InputError(f"{root}: cannot read the image folder ({exc.strerror or exc})") from None
    if not classes:
        raise InputError(f"{root}: not an image folder (no class sub-folders)", hint=_HINT)
    seen: set[tuple[int, int]] = set()
    files: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        found = _list_class(root / name, seen, max_images - len(files), max_images)
        if not found:
            raise InputError(f"{root}: not an image folder (class folder {name!r} holds no "
                             f"{', '.join(IMG_EXTENSIONS)} file)", hint=_HINT)
        files.extend((path, index) for path in found)
    return FolderListing(tuple(classes), tuple(files))


def _list_class(top: Path, seen: set[tuple[int, int]], room: int, max_images: int) -> list[Path]:
    """The image files under ``top`` (links followed, each folder once), sorted as ``ImageFolder`` does."""
    folders: list[tuple[str, list[Path]]] = []
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            key = (st.st_dev, st.st_ino)
            if key in seen:
                raise InputError(f"{folder}: a folder met twice in the image folder (a link back up, or "
                                 "two links to one folder)", hint="remove the link")
            seen.add(key)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except InputError:
            raise
        except OSError as exc:
            raise InputError(f"{folder}: cannot read this folder of the image folder "
                             f"({exc.strerror or exc})") from None
        images = []
        for entry in entries:
            path = Path(entry.path)
            if entry.name.lower().endswith(IMG_EXTENSIONS):
                _check_regular(path)
                images.append(path)
            elif _is_folder(entry):
                stack.append(path)
        folders.append((str(folder), images))
        room -= len(images)
        if room < 0:
            raise InputError(f"{top.parent}: more than {max_images:,} images",
                             hint="use a subset of the dataset (a folder of links to some of its files)")
    folders.sort(key=lambda f: f[0])
    return [path for _, images in folders for path in images]


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link
    except OSError:
        return False


def _check_regular(path: Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: a link to nothing in the image folder", hint="remove it or mend the link") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read this image ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular file (a FIFO, a device or a folder named like an image)",
                         hint="remove it from the image folder")


def check_size(n_images: int, resolution: int, root: str | Path) -> None:
    """Refuse ``n_images`` whose tensors at ``resolution`` would not fit the memory limit."""
    need = n_images * 3 * resolution * resolution * 4
    if need > limits.MAX_DATASET_BYTES:
        raise InputError(f"{root}: {n_images:,} images at {resolution}x{resolution} need "
                         f"{need / (1 << 30):.1f} GB of memory, over the {limits.MAX_DATASET_BYTES >> 30} GB limit",
                         hint="use a subset of the dataset or a lower resolution")


@contextmanager
def _opened(path: Path):
    """``path`` opened by PIL (header read, pixels not), its size checked; every failure one ``InputError``."""
    from PIL import Image

    try:  # a FIFO put there after listing must not hang
        fh = limits.open_regular(path, "image", hint="remove it from the image folder")
    except OSError as exc:
        raise InputError(f"{path}: cannot read this image ({exc.strerror or exc})") from None
    with fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
                img = Image.open(fh)
        except Image.UnidentifiedImageError:
            raise InputError(f"{path}: not an image (no format PIL reads)", hint=_BAD_IMAGE) from None
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            raise InputError(f"{path}: not a readable image ({exc})", hint=_BAD_IMAGE) from None
        with img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InputError(f"{path}: a {width}x{height} image, over the limit of {MAX_IMAGE_PIXELS:,} "
                                 "pixels", hint="resize it or remove it")
            yield img


def open_rgb(path: Path):
    """The image at ``path`` as an RGB PIL image (``ImageFolder``'s loader), or one ``InputError``."""
    with _opened(path) as img:
        try:
            return img.convert("RGB")
        except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or damaged pixel data
            raise InputError(f"{path}: not a readable image ({exc})", hint=_BAD_IMAGE) from None


def check_headers(listing: FolderListing) -> None:
    """Open every image's header (not its pixels): a file that is not an image is found before a run."""
    for path, _ in listing.files:
        with _opened(path):
            pass
