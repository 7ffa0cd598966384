"""Tiny Llama-3-style tokenizer files for tests and tiny video presets.

`write_tiny_llama_tokenizer(folder)` trains, from text held in this module and in
`models.tokenizer_files` (no repo files are read, so the output only changes when this code does),
a small tokenizer in the exact layout of HunyuanVideo's text-encoder tokenizer (llava-llama-3-8b:
the `tokenizer/` folder of hunyuanvideo-community/HunyuanVideo) and writes:

- `tokenizer.json`: the `tokenizers` fast-tokenizer file as Llama 3 has it: no normalizer; the
  pre-tokenizer Sequence[Split(Llama 3's regex, Isolated), ByteLevel(add_prefix_space=false,
  use_regex=false)]; a byte-level BPE model (byte_fallback false, ignore_merges true, no unk
  token, merges as "left right" strings) whose first 256 ids are the byte symbols in GPT-2's
  order, then the trained tokens, then a few whole words; its merges are derived from the
  vocabulary the way transformers converted Llama 3's tiktoken ranks (every split of a token into
  two tokens, by rank), so several merges make the same token and some tokens (here: some of the
  added words) are never reached by merges, only through ignore_merges, as in the real file; then
  Llama 3's 256 special tokens (`<|begin_of_text|>`, `<|end_of_text|>`,
  `<|reserved_special_token_N|>`, `<|start_header_id|>`, `<|end_header_id|>`, `<|eot_id|>`, in
  Llama 3's order) and llava-llama-3's `<unk>`, `<image>`, `<pad>`; a TemplateProcessing
  post-processor that puts `<|begin_of_text|>` first; a ByteLevel decoder.
- `tokenizer_config.json` and `special_tokens_map.json`: the real folder's keys (pad token
  `<pad>`, padding side right, add_bos_token, tokenizer_class LlamaTokenizer).

Load it with `transformers.PreTrainedTokenizerFast.from_pretrained(folder)` (or AutoTokenizer).
Not with `LlamaTokenizerFast`, which is what the real config's `tokenizer_class` names and what
diffusers' HunyuanVideoPipeline uses: since transformers v5 that class replaces the file's
byte-level pre-tokenizer with SentencePiece's Metaspace (transformers issue #45488), which is
wrong for Llama 3 and for this file alike.

The output is deterministic: the same files for the same `tokenizers` version.
"""

import argparse
import json
import os

from models.tokenizer_files import TRAINING_TEXT

# Llama 3's pre-tokenization pattern (tiktoken's cl100k-style split), as its tokenizer.json has it.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

BPE_VOCAB_SIZE = 3000  # byte symbols + trained tokens (the real model: 128000)

# Llama 3's special tokens, ids 128000.. in the real file (here: after the BPE vocabulary).
LLAMA3_SPECIAL_TOKENS = (
    ["<|begin_of_text|>", "<|end_of_text|>"]
    + [f"<|reserved_special_token_{i}|>" for i in range(4)]
    + ["<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"]
    + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)]
)
# llava-llama-3-8b's additions: ids 128256, 128257, 128258 in its tokenizer_config.json, which
# HunyuanVideo's tokenizer/ copies (its text encoder's pad_token_id is 128258).
LLAVA_SPECIAL_TOKENS = ["<unk>", "<image>", "<pad>"]

# Whole words added to the vocabulary (when the trained merges do not already make them one
# token); those the converted merges do not reach either are made by ignore_merges only.
WORDS_WITHOUT_MERGES = [
    " photograph", " watercolor", " lighthouse", " detailed", " cinematic", " golden", " snow",
    " fox", " light", " the", " video", " camera", " atmosphere", " relationships", " temporal",
    " transitions", "Describe", " aspects", " painting", " castle", " Café", " 東京", "   ",
]

