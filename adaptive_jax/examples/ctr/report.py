"""The CTR example's outputs: a table on the terminal, a JSON file, a plot.

The plot shows AUC against bytes (log scale), one marker per variant, and a
line through the static variant's `hash_bucket_size` sweep: a variant above
the line is more accurate than a static table of its size. Its left panel
counts the serving export, its right panel the training state.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

MARKERS = {"static": "s", "dynamic": "o", "filtered": "v", "adaptive": "*"}
_COLUMNS = (
    ("variant", "variant", "{}"),
    ("auc", "AUC", "{:.4f}"),
    ("log_loss", "log loss", "{:.4f}"),
    ("auc_late_ids", "AUC late ids", "{:.4f}"),
    ("param_bytes", "param MB", "{:.2f}"),
    ("export_bytes", "export MB", "{:.2f}"),
    ("examples_per_s", "examples/s", "{:,.0f}"),
)


def _cell(key: str, template: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if key.endswith("_bytes"):
        value = value / 1e6
    return template.format(value)


def table(results: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of the results, one row per variant."""
    header = "| " + " | ".join(title for _, title, _ in _COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in _COLUMNS) + "|"
    rows = [
        "| "
        + " | ".join(_cell(key, fmt, result.get(key)) for key, _, fmt in _COLUMNS)
        + " |"
        for result in results
    ]
    return "\n".join([header, rule, *rows])


PER_EXAMPLE = ("labels", "probabilities")  # arrays of a result: not written


def without_arrays(value: Any) -> Any:
    """`value` with the per-example arrays of every result left out."""
    if isinstance(value, Mapping):
        return {k: without_arrays(v) for k, v in value.items() if k not in PER_EXAMPLE}
    if isinstance(value, list | tuple):
        return [without_arrays(v) for v in value]
    return value


def write_json(path: pathlib.Path, payload: Mapping[str, Any]) -> None:
    """Writes `payload` as indented JSON, the parent directory made if needed,
    without the results' per-example arrays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(without_arrays(payload), indent=1) + "\n")


def plot(
    path: pathlib.Path,
    results: Sequence[Mapping[str, Any]],
    sweep: Sequence[Mapping[str, Any]],
    title: str,
) -> None:
    """Writes the PNG of AUC against export and parameter bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib import ticker

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, key, label in (
        (axes[0], "export_bytes", "serving export (MB)"),
        (axes[1], "param_bytes", "embedding state in training (MB)"),
    ):
        points = sorted((r[key] / 1e6, r["auc"]) for r in sweep if r["auc"] is not None)
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, "-", color="0.6", label="static, buckets swept")
            for r in sweep:
                buckets = r["settings"]["hash_bucket_size"]
                if r["auc"] is not None:
                    axis.annotate(
                        f"{buckets:,}",
                        (r[key] / 1e6, r["auc"]),
                        textcoords="offset points",
                        xytext=(4, -10),
                        fontsize=7,
                        color="0.4",
                    )
        for r in results:
            if r["auc"] is not None:
                marker = MARKERS.get(r["variant"], "x")
                axis.plot(
                    r[key] / 1e6, r["auc"], marker, markersize=9, label=r["variant"]
                )
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_xlabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test AUC")
    axes[0].legend(fontsize=8, loc="lower right")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
