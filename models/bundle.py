"""Model bundle: a folder with model.yaml, TorchScript files and tokenizer files.

models/export.py writes bundles; the C++ engine reads them. Both sides validate the same
rules (validate_manifest here, engine/ in C++): a bundle with a missing file or a bad key is
refused with a message naming the key.
"""
import os
from typing import Any, Dict, List

import yaml

FORMAT_VERSION = 1

# key -> (type, required); nested dicts are validated by their own tables. Video bundles
# (kind video, architecture hunyuan) have their own text / defaults / files tables and two
# more keys; the rest is shared.
_TOP = {
    "format": (int, True),
    "name": (str, True),
    "kind": (str, True),
    "architecture": (str, True),
    "latent_channels": (int, True),
    "vae_scale": (int, True),
    "patch": (int, True),
    "text": (dict, True),
    "vae": (dict, True),
    "defaults": (dict, True),
    "grat": (dict, True),
    "limits": (dict, True),
    "files": (dict, True),
    "memory": (dict, False),
}
_TOP_VIDEO = dict(_TOP, vae_temporal_scale=(int, True))
_TEXT = {"t5_max_length": (int, True), "clip_max_length": (int, True)}
# llm_template: the prompt template ("{}" marks the prompt); llm_max_length: prompt tokens
# after the crop; llm_crop_start: tokens of the template before the prompt (tokenized at
# llm_max_length + llm_crop_start, then cut from the output).
_TEXT_VIDEO = {"llm_max_length": (int, True), "llm_crop_start": (int, True),
               "llm_template": (str, True), "clip_max_length": (int, True)}
_VAE = {"scaling_factor": (float, True), "shift_factor": (float, True)}
_DEFAULTS = {
    "steps": (int, True),
    "guidance": (float, True),
    "shift_base": (float, True),
    "shift_max": (float, True),
    "true_cfg": (bool, True),
}
# Video: one fixed flow shift (HunyuanVideo's scheduler uses 7.0), frames and fps.
_DEFAULTS_VIDEO = {
    "steps": (int, True),
    "guidance": (float, True),
    "shift": (float, True),
    "true_cfg": (bool, True),
    "frames": (int, True),
    "fps": (int, True),
}
_GRAT = {"pattern": (str, True), "group": (list, True), "radius": (int, True)}
_LIMITS = {
    "min_side": (int, True),
    "max_side": (int, True),
    "side_multiple": (int, True),
    "max_pixels": (int, True),
    "min_steps": (int, True),
    "max_steps": (int, True),
    "max_frames": (int, True),
    "max_prompt_tokens": (int, True),
}
# max_video_pixels: frames x width x height of one request.
_LIMITS_VIDEO = dict(_LIMITS, max_video_pixels=(int, True))
# Optional: peak device memory of one request by its transformer tokens, measured (the engine
# refuses requests over its device's memory up front and sizes batches by it).
_MEMORY = {"measured_on": (str, True), "peak_gib": (list, True)}
_FILES = ["transformer", "t5", "clip", "vae_decoder", "t5_tokenizer", "clip_vocab",
          "clip_merges"]
_FILES_VIDEO = ["transformer", "llm", "clip", "vae_decoder", "llm_tokenizer", "clip_vocab",
                "clip_merges"]
KINDS = ("image", "video")
ARCHITECTURES = {"image": "flux", "video": "hunyuan"}
PATTERNS = ("full", "B", "X")


class BundleError(ValueError):
    """A bundle that cannot be served; the message names the key or file."""


def _check_table(table: Dict[str, Any], spec: Dict[str, tuple], where: str) -> None:
    if not isinstance(table, dict):
        raise BundleError(f"{where}: must be a mapping")
    for key in table:
        if key not in spec:
            raise BundleError(f"{where}.{key}: unknown key (known: {', '.join(sorted(spec))})")
    for key, (typ, required) in spec.items():
        if key not in table:
            if required:
                raise BundleError(f"{where}.{key}: missing")
            continue
        val = table[key]
        ok = isinstance(val, typ) and not (typ is int and isinstance(val, bool))
        if typ is float:
            ok = isinstance(val, (int, float)) and not isinstance(val, bool)
        if not ok:
            raise BundleError(f"{where}.{key}: expected {typ.__name__}, got {val!r}")


def _check_memory(mem: Dict[str, Any]) -> None:
    _check_table(mem, _MEMORY, "model.yaml.memory")
    rule = "model.yaml.memory.peak_gib: a list of [tokens, GiB] pairs, tokens increasing, GiB > 0"
    points, last = mem["peak_gib"], 0
    if not points:
        raise BundleError(rule)
    for pt in points:
        ok = (isinstance(pt, list) and len(pt) == 2 and isinstance(pt[0], int)
              and not isinstance(pt[0], bool) and isinstance(pt[1], (int, float))
              and not isinstance(pt[1], bool))
        if not ok or pt[0] <= last or not pt[1] > 0:
            raise BundleError(f"{rule}; got {pt!r}")
        last = pt[0]


