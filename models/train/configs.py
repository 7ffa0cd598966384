"""Model and training configurations of the default model (the "flux-shapes" bundle preset).

Model sizes (fp16 safetensors, at most 24 MB in all):
  transformer  Flux, 3 double + 5 single blocks, 3 heads x 64 (inner 192; head dim 64 so the
               CUDA GRAT kernels serve it), RoPE axes 16+24+24, no guidance embedding (true
               classifier-free guidance with the empty prompt instead), T5 dim 128, pooled 128:
               about 7.2M parameters
  t5           T5 v1.1-style encoder, 3 layers, d_model 128, 4 heads x 32, d_ff 256
  clip         CLIP text tower, 3 layers, hidden 128, 4 heads, quick_gelu, pooled at <|endoftext|>
  vae          16-channel 8x AutoencoderKL decoder (models/vae.py), blocks 32/64/128/128, one
               resnet per block (+1), GroupNorm 16, no mid-block attention (resolution-agnostic);
               the encoder (models/train/autoencoder.py) is for training only
The tokenizers' sizes fix the embedding tables (T5: the unigram model's pieces; CLIP: its
vocab.json), so the text-encoder configs are completed by `text_configs(...)` once the
tokenizer files exist.

`TrainConfig` holds every training number (steps, batches per resolution bucket, learning
rates, dropout, seeds); `full()` is the one-H200 recipe, `mini()` a CPU sanity run of about
ten minutes at 128^2, `smoke()` a CPU run of every phase at tiny sizes in seconds.
"""
import dataclasses
from typing import Dict, Tuple

from models.encoder_configs import CLIPTextConfig, T5EncoderConfig, VAEDecoderConfig
from models.flux_configs import FluxConfig

T5_MAX_LENGTH = 48       # the longest grammar caption is 30 T5 tokens with </s>
CLIP_MAX_LENGTH = 77

FLUX_SHAPES = FluxConfig(num_layers=3, num_single_layers=5, attention_head_dim=64,
                         num_attention_heads=3, joint_attention_dim=128,
                         pooled_projection_dim=128, guidance_embeds=False,
                         axes_dims_rope=(16, 24, 24))
T5_SHAPES = T5EncoderConfig(vocab_size=0, d_model=128, d_kv=32, d_ff=256, num_layers=3,
                            num_heads=4, relative_attention_num_buckets=16,
                            relative_attention_max_distance=48, max_length=T5_MAX_LENGTH)
CLIP_SHAPES = CLIPTextConfig(vocab_size=0, hidden_size=128, intermediate_size=256,
                             num_hidden_layers=3, num_attention_heads=4,
                             max_position_embeddings=CLIP_MAX_LENGTH, projection_dim=128)
VAE_SHAPES = VAEDecoderConfig(latent_channels=16, block_out_channels=(32, 64, 128, 128),
                              layers_per_block=1, norm_num_groups=16,
                              mid_block_add_attention=False, scaling_factor=1.0,
                              shift_factor=0.0, sample_size=1024)

# Smoke run: the same architecture families at toy sizes (head dim 64 still).
FLUX_SMOKE = dataclasses.replace(FLUX_SHAPES, num_layers=1, num_single_layers=1,
                                 num_attention_heads=1, joint_attention_dim=32,
                                 pooled_projection_dim=32)
T5_SMOKE = dataclasses.replace(T5_SHAPES, d_model=32, d_kv=8, d_ff=64, num_layers=1)
CLIP_SMOKE = dataclasses.replace(CLIP_SHAPES, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=1, projection_dim=32)
VAE_SMOKE = dataclasses.replace(VAE_SHAPES, block_out_channels=(8, 8, 16, 16),
                                norm_num_groups=4)


