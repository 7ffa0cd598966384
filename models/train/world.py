"""A synthetic captioned world: flat shapes on plain or two-tone backgrounds, deterministic
from a seed, with captions from a small grammar and the structured description a checker
verifies (models/train/checker.py).

    scene = make_scene(seed)          # layout in relative coordinates, caption, spec
    img = render(scene, 512, 256)     # uint8 [H, W, 3] at any resolution / aspect ratio
    parse_caption(scene.caption) == scene.spec

The world
  objects     1-4 per scene; shapes SHAPES (circle, square, triangle, diamond, cross), colours
              COLOURS (six saturated colours, far apart in RGB), sizes small / medium / large
              (side of the object's square bounding box as a fraction of the image's short
              side), never overlapping (bounding boxes at least GAP apart), never rotated.
  background  one of BACKGROUNDS (white, gray, black: neutral, far from every object colour),
              or two of them split horizontally or vertically (two-tone).
  coordinates every position is relative ((0, 0) top left, (1, 1) bottom right), sizes are in
              units of the short side, so one scene renders at any resolution and aspect; a
              layout valid on a square is valid on any rectangle (distances only grow).

The grammar (every caption names every object in the scene)
  caption   := body [" on a " bg " background"]
  bg        := BG | BG " and " BG                        (two-tone)
  body      := np1 [position]                            "a red circle in the top left"
             | count                                     "three green triangles"
             | np1 " " relation " " np1                  "a red circle left of a blue square"
             | item (" and " item)+                      "two red circles and a blue square"
  item      := np1 [position] | count
  np1       := ("a" | "an") [size] colour shape          "a small orange diamond"
  count     := ("two" | "three" | "four") colour shape+"s"
  size      := "small" | "large"                         (medium objects carry no size word)
  position  := "in the top left" | "in the top right" | "in the bottom left"
             | "in the bottom right" | "at the top" | "at the bottom" | "on the left"
             | "on the right" | "in the center"          (the 3x3 cell holding the centre)
  relation  := "left of" | "right of" | "above" | "below"

What a caption asserts (`Spec`): for each group (colour, shape, count) exactly that many such
objects; a group's size word and position when given; the relation between two single
objects (A left of B: A's centre is left of B's and the horizontal offset dominates the
vertical one); the background colour(s) when given; and that nothing else is in the picture.
"""
import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# ----------------------------------------------------------------------------- vocabulary

COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 135, 0),
    "yellow": (240, 225, 20),
    "green": (20, 160, 50),
    "blue": (30, 70, 230),
    "purple": (150, 40, 200),
}
BACKGROUNDS: Dict[str, Tuple[int, int, int]] = {
    "white": (240, 240, 240),
    "gray": (128, 128, 128),
    "black": (20, 20, 20),
}
SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
PLURALS: Dict[str, str] = {"circle": "circles", "square": "squares", "triangle": "triangles",
                           "diamond": "diamonds", "cross": "crosses"}
NUMBERS: Dict[int, str] = {2: "two", 3: "three", 4: "four"}
SIZE_WORDS: Tuple[str, ...] = ("small", "large")
# size class -> range of the bounding-box side, fraction of the short side
SIZE_RANGES: Dict[str, Tuple[float, float]] = {
    "small": (0.12, 0.15), "medium": (0.18, 0.22), "large": (0.28, 0.32)}
# position key -> (phrase, row, column) of the 3x3 cell holding the object's centre
POSITIONS: Dict[str, Tuple[str, int, int]] = {
    "top left": ("in the top left", 0, 0), "top right": ("in the top right", 0, 2),
    "bottom left": ("in the bottom left", 2, 0), "bottom right": ("in the bottom right", 2, 2),
    "top": ("at the top", 0, 1), "bottom": ("at the bottom", 2, 1),
    "left": ("on the left", 1, 0), "right": ("on the right", 1, 2),
    "center": ("in the center", 1, 1),
}
RELATIONS: Tuple[str, ...] = ("left of", "right of", "above", "below")

