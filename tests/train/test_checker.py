"""The scene checker: every rendered ground-truth scene passes (several resolutions and
aspects, also blurred / noisy / speckled / colour-shifted like a model's output), and wrong
captions or images with an object missing fail with the clause that is wrong."""
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from models.train import checker, world

# (width, height, seeds): 256^2 x 300, 512x256 x 150, 256x512 x 50, 1024^2 x 60
RESOLUTIONS = [(256, 256, 300), (512, 256, 150), (256, 512, 50), (1024, 1024, 60)]


def model_like(img: np.ndarray, seed: int) -> np.ndarray:
    """What a small generator's output looks like: specks of palette colours (also on the
    objects), blur of ~1% of the short side, a colour cast, noise."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    short = min(h, w)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    colours = list(world.COLOURS.values()) + list(world.BACKGROUNDS.values())
    for _ in range(30):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), 0.005 * short
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colours[rng.integers(len(colours))])
    x = np.asarray(pil.filter(ImageFilter.GaussianBlur(0.008 * short)), np.float32)
    x = x * rng.uniform(0.9, 1.1, size=3) + rng.uniform(-12, 12, size=3)
    x = x + rng.normal(0, 10, size=x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("w,h,n", RESOLUTIONS)
def test_ground_truth_scenes_pass(w, h, n):
    failed = []
    for seed in range(n):
        s = world.make_scene(seed)
        v = checker.check(world.render(s, w, h), s.caption)
        if not v.ok:
            failed.append(f"seed {seed}: {s.caption}\n{v}")
    assert not failed, "\n".join(failed[:3]) + f"\n({len(failed)} of {n} failed)"


@pytest.mark.parametrize("w,h,n", [(256, 256, 200), (512, 256, 40), (1024, 1024, 15)])
def test_model_like_scenes_pass(w, h, n):
    failed = []
    for seed in range(n):
        s = world.make_scene(seed)
        v = checker.check(model_like(world.render(s, w, h), seed), s.caption)
        if not v.ok:
            failed.append(f"seed {seed}: {s.caption}\n{v}")
    assert not failed, "\n".join(failed[:3]) + f"\n({len(failed)} of {n} failed)"


def test_detection_matches_the_scene():
    for seed in range(40):
        s = world.make_scene(seed)
        found, background = checker.detect(world.render(s, 384, 256))
        assert len(found) == len(s.objects)
        for o in s.objects:
            d = min(found, key=lambda f: (f.cx - o.cx) ** 2 + (f.cy - o.cy) ** 2)
            assert (d.colour, d.shape) == (o.colour, o.shape)
            assert abs(d.cx - o.cx) < 0.02 and abs(d.cy - o.cy) < 0.02
            assert abs(d.size - o.size) < 0.03
        assert set(background) == set(s.background.colours)


# The clause a wrong caption must fail on, per kind of change (world.wrong_specs).
FAILS_ON = {"colour": "count", "shape": "count", "count": "count", "position": "position",
            "size": "size", "relation swapped": "relation", "relation changed": "relation",
            "group dropped": "nothing else", "background": "background"}


@pytest.mark.parametrize("w,h,n", [(256, 256, 300), (512, 256, 60)])
def test_wrong_captions_fail_on_the_wrong_clause(w, h, n):
    seen = set()
    for seed in range(n):
        s = world.make_scene(seed)
        objects, background = checker.detect(world.render(s, w, h))
        assert checker.score(objects, background, s.spec).ok
        for kind, spec in world.wrong_specs(s):
            caption = world.caption_of(spec)
            assert world.parse_caption(caption) == spec
            v = checker.score(objects, background, spec)
            assert not v.ok, f"seed {seed}: {kind}: {s.caption!r} -> {caption!r} passed"
            failed = {c.kind for c in v.clauses if not c.ok}
            assert FAILS_ON[kind] in failed, (kind, caption, v.reasons)
            assert all(c.reason for c in v.clauses if not c.ok)
            seen.add(kind)
    assert seen == set(FAILS_ON)


@pytest.mark.parametrize("w,h", [(256, 256), (1024, 1024)])
def test_an_image_with_an_object_missing_fails(w, h):
    n = 0
    for seed in range(60 if w == 256 else 10):
        s = world.make_scene(seed)
        for i in range(len(s.objects)):
            v = checker.check(world.render(world.without_object(s, i), w, h), s.caption)
            assert not v.ok, (seed, i, s.caption)
            assert any(c.kind in ("count", "relation") for c in v.clauses if not c.ok)
            n += 1
    assert n >= 10


def test_an_extra_object_fails_nothing_else():
    s = world.make_scene(5)
    extra = world.Obj("circle", "red", 0.14, 0.15, 0.15, 0, "small")
    assert s.caption == "a large blue triangle on a black background"
    img = world.render(world.dataclasses.replace(s, objects=s.objects + (extra,)), 256, 256)
    v = checker.check(img, s.caption)
    assert not v.ok and [c.kind for c in v.clauses if not c.ok] == ["nothing else"]
    assert "red circle" in v.reasons[0]


def test_blank_and_noise_images_fail():
    blank = np.full((256, 256, 3), 240, np.uint8)
    v = checker.check(blank, "a red circle")
    assert not v.ok and v.objects == () and v.background == ("white",)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert not checker.check(noise, "a red circle").ok


def test_relation_and_position_geometry():
    a = checker.Detected("red", "circle", 0.2, 0.5, 0.2, 0.03, 0.0)
    b = checker.Detected("blue", "square", 0.7, 0.6, 0.2, 0.04, 0.0)
    assert checker.relation_holds(a, "left of", b)[0]
    assert checker.relation_holds(b, "right of", a)[0]
    assert not checker.relation_holds(a, "right of", b)[0]
    assert not checker.relation_holds(a, "above", b)[0]   # mostly horizontal offset
    c = checker.Detected("blue", "square", 0.25, 0.9, 0.2, 0.04, 0.0)
    assert checker.relation_holds(a, "above", c)[0] and checker.relation_holds(c, "below", a)[0]
    spec = world.parse_caption("a red circle on the left")
    assert checker.score([a], ("white",), spec).ok
    assert not checker.score([a], ("white",), world.parse_caption("a red circle on the right")).ok


def test_components_are_8_connected_and_count_holes():
    m = np.zeros((8, 8), bool)
    m[1, 1] = m[2, 2] = True          # diagonal neighbours: one component
    m[5:7, 5:7] = True                # a second one
    lab = checker.components(m)
    assert lab.max() == 2 and lab[1, 1] == lab[2, 2] != lab[5, 5]
    ring = np.ones((5, 5), bool)
    ring[2, 2] = False
    assert checker.fill_holes(ring).all()


def test_shape_templates_are_far_apart():
    t = checker.templates(48)
    for a in world.SHAPES:
        for b in world.SHAPES:
            if a < b:
                assert checker.shape_distance(t[a], t[b]) > 0.3, (a, b)


def test_command_line(tmp_path, capsys):
    s = world.make_scene(2)
    path = tmp_path / "x.png"
    Image.fromarray(world.render(s, 256, 256)).save(path)
    assert checker.main([str(path), s.caption]) == 0
    assert checker.main([str(path), "a blue circle right of an orange cross"]) == 1
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" in out and "relation" in out
    # a caption outside the grammar: nothing to check against (2), not a failed check (1)
    assert checker.main([str(path), "a red fox in the snow"]) == 2
    assert "not checked" in capsys.readouterr().out
