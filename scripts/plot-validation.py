#!/usr/bin/env python3
"""The validation exact rate of the candidate weights against training sequences, as an SVG.

Reads `focus passkey --json` reports of the validation split (docs/results/val-*.json), each
placed at the number of training sequences its weights had seen since the `--stop` stage
began (docs/training.md), and draws one series per probe with 95 % Wilson intervals (the
intervals the reports carry). Test-split reports are refused: they choose nothing, and are
reported once per shipped file.

Usage: scripts/plot-validation.py OUT.svg
"""

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"

# Sequences seen since the --stop stage began (batch 3): --stop steps s -> 3 s; --straddle
# continued --stop step 138 (414) for 22 steps (480); --straddle128 continued from there.
STOP, STRADDLE, STRADDLE128 = 0, 414, 480

# (series, sequences, report); a series is one fixed set of validation keys.
POINTS = [
    ("20 keys, 5K, depths 0.1–0.9", STOP + 3 * 56, "val-passkey-5k-stop-step56.json"),
    ("20 keys, 5K, depths 0.1–0.9", STOP + 3 * 120, "val-passkey-5k-stop-step120.json"),
    ("20 keys, 5K, depths 0.1–0.9", STOP + 3 * 138, "val-passkey-5k-stop-step138.json"),
    ("20 keys, 5K, depths 0.1–0.9", STRADDLE128 + 3 * 32, "val-passkey-5k-straddle128-step32.json"),
    ("20 keys, 5K, depths 0.1–0.9", STRADDLE128 + 3 * 48, "val-passkey-5k-straddle128-step48.json"),
    ("20 keys, 5K, depths 0.1–0.9", STRADDLE128 + 3 * 62, "val-passkey-5k-straddle128-step62.json"),
    ("boundary: 12 keys, 5K, depth 0.1", STOP + 3 * 138, "val-passkey-boundary-5k-step138-cap128.json"),
    ("boundary: 12 keys, 5K, depth 0.1", STRADDLE + 3 * 22, "val-passkey-boundary-5k-straddle-step22-cap128.json"),
    ("boundary: 12 keys, 5K, depth 0.1", STRADDLE128 + 3 * 16, "val-passkey-boundary-5k-straddle128-step16.json"),
    ("boundary: 12 keys, 5K, depth 0.1", STRADDLE128 + 3 * 32, "val-passkey-boundary-5k-straddle128-step32.json"),
    ("boundary: 12 keys, 5K, depth 0.1", STRADDLE128 + 3 * 48, "val-passkey-boundary-5k-straddle128-step48.json"),
    ("boundary: 12 keys, 5K, depth 0.1", STRADDLE128 + 3 * 62, "val-passkey-boundary-5k-straddle128-step62.json"),
    ("sweep: 26 keys, 5K, depths 0.094–0.106", STOP + 3 * 138, "val-passkey-sweep-5k-step138-cap128.json"),
    ("sweep: 26 keys, 5K, depths 0.094–0.106", STRADDLE128 + 3 * 32, "val-passkey-sweep-5k-straddle128-step32.json"),
    ("sweep: 26 keys, 5K, depths 0.094–0.106", STRADDLE128 + 3 * 48, "val-passkey-sweep-5k-straddle128-step48.json"),
    ("sweep: 26 keys, 5K, depths 0.094–0.106", STRADDLE128 + 3 * 62, "val-passkey-sweep-5k-straddle128-step62.json"),
]
COLOURS = ["#1f77b4", "#d62728", "#2ca02c"]


def wilson(right, n, z=1.959964):
    """95 % Wilson interval of `right` successes in `n` trials."""
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


def exact(report):
    """FocusLLM's exact score over all the report's trials: (right, trials)."""
    data = json.loads((RESULTS / report).read_text())
    if data.get("split") != "validation":
        sys.exit(f"plot-validation: {report} is not a validation report")
    trials = [t for t in data["trials"] if t["mode"] == "focus"]
    return sum(t["exact"] for t in trials), len(trials)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    series = {}
    for name, seqs, report in POINTS:
        right, n = exact(report)
        series.setdefault(name, []).append((seqs, right, n))
    w, h, left, right_m, top, bottom = 720, 420, 70, 20, 20, 110
    x_max = max(p[1] for p in POINTS) * 1.05
    y_min = 0.3
    px = lambda s: left + (w - left - right_m) * s / x_max
    py = lambda r: top + (h - top - bottom) * (1 - (r - y_min) / (1 - y_min))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>']
    for r in [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]:
        out.append(f'<line x1="{left}" x2="{w - right_m}" y1="{py(r):.1f}" y2="{py(r):.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{py(r) + 4:.1f}" text-anchor="end">{r:.0%}</text>')
    for s in range(0, int(x_max) + 1, 100):
        out.append(f'<text x="{px(s):.1f}" y="{h - bottom + 16}" text-anchor="middle">{s}</text>')
    stages = [(STOP, "--stop"), (STRADDLE, "--straddle"), (STRADDLE128, "--straddle128")]
    for k, (at, label) in enumerate(stages):
        out.append(f'<line x1="{px(at):.1f}" x2="{px(at):.1f}" y1="{top}" y2="{h - bottom}" '
                   'stroke="#999" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{px(at) + 3:.1f}" y="{top + 12 + 14 * k}" fill="#666">{label}</text>')
    out.append(f'<text x="{(left + w - right_m) / 2}" y="{h - bottom + 34}" text-anchor="middle">'
               'training sequences since the --stop stage began (batch 3)</text>')
    out.append(f'<text transform="translate(16 {(top + h - bottom) / 2}) rotate(-90)" '
               'text-anchor="middle">FocusLLM exact (validation keys)</text>')
    for i, (name, points) in enumerate(series.items()):
        colour, dx = COLOURS[i % len(COLOURS)], (i - 1) * 4
        path = " ".join(f"{'M' if j == 0 else 'L'}{px(s) + dx:.1f},{py(r / n):.1f}"
                        for j, (s, r, n) in enumerate(points))
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for s, r, n in points:
            lo, hi = wilson(r, n)
            x = px(s) + dx
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{py(max(lo, y_min)):.1f}" '
                       f'y2="{py(hi):.1f}" stroke="{colour}" stroke-opacity="0.5"/>')
            out.append(f'<circle cx="{x:.1f}" cy="{py(r / n):.1f}" r="3.5" fill="{colour}">'
                       f'<title>{name}: {r}/{n} at {s} sequences</title></circle>')
        y = h - bottom + 56 + 16 * i
        out.append(f'<line x1="{left}" x2="{left + 24}" y1="{y - 4}" y2="{y - 4}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{left + 30}" y="{y}">{name} (bars: 95 % Wilson intervals)</text>')
    out.append("</svg>")
    Path(sys.argv[1]).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
