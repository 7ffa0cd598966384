"""ctest fixture of the tokenizer tests: write the tiny tokenizer files and the ids that the
reference implementations give for every prompt of tokenizer_corpus.txt.

    python3 tests/engine/tokenizer_expected.py <out_dir>

Writes <out_dir>/t5/..., <out_dir>/clip/... (models.tokenizer_files) and <out_dir>/expected.json:
for each prompt, the Python sentencepiece package's ids and normalized text, transformers'
T5Tokenizer and CLIPTokenizer ids + attention masks at several max lengths, and CLIP's
pre-tokenized words (tokenizers' normalizer + split, before the byte-level mapping).

Also writes <out_dir>/llama/... (models.llama_tokenizer_files: a tiny Llama-3-style tokenizer.json,
HunyuanVideo's text-encoder tokenizer) and <out_dir>/llama_expected.json: for the corpus, the random
prompts above and Llama-specific ones, what transformers' PreTrainedTokenizerFast gives (ids with
<|begin_of_text|>, without it, with special tokens as text, truncated/padded at several max
lengths), the pieces of Llama 3's split regex, and diffusers' HunyuanVideo prompt template with
prompts inserted, tokenized as its pipeline does.
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from models.tokenizer_files import write_tiny_tokenizers  # noqa: E402
from models.llama_tokenizer_files import write_tiny_llama_tokenizer  # noqa: E402

T5_MAX_LENGTHS = [512, 16]
CLIP_MAX_LENGTHS = [77, 12]


def read_corpus(path):
    prompts = []
    with open(path, encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if line.strip() and not line.startswith("#"):
                prompts.append(json.loads(line))
    return prompts


RANDOM_PROMPTS = 300

# Pieces random prompts are drawn from: each pool stresses one stage of the tokenizers.
POOLS = [
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") + ["the", "fox", "light", "GRAT"],
    list("0123456789") + ["3.14", "1,000", "\u0663", "\u00bd", "\u2167"],
    list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~") + ["'s", "'T", "'re", "'LL", "'d", "'x", "''"],
    [" ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "\u2028", "\u2003", "\u200b", "\u0085"],
    list("\u00e9\u00e8\u00ea\u00eb\u00e7\u00f1\u00fc\u00f6\u00c5\u00c6\u0130\u03a3\u1e9e")
    + ["e\u0301", "a\u0308", "o\u0302\u0323", "\u1100\u1161\u11a8"],
    list("\u6771\u4eac\u306e\u591c\u666f\u96e8\u4e2d\ub9c8\uc744\u0416\u044f\u05d0\u0627\u0928\u0e2a"),
    list("\uff21\uff42\uff13\uff01\uff08\uff76\uff80\ufb01\u2460\u337b\u338f\u2122\u00b2\u2082"),
    ["\U0001f600", "\U0001f525", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
     "\U0001f1eb\U0001f1f7", "\u2764\ufe0f", "\u2603", "\u265e", "\U00031350", "\U000e0001"],
    ["</s>", "<pad>", "<unk>", "<extra_id_0>", "<extra_id_42>", "<|startoftext|>", "<|endoftext|>",
     "<|ENDOFTEXT|>", "<s>", "\u0007", "\u007f", "\u0000", "\uff1cpad\uff1e",
     "\uff1c/s\uff1e", "\uff1cextra_id_7\uff1e", "\uff1cunk\uff1e"],
]


def random_prompts(count, seed=20261127):
    """Deterministic random prompts mixing every pool, some of them long."""
    import random

    rng = random.Random(seed)
    prompts = []
    for i in range(count):
        length = rng.choice([1, 3, 8, 20, 60]) if i % 10 else rng.randint(150, 700)
        weights = [rng.random() for _ in POOLS]
        parts = [rng.choice(rng.choices(POOLS, weights)[0]) for _ in range(length)]
        prompts.append("".join(parts))
    return prompts


def spm_with_special_tokens(sp, text, extra_id_0):
    """sentencepiece ids of the text between special tokens, the special tokens' own ids."""
    ids = []
    specials = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    parts = re.split(r"(</s>|<pad>|<unk>|<extra_id_(?:[0-9]|[1-9][0-9])>)", text)
    for i, part in enumerate(parts):
        if i % 2 == 0:  # text between special tokens
            ids += sp.encode(part) if part else []
        elif part in specials:
            ids.append(specials[part])
        else:
            ids.append(extra_id_0 - int(part[len("<extra_id_") : -1]))
    return ids