# More training text in Llama 3's domain: its chat format, HunyuanVideo's prompt template,
# video prompts, digits, code and whitespace runs.
LLAMA_TRAINING_TEXT = """<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Describe the video by detailing the following aspects: 1. The main content and theme of the
video.2. The color, shape, size, texture, quantity, text, and spatial relationships of the
objects.3. Actions, events, behaviors temporal relationships, physical movement changes of the
objects.4. background environment, light, style and atmosphere.5. camera angles, movements, and
transitions used in the video:<|eot_id|><|start_header_id|>user<|end_header_id|>

A cat walks on the grass, realistic style.<|eot_id|><|start_header_id|>assistant<|end_header_id|>

The video opens on a wide shot of a meadow at sunrise. The camera slowly tracks a grey cat as it
walks through tall grass; dew catches the light. Then the camera tilts up to the sky.<|eot_id|>

Video prompts:
A drone shot over a coastal town at dusk, waves crashing against the cliffs, warm street lights.
A close-up of a chef slicing vegetables in a busy kitchen, steam rising, shallow depth of field.
Two astronauts float inside a space station, Earth visible through the window, slow motion.
A time-lapse of clouds moving over snowy mountains, golden hour, 4K, 24 fps, 10 seconds.
A panda eats bamboo in a bamboo forest; the camera pans left, then zooms in on its face.
An old man plays the violin on a rainy street at night, neon reflections in the puddles.
A red sports car drives along a winding road through autumn forests, aerial tracking shot.
Children fly kites on a windy beach; the kites are red, blue and yellow; handheld camera.
A timelapse of a city intersection: 1,000 cars, 250 buses and 3 trams in 60 seconds.
Fireworks explode over a river in 2025; reflections shimmer; the crowd cheers (wide angle).
A robot arm assembles a watch, macro lens, 120 fps, metallic textures, studio lighting.
Koi fish swim in a pond, ripples spread, petals drift on the surface, top-down view.
A dancer spins in a white dress in an empty theater, a single spotlight, dust in the air.
It's raining; they're walking home; we'll see; I'm sure you've noticed; she'd agree.
IT'S LOUD, THEY'RE HERE, WE'LL GO, I'M DONE, YOU'VE WON, HE'D SAY, DON'T STOP.
Numbers: 0 1 2 3 10 42 100 365 1024 2048 4096 65536 3.14159 2.71828 1e-5 50% $9.99 #1 @home.
Dates and times: 2024-12-03, 09:30, 23:59:59, Q3 2025, v1.2.3, 16:9, 1920x1080, 30fps.
多语言提示：一只猫在草地上散步，写实风格。夕阳下的海边小镇，海浪拍打着悬崖。
日本語のプロンプト：雨の夜の東京、ネオンの光、傘をさした人々、映画のような雰囲気。
한국어 프롬프트: 눈 내리는 산, 황금빛 시간, 천천히 움직이는 카메라.
Русский: кошка гуляет по траве, реалистичный стиль. Ελληνικά: μια γάτα περπατά.
Emoji: 🎬 🎥 📷 🌅 🌊 🐱 🐼 🚗 🎆 ✨ 👍🏽 👨‍👩‍👧 🇫🇷 ❤️

```python
def encode_prompts(model, tokenizer, prompts, max_sequence_length=256):
    text = tokenizer([template.format(p) for p in prompts], padding="max_length",
                     max_length=max_sequence_length + 95, truncation=True)
    return model(text["input_ids"], text["attention_mask"])[:, 95:]
```

    if (tokens.size() > max_length) {
        tokens.resize(max_length);
    }
\t\tindented with tabs
        indented with spaces


three blank lines above; trailing spaces here   
"""


def _training_texts():
    """Documents for the trainer: whole texts, so newline and space runs get merged too."""
    return [TRAINING_TEXT, LLAMA_TRAINING_TEXT]


def _byte_level(text):
    from models.tokenizer_files import bytes_to_unicode

    table = bytes_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


def _tiktoken_style_merges(vocab):
    """transformers.convert_slow_tokenizer.TikTokenConverter.extract_vocab_merges_from_model on
    byte-level token strings (one character per byte), ranks = ids."""
    merges = []
    for token, rank in sorted(vocab.items(), key=lambda kv: kv[1]):
        local = []
        for index in range(1, len(token)):
            left, right = token[:index], token[index:]
            if left in vocab and right in vocab:
                local.append((left, right, rank))
        merges.extend(sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]])))
    merges.sort(key=lambda m: m[2])
    return [[left, right] for left, right, _ in merges]


def _build():
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import processors, trainers

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_texts(), trainer)

    # Whole words the trained merges do not make, appended to the model's vocabulary.
    spec = json.loads(tok.to_str())
    spec["model"]["ignore_merges"] = False
    vocab = spec["model"]["vocab"]
    for word in WORDS_WITHOUT_MERGES:
        symbol = _byte_level(word)
        if symbol in vocab:
            continue
        if len(Tokenizer.from_str(json.dumps(spec)).model.tokenize(symbol)) > 1:
            vocab[symbol] = len(vocab)
    # Merges as Llama 3's file has them: converted from tiktoken ranks (here: the ids) the way
    # transformers' TikTokenConverter does, i.e. every split of a token into two tokens, by the
    # token's rank, then the parts' ranks. Several merges then make the same token, and the
    # words above that these merges do not reach either are made only through ignore_merges.
    spec["model"]["merges"] = _tiktoken_style_merges(vocab)
    spec["model"]["ignore_merges"] = True
    tok = Tokenizer.from_str(json.dumps(spec))

    specials = LLAMA3_SPECIAL_TOKENS + LLAVA_SPECIAL_TOKENS
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A",
        pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", bos)],
    )
    return tok


def _added_token(content):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False}


def write_tiny_llama_tokenizer(folder):
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json to `folder`
    (created if needed); return the path of tokenizer.json."""
    os.makedirs(folder, exist_ok=True)
    tok = _build()
    path = os.path.join(folder, "tokenizer.json")
    spec = json.loads(tok.to_str())
    # Merges as "left right" strings as in the real file (tokenizers >= 0.20 writes pairs).
    spec["model"]["merges"] = [f"{a} {b}" for a, b in spec["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2, ensure_ascii=False)
    decoder = {}
    for token in LLAMA3_SPECIAL_TOKENS + LLAVA_SPECIAL_TOKENS:
        decoder[str(tok.token_to_id(token))] = dict(_added_token(token), special=True)
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "add_prefix_space": None,
        "added_tokens_decoder": decoder,
        "bos_token": "<|begin_of_text|>",
        "clean_up_tokenization_spaces": True,
        "eos_token": "<|end_of_text|>",
        "legacy": True,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "<pad>",
        "padding_side": "right",
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    special_map = {
        "bos_token": _added_token("<|begin_of_text|>"),
        "eos_token": _added_token("<|end_of_text|>"),
        "pad_token": _added_token("<pad>"),
        "unk_token": _added_token("<unk>"),
    }
    with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special_map, f, indent=2)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    args = parser.parse_args()
    print(write_tiny_llama_tokenizer(args.folder))


if __name__ == "__main__":
    main()
