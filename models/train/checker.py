"""Scene checker: does an RGB image show what its caption says? No learned parts.

    verdict = check(image, "a red circle left of a blue square")
    verdict.ok, verdict.reasons          # False, ['relation: ... is not left of ...']
    python -m models.train.checker image.png "three green triangles"

Detection (`detect`): the image is box-filtered down to a working size (short side
WORK_SIDE), every pixel takes the nearest colour of the world's palette (object colours and
background colours), strictly (close to it and clearly closer than to the second nearest:
soft edges and blends stay unlabelled) and loosely. Each object colour's loose mask grows up
to two pixels into its soft edge (pixels on the blend line between the colour and a
background colour, at least half object), is closed and opened with a 3x3 square (pinholes
and one-pixel rims go), and its connected components of at least MIN_AREA (of the short side
squared) pixels, a quarter of that strictly labelled, are objects: specks and the rims a
blend of two colours leaves are ignored (hysteresis). An object's shape is the template
nearest in fill ratio, solidity and row / column coverage profiles (holes filled); templates
are world.py's polygons at the object's pixel size through the same labelling. Boxes far from
square or profiles far from every template are "unknown". Positions are bounding-box centres
relative to the image, sizes the side of the shape's bounding box over the short side as
world.py defines them (estimated from the area and the shape's fill ratio, which blur changes
less than the bounding box).

Scoring (`score`): every clause of the caption's Spec is checked and reported:
  count      each group (colour, shape): exactly `count` such objects
  size       a single object's size word: small below SMALL_MAX, large above LARGE_MIN
  position   a single object's centre in its 3x3 cell (cells split at 1/3 and 2/3)
  relation   A left of B: B.cx - A.cx > REL_MIN and |dx| >= |dy| (likewise right/above/below)
  nothing else   no detected object outside the caption's groups
  background the background colours covering >= BG_MIN of the image are the caption's
The verdict is ok when every clause holds; failed clauses carry the reason.
"""
import argparse
import dataclasses
import functools
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from models.train import world

WORK_SIDE = 192          # short side of the working image (larger images are box-filtered)
MAX_DIST = 110.0         # a pixel is labelled only within this RGB distance of a colour ...
RATIO = 0.6              # ... and when that distance is below RATIO x the second nearest;
WEAK_DIST = 160.0        # objects are the connected regions labelled within these looser
WEAK_RATIO = 0.9         # bounds that hold MIN_AREA strictly labelled pixels (hysteresis)
BLEND_RESIDUAL = 45.0    # RGB distance to an object/background blend line of a soft edge
MIN_AREA = 0.003         # smallest object, fraction of short side squared
MAX_ASPECT = 1.6         # bounding boxes further from square are not a single shape
MAX_SHAPE_DIST = 0.5     # shape_distance above which the shape is unknown
SMALL_MAX = 0.165        # size thresholds (short-side units; world.SIZE_RANGES: small <= 0.15,
LARGE_MIN = 0.235        # medium 0.18-0.22, large >= 0.28)
REL_MIN = 0.05           # smallest centre offset (relative) for a relation
BG_MIN = 0.10            # a background colour is present above this fraction of the image
PROFILE_BINS = 8

PALETTE_NAMES: Tuple[str, ...] = tuple(world.COLOURS) + tuple(world.BACKGROUNDS)
PALETTE = np.array([*world.COLOURS.values(), *world.BACKGROUNDS.values()], dtype=np.float32)
NUM_OBJECT_COLOURS = len(world.COLOURS)


@dataclasses.dataclass(frozen=True)
class Detected:
    colour: str
    shape: str               # a world.SHAPES name or "unknown"
    cx: float                # bounding-box centre, relative
    cy: float
    size: float              # longer bounding-box side / short side
    area: float              # pixels / short side squared
    shape_distance: float    # distance to the chosen template

    def describe(self) -> str:
        return f"{self.colour} {self.shape} at ({self.cx:.2f}, {self.cy:.2f}) size {self.size:.2f}"


