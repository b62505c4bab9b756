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
        COCO ``iscrowd`` annotations left out (they mark groups, not objects).
    """

    images: int
    objects: int
    skipped: tuple = ()
    ignored_crowd: int = 0

    def __str__(self) -> str:
        text = f"packed {self.images} images with {self.objects} objects"
        if self.ignored_crowd:
            text += f"; ignored {self.ignored_crowd} crowd annotations"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} invalid items:"
            text += "".join(f"\n  {reason}" for _, reason in self.skipped)
        return text
