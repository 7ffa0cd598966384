"""Tiny tokenizer files for tests and the tiny model preset.

`write_tiny_tokenizers(out_dir)` trains, from text held in this module (a copy of the design
notes plus a few multilingual prompt lines), two small tokenizers in the exact file formats of
the real Flux text encoders and writes them to `out_dir/t5` and `out_dir/clip`:

- T5 (google/t5-v1_1-xxl style): `spiece.model`, a SentencePiece unigram model (vocab ~1000,
  nmt_nfkc normalisation so the precompiled charsmap is exercised, pad=0, eos=1, unk=2), plus
  the `tokenizer.json` / `tokenizer_config.json` that `transformers.T5Tokenizer` loads.
- CLIP (openai/clip-vit-large-patch14 style): `vocab.json` + `merges.txt`, a byte-level BPE in
  CLIP's layout (256 byte symbols, the same with `</w>`, one token per merge, then
  `<|startoftext|>` and `<|endoftext|>`), trained by the small BPE trainer below on CLIP's own
  pre-tokenisation.

The output is deterministic: the same files for the same source text.
"""

import argparse
import collections
import json
import os
import tempfile

T5_VOCAB_SIZE = 1000
CLIP_NUM_MERGES = 600

TRAINING_TEXT = """# Design: a GRAT-accelerated generation service

A C++ gRPC service that turns prompts into images and videos. It queues requests, batches
them onto GPUs, runs diffusion transformers loaded from TorchScript whose attention is GRAT
(grouped, block-sparse) attention implemented in CUDA, and streams progress and results back.
A direction, not a cage: where you see a better design, take it and say why in the commit.

## Layout and the one direction of dependencies

```
proto/       grat/v1/*.proto: the public API (generation, models); nothing else
kernels/     GRAT attention: CPU reference, CUDA (sm_90a fast path, portable fallback),
             token regrouping, the `grat::` LibTorch operators (TORCH_LIBRARY)
models/      Python: scriptable DiT / text-encoder / VAE modules and the exporter that writes a
             model bundle (TorchScript + model.yaml + tokenizer); parity tests against diffusers
engine/      C++: one GPU's generation pipeline over a loaded bundle (tokenize, encode,
             denoise loop, decode, encode PNG/WebP/MP4); knows nothing of gRPC
scheduler/   C++: bounded priority queue, deadlines, shape-bucket batching, one worker per GPU;
             knows nothing of gRPC
server/      C++: gRPC services (callback API), request validation, health, reflection,
             metrics exposer, config, main(); the only place that sees protobuf types
clients/     gratctl CLI (C++) and a Python client example
deploy/      Kubernetes manifests, Prometheus rules, Grafana dashboard, example config
bench/       benchmark programs and their recorded results (JSON + the command that made it)
tests/       unit tests per module, end-to-end tests, GPU tests (label `gpu`)
```

server -> scheduler -> engine -> kernels. Nothing points back up. The engine reports through a
callback interface (progress, preview, result, error); the server turns those into stream
messages. This keeps every layer testable without the one above it.

## Data flow of one request
1. Client calls `Generate(GenerateRequest)` (server-streaming). The server validates every field
   against the model's limits and answers INVALID_ARGUMENT at once for anything out of range.
2. The scheduler admits it (or RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE while
   draining), streams `Queued{position}`, and keeps it in a priority queue with its deadline.
3. A GPU worker takes a batch: requests of the same model and shape bucket (width, height,
   frames, steps, attention mode), up to `max_batch`, waiting at most `max_batch_delay`.
4. The engine runs the pipeline; after every denoising step it emits `Progress{step,total}`
   (optionally a small preview), checks cancellation and deadline, and stops within one step.
5. The decoded result is encoded (PNG/WebP for images, MP4 for video) and streamed in chunks
   well under the 4 MiB gRPC message limit, ending with a summary (seed, timings per stage).

## The GRAT operator (kernels/)
- Registered with `TORCH_LIBRARY(grat, m)`: CPU (reference), CUDA, and Meta implementations,
  so TorchScript, C++ and Python all call the same op.
- Layout parameters: token grid (h,w) or (t,h,w); group shape; pattern (full | B | X) with
  radius for B; number of text tokens and whether text comes first (Flux) or last
  (HunyuanVideo); count of valid text tokens (padding masked). Tokens arrive in the model's
  own order; the op regroups them, or the model keeps tokens grouped across the whole network
  (every op but attention is per-token, so regrouping once per forward is enough).
- The block schedule is computed from group coordinates inside the kernel: no mask tensor.
- A graph pass can swap `aten::scaled_dot_product_attention` in any loaded TorchScript DiT for
  the GRAT op, with the layout supplied per call by the engine: "attention replaced" for models
  we did not export ourselves.
- Correctness: compare against a dense masked attention in float64/float32 with the same mask.

## Model bundle (models/ writes it, engine/ reads it)
A folder: `model.yaml` (kind image|video, architecture, latent channels, VAE scale, patch,
text length, default steps/guidance/shift, GRAT defaults, limits), TorchScript files for the
transformer, text encoder(s) and VAE decoder, and the tokenizer file. The transformer takes
explicit ints for the token grid so one file serves every resolution. Real checkpoints
(diffusers / original Flux layouts) load into it; presets with random weights exist at full
size (for speed) and tiny size (for tests and the default demo).

## Scheduler semantics
Priorities (higher first, FIFO within one), per-request deadline (DEADLINE_EXCEEDED, whether
queued or running), client cancel, `max_queue` per model, batch by bucket, one worker thread
and CUDA stream per GPU listed in the config, CUDA OOM turns into RESOURCE_EXHAUSTED for that
request and the worker lives on. SIGTERM: readiness goes NOT_SERVING, new requests get
UNAVAILABLE, running ones finish until `drain_timeout`, then exit.

## Observability and config
- Prometheus (prometheus-cpp, `/metrics`): requests by model and outcome (counter), queue depth
  (gauge), queue wait, time to first step, step time, end-to-end latency (histograms in
  seconds, buckets sized for seconds-to-minutes work), batch size, GPU memory in use.
- Logs: spdlog, one JSON object per line, request id on every line about a request.
- Config: one YAML file (yaml-cpp), every key documented in `deploy/config.example.yaml`,
  unknown keys are an error, env vars may override the listen address and model paths.
- gRPC: `grpc.health.v1` (overall and per model readiness), server reflection.

## Dependencies, and where they come from
LibTorch: the `torch` wheel (pinned to the version on the GPU host, 2.11.0) gives
`torch.utils.cmake_prefix_path`. gRPC, Protobuf, spdlog, yaml-cpp, prometheus-cpp, libpng,
libwebp, ffmpeg's libav*, GoogleTest: Debian packages. Tokenizers are our own C++
(Debian's libsentencepiece bundles protobuf 3.14 and aborts a process that also loads gRPC's
protobuf 3.21: checked). CUDA: the toolkit on the
machine; CUTLASS/CuTe headers, if used, from the `nvidia-cutlass` wheel. Nothing is vendored
or downloaded by hand.

## Things to measure before trusting them
- TorchScript runs through a profiling graph executor that specializes on the shapes it sees;
  a service that changes resolution per request can pay warm-up and re-specialization again and
  again. Triton's LibTorch backend exposes switches for exactly this (optimized execution, JIT
  profiling). Measure first-request and new-resolution latency, and choose.
- SDPA given a boolean mask leaves the flash/cuDNN path (diffusers' HunyuanVideo pays 44% per
  forward for its text-padding mask): padded text must be handled inside our kernel.
- Regrouping tokens in every layer costs about 2.3 ms per tensor at 8192^2 on an H100; the
  model should stay in group-major order between attention calls.

## Testing
- CPU, in CI: kernels' reference vs dense masked attention; op registration and TorchScript
  round trip; model parity vs diffusers at tiny size; engine on the tiny bundle; scheduler
  unit tests (priorities, deadlines, batching, cancel, drain); end-to-end through a real gRPC
  client (C++ and Python grpcio) and a real Prometheus server scraping `/metrics`.
- GPU (label `gpu`, run on a CUDA host): kernel vs reference on fresh random inputs at many
  shapes, poisoned outputs, compute-sanitizer; engine on the GPU.
- Benchmarks are programs, not timed tests: they print a table and write JSON to bench/results.

## Habits, from codebases worth copying
- FlashAttention `hopper/`: a plain params struct (pointers, strides), a commented tile-size
  table, one launcher that sets smem attributes and checks the launch, device code apart,
  one instantiation per .cu file. Tests grid over shapes and compare against an fp32 reference
  with tolerance 2x PyTorch's own low-precision error.
- CUTLASS `examples/88_hopper_fmha`: masks as small policy structs (trip counts,
  before_softmax); GRAT-B/GRAT-X fit that shape.
- NATTEN: neighborhood parameters validated and documented where they are declared; a naive
  reference kernel for tests; a clear error when a backend was not compiled in.
- Triton core `scheduler.h`: a small interface whose comments say who owns each request.
- grpc callback examples: reactors that never block; work handed to the scheduler.
- prometheus-cpp: small headers with a one-line brief and a thread-safety note; one test file
  per class.
Avoid: files over ~800 lines, commented-out code, `exit()` on CUDA errors, device-wide
synchronisation in op glue, ops only visible to Python.

Prompts seen by the service: a photograph of a red fox in the snow, golden hour, 35 mm film.
A watercolor painting of a lighthouse on a cliff at dawn; soft pastel colors, high detail.
Café au lait, crème brûlée, naïve façade, jalapeño, Zürich, São Paulo, smörgåsbord.
東京の夜景、雨の中のネオン。北京的秋天。서울의 봄 거리. Москва зимой, снег и огни.
ＡＢＣ　ｆｕｌｌ－ｗｉｄｔｈ　１２３ and ﬁ ligatures, ½ cup, Ⅻ o'clock, ™ ① ㍻.
A cat's dream: it's 3 o'clock, we'll go, they're here, you've won, I'm done, he'd say.
"""