@dataclasses.dataclass(frozen=True)
class Buckets:
    """Resolution buckets (width, height) -> (scenes rendered, batch size, sampling weight)."""
    table: Tuple[Tuple[int, int, int, int, float], ...]

    def items(self):
        return [((w, h), (n, b, p)) for w, h, n, b, p in self.table]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    name: str
    flux: FluxConfig
    t5: T5EncoderConfig
    clip: CLIPTextConfig
    vae: VAEDecoderConfig
    seed: int = 0
    # autoencoder
    vae_steps: int = 3000
    vae_batch: int = 32
    vae_crop: int = 256
    vae_lr: float = 8e-4
    vae_kl: float = 1e-6
    vae_scenes: int = 6000          # distinct scenes the autoencoder sees (rendered at 3 sizes)
    vae_max_minutes: float = 4.0    # the autoencoder phase stops here if the GPU is slower
    autoencoder_only: bool = False  # stop after the autoencoder and its checker ceiling
    # encoder recovery (recover_encoder.py: a warm start from a checkpoint without an encoder;
    # batch, crop, lr, KL weight and time budget are the autoencoder's)
    recover_steps: int = 1000
    recover_samples: int = 512      # transformer samples at vae_crop^2 for the cycle term
                                    # (a quarter as many at 2x vae_crop)
    recover_sample_steps: int = 10  # sampler steps (true CFG at the checkpoint's guidance)
    recover_cycle: float = 1.0      # weight of the cycle term against the pixel loss
    recover_check: int = 64         # held-out scenes and samples of the flow-matching check
    # transformer + text encoders
    steps: int = 9000
    lr: float = 4e-4
    warmup: int = 300
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.01
    caption_dropout: float = 0.1
    text_lr_scale: float = 1.0      # the text encoders' learning rate, times lr
    sigma_mu_boost: float = 0.0     # added to FLUX's mu when drawing training sigmas
    ema: float = 0.999
    grad_clip: float = 1.0
    cuda_graphs: bool = True        # replay each bucket's step from a CUDA graph (graphs.py)
    buckets: Buckets = Buckets((
        # w, h, scenes, batch, weight
        (256, 256, 60000, 96, 0.40),
        (512, 256, 12000, 48, 0.10),
        (256, 512, 12000, 48, 0.10),
        (512, 512, 24000, 24, 0.25),
        (1024, 1024, 4000, 6, 0.15),
    ))
    # output
    sample_captions: int = 16       # sample grid: captions of seeds 10**6 + i
    sample_steps: int = 28
    guidance: float = 4.0
    eval_captions: int = 64         # checker accuracy at the end, 256^2
    probe_every_s: float = 0.0      # checker accuracy of the EMA model during training (0: off)
    probe_captions: int = 16
    device: str = "cuda"
    amp: bool = True                # bf16 autocast on CUDA
    workers: int = 0                # rendering processes (0: os.cpu_count())
    log_every: int = 50
    max_minutes: float = 17.5       # stop the transformer phase past this wall time (the
                                    # outputs and the export take about a minute more)

    def with_vocab(self, t5_vocab: int, clip_vocab: int, clip_bos: int,
                   clip_eos: int) -> "TrainConfig":
        return dataclasses.replace(
            self, t5=dataclasses.replace(self.t5, vocab_size=t5_vocab),
            clip=dataclasses.replace(self.clip, vocab_size=clip_vocab, bos_token_id=clip_bos,
                                     eos_token_id=clip_eos, pad_token_id=clip_eos))


def full() -> TrainConfig:
    return TrainConfig("flux-shapes", FLUX_SHAPES, T5_SHAPES, CLIP_SHAPES, VAE_SHAPES)


def smoke() -> TrainConfig:
    return TrainConfig(
        "flux-shapes-smoke", FLUX_SMOKE, T5_SMOKE, CLIP_SMOKE, VAE_SMOKE,
        vae_steps=4, vae_batch=2, vae_crop=64, vae_scenes=8, steps=6, warmup=2,
        buckets=Buckets(((64, 64, 8, 4, 0.6), (128, 64, 4, 2, 0.4))),
        sample_captions=2, sample_steps=2, eval_captions=2, device="cpu", amp=False,
        workers=1, log_every=1, ema=0.5, max_minutes=5.0, recover_steps=4, recover_samples=4,
        recover_sample_steps=2, recover_check=4)