LLAMA_MAX_LENGTHS = [64, 16]
LLAMA_RANDOM_PROMPTS = 300

# Pieces that stress Llama 3's tokenizer: its special tokens (and near misses) inside text, the
# contractions in any case, digit runs (\p{N}{1,3}), CR/LF and other white space runs, combining
# marks and emoji ZWJ sequences, long runs without a split.
LLAMA_POOLS = [
    ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
     "<|end_header_id|>", "<|reserved_special_token_7|>", "<|reserved_special_token_250|>",
     "<pad>", "<unk>", "<image>", "<|eot_id", "eot_id|>", "<|EOT_ID|>", "<<|eot_id|>>",
     "<|reserved_special_token_251|>", "<|begin_of_text|><|begin_of_text|>", "<pad"],
    ["'s", "'S", "'t", "'T", "'re", "'RE", "'rE", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL",
     "'d", "'D", "'\u017f", "\u2019s", "'x", "''", "'", "n't", "N'T"],
    ["1", "12", "123", "1234", "1234567", "0.5", "\u0663\u0664\u0665", "\uff11\uff12\uff13",
     "\u2153", "\u00b2", "\u216b", "\u56db", "99999999999"],
    ["\r", "\n", "\r\n", "\n\n", "\n\n\n", " ", "  ", "   ", "\t", "\t\t", " \n", "\n ",
     " \r\n ", "\u00a0", "\u3000", "\u2028", "\u0085", "\u000b", "\u000c", "\u200b", " \u00a0 "],
    ["e\u0301", "\u0301", "a\u0308\u0323", "\u200d", "\ufe0f",
     "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
     "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f44d\U0001f3fd", "\U0001f1ef\U0001f1f5",
     "\u0915\u094d\u0937", "\u0e01\u0e34", "\U0001f600\U0001f600"],
    list("\u6771\u4eac\u591c\u666f\u96e8\u4e2d\u9713\u8679\u5317\u4eac\u79cb\u5929\u732b")
    + ["\uc11c\uc6b8", "\uff76\uff80\uff76\uff85", "\U00020000", "\U0002a6df", "\u0416\u044f"],
]

# Hand-written prompts for what the corpus does not already cover.
LLAMA_PROMPTS = [
    "IT'S I'M THEY'RE WE'LL YOU'VE HE'D DON'T It'S tHeY'Re x'\u017f",
    "digits 1234567890123 12 345 6789 \u0661\u0662\u0663\u0664 \uff11\uff12\uff13\uff14",
    "a\r\n\r\nb\r\rc\n\n\nd \n e\t\n\tf",
    "   leading", "trailing   ", "\n\n\n", "  \n", " ", "tab\tsep\t\t", "a  \n  b",
    "<|begin_of_text|>already has a start token",
    "<|eot_id|><|eot_id|>", " <|eot_id|> ", "<|eot_id|>\n\n", "<pad><pad>", "x<image>y<unk>z",
    "<|start_header_id|>user<|end_header_id|>\n\nA cat.<|eot_id|>",
    "?!\n\n...\r\n--\n", "(hello) [world] {x} 'quoted' \"double\"",
    " " * 300 + "x",
    "0123456789" * 30,
    "\u6771\u4eac\u306e\u591c\u666f" * 60,
    "supercalifragilisticexpialidocious" * 20,
    "\U0001f468\u200d\U0001f469\u200d\U0001f467" * 40,
    ("A photograph of a red fox in the snow, golden hour, 35 mm film. " * 30).strip(),
]


def llama_random_prompts(count, seed=20261128):
    """Deterministic random prompts from the shared pools and the Llama ones, some long."""
    import random

    rng = random.Random(seed)
    pools = POOLS + LLAMA_POOLS
    prompts = []
    for i in range(count):
        length = rng.choice([1, 3, 8, 20, 60]) if i % 10 else rng.randint(150, 700)
        weights = [rng.random() for _ in pools]
        prompts.append("".join(rng.choice(rng.choices(pools, weights)[0]) for _ in range(length)))
    return prompts