@dataclasses.dataclass(frozen=True)
class Clause:
    kind: str                # count | size | position | relation | nothing else | background
    text: str                # what the caption asserts
    ok: bool
    reason: str = ""         # why it failed (empty when ok)


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    clauses: Tuple[Clause, ...]
    objects: Tuple[Detected, ...]
    background: Tuple[str, ...]

    @property
    def reasons(self) -> List[str]:
        return [f"{c.kind}: {c.reason}" for c in self.clauses if not c.ok]

    def __str__(self) -> str:
        lines = ["PASS" if self.ok else "FAIL"]
        for c in self.clauses:
            lines.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.kind}: {c.text}"
                         + ("" if c.ok else f" -- {c.reason}"))
        lines.append("  found: " + ("; ".join(o.describe() for o in self.objects) or "nothing"))
        lines.append("  background: " + (", ".join(self.background) or "none"))
        return "\n".join(lines)


# ----------------------------------------------------------------------------- image ops

def _as_array(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"checker: expected an RGB image, got shape {arr.shape}")
    return arr[:, :, :3]


def _working(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    if min(h, w) <= WORK_SIDE:
        return arr.astype(np.float32)
    from PIL import Image

    scale = WORK_SIDE / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(arr.astype(np.uint8)).resize(size, Image.BOX),
                      dtype=np.float32)


def _shift_or(m: np.ndarray) -> np.ndarray:
    """3x3 dilation."""
    p = np.pad(m, 1)
    out = np.zeros_like(m)
    h, w = m.shape
    for dy in range(3):
        for dx in range(3):
            out |= p[dy:dy + h, dx:dx + w]
    return out


def _shift_and(m: np.ndarray) -> np.ndarray:
    """3x3 erosion (outside the image counts as set, so border objects are not eaten)."""
    p = np.pad(m, 1, constant_values=True)
    out = np.ones_like(m)
    h, w = m.shape
    for dy in range(3):
        for dx in range(3):
            out &= p[dy:dy + h, dx:dx + w]
    return out


def _clean(m: np.ndarray) -> np.ndarray:
    """Closing (fills pinholes) then opening (drops one-pixel rims and specks)."""
    return _shift_or(_shift_and(_shift_and(_shift_or(m))))


def fill_holes(m: np.ndarray) -> np.ndarray:
    """The mask with every region it encloses filled (specks inside an object)."""
    outside = components(np.pad(~m, 1, constant_values=True))
    return (outside != outside[0, 0])[1:-1, 1:-1]


def components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of a boolean mask (0 = background, 1..n), computed on
    horizontal runs with a union-find (no scipy)."""
    h, w = mask.shape
    d = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rs, cs = np.nonzero(d == 1)
    re_, ce = np.nonzero(d == -1)   # same order: row-major, starts and ends pair up
    n = len(rs)
    labels = np.zeros((h, w), dtype=np.int32)
    if n == 0:
        return labels
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_start = np.searchsorted(rs, np.arange(h + 1))
    for r in range(1, h):
        a0, a1 = row_start[r - 1], row_start[r]
        b0, b1 = row_start[r], row_start[r + 1]
        i, j = a0, b0
        while i < a1 and j < b1:
            # runs [cs, ce) overlap 8-connected when cs_a <= ce_b and cs_b <= ce_a
            if cs[i] <= ce[j] and cs[j] <= ce[i]:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
            if ce[i] < ce[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(n)])
    _, compact = np.unique(roots, return_inverse=True)
    for k in range(n):
        labels[rs[k], cs[k]:ce[k]] = compact[k] + 1
    return labels


# ----------------------------------------------------------------------------- shapes

def solidity(m: np.ndarray) -> float:
    """Area over convex-hull area (pixel squares; the hull of every row run's corners)."""
    ys = np.nonzero(m.any(axis=1))[0]
    if len(ys) == 0:
        return 0.0
    first = m[ys].argmax(axis=1)
    last = m.shape[1] - m[ys, ::-1].argmax(axis=1)
    pts = sorted({(float(x), float(y)) for y, a, b in zip(ys, first, last)
                  for x in (a, b) for y in (y, y + 1)})

    def half(points):
        out: List[Tuple[float, float]] = []
        for p in points:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    hull = half(pts)[:-1] + half(pts[::-1])[:-1]
    area = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1)
                         in zip(hull, hull[1:] + hull[:1])))
    return float(m.sum() / area) if area > 0 else 0.0