def mini() -> TrainConfig:
    """A CPU run of the whole pipeline at 128^2 with small modules (about 40 minutes on 2
    busy cores; 500 steps in 16 minutes learn backgrounds and colours, not yet shapes); not
    the shipped model."""
    return TrainConfig(
        "flux-shapes-mini",
        dataclasses.replace(FLUX_SHAPES, num_layers=2, num_single_layers=2,
                            num_attention_heads=2, joint_attention_dim=64,
                            pooled_projection_dim=64),
        dataclasses.replace(T5_SHAPES, d_model=64, d_kv=16, d_ff=128, num_layers=2),
        dataclasses.replace(CLIP_SHAPES, hidden_size=64, intermediate_size=128,
                            num_hidden_layers=2, projection_dim=64),
        dataclasses.replace(VAE_SHAPES, block_out_channels=(16, 32, 64, 64), norm_num_groups=8),
        vae_steps=400, vae_batch=8, vae_crop=128, vae_scenes=600, steps=1500, warmup=100,
        lr=1e-3, buckets=Buckets(((128, 128, 4000, 32, 1.0),)), sample_captions=8,
        sample_steps=16, eval_captions=16, device="cpu", amp=False, workers=2, log_every=50,
        ema=0.99, max_minutes=30.0, recover_steps=400, recover_samples=64, recover_check=16)


def fast() -> TrainConfig:
    """The full model's batches on fewer scenes (rendering the full recipe's 112k scenes takes
    the H200 host's 16 cores 5 minutes), for as many steps as --minutes allows (the learning
    rate's decay follows the wall time). With steps replayed from CUDA graphs a step costs
    its GPU time: 4x these batches ran at 85 ms a step (1,800 steps in 156 s) and drew
    colours and backgrounds but not shapes (bench/results/train_flux_shapes_h200_fast_4x*)."""
    return dataclasses.replace(
        full(), vae_steps=1000, vae_scenes=3000, steps=100000, warmup=300, lr=4e-4,
        buckets=Buckets(((256, 256, 24000, 96, 0.40), (512, 256, 6000, 48, 0.10),
                         (256, 512, 6000, 48, 0.10), (512, 512, 8000, 24, 0.25),
                         (1024, 1024, 1200, 6, 0.15))),
        sample_captions=8, eval_captions=32, probe_every_s=90.0)


def fast256() -> TrainConfig:
    """fast with twice its learning rate and more of the steps at 256^2 (where CI checks the
    model) and 512^2 (where the GPU benchmark does), less at 1024^2; probes every 60 s. The
    shipped weights (models/train/weights): this recipe for 18 minutes on one H200 (the
    transformer's 14.7 of them: 30,343 steps), the default of `python -m models.train.train`."""
    return dataclasses.replace(
        fast(), lr=8e-4, probe_every_s=60.0, max_minutes=18.0,
        buckets=Buckets(((256, 256, 24000, 96, 0.55), (512, 256, 6000, 48, 0.08),
                         (256, 512, 6000, 48, 0.08), (512, 512, 8000, 24, 0.24),
                         (1024, 1024, 1200, 6, 0.05))))


def continue256() -> TrainConfig:
    """fast256 at half its learning rate (same warm-up) for a warm start (`--init-from`) from
    its checkpoint: fresh AdamW, the weights and their EMA from the checkpoint."""
    return dataclasses.replace(fast256(), lr=4e-4)


def fast_layout() -> TrainConfig:
    """fast256 aimed at what its checkpoints had not learned (models/train/README.md: position
    words ignored, shape words weak): 3x the text encoders' learning rate, and training
    sigmas drawn with mu + 0.7 (at 256^2 the median sigma goes from 0.62 to 0.77), where the
    layout is decided. Not yet run."""
    return dataclasses.replace(fast256(), text_lr_scale=3.0, sigma_mu_boost=0.7)


PRESETS: Dict[str, object] = {"full": full, "mini": mini, "smoke": smoke, "fast": fast,
                              "fast256": fast256, "fast_layout": fast_layout,
                              "continue256": continue256}