def hunyuan_prompt_template():
    """diffusers' HunyuanVideoPipeline DEFAULT_PROMPT_TEMPLATE, read from the installed source
    (importing the pipeline would import torch)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("diffusers")
    path = os.path.join(os.path.dirname(spec.origin), "pipelines", "hunyuan_video",
                        "pipeline_hunyuan_video.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "DEFAULT_PROMPT_TEMPLATE" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"DEFAULT_PROMPT_TEMPLATE not found in {path}")


def llama_expected(out_dir, texts):
    """Write out_dir/llama/ and out_dir/llama_expected.json; return the number of prompts and
    how many of them ignore_merges decides."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = os.path.join(out_dir, "llama")
    path = write_tiny_llama_tokenizer(folder)
    # PreTrainedTokenizerFast follows tokenizer.json. (transformers v5's LlamaTokenizerFast, the
    # class named in HunyuanVideo's config, swaps in a Metaspace pre-tokenizer: not Llama 3.)
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    assert tok.padding_side == "right" and tok.pad_token == "<pad>"
    assert tok.bos_token_id == tok.convert_tokens_to_ids("<|begin_of_text|>")
    auto = AutoTokenizer.from_pretrained(folder)
    split = tok.backend_tokenizer.pre_tokenizer[0]
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    spec["model"]["ignore_merges"] = False
    with_merges_only = Tokenizer.from_str(json.dumps(spec))

    # Vocabulary tokens the merges do not reach (as in Llama 3's tiktoken-converted file): only
    # ignore_merges makes them; prompts made of them exercise it.
    unreachable = [
        tok.backend_tokenizer.decoder.decode([w])
        for w in spec["model"]["vocab"]
        if len(with_merges_only.model.tokenize(w)) > 1
    ]
    assert unreachable, "every vocabulary token is reachable through merges"
    unreachable_prompts = ["".join(unreachable), ", ".join(unreachable) + ".",
                           "".join(unreachable[::-1]) + "\n"]

    cases = []
    ignore_merges_matters = 0
    prompts = texts + LLAMA_PROMPTS + unreachable_prompts
    prompts += llama_random_prompts(LLAMA_RANDOM_PROMPTS)
    for text in prompts:
        ids = tok(text)["input_ids"]
        assert auto(text)["input_ids"] == ids, f"AutoTokenizer differs on {text!r}"
        case = {
            "text": text,
            "words": [w for w, _ in split.pre_tokenize_str(text)],
            "ids": ids,
            "pieces": tok(text, add_special_tokens=False)["input_ids"],
            "ids_special_as_text": tok(text, split_special_tokens=True)["input_ids"],
            "padded": {},
        }
        for n in LLAMA_MAX_LENGTHS:
            enc = tok(text, padding="max_length", truncation=True, max_length=n)
            case["padded"][str(n)] = {"ids": enc["input_ids"], "mask": enc["attention_mask"]}
        n = LLAMA_MAX_LENGTHS[-1]
        case["not_truncated"] = tok(text, padding="max_length", max_length=n)["input_ids"]
        case["not_padded"] = tok(text, truncation=True, max_length=n)["input_ids"]
        ignore_merges_matters += with_merges_only.encode(text).ids != ids
        cases.append(case)
    assert ignore_merges_matters > 0, "no prompt exercises ignore_merges"

    template = hunyuan_prompt_template()
    max_length = 256 + template["crop_start"]  # the pipeline's max_sequence_length + crop_start
    template_cases = []
    for prompt in texts[:12] + ["", "<|eot_id|> inside", "word " * 400]:
        enc = tok(template["template"].format(prompt), max_length=max_length,
                  padding="max_length", truncation=True, return_attention_mask=True)
        template_cases.append(
            {"prompt": prompt, "ids": enc["input_ids"], "mask": enc["attention_mask"]}
        )
    expected = {
        "max_lengths": LLAMA_MAX_LENGTHS,
        "vocab_size": len(tok),
        "bos_id": tok.bos_token_id,
        "pad_id": tok.pad_token_id,
        "eot_id": tok.convert_tokens_to_ids("<|eot_id|>"),
        "ignore_merges_cases": ignore_merges_matters,
        "cases": cases,
        "template": template["template"],
        "template_max_length": max_length,
        "template_cases": template_cases,
    }
    with open(os.path.join(out_dir, "llama_expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)
    return len(cases), ignore_merges_matters


def main(out_dir):
    import regex
    import sentencepiece as spm
    from tokenizers import Regex, normalizers, pre_tokenizers
    from transformers import CLIPTokenizer, T5Tokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    paths = write_tiny_tokenizers(out_dir)
    sp = spm.SentencePieceProcessor(model_file=paths["spiece.model"])
    t5 = T5Tokenizer.from_pretrained(os.path.dirname(paths["spiece.model"]))
    clip = CLIPTokenizer.from_pretrained(os.path.dirname(paths["vocab.json"]))
    assert t5.eos_token_id == 1 and t5.pad_token_id == 0 and t5.unk_token_id == 2
    assert clip.pad_token_id == clip.eos_token_id
    clip_norm = clip.backend_tokenizer.normalizer
    clip_split = clip.backend_tokenizer.pre_tokenizer[0]

    cases = []
    disagreements = 0
    corpus = read_corpus(os.path.join(HERE, "tokenizer_corpus.txt"))
    for text in corpus + random_prompts(RANDOM_PROMPTS):
        case = {
            "text": text,
            "spm_ids": sp.encode(text),
            "spm_normalized": sp.normalize(text),
            "t5_hf_normalized": t5.backend_tokenizer.normalizer.normalize_str(text),
            "grapheme_lengths": [len(g) for g in regex.findall(r"\X", text)],
            "clip_words": [w for w, _ in clip_split.pre_tokenize_str(clip_norm.normalize_str(text))],
            "t5": {},
            "clip": {},
        }
        for n in T5_MAX_LENGTHS:
            enc = t5(text, padding="max_length", truncation=True, max_length=n)
            case["t5"][str(n)] = {"ids": enc["input_ids"], "mask": enc["attention_mask"]}
        for n in CLIP_MAX_LENGTHS:
            enc = clip(text, padding="max_length", truncation=True, max_length=n)
            case["clip"][str(n)] = {"ids": enc["input_ids"], "mask": enc["attention_mask"]}
        # sentencepiece with transformers' special-token splitting: what T5Tokenizer (C++)
        # must produce for every prompt.
        case["t5_spm_segments"] = spm_with_special_tokens(sp, text, len(t5) - 1)
        # transformers agrees with it except where its normalization differs (the `tokenizers`
        # Precompiled normalizer looks rules up per grapheme cluster and keeps only the
        # shortest match, dropping the cluster's other marks; WhitespaceSplit also splits on
        # white space that nmt_nfkc keeps, U+0085) or where normalization makes a special token
        # ("＜pad＞" -> "<pad>"), which its Unigram vocabulary matches and sentencepiece's not.
        backend = t5.backend_tokenizer
        hf_words = [
            w.lstrip("\u2581")
            for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))
        ]
        spm_words = [w for w in case["spm_normalized"].split("\u2581") if w]
        made_special = re.search(r"</s>|<pad>|<unk>|<extra_id_\d+>", " ".join(hf_words)) and (
            "\uff1c" in text or "\ufe64" in text or "\uff1e" in text
        )
        case["t5_transformers_differs"] = hf_words != spm_words or bool(made_special)
        full = t5(text)["input_ids"]
        if full != case["t5_spm_segments"] + [t5.eos_token_id]:
            disagreements += 1
            assert case["t5_transformers_differs"], f"unexplained difference on {text!r}"
        cases.append(case)
    expected = {
        "t5_max_lengths": T5_MAX_LENGTHS,
        "clip_max_lengths": CLIP_MAX_LENGTHS,
        "t5_vocab_size": len(t5),
        "spm_piece_size": sp.get_piece_size(),
        "clip_vocab_size": len(clip),
        "clip_bos_id": clip.bos_token_id,
        "clip_eos_id": clip.eos_token_id,
        "cases": cases,
    }
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
    print(f"{len(cases)} prompts ({len(corpus)} from the corpus); T5: transformers differs from "
          f"sentencepiece (with special tokens) on {disagreements}, all explained")
    llama_cases, ignore_merges_cases = llama_expected(out_dir, [c["text"] for c in cases])
    print(f"Llama: {llama_cases} prompts, ignore_merges decides {ignore_merges_cases} of them")


if __name__ == "__main__":
    main(sys.argv[1])