def shape_features(m: np.ndarray) -> np.ndarray:
    """[fill ratio, solidity, row coverage in PROFILE_BINS bands, column coverage] of a mask
    cropped to its bounding box."""
    return np.concatenate([[m.mean(), solidity(m)], _bands(m.mean(axis=1)),
                           _bands(m.mean(axis=0))])


def _bands(v: np.ndarray) -> np.ndarray:
    """Mean of a profile over PROFILE_BINS equal bands (fractional pixels weighted)."""
    cum = np.concatenate([[0.0], np.cumsum(v)])
    edges = np.interp(np.linspace(0, len(v), PROFILE_BINS + 1), np.arange(len(v) + 1), cum)
    return np.diff(edges) * PROFILE_BINS / len(v)


def shape_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of the row profiles + the same of the column profiles + fill
    difference + 2 x solidity difference (solidity tells a cross from a diamond, the profiles
    the rest)."""
    n = PROFILE_BINS
    return float(np.abs(a[2:2 + n] - b[2:2 + n]).mean() + np.abs(a[2 + n:] - b[2 + n:]).mean()
                 + abs(a[0] - b[0]) + 2 * abs(a[1] - b[1]))


@functools.lru_cache(maxsize=None)
def templates(side: int = 64) -> Dict[str, np.ndarray]:
    """Each shape's features when it is `side` pixels wide in the working image: world.py's
    polygons rendered anti-aliased (red on white) and put through the same labelling and
    cleaning as an image, so small shapes' clipped tips are in the template too."""
    from PIL import Image, ImageDraw

    out = {}
    pad, ss = 6, 4
    n = side + 2 * pad
    for shape in world.SHAPES:
        feats = []
        for phase in range(ss):   # quarter-pixel offsets: the mean over pixel phases
            img = Image.new("RGB", (n * ss, n * ss), world.BACKGROUNDS["white"])
            draw = ImageDraw.Draw(img)
            for poly in world.shape_polygons(shape, pad * ss + phase, pad * ss + phase,
                                             side * ss):
                draw.polygon(poly, fill=world.COLOURS["red"])
            x = np.asarray(img.resize((n, n), Image.BOX), dtype=np.float32)
            comp, keep = colour_components(x, *label_pixels(x), PALETTE_NAMES.index("red"), 1)
            ys, xs = np.nonzero(comp == keep[0])
            m = comp == keep[0]
            feats.append(shape_features(m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]))
        out[shape] = np.mean(feats, axis=0)
    return out


def shape_distances(m: np.ndarray) -> Dict[str, float]:
    f = shape_features(m)
    side = int(np.clip(max(m.shape), 8, 160))
    return {s: shape_distance(f, t) for s, t in templates(side).items()}


def classify_shape(m: np.ndarray) -> Tuple[str, float]:
    h, w = m.shape
    if max(h, w) > MAX_ASPECT * min(h, w):
        return "unknown", float("inf")
    dists = shape_distances(m)
    best = min(dists, key=dists.get)
    if dists[best] > MAX_SHAPE_DIST:
        return "unknown", dists[best]
    return best, dists[best]


# ----------------------------------------------------------------------------- detection