CELL_CENTRES = (0.2, 0.5, 0.8)   # where positioned objects are put, per axis
CELL_JITTER = 0.05               # +- around the cell centre
GAP = 0.05                       # minimum gap between bounding boxes (relative, on a square)
MARGIN = 0.02                    # minimum gap to the image border
CROSS_ARM = 0.36                 # cross arm thickness, fraction of its side


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def vocabulary() -> List[str]:
    """Every word a caption can contain, sorted."""
    words = {"a", "an", "and", "on", "background", "of", "in", "the", "at", "above", "below"}
    words |= set(COLOURS) | set(BACKGROUNDS) | set(SHAPES) | set(PLURALS.values())
    words |= set(NUMBERS.values()) | set(SIZE_WORDS)
    for phrase, _, _ in POSITIONS.values():
        words |= set(phrase.split())
    for rel in RELATIONS:
        words |= set(rel.split())
    return sorted(words)


# ----------------------------------------------------------------------------- structures

@dataclasses.dataclass(frozen=True)
class Group:
    """`count` objects of one colour and shape; size word and position only when count is 1."""
    colour: str
    shape: str
    count: int = 1
    size: Optional[str] = None        # "small" | "large" | None (not asserted)
    position: Optional[str] = None    # a POSITIONS key | None (not asserted)


