"""model.yaml validation: good manifests pass; each problem is named by its key."""
import copy
import re
import os

import pytest
import yaml

from models import bundle


def good_manifest():
    return {
        "format": 1, "name": "flux-tiny", "kind": "image", "architecture": "flux",
        "latent_channels": 16, "vae_scale": 8, "patch": 2,
        "text": {"t5_max_length": 64, "clip_max_length": 77},
        "vae": {"scaling_factor": 0.3611, "shift_factor": 0.1159},
        "defaults": {"steps": 4, "guidance": 3.5, "shift_base": 0.5, "shift_max": 1.15,
                     "true_cfg": False},
        "grat": {"pattern": "B", "group": [4, 4], "radius": 1},
        "limits": {"min_side": 64, "max_side": 1024, "side_multiple": 16,
                   "max_pixels": 1024 * 1024, "min_steps": 1, "max_steps": 50, "max_frames": 1,
                   "max_prompt_tokens": 64},
        "files": {k: k + ".bin" for k in bundle.required_files()},
    }


def touch_files(folder, m):
    for name in m["files"].values():
        open(os.path.join(folder, name), "wb").close()


def test_good_manifest_round_trips(tmp_path):
    m = good_manifest()
    touch_files(tmp_path, m)
    bundle.write_manifest(str(tmp_path), m)
    assert bundle.load_manifest(str(tmp_path)) == m


@pytest.mark.parametrize("mutate, needle", [
    (lambda m: m.pop("kind"), "model.yaml.kind: missing"),
    (lambda m: m.update(kind="audio"), "model.yaml.kind: must be one of"),
    (lambda m: m.update(colour="red"), "model.yaml.colour: unknown key"),
    (lambda m: m.update(format=2), "model.yaml.format: expected 1"),
    (lambda m: m.update(patch=0), "model.yaml.patch: must be >= 1"),
    (lambda m: m.update(latent_channels="16"), "model.yaml.latent_channels: expected int"),
    (lambda m: m["grat"].update(pattern="Y"), "model.yaml.grat.pattern"),
    (lambda m: m["grat"].update(group=[4]), "model.yaml.grat.group"),
    (lambda m: m["grat"].update(radius=0), "model.yaml.grat.radius"),
    (lambda m: m["limits"].update(min_steps=60), "model.yaml.limits.min_steps"),
    (lambda m: m["defaults"].update(steps=99), "model.yaml.defaults.steps"),
    (lambda m: m["defaults"].update(true_cfg=1), "model.yaml.defaults.true_cfg: expected bool"),
    (lambda m: m["text"].pop("clip_max_length"), "model.yaml.text.clip_max_length: missing"),
    (lambda m: m["files"].pop("vae_decoder"), "model.yaml.files.vae_decoder: missing"),
    (lambda m: m["files"].update(t5="../../etc/passwd"), "model.yaml.files.t5: must be a path"),
])
def test_bad_manifest_names_the_key(mutate, needle):
    m = copy.deepcopy(good_manifest())
    mutate(m)
    with pytest.raises(bundle.BundleError, match=needle.replace(".", r"\.").replace("[", r"\[")):
        bundle.validate_manifest(m)


def test_missing_file_is_refused(tmp_path):
    m = good_manifest()
    touch_files(tmp_path, m)
    os.remove(os.path.join(tmp_path, m["files"]["clip_merges"]))
    with pytest.raises(bundle.BundleError, match="files.clip_merges: file clip_merges.bin not found"):
        bundle.validate_manifest(m, str(tmp_path))