def label_pixels(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Palette index per pixel, twice: strict (-1 where no colour is within MAX_DIST or the
    nearest is not below RATIO x the second nearest) and loose (WEAK_DIST, WEAK_RATIO)."""
    d = np.sqrt(((x[:, :, None, :] - PALETTE[None, None]) ** 2).sum(-1))
    order = np.argsort(d, axis=-1)
    d1 = np.take_along_axis(d, order[..., :1], -1)[..., 0]
    d2 = np.take_along_axis(d, order[..., 1:2], -1)[..., 0]
    strong = (d1 <= MAX_DIST) & (d1 <= RATIO * d2)
    weak = (d1 <= WEAK_DIST) & (d1 <= WEAK_RATIO * d2)
    return np.where(strong, order[..., 0], -1), np.where(weak, order[..., 0], -1)


def blend_mask(x: np.ndarray, k: int) -> np.ndarray:
    """Pixels that are a blend of object colour k with a background colour, at least half the
    object's (a soft edge's inner half), within BLEND_RESIDUAL of that blend line."""
    c = PALETTE[k]
    out = np.zeros(x.shape[:2], bool)
    for b in PALETTE[NUM_OBJECT_COLOURS:]:
        d = c - b
        a = ((x - b) @ d) / float(d @ d)
        res = np.sqrt(((x - b - a[..., None] * d) ** 2).sum(-1))
        out |= (a >= 0.5) & (a <= 1.5) & (res <= BLEND_RESIDUAL)
    return out


def colour_components(x: np.ndarray, strong: np.ndarray, weak: np.ndarray, k: int,
                      min_area: float) -> Tuple[np.ndarray, List[int]]:
    """Objects of palette colour k (hysteresis): components of the cleaned loose mask, grown
    by up to two pixels into its soft edge (blend_mask), of at least min_area pixels holding
    at least a quarter of that strictly labelled. Component labels and the kept ones."""
    mask = weak == k
    mask |= blend_mask(x, k) & _shift_or(_shift_or(mask))
    comp = components(_clean(mask))
    n = int(comp.max())
    if n == 0:
        return comp, []
    seeds = np.bincount(comp[strong == k], minlength=n + 1)
    areas = np.bincount(comp.ravel(), minlength=n + 1)
    return comp, [c for c in range(1, n + 1)
                  if seeds[c] >= min_area / 4 and areas[c] >= min_area]


def detect(image) -> Tuple[List[Detected], Tuple[str, ...]]:
    """Objects found in `image` (uint8 HxWx3 array or PIL image) and the background colours
    present (those covering at least BG_MIN of the image, most first)."""
    x = _working(_as_array(image))
    h, w = x.shape[:2]
    short = min(h, w)
    strong, weak = label_pixels(x)
    found: List[Detected] = []
    for k in range(NUM_OBJECT_COLOURS):
        if (strong == k).sum() < MIN_AREA * short * short / 4:
            continue
        comp, keep = colour_components(x, strong, weak, k, MIN_AREA * short * short)
        for c in keep:
            ys, xs = np.nonzero(comp == c)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            m = fill_holes(comp[y0:y1, x0:x1] == c)
            shape, dist = classify_shape(m)
            if shape == "unknown":
                size = max(x1 - x0, y1 - y0) / short
            else:   # from the area: blur rounds corners off the bounding box, not the area
                size = np.sqrt(m.sum() / templates(64)[shape][0]) / short
            found.append(Detected(PALETTE_NAMES[k], shape, float((x0 + x1) / 2 / w),
                                  float((y0 + y1) / 2 / h), float(size),
                                  float(m.sum() / (short * short)), dist))
    counts = [(int((strong == NUM_OBJECT_COLOURS + i).sum()), name)
              for i, name in enumerate(world.BACKGROUNDS)]
    background = tuple(name for c, name in sorted(counts, reverse=True) if c >= BG_MIN * h * w)
    found.sort(key=lambda o: (o.cy, o.cx))
    return found, background


# ----------------------------------------------------------------------------- scoring

def _cell(v: float) -> int:
    return 0 if v < 1 / 3 else (1 if v < 2 / 3 else 2)


def relation_holds(a: Detected, relation: str, b: Detected) -> Tuple[bool, str]:
    dx, dy = b.cx - a.cx, b.cy - a.cy   # from A to B
    along, across = {"left of": (dx, dy), "right of": (-dx, dy),
                     "above": (dy, dx), "below": (-dy, dx)}[relation]
    if along > REL_MIN and abs(along) >= abs(across):
        return True, ""
    return False, (f"{a.colour} {a.shape} at ({a.cx:.2f}, {a.cy:.2f}) is not {relation} "
                   f"{b.colour} {b.shape} at ({b.cx:.2f}, {b.cy:.2f})")


def score(objects: Sequence[Detected], background: Sequence[str], spec: world.Spec) -> Verdict:
    clauses: List[Clause] = []
    members: List[List[Detected]] = []
    claimed = set()
    for g in spec.groups:
        mine = [o for o in objects if o.colour == g.colour and o.shape == g.shape]
        members.append(mine)
        claimed.update(id(o) for o in mine)
        text = world.group_phrase(dataclasses.replace(g, size=None, position=None))
        if len(mine) == g.count:
            clauses.append(Clause("count", text, True))
        else:
            same_colour = [o.shape for o in objects if o.colour == g.colour and o not in mine]
            extra = f"; other {g.colour} objects: {', '.join(same_colour)}" if same_colour else ""
            clauses.append(Clause("count", text, False,
                                  f"expected {g.count} {g.colour} {g.shape}, found "
                                  f"{len(mine)}{extra}"))
    for g, mine in zip(spec.groups, members):
        one = mine[0] if len(mine) == 1 and g.count == 1 else None
        if g.size:
            text = f"{g.colour} {g.shape} is {g.size}"
            if one is None:
                clauses.append(Clause("size", text, False, "no single such object"))
            else:
                ok = one.size < SMALL_MAX if g.size == "small" else one.size > LARGE_MIN
                clauses.append(Clause("size", text, ok, "" if ok else f"its size is "
                                      f"{one.size:.2f} of the short side"))
        if g.position:
            phrase, row, col = world.POSITIONS[g.position]
            text = f"{g.colour} {g.shape} {phrase}"
            if one is None:
                clauses.append(Clause("position", text, False, "no single such object"))
            else:
                ok = (_cell(one.cy), _cell(one.cx)) == (row, col)
                clauses.append(Clause("position", text, ok, "" if ok else
                                      f"its centre is at ({one.cx:.2f}, {one.cy:.2f})"))
    for r in spec.relations:
        ga, gb = spec.groups[r.a], spec.groups[r.b]
        text = f"{ga.colour} {ga.shape} {r.relation} {gb.colour} {gb.shape}"
        if len(members[r.a]) != 1 or len(members[r.b]) != 1:
            clauses.append(Clause("relation", text, False, "needs one of each object"))
        else:
            ok, why = relation_holds(members[r.a][0], r.relation, members[r.b][0])
            clauses.append(Clause("relation", text, ok, why))
    extra = [o for o in objects if id(o) not in claimed]
    clauses.append(Clause("nothing else", "no other objects", not extra,
                          "" if not extra else "found " + "; ".join(o.describe() for o in extra)))
    if spec.background:
        want = sorted(spec.background)
        ok = sorted(background) == want
        clauses.append(Clause("background", " and ".join(spec.background), ok,
                              "" if ok else f"background is {' and '.join(background) or 'none'}"))
    return Verdict(all(c.ok for c in clauses), tuple(clauses), tuple(objects), tuple(background))


def check(image, caption: Union[str, world.Spec]) -> Verdict:
    """Score an image (uint8 HxWx3 array or PIL image) against a caption or its Spec."""
    spec = world.parse_caption(caption) if isinstance(caption, str) else caption
    objects, background = detect(image)
    return score(objects, background, spec)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Check an image against a caption of the "
                                             "synthetic world's grammar.")
    ap.add_argument("image")
    ap.add_argument("caption")
    a = ap.parse_args(argv)
    from PIL import Image

    try:
        spec = world.parse_caption(a.caption)
    except world.CaptionError as e:   # exit 2: nothing to check against, not a failed check
        print(f"not checked: {e} (the grammar: models/train/README.md)")
        return 2
    verdict = check(Image.open(a.image).convert("RGB"), spec)
    print(verdict)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
