"""Which images a source names, and in which order (no torch needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from zcore_fast.embedding import IMAGE_EXTENSIONS, find_images


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_is_recursive_sorted_and_filtered(tmp_path) -> None:
    for name in [
        "b.PNG",
        "a/z.jpg",
        "a/b.jpeg",
        "c.webp",
        "d.txt",
        "e.npy",
        ".hidden.jpg",
        ".cache/x.png",
        "a/._fork.jpg",
        "f.TIFF",
        "g.bmp",
        "h.gif",
        "i.tif",
    ]:
        _touch(tmp_path / name)
    images = find_images(tmp_path)
    assert images.kind == "folder" and images.root == str(tmp_path)
    # byte order of relative paths; hidden files/folders and non-images left out
    assert images.names == [
        "a/b.jpeg",
        "a/z.jpg",
        "b.PNG",
        "c.webp",
        "f.TIFF",
        "g.bmp",
        "h.gif",
        "i.tif",
    ]
    assert all(os.path.isabs(p) for p in images.paths)
    assert set(IMAGE_EXTENSIONS) >= {".jpg", ".png", ".webp", ".bmp", ".gif", ".tiff"}


def test_list_file_keeps_its_order_and_resolves_relative_paths(tmp_path) -> None:
    _touch(tmp_path / "imgs" / "b.png")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# pool\nimgs/b.png\n\n  {tmp_path}/imgs/a.png  \nimgs/c.jpg\n")
    images = find_images(listing)
    assert images.kind == "list" and images.root is None
    assert images.paths == (
        str(tmp_path / "imgs/b.png"),
        str(tmp_path / "imgs/a.png"),
        str(tmp_path / "imgs/c.jpg"),
    )


def test_sequence_of_paths_and_fingerprint(tmp_path) -> None:
    a = find_images([tmp_path / "x.png", "y.jpg"])
    assert a.kind == "paths" and a.paths[1] == os.path.abspath("y.jpg")
    b = find_images([tmp_path / "x.png", "y.jpg"])
    c = find_images(["y.jpg", tmp_path / "x.png"])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: p / "missing", FileNotFoundError, "no such file or folder"),
        (lambda p: p, ValueError, "no images found under"),
        (lambda p: _touch(p / "one.png"), ValueError, "is an image; give the folder"),
        (lambda p: _touch(p / "l.txt", b"# nothing\n\n"), ValueError, "lists no image paths"),
        (lambda p: _touch(p / "l.bin", b"\xff\xfe\x00\x81"), ValueError, "neither a folder"),
    ],
)
def test_bad_sources_say_what_to_do(tmp_path, make, error, match) -> None:
    with pytest.raises(error, match=match):
        find_images(make(tmp_path))


def test_empty_and_bad_sequences() -> None:
    with pytest.raises(ValueError, match="list of paths is empty"):
        find_images([])
    with pytest.raises(TypeError, match=r"must be str or os\.PathLike"):
        find_images([1, 2])


def test_import_zcore_fast_does_not_import_torch() -> None:
    code = (
        "import sys, zcore_fast, zcore_fast.embedding, zcore_fast.cli; "
        "print(sorted(m for m in ('torch', 'PIL', 'open_clip', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
