"""Image data sets as plain uint8 numpy arrays (torch-free).

Every loader returns :class:`DataSplits`: ``train`` and ``val`` come from the data set's
*training* images (the validation images are held out, seeded and stratified by class), and
``test`` is the data set's own test split, which no choice ever looks at. See
:mod:`nas.data.loading` for the sources and where their files are looked for.
"""

from nas.data.formats import (
                              IMAGE_EXTENSIONS,
                              load_cifar_folder,
                              load_idx_folder,
                              load_image_folder,
                              read_idx,
                              write_idx,
)
from nas.data.images import DataSplits, ImageData, channel_stats
from nas.data.loading import (
                              FASHION_MNIST_CLASSES,
                              MNIST_CLASSES,
                              SOURCES,
                              DataSettings,
                              detect_format,
                              holdout_split,
                              load_splits,
                              split_counts,
)
from nas.data.synthetic import synthetic_data, synthetic_splits

__all__ = ["ImageData", "DataSplits", "DataSettings", "channel_stats", "read_idx", "write_idx",
           "load_idx_folder", "load_cifar_folder", "load_image_folder", "detect_format",
           "holdout_split", "split_counts", "load_splits", "synthetic_data", "synthetic_splits",
           "SOURCES", "FASHION_MNIST_CLASSES", "MNIST_CLASSES", "IMAGE_EXTENSIONS"]
