"""Loss curves and sample grids as PNG. matplotlib when it is installed (imported lazily);
otherwise a plain Pillow line plot, so training never depends on it."""
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image, ImageDraw


def loss_curves(path: str, curves: Dict[str, List[Dict]], key: str = "loss") -> None:
    """One panel per curve (name -> [{"step", key}, ...]), log-scaled losses."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _pillow_curves(path, curves, key)
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), squeeze=False)
    for ax, (name, pts) in zip(axes[0], curves.items()):
        ax.plot([p["step"] for p in pts], [p[key] for p in pts], lw=1)
        if pts and min(p[key] for p in pts) > 0:
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pillow_curves(path: str, curves: Dict[str, List[Dict]], key: str) -> None:
    pw, ph, m = 420, 260, 40
    img = Image.new("RGB", (pw * len(curves), ph), "white")
    draw = ImageDraw.Draw(img)
    for i, (name, pts) in enumerate(curves.items()):
        x0 = i * pw
        draw.rectangle([x0 + m, 10, x0 + pw - 10, ph - m], outline="black")
        draw.text((x0 + m, ph - m + 8), f"{name}: {key} (log) vs step", fill="black")
        if len(pts) < 2:
            continue
        steps = np.array([p["step"] for p in pts], float)
        vals = np.log10(np.maximum([p[key] for p in pts], 1e-12))
        lo, hi = vals.min(), vals.max()
        hi = hi if hi > lo else lo + 1
        sx = (pw - 10 - m) / max(steps.max() - steps.min(), 1)
        sy = (ph - m - 10) / (hi - lo)
        xy = [(x0 + m + (s - steps.min()) * sx, ph - m - (v - lo) * sy)
              for s, v in zip(steps, vals)]
        draw.line(xy, fill=(30, 70, 200), width=1)
        draw.text((x0 + m + 4, 12), f"{10 ** hi:.3g}", fill="black")
        draw.text((x0 + m + 4, ph - m - 14), f"{10 ** lo:.3g}", fill="black")
    img.save(path)


def sample_grid(path: str, images: Sequence[np.ndarray], captions: Sequence[str],
                marks: Sequence[bool] = (), cols: int = 4, cell: int = 256) -> None:
    """Images (uint8 HxWx3) in a grid, each with its caption below (and PASS / FAIL when
    `marks` gives the checker's verdicts)."""
    rows = (len(images) + cols - 1) // cols
    text_h = 34
    grid = Image.new("RGB", (cols * cell, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (im, cap) in enumerate(zip(images, captions)):
        r, c = divmod(i, cols)
        pil = Image.fromarray(im)
        pil.thumbnail((cell, cell))
        x, y = c * cell, r * (cell + text_h)
        grid.paste(pil, (x + (cell - pil.width) // 2, y + (cell - pil.height) // 2))
        words, lines, line = cap.split(), [], ""
        for w in words:
            if len(line) + len(w) + 1 > cell // 6:
                lines.append(line)
                line = w
            else:
                line = (line + " " + w).strip()
        lines.append(line)
        label = "\n".join(lines[:2])
        if i < len(marks):
            draw.text((x + cell - 34, y + cell + 2), "PASS" if marks[i] else "FAIL",
                      fill=(0, 140, 0) if marks[i] else (200, 0, 0))
        draw.multiline_text((x + 3, y + cell + 2), label, fill="black", spacing=2)
    grid.save(path)