@dataclasses.dataclass(frozen=True)
class Relation:
    a: int                            # index of a single-object group
    relation: str                     # one of RELATIONS
    b: int


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a caption asserts; the checker verifies exactly this."""
    groups: Tuple[Group, ...]
    relations: Tuple[Relation, ...] = ()
    background: Optional[Tuple[str, ...]] = None   # one or two BACKGROUNDS names, as written

    @property
    def num_objects(self) -> int:
        return sum(g.count for g in self.groups)


@dataclasses.dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: float          # bounding-box side, fraction of the short side
    cx: float            # centre, relative to the width
    cy: float            # centre, relative to the height
    group: int           # index into spec.groups
    size_class: str      # small | medium | large


@dataclasses.dataclass(frozen=True)
class Background:
    colours: Tuple[str, ...]          # one (plain) or two (two-tone: top/left first)
    split: str = "none"               # none | horizontal (top / bottom) | vertical (left / right)
    at: float = 0.5                   # where the split is, relative


@dataclasses.dataclass(frozen=True)
class Scene:
    seed: int
    caption: str
    spec: Spec
    objects: Tuple[Obj, ...]
    background: Background


# ----------------------------------------------------------------------------- captions

def group_phrase(g: Group) -> str:
    if g.count == 1:
        words = ([g.size] if g.size else []) + [g.colour, g.shape]
        text = article(words[0]) + " " + " ".join(words)
        if g.position:
            text += " " + POSITIONS[g.position][0]
        return text
    return f"{NUMBERS[g.count]} {g.colour} {PLURALS[g.shape]}"


def caption_of(spec: Spec) -> str:
    """The caption the grammar writes for a spec (parse_caption inverts it)."""
    if spec.relations:
        if len(spec.groups) != 2 or len(spec.relations) != 1:
            raise ValueError("a relation caption has two groups and one relation")
        r = spec.relations[0]
        body = f"{group_phrase(spec.groups[r.a])} {r.relation} {group_phrase(spec.groups[r.b])}"
    else:
        body = " and ".join(group_phrase(g) for g in spec.groups)
    if spec.background:
        body += f" on a {' and '.join(spec.background)} background"
    return body


class CaptionError(ValueError):
    pass


_SHAPE_OF_WORD = {**{s: s for s in SHAPES}, **{p: s for s, p in PLURALS.items()}}
_NUMBER_OF_WORD = {w: n for n, w in NUMBERS.items()}
_POSITION_OF_PHRASE = {phrase: key for key, (phrase, _, _) in POSITIONS.items()}


def parse_caption(text: str) -> Spec:
    """The Spec of a grammar caption; CaptionError names the first word it cannot read."""
    words = text.strip().split()
    pos = 0

    def peek(k: int = 0) -> Optional[str]:
        return words[pos + k] if pos + k < len(words) else None

    def take(expected: Optional[Sequence[str]] = None) -> str:
        nonlocal pos
        w = peek()
        if w is None or (expected is not None and w not in expected):
            want = "/".join(expected) if expected else "a word"
            raise CaptionError(f"caption {text!r}: expected {want} at word {pos + 1}, got {w!r}")
        pos += 1
        return w

    def position() -> Optional[str]:
        nonlocal pos
        for phrase, key in _POSITION_OF_PHRASE.items():
            n = len(phrase.split())
            if " ".join(words[pos:pos + n]) == phrase:
                pos += n
                return key
        return None

    def group() -> Group:
        w = take()
        if w in ("a", "an"):
            size = take(SIZE_WORDS) if peek() in SIZE_WORDS else None
            colour = take(list(COLOURS))
            shape = take(list(SHAPES))
            if w != article(size or colour):
                raise CaptionError(f"caption {text!r}: {w!r} before {size or colour!r}")
            return Group(colour, shape, 1, size, position())
        if w in _NUMBER_OF_WORD:
            colour = take(list(COLOURS))
            shape = _SHAPE_OF_WORD[take(list(PLURALS.values()))]
            return Group(colour, shape, _NUMBER_OF_WORD[w])
        raise CaptionError(f"caption {text!r}: expected a/an/two/three/four at word {pos}, "
                           f"got {w!r}")

    groups = [group()]
    relations: List[Relation] = []
    rel = None
    for r in RELATIONS:
        n = len(r.split())
        if " ".join(words[pos:pos + n]) == r:
            rel = r
            pos += n
            break
    if rel is not None:
        if groups[0].count != 1 or groups[0].position:
            raise CaptionError(f"caption {text!r}: a relation needs single, unplaced objects")
        groups.append(group())
        if groups[1].count != 1 or groups[1].position:
            raise CaptionError(f"caption {text!r}: a relation needs single, unplaced objects")
        relations.append(Relation(0, rel, 1))
    else:
        while peek() == "and":
            take()
            groups.append(group())
    background = None
    if peek() == "on" and peek(1) == "a":
        take()
        take()
        bg = [take(list(BACKGROUNDS))]
        if peek() == "and":
            take()
            bg.append(take(list(BACKGROUNDS)))
        take(["background"])
        background = tuple(bg)
    if pos != len(words):
        raise CaptionError(f"caption {text!r}: unexpected {words[pos]!r} at word {pos + 1}")
    keys = [(g.colour, g.shape) for g in groups]
    if len(set(keys)) != len(keys):
        raise CaptionError(f"caption {text!r}: the same colour and shape named twice")
    return Spec(tuple(groups), tuple(relations), background)


# ----------------------------------------------------------------------------- scenes

def _size(rng: np.random.Generator, size_class: str) -> float:
    lo, hi = SIZE_RANGES[size_class]
    return float(rng.uniform(lo, hi))


def _fits(cx: float, cy: float, s: float) -> bool:
    h = s / 2 + MARGIN
    return h <= cx <= 1 - h and h <= cy <= 1 - h


def _apart(a: Tuple[float, float, float], b: Tuple[float, float, float]) -> bool:
    need = (a[2] + b[2]) / 2 + GAP
    return abs(a[0] - b[0]) >= need or abs(a[1] - b[1]) >= need


def _cell_centre(rng, key: str) -> Tuple[float, float]:
    _, row, col = POSITIONS[key]
    return (CELL_CENTRES[col] + rng.uniform(-CELL_JITTER, CELL_JITTER),
            CELL_CENTRES[row] + rng.uniform(-CELL_JITTER, CELL_JITTER))


def _relation_offset(rng, relation: str, need: float) -> Tuple[float, float]:
    """(dx, dy) from A to B so that `A relation B` holds clearly."""
    d = rng.uniform(max(0.3, need + 0.02), 0.7)
    e = rng.uniform(-0.25, 0.25) * d
    return {"left of": (d, e), "right of": (-d, e), "above": (e, d), "below": (e, -d)}[relation]


def _layout(rng, sizes: List[float], cells: List[Optional[str]],
            relation: Optional[str]) -> Optional[List[Tuple[float, float]]]:
    """Centres for objects of `sizes` (cells: a POSITIONS key or None each), or None."""
    placed: List[Tuple[float, float, float]] = []
    for i, s in enumerate(sizes):
        for _ in range(100):
            if relation is not None and i == 1:
                dx, dy = _relation_offset(rng, relation, (sizes[0] + s) / 2 + GAP)
                cx, cy = placed[0][0] + dx, placed[0][1] + dy
            elif cells[i] is not None:
                cx, cy = _cell_centre(rng, cells[i])
            else:
                cx, cy = rng.uniform(0, 1, size=2)
            if _fits(cx, cy, s) and all(_apart((cx, cy, s), p) for p in placed):
                placed.append((float(cx), float(cy), s))
                break
        else:
            return None
    return [(p[0], p[1]) for p in placed]


def _distinct_pairs(rng, n: int) -> List[Tuple[str, str]]:
    """n different (colour, shape) pairs."""
    pairs: List[Tuple[str, str]] = []
    while len(pairs) < n:
        p = (str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)))
        if p not in pairs:
            pairs.append(p)
    return pairs


def _random_spec(rng) -> Tuple[Spec, List[str]]:
    """A spec and each group's size class."""
    kind = rng.choice(["single", "count", "relation", "and"], p=[0.25, 0.2, 0.3, 0.25])
    relations: Tuple[Relation, ...] = ()
    if kind == "single":
        counts, cells = [1], [rng.choice(list(POSITIONS)) if rng.random() < 0.6 else None]
    elif kind == "count":
        counts, cells = [int(rng.integers(2, 5))], [None]
    elif kind == "relation":
        counts, cells = [1, 1], [None, None]
        relations = (Relation(0, str(rng.choice(RELATIONS)), 1),)
    else:
        while True:
            counts = [int(c) for c in rng.integers(1, 4, size=int(rng.integers(2, 4)))]
            if sum(counts) <= 4:
                break
        cells = [None] * len(counts)
        if rng.random() < 0.4:   # place each single object in its own cell
            free = list(POSITIONS)
            rng.shuffle(free)
            cells = [free.pop() if c == 1 else None for c in counts]
    pairs = _distinct_pairs(rng, len(counts))
    total = sum(counts)
    groups, classes = [], []
    for (colour, shape), count, cell in zip(pairs, counts, cells):
        choices = ["small", "medium", "large"] if total <= 2 and cell is None else ["small",
                                                                                     "medium"]
        size_class = str(rng.choice(choices))
        word = size_class if (count == 1 and size_class != "medium"
                              and rng.random() < 0.4) else None
        groups.append(Group(colour, shape, count, word, cell))
        classes.append(size_class)
    return Spec(tuple(groups), relations), classes


