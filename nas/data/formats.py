"""The file formats: IDX (MNIST, Fashion-MNIST), the CIFAR python pickles, image folders.

The pickles are read with a restricted unpickler that only rebuilds numpy arrays, lists,
dicts and bytes, so a tampered file cannot run code.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from nas.core.errors import DataError
from nas.data.images import ImageData, _readonly

DEFAULT_ROOT = Path("/usr/share/datasets")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                    ".ppm", ".pgm", ".pbm")
MIN_CLASSES = 2  # fewer, and accuracy is 100 % whatever the model does

_IDX_FILES = {  # role -> file stem (the published names)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX type byte -> big-endian numpy dtype (the format's table).
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {np.dtype(v).newbyteorder("=").str: k for k, v in _IDX_DTYPES.items()}

# --------------------------------------------------------------------------- IDX


def _open_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check the file's "
                        "permissions") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip data ({e}); download the file again") from None
    return raw


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian numpy array, strictly."""
    p = Path(path)
    raw = _open_maybe_gz(p)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{p}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); "
                        "the file is corrupt or of another format, download it again")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{p}: truncated IDX header; download the file again")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{p}: IDX header says {'x'.join(map(str, dims))} {dtype.name} "
                        f"({expected} bytes) but the file has {len(raw)} bytes; download it again")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.itemsize > 1 else arr


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file; gzipped when ``path`` ends in ``.gz``."""
    a = np.asarray(array)
    code = _IDX_CODES.get(a.dtype.newbyteorder("=").str)
    if code is None:
        raise DataError(f"write_idx: dtype {a.dtype} has no IDX code; use uint8, int8, int16, "
                        "int32, float32 or float64")
    if a.ndim < 1 or a.ndim > 255:
        raise DataError("write_idx: the array needs 1 to 255 dimensions")
    data = (struct.pack(">BBBB", 0, 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
            + a.astype(_IDX_DTYPES[code], copy=False).tobytes())
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(gzip.compress(data, compresslevel=1) if p.suffix == ".gz" else data)
    return p


def _find_idx(folder: Path, stem: str) -> Path | None:
    alt = stem.replace("-idx", ".idx")  # some mirrors write t10k-images.idx3-ubyte
    for d in (folder, folder / "raw", folder / "FashionMNIST" / "raw", folder / "MNIST" / "raw"):
        for name in (stem, stem + ".gz", alt, alt + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def _has_idx(folder: Path) -> bool:
    return all(_find_idx(folder, s) for s in _IDX_FILES.values())


def _idx_missing_message(name: str, folder: Path, tried: str) -> str:
    need = "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], " \
           "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
    if name == "fashion-mnist":
        how = ("install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or "
               "download the four IDX files from the data set's authors (Zalando Research's "
               "fashion-mnist repository, github.com/zalandoresearch/fashion-mnist)")
    else:
        how = "download the four IDX files of MNIST (e.g. the copies torchvision fetches)"
    title = "Fashion-MNIST" if name == "fashion-mnist" else "MNIST"
    return (f"{title} not found in {folder}{tried} (need {need}): {how} and give their folder "
            "as the data path, or set NAS_DATA_DIR")


def load_idx_folder(folder: Path, name: str, class_names: tuple[str, ...] = ()
                    ) -> tuple[ImageData, ImageData]:
    """Read the four MNIST-style IDX files of ``folder`` into (train, test)."""
    files = {role: _find_idx(folder, stem) for role, stem in _IDX_FILES.items()}
    missing = [_IDX_FILES[r] for r, f in files.items() if f is None]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}[.gz]; the folder must hold all "
                        "four IDX files")
    out = []
    for split in ("train", "test"):
        imf, lbf = files[f"{split}_images"], files[f"{split}_labels"]
        images, labels = read_idx(imf), read_idx(lbf)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise DataError(f"{imf}: expected uint8 images N x H x W, got {images.dtype} "
                            f"{'x'.join(map(str, images.shape))}; is this an image file?")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(f"{lbf}: expected uint8 labels of one dimension, got {labels.dtype} "
                            f"{'x'.join(map(str, labels.shape))}; is this a label file?")
        if len(images) != len(labels):
            raise DataError(f"{imf.name} has {len(images)} images but {lbf.name} has "
                            f"{len(labels)} labels; one of them is corrupt")
        if len(labels) and labels.max() >= 10:
            raise DataError(f"{lbf}: label {labels.max()} out of range 0..9; the file is corrupt")
        out.append(ImageData(_readonly(images[:, None]), _readonly(labels.astype(np.int64)),
                             10, f"{name}:{split}", class_names))
    return out[0], out[1]


# --------------------------------------------------------------------------- CIFAR


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: CIFAR files cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("copyreg", "_reconstructor"), ("builtins", "object")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            if module == "numpy.core.multiarray":  # the published files' name; numpy 2 moved it
                try:
                    from numpy._core import multiarray
                    return getattr(multiarray, name)
                except ImportError:  # numpy 1
                    pass
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check the file") from None
    except Exception as e:  # any unpickling failure means a corrupt or foreign file
        raise DataError(f"{path}: not a CIFAR python pickle ({type(e).__name__}: {e}); "
                        "download cifar-*-python.tar.gz again") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}; the file "
                        "is corrupt")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(f"{path}: no {key!r} entry; the file is corrupt or not CIFAR")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 N x 3072, got {data.dtype} "
                        f"{'x'.join(map(str, data.shape))}; the file is corrupt")
    if labels.ndim != 1 or len(labels) != len(data) or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images; the file is "
                        "corrupt")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in 0..{num_classes - 1}, got "
                        f"{labels.min()}..{labels.max()}; the file is corrupt")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_names(path: Path, key: str, num_classes: int) -> tuple[str, ...]:
    if not path.is_file():
        return ()
    names = _load_pickle(path).get(key)
    if not isinstance(names, list) or len(names) != num_classes:
        raise DataError(f"{path}: {key!r} must list {num_classes} class names; the file is corrupt")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _cifar_dir(folder: Path, name: str) -> Path | None:
    inner, probe, test = (("cifar-10-batches-py", "data_batch_1", "test_batch")
                          if name == "cifar10" else ("cifar-100-python", "train", "test"))
    for d in (folder, folder / inner):
        if (d / probe).is_file() and (d / test).is_file():
            return d
    return None


def load_cifar_folder(folder: Path, name: str) -> tuple[ImageData, ImageData]:
    """Read ``cifar-10-batches-py`` (``name="cifar10"``) or ``cifar-100-python``."""
    if name == "cifar10":
        num, key = 10, "labels"
        parts = [_cifar_batch(folder / f"data_batch_{i}", key, num) for i in range(1, 6)
                 if (folder / f"data_batch_{i}").is_file()]
        if len(parts) != 5:
            raise DataError(f"{folder}: need data_batch_1 .. data_batch_5, found {len(parts)}; "
                            "extract cifar-10-python.tar.gz again")
        train_x = np.concatenate([p[0] for p in parts])
        train_y = np.concatenate([p[1] for p in parts])
        test_x, test_y = _cifar_batch(folder / "test_batch", key, num)
        names = _cifar_names(folder / "batches.meta", "label_names", num)
    else:
        num, key = 100, "fine_labels"
        train_x, train_y = _cifar_batch(folder / "train", key, num)
        test_x, test_y = _cifar_batch(folder / "test", key, num)
        names = _cifar_names(folder / "meta", "fine_label_names", num)
    return (ImageData(_readonly(np.ascontiguousarray(train_x)), _readonly(train_y), num,
                      f"{name}:train", names),
            ImageData(_readonly(np.ascontiguousarray(test_x)), _readonly(test_y), num,
                      f"{name}:test", names))


def _cifar_missing_message(name: str, folder: Path | None, tried: str) -> str:
    inner = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    env = "NAS_CIFAR10_DIR" if name == "cifar10" else "NAS_CIFAR100_DIR"
    at = f" in {folder}{tried}" if folder else tried
    return (f"{name.upper().replace('CIFAR', 'CIFAR-')} not found{at} (need the folder {inner}): "
            f"download {archive} from https://www.cs.toronto.edu/~kriz/cifar.html, extract it, "
            f"and give the folder (or its parent) as the data path, or set {env}")


# --------------------------------------------------------------------------- ImageFolder


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _is_image_tree(root: Path) -> bool:
    base = root / "train" if (root / "train").is_dir() else root
    dirs = _class_dirs(base) if base.is_dir() else []
    return bool(dirs) and any(_image_files(d) for d in dirs)


def _read_images(files: list[tuple[Path, int]], size: int) -> tuple[list[np.ndarray], bool]:
    from PIL import Image, UnidentifiedImageError

    grey_modes = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
    out, all_grey = [], True
    for path, _ in files:
        try:
            with Image.open(path) as img:
                grey = img.mode in grey_modes
                img = img.convert("L" if grey else "RGB")
                if img.size != (size, size):
                    img = img.resize((size, size), Image.BILINEAR)
                out.append(np.asarray(img, dtype=np.uint8))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read the image ({e}); remove or replace it") from None
        all_grey &= grey
    return out, all_grey


def load_image_folder(root: Path, image_size: int = 32) -> tuple[ImageData, ImageData | None]:
    """Read ``root/<class>/*`` (or ``root/train`` and ``root/test``) into (train, test)."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found; pass the folder that holds one "
                        "subfolder per class (or train/ and test/)")
    train_root = root / "train" if (root / "train").is_dir() else root
    test_root = root / "test" if train_root != root and (root / "test").is_dir() else None
    classes = [d.name for d in _class_dirs(train_root)]
    if not classes:
        raise DataError(f"{train_root}: no class subfolders; arrange the images as "
                        "root/<class>/<image> (optionally under root/train and root/test)")
    if len(classes) < MIN_CLASSES:
        raise DataError(f"{train_root}: one class ({classes[0]}); a classifier needs at least "
                        f"{MIN_CLASSES} (every image would be right): add a subfolder of images "
                        "for each other class")
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, list[tuple[Path, int]]] = {}
    for split, base in (("train", train_root), ("test", test_root)):
        if base is None:
            continue
        items = []
        for d in _class_dirs(base):
            if d.name not in index:
                raise DataError(f"{d}: class {d.name!r} is not among the training classes "
                                f"({', '.join(classes)}); rename or remove the folder")
            items += [(f, index[d.name]) for f in _image_files(d)]
        if split == "train":
            empty = [c for c in classes if not _image_files(train_root / c)]
            if empty:
                raise DataError(f"{train_root}: class folder(s) without images: "
                                f"{', '.join(empty)}; add images ({', '.join(IMAGE_EXTENSIONS)}) "
                                "or remove them")
        if not items:
            raise DataError(f"{base}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
        splits[split] = items
    arrays = {s: _read_images(items, image_size) for s, items in splits.items()}
    grey = all(g for _, g in arrays.values())
    name = f"imagefolder:{root.name}"
    out: dict[str, ImageData] = {}
    for split, (imgs, _) in arrays.items():
        if grey:
            x = np.stack(imgs)[:, None]
        else:
            x = np.stack([np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a
                          for a in imgs]).transpose(0, 3, 1, 2)
        y = np.array([c for _, c in splits[split]], dtype=np.int64)
        out[split] = ImageData(_readonly(np.ascontiguousarray(x)), _readonly(y), len(classes),
                               f"{name}:{split}", tuple(classes))
    return out["train"], out.get("test")

