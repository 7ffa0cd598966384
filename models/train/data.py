"""Training data: scenes of the synthetic world rendered in parallel processes, and prompts
tokenized exactly as the C++ engine tokenizes them.

Seeds: every use draws from its own range (SEED_BASE[use] + i), so training, autoencoder,
sample-grid and evaluation scenes never overlap.

Text: the engine's FluxFamily pads T5 ids to the bundle's t5_max_length (</s> then <pad>) and
CLIP ids to 77 (<|endoftext|>) and runs both encoders without an attention mask; the ids here
are transformers' T5Tokenizer / CLIPTokenizer on the same files with the same padding, which
the engine's tokenizers equal (tests/engine). The empty prompt is what caption dropout and
the engine's classifier-free guidance (true_cfg, negative prompt "") both feed.
"""
import multiprocessing
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from models.train import world

SEED_BASE = {"train": 10_000_000, "autoencoder": 900_000_000, "samples": 1_000_000,
             "eval": 2_000_000}


def seeds(use: str, count: int, bucket: int = 0) -> List[int]:
    base = SEED_BASE[use] + bucket * 1_000_000
    return list(range(base, base + count))


def _render(args: Tuple[Sequence[int], int, int]) -> Tuple[np.ndarray, List[str]]:
    chunk, w, h = args
    imgs = np.empty((len(chunk), h, w, 3), np.uint8)
    caps = []
    for i, s in enumerate(chunk):
        scene = world.make_scene(int(s))
        imgs[i] = world.render(scene, w, h)
        caps.append(scene.caption)
    return imgs, caps


class Renderer:
    """Renders scenes in worker processes (spawned, so it is safe after CUDA has started).

        with Renderer(workers) as r:
            imgs, captions = r.render(seeds, 512, 256)
    """

    def __init__(self, workers: int = 0):
        self.workers = workers or os.cpu_count() or 1
        self.pool = None

    def __enter__(self) -> "Renderer":
        if self.workers > 1:
            self.pool = multiprocessing.get_context("spawn").Pool(self.workers)
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def render(self, scene_seeds: Sequence[int], w: int,
               h: int) -> Tuple[np.ndarray, List[str]]:
        """uint8 [N, h, w, 3] images and the captions of the scenes."""
        scene_seeds = list(scene_seeds)
        if self.pool is None or len(scene_seeds) < 64:
            return _render((scene_seeds, w, h))
        size = max(16, len(scene_seeds) // (self.workers * 4))
        chunks = [(scene_seeds[i:i + size], w, h) for i in range(0, len(scene_seeds), size)]
        parts = self.pool.map(_render, chunks)
        return np.concatenate([p[0] for p in parts]), [c for p in parts for c in p[1]]


def to_unit(imgs: np.ndarray):
    """uint8 [N, H, W, 3] -> float tensor [N, 3, H, W] in [-1, 1] (the VAE's range)."""
    import torch

    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class PromptTokenizer:
    """T5 and CLIP ids of prompts, padded as the engine pads them; cached per prompt.

    `tokenizer_dir` holds t5/ and clip/ as models/tokenizer_files writes them, or is a bundle
    (or checkpoint) folder holding spiece.model, vocab.json and merges.txt."""

    def __init__(self, tokenizer_dir: str, t5_max_length: int, clip_max_length: int = 77):
        from transformers import CLIPTokenizer, T5Tokenizer

        if os.path.isdir(os.path.join(tokenizer_dir, "t5")):
            self.t5 = T5Tokenizer.from_pretrained(os.path.join(tokenizer_dir, "t5"))
            self.clip = CLIPTokenizer.from_pretrained(os.path.join(tokenizer_dir, "clip"))
        else:
            self.t5 = _SentencePieceT5(os.path.join(tokenizer_dir, "spiece.model"))
            self.clip = CLIPTokenizer(os.path.join(tokenizer_dir, "vocab.json"),
                                      os.path.join(tokenizer_dir, "merges.txt"),
                                      pad_token="<|endoftext|>")
        self.t5_max_length = t5_max_length
        self.clip_max_length = clip_max_length
        self._cache: Dict[str, Tuple[List[int], List[int]]] = {}

    def ids(self, prompt: str) -> Tuple[List[int], List[int]]:
        if prompt not in self._cache:
            t5 = self.t5(prompt, max_length=self.t5_max_length, padding="max_length",
                         truncation=True).input_ids
            clip = self.clip(prompt, max_length=self.clip_max_length, padding="max_length",
                             truncation=True).input_ids
            self._cache[prompt] = (t5, clip)
        return self._cache[prompt]

    def batch(self, prompts: Sequence[str]):
        """(t5 ids [B, t5_max_length], clip ids [B, 77]) int64 tensors."""
        import torch

        pairs = [self.ids(p) for p in prompts]
        return (torch.tensor([p[0] for p in pairs], dtype=torch.long),
                torch.tensor([p[1] for p in pairs], dtype=torch.long))

    def vocab(self) -> Tuple[int, int, int, int]:
        """(T5 ids: pieces + the 100 <extra_id_N> tokens the tokenizers can emit, CLIP vocab
        size, CLIP bos id, CLIP eos id): the sizes of the embedding tables."""
        v = self.clip.get_vocab()
        return (len(self.t5), len(v), v["<|startoftext|>"], v["<|endoftext|>"])


class _SentencePieceT5:
    """The T5 layout from a bare spiece.model: pieces, </s> (1), <pad> (0) to max_length (what
    transformers' T5Tokenizer gives for the grammar's captions; tests/train checks it)."""

    class _Ids:
        def __init__(self, ids: List[int]):
            self.input_ids = ids

    def __init__(self, path: str):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=path)

    def __len__(self) -> int:
        return self.sp.get_piece_size() + 100   # + <extra_id_0..99>, as T5Tokenizer

    def __call__(self, text: str, max_length: int, padding: str, truncation: bool) -> "_Ids":
        ids = self.sp.encode(text)[:max_length - 1] + [1]
        return self._Ids(ids + [0] * (max_length - len(ids)))