def _training_lines():
    return [line.strip() for line in TRAINING_TEXT.splitlines() if line.strip()]


def _write_t5(out_dir, lines=None, vocab_size=T5_VOCAB_SIZE):
    import sentencepiece as spm

    lines = _training_lines() if lines is None else lines
    with tempfile.TemporaryDirectory() as tmp:
        text_path = os.path.join(tmp, "train.txt")
        with open(text_path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        prefix = os.path.join(tmp, "spiece")
        spm.SentencePieceTrainer.train(
            input=text_path,
            model_prefix=prefix,
            model_type="unigram",
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            character_coverage=1.0,
            normalization_rule_name="nmt_nfkc",
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            pad_piece="<pad>",
            eos_piece="</s>",
            unk_piece="<unk>",
            num_threads=1,
            seed_sentencepiece_size=100000,
            shuffle_input_sentence=False,
            minloglevel=2,
        )
        with open(prefix + ".model", "rb") as f:
            blob = f.read()
    with open(os.path.join(out_dir, "spiece.model"), "wb") as f:
        f.write(blob)
    _write_t5_tokenizer_json(out_dir, blob)


def _proto_fields(buf):
    """Yield (field number, value) of one protobuf message (enough to read a ModelProto)."""
    pos = 0

    def varint():
        nonlocal pos
        shift = value = 0
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while pos < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            yield field, varint()
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield field, buf[pos : pos + size]
            pos += size
        elif wire == 2:
            size = varint()
            yield field, buf[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _precompiled_charsmap(blob):
    for field, value in _proto_fields(blob):
        if field == 3:  # ModelProto.normalizer_spec
            for sub, sub_value in _proto_fields(value):
                if sub == 2:  # NormalizerSpec.precompiled_charsmap
                    return bytes(sub_value)
    return None


def _write_t5_tokenizer_json(out_dir, blob):
    """tokenizer.json + tokenizer_config.json as google/t5-v1_1-xxl (Flux tokenizer_2) has them.

    transformers reads spiece.model only through the `protobuf` package; the tokenizer.json it
    would convert it to is built here directly: vocab and scores from sentencepiece, the
    charsmap from the model's NormalizerSpec, 100 sentinel tokens appended in reverse order.
    """
    import sentencepiece as spm
    from transformers import T5Tokenizer

    sp = spm.SentencePieceProcessor(model_file=os.path.join(out_dir, "spiece.model"))
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(99, -1, -1)]
    tok = T5Tokenizer(
        vocab=vocab,
        _spm_precompiled_charsmap=_precompiled_charsmap(blob),
        extra_ids=100,
        model_max_length=512,
    )
    tok.save_pretrained(out_dir)


def bytes_to_unicode():
    """GPT-2 / CLIP byte -> printable unicode character table (same order as CLIP)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _clip_words(lines):
    """Pre-tokenise like transformers' CLIPTokenizer (NFC, whitespace, lowercase, CLIP regex)."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    norm = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    counts = collections.Counter()
    for line in lines:
        for word, _ in pre.pre_tokenize_str(norm.normalize_str(line)):
            counts[word] += 1
    return counts


def _train_bpe(counts, num_merges):
    """Plain BPE on words split into byte symbols, the last one carrying `</w>`."""
    words = []
    for word, count in sorted(counts.items()):
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        words.append([symbols, count])
    merges = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        for symbols, count in words:
            for a, b in zip(symbols, symbols[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        if pairs[best] < 2:
            break
        merges.append(best)
        joined = best[0] + best[1]
        for entry in words:
            symbols = entry[0]
            out = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            entry[0] = out
    return merges


def _write_clip(out_dir, lines=None, num_merges=CLIP_NUM_MERGES):
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    lines = _training_lines() if lines is None else lines
    merges = _train_bpe(_clip_words(lines), num_merges)
    tokens += [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)


def write_tiny_tokenizers(out_dir):
    """Write the T5 files to out_dir/t5 and the CLIP files to out_dir/clip; return their paths.

    Each folder loads with `transformers` (`T5Tokenizer.from_pretrained(out_dir + "/t5")`,
    `CLIPTokenizer.from_pretrained(out_dir + "/clip")`), like the tokenizer_2/ and tokenizer/
    folders of a diffusers Flux checkpoint.
    """
    return write_tokenizers_from_lines(out_dir, None)


def write_tokenizers_from_lines(out_dir, lines, t5_vocab_size=T5_VOCAB_SIZE,
                                clip_num_merges=CLIP_NUM_MERGES):
    """write_tiny_tokenizers trained on `lines` (a list of strings; None: this module's text)
    instead; the same files and layout. The T5 vocabulary is at most t5_vocab_size pieces
    (fewer when the text has fewer), the CLIP BPE at most clip_num_merges merges (it stops
    when no pair of symbols occurs twice)."""
    t5_dir = os.path.join(out_dir, "t5")
    clip_dir = os.path.join(out_dir, "clip")
    os.makedirs(t5_dir, exist_ok=True)
    os.makedirs(clip_dir, exist_ok=True)
    _write_t5(t5_dir, lines, t5_vocab_size)
    _write_clip(clip_dir, lines, clip_num_merges)
    return {
        "spiece.model": os.path.join(t5_dir, "spiece.model"),
        "vocab.json": os.path.join(clip_dir, "vocab.json"),
        "merges.txt": os.path.join(clip_dir, "merges.txt"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    args = parser.parse_args()
    for name, path in write_tiny_tokenizers(args.out_dir).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
