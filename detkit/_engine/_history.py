"""History: what fit() measured, one record per epoch."""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Mapping

from .._base import PathLike, atomic_path, json_text
from ..errors import InputError, NotFoundError

__all__ = ["History"]


class History:
    """Per-epoch figures from :func:`detkit.fit`.

    ``history.records`` is a list of dicts, one per epoch; ``history["loss"]`` is
    one field over all epochs.

    Examples
    --------
    >>> from detkit import History
    >>> history = History([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])
    >>> history["loss"]
    [0.5, 0.25]
    >>> history.last["epoch"]
    2
    """

    def __init__(self, records: Iterable[Mapping[str, Any]] = ()) -> None:
        self.records: list[dict[str, Any]] = [dict(r) for r in records]

    def append(self, record: Mapping[str, Any]) -> None:
        """Add the record of one more epoch."""
        self.records.append(dict(record))

    @property
    def last(self) -> dict[str, Any]:
        """The last epoch's record (an empty dict before the first epoch)."""
        return dict(self.records[-1]) if self.records else {}

    def __getitem__(self, field: str) -> list[Any]:
        if not any(field in r for r in self.records):
            known = sorted({k for r in self.records for k in r})
            raise NotFoundError(f"The history has no field {field!r}; it has: {', '.join(known) or '(no epochs yet)'}.")
        return [r.get(field, math.nan) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, last={self.last})"

    def to_json(self) -> str:
        """The records as strict JSON text: a value that is not a finite number is ``null``."""
        return json_text(self.records, indent=1)

    def plot(self, path: PathLike, fields: Iterable[str] | None = None) -> None:
        """Draw the loss terms, and the validation mAP when present, per epoch into a PNG at ``path``."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        if not self.records:
            raise InputError("The history has no epochs to plot.")
        epochs = self["epoch"]
        skip = {"epoch", "seconds", "images_per_second", "learning_rate", "class_accuracy", "box_mae", "validated",
                "grad_norm", "clipped"}
        fields = list(fields) if fields is not None else [
            k for k in self.records[0] if k not in skip and not k.startswith("map_")]
        maps = [k for k in ("map_50", "map_50_voc07", "map_50_95") if k in self.records[-1]]
        figure, axes = plt.subplots(1, 2 if maps else 1, figsize=(10 if maps else 5, 3.6), squeeze=False)
        for field in fields:
            axes[0][0].plot(epochs, self[field], marker="o", label=field)
        axes[0][0].set(xlabel="epoch", ylabel="training loss", yscale="log", title="Loss")
        axes[0][0].legend()
        if maps:
            for field in maps:  # the validated epochs (train.val_every)
                points = [(e, v) for e, v in zip(epochs, self[field]) if not math.isnan(v)]
                axes[0][1].plot([e for e, _ in points], [v for _, v in points], marker="o", label=field)
            axes[0][1].set(xlabel="epoch", ylabel="validation mAP", ylim=(0, 1), title="Validation mAP")
            axes[0][1].legend()
        from matplotlib.ticker import MaxNLocator

        for axes_row in axes:
            for panel in axes_row:
                panel.xaxis.set_major_locator(MaxNLocator(integer=True))
                panel.grid(alpha=0.3)
        figure.tight_layout()
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=100)
        plt.close(figure)