def validate_manifest(m: Dict[str, Any], folder: str = None) -> None:
    """Raises BundleError for the first problem found; checks files exist if folder given."""
    if not isinstance(m, dict):
        raise BundleError("model.yaml: must be a mapping")
    video = m.get("kind") == "video"
    _check_table(m, _TOP_VIDEO if video else _TOP, "model.yaml")
    if m["format"] != FORMAT_VERSION:
        raise BundleError(f"model.yaml.format: expected {FORMAT_VERSION}, got {m['format']}")
    if m["kind"] not in KINDS:
        raise BundleError(f"model.yaml.kind: must be one of {KINDS}, got {m['kind']!r}")
    if m["architecture"] != ARCHITECTURES[m["kind"]]:
        raise BundleError(f"model.yaml.architecture: a {m['kind']} bundle must be "
                          f"{ARCHITECTURES[m['kind']]!r}, got {m['architecture']!r}")
    for key in ("latent_channels", "vae_scale", "patch") + (("vae_temporal_scale",) if video
                                                            else ()):
        if m[key] < 1:
            raise BundleError(f"model.yaml.{key}: must be >= 1, got {m[key]}")
    _check_table(m["text"], _TEXT_VIDEO if video else _TEXT, "model.yaml.text")
    _check_table(m["vae"], _VAE, "model.yaml.vae")
    _check_table(m["defaults"], _DEFAULTS_VIDEO if video else _DEFAULTS, "model.yaml.defaults")
    _check_table(m["grat"], _GRAT, "model.yaml.grat")
    _check_table(m["limits"], _LIMITS_VIDEO if video else _LIMITS, "model.yaml.limits")
    g = m["grat"]
    if g["pattern"] not in PATTERNS:
        raise BundleError(f"model.yaml.grat.pattern: must be one of {PATTERNS}, got {g['pattern']!r}")
    dims = 3 if video else 2
    if len(g["group"]) != dims or any(not isinstance(x, int) or x < 1 for x in g["group"]):
        raise BundleError(f"model.yaml.grat.group: {dims} positive ints, got {g['group']!r}")
    if g["radius"] < 1:
        raise BundleError(f"model.yaml.grat.radius: must be >= 1, got {g['radius']}")
    lim = m["limits"]
    if not 1 <= lim["min_side"] <= lim["max_side"]:
        raise BundleError("model.yaml.limits.min_side: must be in [1, max_side]")
    if not 1 <= lim["min_steps"] <= lim["max_steps"]:
        raise BundleError("model.yaml.limits.min_steps: must be in [1, max_steps]")
    if not lim["min_steps"] <= m["defaults"]["steps"] <= lim["max_steps"]:
        raise BundleError("model.yaml.defaults.steps: must be within limits.min_steps..max_steps")
    if video:
        if (lim["max_frames"] - 1) % 4 != 0:
            raise BundleError(f"model.yaml.limits.max_frames: must be 4k+1, got "
                              f"{lim['max_frames']}")
        frames = m["defaults"]["frames"]
        if frames < 1 or (frames - 1) % 4 != 0 or frames > lim["max_frames"]:
            raise BundleError("model.yaml.defaults.frames: must be 4k+1 in [1, "
                              f"limits.max_frames]; got {frames}")
        if m["defaults"]["fps"] < 1:
            raise BundleError(f"model.yaml.defaults.fps: must be >= 1, got "
                              f"{m['defaults']['fps']}")
        if m["text"]["llm_template"].count("{}") != 1:
            raise BundleError("model.yaml.text.llm_template: must contain '{}' exactly once")
        for key in ("llm_max_length", "llm_crop_start", "clip_max_length"):
            if m["text"][key] < (0 if key == "llm_crop_start" else 1):
                raise BundleError(f"model.yaml.text.{key}: out of range, got {m['text'][key]}")
    if "memory" in m:
        _check_memory(m["memory"])
    files = m["files"]
    roles = _FILES_VIDEO if video else _FILES
    if not isinstance(files, dict):
        raise BundleError("model.yaml.files: must be a mapping")
    for key in files:
        if key not in roles:
            raise BundleError(f"model.yaml.files.{key}: unknown file role")
    for key in roles:
        if key not in files or not isinstance(files[key], str) or not files[key]:
            raise BundleError(f"model.yaml.files.{key}: missing")
        name = files[key]
        if os.path.isabs(name) or ".." in name.split("/"):
            raise BundleError(f"model.yaml.files.{key}: must be a path inside the bundle")
        if folder is not None and not os.path.isfile(os.path.join(folder, name)):
            raise BundleError(f"model.yaml.files.{key}: file {name} not found in {folder}")


def write_manifest(folder: str, manifest: Dict[str, Any]) -> str:
    validate_manifest(manifest, folder)
    path = os.path.join(folder, "model.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(manifest, f, sort_keys=False)
    return path


def load_manifest(folder: str) -> Dict[str, Any]:
    path = os.path.join(folder, "model.yaml")
    if not os.path.isfile(path):
        raise BundleError(f"model.yaml: not found in {folder}")
    try:
        with open(path) as f:
            m = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise BundleError(f"model.yaml: not valid YAML: {e}") from None
    validate_manifest(m, folder)
    return m


def required_files(kind: str = "image") -> List[str]:
    return list(_FILES_VIDEO if kind == "video" else _FILES)
