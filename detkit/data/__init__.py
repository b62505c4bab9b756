"""Detection data: RecordIO reading and writing, the seed's pikachu, a synthetic pikachu, VOC/COCO packing.

A dataset is an MXNet detection RecordIO file (``.rec`` + ``.idx``), the format
of the seed's pikachu data and of ``im2rec.py --pack-label``; MXNet's own
readers (``ImageDetIter``, ``ImageDetRecordIter``) read the files detkit writes.

- :class:`DetectionDataset` opens one (checking every record's label) and its
  :meth:`~DetectionDataset.loader` gives :class:`DetectionBatch` es with the
  seed's pipeline: resize to ``data_shape``, minus :data:`RGB_MEAN`, and for
  training the random crop that keeps more than 95 % of each object it touches
  (200 attempts) and shuffling. :func:`preprocess` is the same resize and mean
  for one image at prediction time.
- :func:`pikachu` downloads the seed's files with SHA-1 checks;
  :func:`synthetic_pikachu` renders an equivalent set offline, and
  :func:`synthetic_shapes` a harder one with eight classes, several
  overlapping objects an image and small ones.
- :func:`pack_voc` and :func:`pack_coco` pack your own images, and
  :func:`pascal_voc` a whole Pascal VOC folder's splits into a cache it reuses; :func:`show` draws
  a file's images with their boxes; :func:`extract` writes them out as image
  files, their boxes in a JSON sidecar.

Files
-----
``synthetic_pikachu(root)`` and ``pikachu(root)`` write the seed's layout:
``root/train.rec``, ``train.idx``, ``val.rec``, ``val.idx``, ``classes.txt``
(and, for the synthetic set, ``preview.png`` and the ``synthetic.json``
manifest). ``pack_voc``/``pack_coco`` write ``PREFIX.rec``, ``PREFIX.idx`` and
``PREFIX.classes.txt`` (one name a line, class id = line number - 1). Every
output appears only once complete: it is written under a temporary name and
renamed.

A record's label is ``[4, W, width, height, class_id, xmin, ymin, xmax, ymax, ...]``
(header width, object width ``W``, the image size, then one row per object,
boxes normalised to [0, 1]). The synthetic and pikachu sets have ``W = 5``;
``pack_voc``/``pack_coco`` write ``W = 7``, each object followed by its flag (0
ordinary, 1 difficult, 2 crowd) and its area in pixels of the original image.
The reader accepts any header width >= 2 and object width >= 5, and drops
``-1`` padding rows.

Reading is pure Python over Pillow and numpy, in a background thread with two
decoding threads, rather than MXNet's C++ ``ImageDetRecordIter``: about as fast
on two cores, far faster than CPU training needs, reproducible with ``seed``, and
a damaged file raises :class:`~detkit.errors.DataError` naming the file and the
record instead of failing inside C++.
"""

from __future__ import annotations

from .._base import publish as _publish
from ._dataset import DetectionBatch, DetectionDataset, DetectionLoader
from ._download import pikachu, write_index
from ._extract import extract
from ._pack import pack_coco, pack_voc
from ._summary import PackSummary
from ._show import show
from ._shapes import synthetic_shapes
from ._synthetic import synthetic_pikachu
from ._transforms import RGB_MEAN, preprocess, ssd_augment
from ._voc import pascal_voc

__all__ = [
    "DetectionBatch",
    "DetectionDataset",
    "DetectionLoader",
    "PackSummary",
    "RGB_MEAN",
    "extract",
    "pack_coco",
    "pack_voc",
    "pascal_voc",
    "pikachu",
    "preprocess",
    "show",
    "ssd_augment",
    "synthetic_pikachu",
    "synthetic_shapes",
    "write_index",
]
_publish(globals(), __all__)
