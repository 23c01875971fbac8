"""Image data sets for proxy training, as plain uint8 numpy arrays (torch-free).

Every loader returns :class:`DataSplits`: ``train`` and ``val`` come from the data set's
*training* images (the validation images are held out, seeded and stratified by class), and
``test`` is the data set's own test split, which the search never looks at. Images are
``uint8`` arrays of shape ``N x C x H x W``; labels are ``int64``. The arrays a loader makes
are read-only: they are shared between children (through Ray's object store, which is
read-only too), so consumers copy what they need per batch.

Sources (``load_splits(source, path=...)``):

``fashion-mnist``, ``mnist``
    The four IDX files (``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``,
    gzipped or not). Folder: ``path``, else ``$NAS_FASHION_MNIST_DIR`` / ``$NAS_MNIST_DIR``,
    else ``$NAS_DATA_DIR`` (or its ``fashion-mnist`` / ``mnist`` subfolder), else
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``) or
    ``/usr/share/datasets/mnist``.
``cifar10``, ``cifar100``
    The published python-pickle folders ``cifar-10-batches-py`` / ``cifar-100-python``
    (``path`` may be that folder or its parent; else ``$NAS_CIFAR10_DIR`` /
    ``$NAS_CIFAR100_DIR``, else ``$NAS_DATA_DIR``). CIFAR-100 uses the 100 fine labels.
``imagefolder``
    ``root/<class>/<image files>``, or ``root/train/<class>/...`` with an optional
    ``root/test/<class>/...``. Read with PIL, resized to ``image_size`` x ``image_size``
    (default 32; the aspect ratio is not kept), grey (``L``) when every image is grey, else RGB.
a directory
    ``source`` may itself be a folder; its format is detected from the files in it.

The pickles are read with a restricted unpickler that only rebuilds numpy arrays, lists,
dicts and bytes, so a tampered file cannot run code.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nas.errors import DataError

DEFAULT_ROOT = Path("/usr/share/datasets")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(i) for i in range(10))
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                    ".ppm", ".pgm", ".pbm")
SOURCES = ("fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder")

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


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ImageData:
    """One split: ``images`` (uint8, N x C x H x W, square) and ``labels`` (int64, N)."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        im, lb = self.images, self.labels
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 4:
            raise DataError(f"{self.name}: images must be a uint8 array N x C x H x W, got "
                            f"{getattr(im, 'dtype', type(im).__name__)} "
                            f"{getattr(im, 'shape', '')}; convert them with np.uint8")
        if im.shape[2] != im.shape[3]:
            raise DataError(f"{self.name}: images are {im.shape[2]}x{im.shape[3]}; only square "
                            "images are supported, resize them (image_size=...)")
        if not isinstance(lb, np.ndarray) or lb.dtype != np.int64 or lb.shape != (im.shape[0],):
            raise DataError(f"{self.name}: labels must be an int64 array of length "
                            f"{im.shape[0]}, got {getattr(lb, 'dtype', type(lb).__name__)} "
                            f"{getattr(lb, 'shape', '')}")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise DataError(f"{self.name}: num_classes must be a positive integer, got "
                            f"{self.num_classes!r}")
        if len(lb) and (lb.min() < 0 or lb.max() >= self.num_classes):
            raise DataError(f"{self.name}: labels must lie in [0, {self.num_classes}), got "
                            f"[{lb.min()}, {lb.max()}]; the label file is corrupt or "
                            "num_classes is wrong")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise DataError(f"{self.name}: {len(self.class_names)} class names for "
                            f"{self.num_classes} classes")
        if not isinstance(self.class_names, tuple):
            object.__setattr__(self, "class_names", tuple(self.class_names))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the (square) images in pixels."""
        return int(self.images.shape[2])

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "ImageData":
        """A new split holding copies of the images at ``indices`` (read-only)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1:
            raise DataError(f"{self.name}: subset indices must be one-dimensional")
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DataError(f"{self.name}: subset index out of range for {len(self)} images")
        return ImageData(_readonly(self.images[idx]), _readonly(self.labels[idx]),
                         self.num_classes, name or self.name, self.class_names)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation of the pixels, in [0, 1] units."""
        return channel_stats(self.images)


@dataclass(frozen=True)
class DataSplits:
    """``train`` and ``val`` (held out from the training images) and the data set's ``test``."""

    train: ImageData
    val: ImageData
    test: ImageData | None = None

    def __post_init__(self) -> None:
        parts = [p for p in (self.train, self.val, self.test) if p is not None]
        shapes = {(p.in_channels, p.image_size, p.num_classes) for p in parts}
        if len(shapes) != 1:
            raise DataError("train, val and test must share channels, image size and classes; "
                            f"got {sorted(shapes)}")

    @property
    def name(self) -> str:
        return self.train.name.rsplit(":", 1)[0]

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def in_channels(self) -> int:
        return self.train.in_channels

    @property
    def image_size(self) -> int:
        return self.train.image_size

    def describe(self) -> dict[str, Any]:
        """Plain-data summary for run records."""
        return {"name": self.name, "num_classes": self.num_classes,
                "in_channels": self.in_channels, "image_size": self.image_size,
                "train": len(self.train), "val": len(self.val),
                "test": None if self.test is None else len(self.test)}


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...],
                                                                  tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``N x C x H x W`` images, scaled to [0, 1].

    Works in chunks so that no float copy of the whole set is made.
    """
    n, c = images.shape[:2]
    if n == 0:
        raise DataError("channel_stats: no images")
    s = np.zeros(c, np.float64)
    s2 = np.zeros(c, np.float64)
    for i in range(0, n, chunk):
        x = images[i:i + chunk].reshape(min(chunk, n - i), c, -1).astype(np.float32)
        s += x.sum(axis=(0, 2), dtype=np.float64)
        s2 += np.square(x).sum(axis=(0, 2), dtype=np.float64)
    count = n * images.shape[2] * images.shape[3]
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))
    return tuple(float(m) / 255 for m in mean), tuple(max(float(v) / 255, 1e-3) for v in std)


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
    return (f"{title} not found in {folder}{tried} (need {need}): {how} and pass --data DIR "
            "or set NAS_DATA_DIR")


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
            f"and pass --data DIR (the folder or its parent) or set {env}")


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


# --------------------------------------------------------------------------- splitting


def split_counts(labels: np.ndarray, num_classes: int, val_count: int) -> np.ndarray:
    """Validation images per class, proportional to the class sizes (largest remainder)."""
    counts = np.bincount(labels, minlength=num_classes)
    want = counts * (val_count / max(len(labels), 1))
    per = np.floor(want).astype(np.int64)
    order = np.argsort(-(want - per), kind="stable")
    for c in order[: val_count - int(per.sum())]:
        per[c] += 1
    return np.minimum(per, counts)


def holdout_split(data: ImageData, val_size: int | float, seed: int = 0
                  ) -> tuple[ImageData, ImageData]:
    """Split ``data`` into (train, val), seeded and stratified by class; disjoint."""
    n = len(data)
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float, np.integer)):
        raise DataError(f"val_size must be a count or a fraction, got {val_size!r}")
    if isinstance(val_size, float):
        if not 0.0 < val_size < 1.0:
            raise DataError(f"val_size {val_size!r} as a fraction must lie in (0, 1); "
                            "use an integer for a count")
        count = max(1, int(round(val_size * n)))
    else:
        count = int(val_size)
    if not 1 <= count < n:
        raise DataError(f"val_size {val_size!r}: need 1 <= validation images < {n} training "
                        "images; choose a smaller validation set")
    rng = np.random.default_rng(seed)
    per = split_counts(data.labels, data.num_classes, count)
    is_val = np.zeros(n, dtype=bool)
    for c in range(data.num_classes):
        members = np.flatnonzero(data.labels == c)
        is_val[rng.permutation(members)[: per[c]]] = True
    base = data.name.rsplit(":", 1)[0]
    return (data.subset(np.flatnonzero(~is_val), f"{base}:train"),
            data.subset(np.flatnonzero(is_val), f"{base}:val"))


# --------------------------------------------------------------------------- entry point


def _resize_all(data: ImageData, size: int) -> ImageData:
    if data.image_size == size:
        return data
    from PIL import Image

    n, c = len(data), data.in_channels
    out = np.empty((n, c, size, size), dtype=np.uint8)
    for i in range(n):
        for ch in range(c):
            img = Image.fromarray(data.images[i, ch])
            out[i, ch] = np.asarray(img.resize((size, size), Image.BILINEAR))
    return ImageData(_readonly(out), data.labels, data.num_classes, data.name, data.class_names)


def _env_dir(*names: str) -> Path | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return Path(v).expanduser()
    return None


def _idx_folder(name: str, path: str | None) -> Path:
    sub = name
    per = "NAS_FASHION_MNIST_DIR" if name == "fashion-mnist" else "NAS_MNIST_DIR"
    if path is not None:
        folder, tried = Path(path).expanduser(), ""
    elif _env_dir(per):
        folder, tried = _env_dir(per), f" (from ${per})"
    elif _env_dir("NAS_DATA_DIR"):
        base = _env_dir("NAS_DATA_DIR")
        folder = base if _has_idx(base) else base / sub
        tried = " (from $NAS_DATA_DIR)"
    else:
        folder, tried = DEFAULT_ROOT / sub, ""
    if not _has_idx(folder):
        if folder.is_dir() and any(_find_idx(folder, s) for s in _IDX_FILES.values()):
            load_idx_folder(folder, name)  # names exactly which file is missing
        raise DataError(_idx_missing_message(name, folder, tried))
    return folder


def _cifar_folder(name: str, path: str | None) -> Path:
    per = "NAS_CIFAR10_DIR" if name == "cifar10" else "NAS_CIFAR100_DIR"
    if path is not None:
        folder, tried = Path(path).expanduser(), ""
    elif _env_dir(per):
        folder, tried = _env_dir(per), f" (from ${per})"
    elif _env_dir("NAS_DATA_DIR"):
        folder, tried = _env_dir("NAS_DATA_DIR"), " (from $NAS_DATA_DIR)"
    else:
        raise DataError(_cifar_missing_message(name, None, " (no --data DIR given)"))
    found = _cifar_dir(folder, name)
    if found is None:
        raise DataError(_cifar_missing_message(name, folder, tried))
    return found


def detect_format(folder: str | os.PathLike[str]) -> str:
    """Which source a folder holds: ``idx``, ``cifar10``, ``cifar100`` or ``imagefolder``."""
    p = Path(folder)
    if not p.is_dir():
        raise DataError(f"{p}: not a directory; pass a data folder or one of {', '.join(SOURCES)}")
    if _has_idx(p):
        return "idx"
    if _cifar_dir(p, "cifar10"):
        return "cifar10"
    if _cifar_dir(p, "cifar100"):
        return "cifar100"
    if _is_image_tree(p):
        return "imagefolder"
    raise DataError(f"{p}: cannot tell the data format (expected the four MNIST-style IDX files, "
                    "cifar-10-batches-py, cifar-100-python, or one subfolder of images per class)")


def load_splits(source: str = "fashion-mnist", path: str | None = None,
                val_size: int | float = 5000, seed: int = 0,
                image_size: int | None = None) -> DataSplits:
    """Load a data set and hold ``val_size`` of its training images out for validation.

    ``val_size`` is a count (int) or a fraction of the training images (float in (0, 1)).
    ``image_size`` resizes every image to that square size at load time (default: native
    size; 32 for ``imagefolder``). The split is seeded and stratified by class, and the data
    set's test split is returned untouched as ``test`` (None when an image folder has none).
    """
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"source must be a name or a folder, got {source!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 4):
        raise DataError(f"image_size must be an integer >= 4 (pixels), got {image_size!r}")
    key = str(source).lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100",
           "image-folder": "imagefolder"}.get(key, key)
    if key not in SOURCES:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataError(f"unknown data source {source!r}: use one of {', '.join(SOURCES)} "
                            "or the path of a data folder")
        fmt = detect_format(folder)
        if fmt == "idx":
            fashion = "fashion" in str(folder).lower()
            train, test = load_idx_folder(folder, "fashion-mnist" if fashion else folder.name,
                                          FASHION_MNIST_CLASSES if fashion else ())
        elif fmt in ("cifar10", "cifar100"):
            train, test = load_cifar_folder(_cifar_dir(folder, fmt), fmt)
        else:
            train, test = load_image_folder(folder, image_size or 32)
    elif key in ("fashion-mnist", "mnist"):
        names = FASHION_MNIST_CLASSES if key == "fashion-mnist" else MNIST_CLASSES
        train, test = load_idx_folder(_idx_folder(key, path), key, names)
    elif key in ("cifar10", "cifar100"):
        train, test = load_cifar_folder(_cifar_folder(key, path), key)
    else:
        root = path or _env_dir("NAS_IMAGEFOLDER_DIR") or _env_dir("NAS_DATA_DIR")
        if root is None:
            raise DataError("imagefolder needs a folder: pass --data DIR (root/<class>/<images>, "
                            "optionally under root/train and root/test)")
        train, test = load_image_folder(Path(root).expanduser(), image_size or 32)
    if image_size is not None:
        train = _resize_all(train, image_size)
        test = _resize_all(test, image_size) if test is not None else None
    tr, va = holdout_split(train, val_size, seed)
    return DataSplits(tr, va, test)


# --------------------------------------------------------------------------- synthetic


def synthetic_data(n: int, num_classes: int = 4, image_size: int = 8, channels: int = 1,
                   seed: int = 0, noise: float = 40.0, name: str = "synthetic",
                   pattern_seed: int = 1234) -> ImageData:
    """``n`` learnable images: a fixed random pattern per class plus pixel noise.

    The class patterns depend only on ``pattern_seed`` (so splits made with different
    ``seed`` share them); ``seed`` draws the labels and the noise.
    """
    patterns = np.random.default_rng(pattern_seed).uniform(
        40, 215, size=(num_classes, channels, image_size, image_size))
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    x = patterns[labels] + rng.normal(0, noise, size=(n, channels, image_size, image_size))
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return ImageData(_readonly(images), _readonly(labels), num_classes, name)


def synthetic_splits(n_train: int = 256, n_val: int = 128, n_test: int = 0,
                     num_classes: int = 4, image_size: int = 8, channels: int = 1,
                     seed: int = 0, noise: float = 40.0) -> DataSplits:
    """Tiny learnable splits for fast tests (no files)."""
    mk = lambda n, s, part: synthetic_data(n, num_classes, image_size, channels, s, noise,
                                           f"synthetic:{part}")
    return DataSplits(mk(n_train, seed, "train"), mk(n_val, seed + 1, "val"),
                      mk(n_test, seed + 2, "test") if n_test else None)