def _random_background(rng) -> Background:
    names = list(BACKGROUNDS)
    if rng.random() < 0.3:
        a, b = rng.choice(len(names), size=2, replace=False)
        return Background((names[a], names[b]), str(rng.choice(["horizontal", "vertical"])),
                          float(rng.uniform(0.35, 0.65)))
    return Background((names[int(rng.integers(len(names)))],))


def make_scene(seed: int) -> Scene:
    """The scene of `seed` (the same scene for the same seed, on every machine)."""
    rng = np.random.default_rng([seed, 0x5CE7E])
    while True:
        spec, classes = _random_spec(rng)
        sizes, cells, owners = [], [], []
        for gi, (g, c) in enumerate(zip(spec.groups, classes)):
            base = _size(rng, c)
            for _ in range(g.count):
                lo, hi = SIZE_RANGES[c]
                sizes.append(float(np.clip(base + rng.uniform(-0.01, 0.01), lo, hi)))
                cells.append(g.position)
                owners.append(gi)
        relation = spec.relations[0].relation if spec.relations else None
        centres = _layout(rng, sizes, cells, relation)
        if centres is not None:
            break
    background = _random_background(rng)
    if rng.random() < 0.4:
        spec = dataclasses.replace(spec, background=background.colours)
    objects = tuple(Obj(spec.groups[gi].shape, spec.groups[gi].colour, s, cx, cy, gi,
                        classes[gi])
                    for gi, s, (cx, cy) in zip(owners, sizes, centres))
    return Scene(seed, caption_of(spec), spec, objects, background)


