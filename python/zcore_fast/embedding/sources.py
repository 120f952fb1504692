"""Which images to embed, in which order: a folder (recursive), a text file
listing paths, or a sequence of paths. Row order must never depend on the
file system's listing order, or a resumed run would write rows elsewhere."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]
#: What `embed` accepts as its source.
Source = Union[PathLike, Sequence[PathLike]]

#: File name extensions taken as images when a folder is scanned (any case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageList:
    """The images of a source, in row order.

    `paths` are absolute. `root` is the scanned folder (None for a list), and
    `names` are the paths as the manifest records them: relative to `root`
    for a folder, absolute otherwise.
    """

    paths: tuple[str, ...]
    root: str | None
    kind: str  # "folder", "list" or "paths"
    origin: str  # the folder or list file as given, or "(paths)"

    @property
    def names(self) -> list[str]:
        """Paths as recorded in the manifest (relative to `root` when set)."""
        if self.root is None:
            return list(self.paths)
        cut = len(self.root.rstrip("/")) + 1
        return [p[cut:] for p in self.paths]

    def fingerprint(self) -> str:
        """sha256 of the ordered absolute paths: what a resumed run must match."""
        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(path.encode("utf-8", "surrogateescape"))
            digest.update(b"\0")
        return digest.hexdigest()


def find_images(source: Source) -> ImageList:
    """Lists the images of `source` in a fixed, reproducible order.

    - A folder: every file below it whose extension is in `IMAGE_EXTENSIONS`,
      recursively, sorted by relative path (byte order, so the same on every
      platform). Hidden files and folders (names starting with '.') are left
      out: they are usually metadata such as macOS '._x.jpg' forks.
    - A text file: one path a line, kept in the file's order (it is the row
      order the user chose, e.g. to match a labels file); blank lines and lines
      starting with '#' are ignored; relative paths are relative to the file.
    - A sequence of paths: taken in the given order.

    Raises FileNotFoundError for a missing source and ValueError when no image
    is found.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{source}: no such file or folder; check the path")
        if path.is_dir():
            return _scan_folder(path, os.fspath(source))
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            raise ValueError(
                f"{source} is an image; give the folder that holds the images or a text file "
                "listing their paths, one a line"
            )
        return _read_list(path, os.fspath(source))
    items = list(source)
    if not items:
        raise ValueError("no images given: the list of paths is empty")
    bad = [p for p in items if not isinstance(p, (str, os.PathLike))]
    if bad:
        raise TypeError(
            f"image paths must be str or os.PathLike, got {type(bad[0]).__name__}; pass a folder, "
            "a list file or a sequence of paths"
        )
    paths = tuple(os.path.abspath(os.fspath(p)) for p in items)
    return ImageList(paths=paths, root=None, kind="paths", origin="(paths)")


def _scan_folder(folder: Path, origin: str) -> ImageList:
    root = os.path.abspath(folder)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Prune hidden folders in place so os.walk never descends into them.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.join(dirpath, name))
    if not found:
        raise ValueError(
            f"no images found under {origin} (looked recursively for "
            f"{', '.join(IMAGE_EXTENSIONS)}); check the folder, or pass a text file that "
            "lists image paths"
        )
    # Sort on the relative path as bytes: os.walk's order is file-system dependent.
    cut = len(root.rstrip("/")) + 1
    found.sort(key=lambda p: p[cut:].replace(os.sep, "/").encode("utf-8", "surrogateescape"))
    return ImageList(paths=tuple(found), root=root, kind="folder", origin=origin)


def _read_list(list_file: Path, origin: str) -> ImageList:
    try:
        text = list_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"{origin} is neither a folder nor a UTF-8 text file listing image paths"
        ) from None
    base = list_file.resolve().parent
    paths = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            paths.append(os.path.normpath(os.path.join(base, os.path.expanduser(entry))))
    if not paths:
        raise ValueError(f"{origin} lists no image paths (one path a line; '#' starts a comment)")
    return ImageList(paths=tuple(paths), root=None, kind="list", origin=origin)