def test_bad_yaml_is_refused(tmp_path):
    (tmp_path / "model.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(bundle.BundleError, match="not valid YAML"):
        bundle.load_manifest(str(tmp_path))
    (tmp_path / "model.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(bundle.BundleError, match="must be a mapping"):
        bundle.load_manifest(str(tmp_path))


def good_video_manifest():
    return {
        "format": 1, "name": "hunyuan-video-tiny", "kind": "video", "architecture": "hunyuan",
        "latent_channels": 16, "vae_scale": 8, "vae_temporal_scale": 4, "patch": 2,
        "text": {"llm_max_length": 64, "llm_crop_start": 95, "llm_template": "<s>{}</s>",
                 "clip_max_length": 77},
        "vae": {"scaling_factor": 0.476986, "shift_factor": 0.0},
        "defaults": {"steps": 4, "guidance": 6.0, "shift": 7.0, "true_cfg": False,
                     "frames": 9, "fps": 8},
        "grat": {"pattern": "B", "group": [2, 4, 4], "radius": 1},
        "limits": {"min_side": 32, "max_side": 512, "side_multiple": 16,
                   "max_pixels": 512 * 288, "min_steps": 1, "max_steps": 100, "max_frames": 33,
                   "max_prompt_tokens": 64, "max_video_pixels": 512 * 288 * 33},
        "files": {k: k + ".bin" for k in bundle.required_files("video")},
    }


def test_good_video_manifest_round_trips(tmp_path):
    m = good_video_manifest()
    touch_files(tmp_path, m)
    bundle.write_manifest(str(tmp_path), m)
    assert bundle.load_manifest(str(tmp_path)) == m


@pytest.mark.parametrize("mutate, needle", [
    (lambda m: m.pop("vae_temporal_scale"), "model.yaml.vae_temporal_scale: missing"),
    (lambda m: m.update(architecture="flux"), "model.yaml.architecture: a video bundle must be"),
    (lambda m: m["text"].update(t5_max_length=64), "model.yaml.text.t5_max_length: unknown key"),
    (lambda m: m["text"].pop("llm_crop_start"), "model.yaml.text.llm_crop_start: missing"),
    (lambda m: m["text"].update(llm_template="no slot"), "model.yaml.text.llm_template: must"),
    (lambda m: m["defaults"].update(shift_base=0.5), "model.yaml.defaults.shift_base: unknown"),
    (lambda m: m["defaults"].update(frames=8), "model.yaml.defaults.frames: must be 4k+1"),
    (lambda m: m["defaults"].update(frames=37), "model.yaml.defaults.frames: must be 4k+1"),
    (lambda m: m["defaults"].update(fps=0), "model.yaml.defaults.fps: must be >= 1"),
    (lambda m: m["limits"].update(max_frames=32), "model.yaml.limits.max_frames: must be 4k+1"),
    (lambda m: m["limits"].pop("max_video_pixels"), "model.yaml.limits.max_video_pixels"),
    (lambda m: m["grat"].update(group=[4, 4]), "model.yaml.grat.group: 3 positive ints"),
    (lambda m: m["files"].pop("llm"), "model.yaml.files.llm: missing"),
    (lambda m: m["files"].update(t5="t5.bin"), "model.yaml.files.t5: unknown file role"),
])
def test_bad_video_manifest_names_the_key(mutate, needle):
    m = copy.deepcopy(good_video_manifest())
    mutate(m)
    with pytest.raises(bundle.BundleError, match=re.escape(needle)):
        bundle.validate_manifest(m)


def test_memory_table_round_trips(tmp_path):
    from models.export_video import MEMORY_H200
    m = good_video_manifest()
    m["memory"] = copy.deepcopy(MEMORY_H200)
    touch_files(tmp_path, m)
    bundle.write_manifest(str(tmp_path), m)
    assert bundle.load_manifest(str(tmp_path))["memory"] == MEMORY_H200


@pytest.mark.parametrize("memory, needle", [
    ({"peak_gib": [[1, 2.0]]}, "model.yaml.memory.measured_on: missing"),
    ({"measured_on": "H200", "peak_gib": []}, "model.yaml.memory.peak_gib: a list"),
    ({"measured_on": "H200", "peak_gib": [[100, 2.0], [50, 3.0]]}, "tokens increasing"),
    ({"measured_on": "H200", "peak_gib": [[100, 0]]}, "GiB > 0"),
    ({"measured_on": "H200", "peak_gib": [[100]]}, "model.yaml.memory.peak_gib"),
    ({"measured_on": "H200", "peak_gib": [["x", 1.0]]}, "model.yaml.memory.peak_gib"),
    ({"measured_on": "H200", "peak_gib": [[1, 1.0]], "slope": 2}, "memory.slope: unknown key"),
])
def test_bad_memory_table_names_the_key(memory, needle):
    m = good_video_manifest()
    m["memory"] = memory
    with pytest.raises(bundle.BundleError, match=re.escape(needle)):
        bundle.validate_manifest(m)


def test_pattern_names_match_the_kernels_header():
    """bundle.PATTERNS spells what kernels/include/grat/pattern.h (the one home) defines."""
    header = os.path.join(os.path.dirname(__file__), "..", "..", "kernels", "include", "grat",
                          "pattern.h")
    with open(header) as f:
        text = f.read()
    body = text[text.index("inline const char* pattern_name"):text.index("find_pattern")]
    assert tuple(re.findall(r'return "([^"?]+)";', body)) == bundle.PATTERNS