def without_object(scene: Scene, index: int) -> Scene:
    """The same scene with one object removed (caption and spec unchanged: now wrong)."""
    objects = tuple(o for i, o in enumerate(scene.objects) if i != index)
    return dataclasses.replace(scene, objects=objects)


# ----------------------------------------------------------------------------- rendering

def shape_polygons(shape: str, x0: float, y0: float, s: float) -> List[List[Tuple[float, float]]]:
    """Polygons (pixel coordinates) of a shape in the square [x0, x0+s] x [y0, y0+s] (a circle
    is a 96-gon, a cross two bars)."""
    x1, y1, cx, cy = x0 + s, y0 + s, x0 + s / 2, y0 + s / 2
    if shape == "circle":
        n = 96
        return [[(cx + s / 2 * math.cos(2 * math.pi * k / n),
                  cy + s / 2 * math.sin(2 * math.pi * k / n)) for k in range(n)]]
    if shape == "square":
        return [[(x0, y0), (x1, y0), (x1, y1), (x0, y1)]]
    if shape == "triangle":
        return [[(cx, y0), (x1, y1), (x0, y1)]]
    if shape == "diamond":
        return [[(cx, y0), (x1, cy), (cx, y1), (x0, cy)]]
    if shape == "cross":
        a = s * CROSS_ARM / 2
        return [[(cx - a, y0), (cx + a, y0), (cx + a, y1), (cx - a, y1)],
                [(x0, cy - a), (x1, cy - a), (x1, cy + a), (x0, cy + a)]]
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, width: int, height: int, supersample: int = 0) -> np.ndarray:
    """The scene as uint8 [height, width, 3], anti-aliased by drawing at `supersample` times
    the size (default: enough for a 1024-pixel canvas, at least 2x) and box-filtering down."""
    from PIL import Image, ImageDraw

    if supersample <= 0:
        supersample = max(2, int(math.ceil(1024 / max(width, height))))
    W, H = width * supersample, height * supersample
    short = min(W, H)
    bg = scene.background
    img = Image.new("RGB", (W, H), BACKGROUNDS[bg.colours[0]])
    draw = ImageDraw.Draw(img)
    if bg.split == "horizontal":
        draw.rectangle([0, round(bg.at * H), W, H], fill=BACKGROUNDS[bg.colours[1]])
    elif bg.split == "vertical":
        draw.rectangle([round(bg.at * W), 0, W, H], fill=BACKGROUNDS[bg.colours[1]])
    for o in scene.objects:
        s = o.size * short
        x0, y0 = o.cx * W - s / 2, o.cy * H - s / 2
        for poly in shape_polygons(o.shape, x0, y0, s):
            draw.polygon(poly, fill=COLOURS[o.colour])
    if supersample > 1:
        img = img.resize((width, height), Image.BOX)
    return np.asarray(img, dtype=np.uint8).copy()


