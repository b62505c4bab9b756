"""PackSummary: what packing did (its own module, so that the reader and the packers both use it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackSummary:
    """What :func:`pack_voc` or :func:`pack_coco` did.

    Attributes
    ----------
    images : int
        Images packed.
    objects : int
        Objects packed, over all images.
    skipped : tuple of (str, str)
        ``(file, reason)`` of each item left out because it was invalid
        (only with ``skip_invalid=True``; otherwise the first one raises).
    ignored_crowd : int
        COCO ``iscrowd`` annotations left out: always 0 now that they are packed
        as crowd regions (counted in ``crowd``); kept for compatibility.
    difficult : int
        Objects packed as difficult (Pascal VOC ``<difficult>1</difficult>``), among ``objects``.
    crowd : int
        Crowd regions packed (COCO ``iscrowd``), among ``objects``.
    """

    images: int
    objects: int
    skipped: tuple = ()
    ignored_crowd: int = 0
    difficult: int = 0
    crowd: int = 0

    def __str__(self) -> str:
        text = f"packed {self.images} images with {self.objects} objects"
        marked = [f"{count} {name}" for count, name in (
            (self.difficult, "difficult"), (self.crowd, "crowd region" if self.crowd == 1 else "crowd regions"),
        ) if count]
        if marked:
            text += f" ({', '.join(marked)})"
        if self.ignored_crowd:
            text += f"; ignored {self.ignored_crowd} crowd annotations"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} invalid items:"
            text += "".join(f"\n  {reason}" for _, reason in self.skipped)
        return text