# ----------------------------------------------------------------------------- corpus

def captions(seeds: Sequence[int]) -> List[str]:
    return [make_scene(int(s)).caption for s in seeds]


def phrase_corpus() -> List[str]:
    """Every phrase of the grammar at least once (tokenizer training text): each single and
    counted noun phrase, each position, relation and background phrase."""
    lines = []
    for colour in COLOURS:
        for shape in SHAPES:
            lines.append(group_phrase(Group(colour, shape)))
            for size in SIZE_WORDS:
                lines.append(group_phrase(Group(colour, shape, 1, size)))
            for n in NUMBERS:
                lines.append(group_phrase(Group(colour, shape, n)))
    for key in POSITIONS:
        lines.append(group_phrase(Group("red", "circle", 1, None, key)))
    for rel in RELATIONS:
        lines.append(f"a blue square {rel} a yellow triangle")
    names = list(BACKGROUNDS)
    for a in names:
        lines.append(f"a green diamond on a {a} background")
        for b in names:
            if a != b:
                lines.append(f"a purple cross on a {a} and {b} background")
    return lines


# ----------------------------------------------------------------------------- wrong captions

def wrong_specs(scene: Scene) -> List[Tuple[str, Spec]]:
    """Specs that are false for `scene`, one per kind of change that applies, deterministic:
    colour, shape, count (one group's; not in relation captions), position, size (small <->
    large), relation (operands swapped, and the perpendicular relation), background (another
    colour) and a dropped group (the caption leaves out objects that are there)."""
    spec, out = scene.spec, []
    rng = np.random.default_rng([scene.seed, 0xBAD])
    used = {(g.colour, g.shape) for g in spec.groups}

    def with_group(i: int, **kw) -> Spec:
        groups = list(spec.groups)
        groups[i] = dataclasses.replace(groups[i], **kw)
        return dataclasses.replace(spec, groups=tuple(groups))

    i = int(rng.integers(len(spec.groups)))
    g = spec.groups[i]
    colours = [c for c in COLOURS if (c, g.shape) not in used]
    out.append(("colour", with_group(i, colour=str(rng.choice(colours)))))
    shapes = [s for s in SHAPES if (g.colour, s) not in used]
    out.append(("shape", with_group(i, shape=str(rng.choice(shapes)))))
    if not spec.relations:   # a relation's operands are single objects
        n = int(rng.choice([n for n in (g.count - 1, g.count + 1) if 1 <= n <= 4]))
        out.append(("count", with_group(i, count=n, size=g.size if n == 1 else None,
                                        position=g.position if n == 1 else None)))
    for j, h in enumerate(spec.groups):
        if h.position:
            _, row, col = POSITIONS[h.position]
            others = [k for k, (_, r, c) in POSITIONS.items() if (r, c) != (row, col)]
            out.append(("position", with_group(j, position=str(rng.choice(others)))))
            break
    for j, h in enumerate(spec.groups):
        if h.size:
            out.append(("size", with_group(j, size="large" if h.size == "small" else "small")))
            break
    if spec.relations:
        r = spec.relations[0]
        out.append(("relation swapped", dataclasses.replace(
            spec, groups=(spec.groups[r.b], spec.groups[r.a]))))
        perpendicular = {"left of": "above", "right of": "below", "above": "right of",
                         "below": "left of"}[r.relation]
        out.append(("relation changed", dataclasses.replace(
            spec, relations=(Relation(r.a, perpendicular, r.b),))))
    elif len(spec.groups) > 1:
        keep = tuple(h for j, h in enumerate(spec.groups) if j != i)
        out.append(("group dropped", dataclasses.replace(spec, groups=keep)))
    if spec.background:
        present = set(scene.background.colours)
        other = str(rng.choice([b for b in BACKGROUNDS if b not in present]))
        out.append(("background", dataclasses.replace(spec, background=(other,))))
    return out
