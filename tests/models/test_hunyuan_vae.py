"""HunyuanVAEDecoder vs diffusers' AutoencoderKLHunyuanVideo: untiled parity (eager, scripted), tiled / chunked
decode vs diffusers' with the same tile settings, TorchScript round trip at several shapes from one file, uint8
video output, full-size name/shape mapping on the meta device, config round trip, strict safetensors loading."""
import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from models.encoder_configs import CheckpointError  # noqa: E402
from models.hunyuan_vae import (HunyuanVAEConfig, HunyuanVAEDecoder, hunyuan_vae_checkpoint_key,  # noqa: E402
                                load_hunyuan_vae_checkpoint, preset)

TOL = 1e-4
# small enough that tiny latents tile: 4x4-latent tiles every 3 (blend 8 px), chunks of 4 latent frames every 2
# (blend 4 frames)
SMALL_TILES = dict(tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_min_num_frames=12,
                   tile_sample_stride_height=24, tile_sample_stride_width=24, tile_sample_stride_num_frames=8)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny convolutions: one thread is as fast, and immune to oversubscribed CI cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _engine_jit_mode():
    """TorchScript as the engine runs it (optimized execution off): no re-specialisation for every new shape."""
    with torch.jit.optimized_execution(False):
        yield


@pytest.fixture(scope="module")
def pair():
    cfg = preset("hunyuan-vae-tiny")
    torch.manual_seed(0)
    ref = diffusers.AutoencoderKLHunyuanVideo(**cfg.reference_kwargs()).eval()
    ours = HunyuanVAEDecoder(cfg).eval()
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if hunyuan_vae_checkpoint_key(k)}, strict=True)
    return cfg, ref, ours, torch.jit.script(ours)


def _latents(batch, t, h, w, seed):
    return torch.randn(batch, 16, t, h, w, generator=torch.Generator().manual_seed(seed))


def _ref_decode(cfg, ref, latents, tiles=None, framewise=False):
    """What HunyuanVideoPipeline does after denoising: vae.decode(latents / scaling_factor). `tiles`: the
    enable_tiling arguments (spatial tiling + temporal chunks); `framewise`: diffusers' default temporal chunks."""
    ref.use_tiling = False
    ref.use_framewise_decoding = framewise or tiles is not None
    d = HunyuanVAEConfig().tiling_kwargs()
    ref.enable_tiling(**dict(d, **(tiles or {})))
    ref.use_tiling = tiles is not None
    return ref.decode(latents / cfg.scaling_factor).sample


@pytest.mark.parametrize("batch,t,h,w", [(1, 1, 4, 4), (1, 3, 5, 7), (2, 5, 3, 5)])
def test_untiled_parity_with_diffusers(pair, batch, t, h, w):
    cfg, ref, ours, scripted = pair
    lat = _latents(batch, t, h, w, seed=t * h * w)
    with torch.no_grad():
        want = _ref_decode(cfg, ref, lat)
        assert want.shape == (batch, 3, 4 * (t - 1) + 1, 8 * h, 8 * w)
        assert rel_err(ours.decode(lat), want) < TOL
        assert rel_err(scripted.decode(lat), want) < TOL


@pytest.mark.parametrize("t,h,w,tiles", [
    (2, 9, 7, SMALL_TILES),  # spatial only (ragged last row and column)
    (7, 3, 4, SMALL_TILES),  # temporal only (ragged last chunk, and one of a single latent frame)
    (5, 5, 7, SMALL_TILES),  # both
    (4, 6, 5, dict(SMALL_TILES, tile_sample_min_num_frames=4, tile_sample_stride_num_frames=4,
                   tile_sample_min_height=40, tile_sample_stride_height=16)),  # no temporal blend; wide v blend
])
def test_tiled_decode_equals_diffusers(pair, t, h, w, tiles):
    cfg, ref, ours, scripted = pair
    lat = _latents(1, t, h, w, seed=100 + t * h * w)
    with torch.no_grad():
        want = _ref_decode(cfg, ref, lat, tiles=tiles)
        assert want.shape == (1, 3, 4 * (t - 1) + 1, 8 * h, 8 * w)
        assert rel_err(ours.decode_tiled(lat, **tiles), want) < TOL
        assert rel_err(scripted.decode_tiled(lat, **tiles), want) < TOL
        assert rel_err(ours.decode(lat), want) > 1e-3  # tiling did happen


def test_default_framewise_decode_equals_diffusers(pair):
    """diffusers chunks frames by default (16-frame chunks: above 4 latent frames) even without enable_tiling."""
    cfg, ref, ours, _ = pair
    lat = _latents(1, 6, 3, 3, seed=3)
    with torch.no_grad():
        want = _ref_decode(cfg, ref, lat, framewise=True)
        assert rel_err(ours.decode_tiled(lat, spatial=False), want) < TOL
        assert rel_err(ours(lat), want) < TOL  # below the 256 px spatial threshold: the same
        small = lat[:, :, :4]  # at the threshold: no chunking, exactly the untiled decode
        assert torch.equal(ours(small), ours.decode(small))


def test_batch_and_batch_items_agree(pair):
    cfg, _, ours, _ = pair
    lat = _latents(2, 3, 5, 5, seed=8)
    with torch.no_grad():
        both = ours.decode_tiled(lat, **SMALL_TILES)
        for i in range(2):
            assert rel_err(both[i:i + 1], ours.decode_tiled(lat[i:i + 1], **SMALL_TILES)) < 1e-6


def test_decode_video_uint8(pair):
    cfg, ref, _, scripted = pair
    lat = _latents(2, 3, 4, 6, seed=5)
    with torch.no_grad():
        video = scripted.decode_video(lat)
        want = ((_ref_decode(cfg, ref, lat, framewise=True) / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        assert video.dtype == torch.uint8 and video.shape == (2, 9, 32, 48, 3)
        assert (video.int() - want.permute(0, 2, 3, 4, 1).int()).abs().max() <= 1
        untiled = scripted.decode_video(lat, False)  # below every threshold: the same up to batching
        assert (untiled.int() - video.int()).abs().max() <= 1
        assert 0 < video.float().std() and video.min() >= 0 and video.max() <= 255


def test_scripted_save_load_several_shapes_one_file(pair, tmp_path):
    cfg, ref, ours, scripted = pair
    path = str(tmp_path / "hunyuan_vae.pt")
    torch.jit.save(scripted, path)
    loaded = torch.jit.load(path)
    with torch.no_grad():
        for batch, t, h, w in [(1, 1, 3, 5), (2, 2, 4, 4), (1, 6, 5, 3)]:
            lat = _latents(batch, t, h, w, seed=batch + t)
            out = loaded(lat)
            assert out.shape == (batch, 3, 4 * (t - 1) + 1, 8 * h, 8 * w)
            assert rel_err(out, ours(lat)) < TOL
            assert torch.equal(loaded.decode_video(lat), scripted.decode_video(lat))
        # tile settings set on the loaded module drive forward / decode_video, as in the C++ engine
        lat = _latents(1, 5, 5, 7, seed=1)
        loaded.set_tiling(*[SMALL_TILES[k] for k in cfg.tiling_kwargs()])
        assert rel_err(loaded(lat), _ref_decode(cfg, ref, lat, tiles=SMALL_TILES)) < TOL
        with pytest.raises(Exception, match="latent_channels"):
            loaded(torch.zeros(1, 4, 2, 8, 8))
        with pytest.raises(Exception, match="tile_sample_min_width"):
            loaded.decode_tiled(lat, tile_sample_min_width=30)
        with pytest.raises(Exception, match="num_frames"):
            loaded.set_tiling(32, 32, 8, 24, 24, 12)


def test_full_size_names_and_shapes_match_diffusers_on_meta():
    cfg = preset("hunyuan-vae")
    kw = cfg.reference_kwargs()
    assert (kw["latent_channels"], kw["block_out_channels"], kw["layers_per_block"], kw["norm_num_groups"],
            kw["scaling_factor"], kw["spatial_compression_ratio"], kw["temporal_compression_ratio"]) == \
        (16, (128, 256, 512, 512), 2, 32, 0.476986, 8, 4)
    with torch.device("meta"):
        ref = diffusers.AutoencoderKLHunyuanVideo()  # diffusers' defaults = HunyuanVideo's vae/config.json
        ours = HunyuanVAEDecoder(cfg)
    assert HunyuanVAEConfig.from_diffusers(dict(ref.config)) == cfg
    ref_sd = {}
    for k, v in ref.state_dict().items():
        name = hunyuan_vae_checkpoint_key(k)
        if name is None:
            assert k.startswith("encoder.") or k.startswith("quant_conv."), k
            continue
        ref_sd[name] = tuple(v.shape)
    ours_sd = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert set(ref_sd) - set(ours_sd) == set(), "reference tensors we lack"
    assert set(ours_sd) - set(ref_sd) == set(), "our tensors the reference lacks"
    assert ref_sd == ours_sd
    assert "post_quant_conv.weight" in ours_sd
    want = sum(p.numel() for p in ref.decoder.parameters()) + sum(p.numel() for p in ref.post_quant_conv.parameters())
    assert sum(p.numel() for p in ours.parameters()) == want
    # diffusers' tiling defaults
    assert cfg.tiling_kwargs() == {k: getattr(ref, k) for k in cfg.tiling_kwargs()}


def test_config_from_diffusers_is_strict(pair):
    cfg, ref, _, _ = pair
    d = dict(ref.config)
    assert HunyuanVAEConfig.from_diffusers(json.loads(json.dumps(d))) == cfg  # lists from JSON
    with pytest.raises(ValueError, match="sample_tsize"):
        HunyuanVAEConfig.from_diffusers(dict(d, sample_tsize=64))
    with pytest.raises(ValueError, match="temporal_compression_ratio"):
        HunyuanVAEConfig.from_diffusers(dict(d, temporal_compression_ratio=8))
    with pytest.raises(KeyError, match="hunyuan-vae-tiny"):
        preset("hunyuan")


def test_strict_loader(pair, tmp_path):
    from safetensors.torch import save_file
    cfg, ref, ours, _ = pair
    state = {k: v.clone() for k, v in ref.state_dict().items()}  # the whole VAE: encoder and quant_conv skipped
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    fresh = HunyuanVAEDecoder(cfg).eval()
    load_hunyuan_vae_checkpoint(fresh, str(tmp_path))
    lat = _latents(1, 2, 3, 3, seed=2)
    with torch.no_grad():
        assert torch.equal(fresh.decode(lat), ours.decode(lat))
    bad = dict(state)
    del bad["decoder.mid_block.attentions.0.to_q.weight"]
    bad["decoder.mid_block.attentions.0.to_qkv.weight"] = torch.zeros(1)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_hunyuan_vae_checkpoint(HunyuanVAEDecoder(cfg), str(tmp_path / "bad.safetensors"))
    assert "missing keys" in str(e.value) and "decoder.mid_block.attentions.0.to_q.weight" in str(e.value)
    assert "unexpected keys" in str(e.value) and "decoder.mid_block.attentions.0.to_qkv.weight" in str(e.value)
    del bad["decoder.mid_block.attentions.0.to_qkv.weight"]
    bad["decoder.mid_block.attentions.0.to_q.weight"] = state["decoder.mid_block.attentions.0.to_q.weight"]
    del bad["post_quant_conv.bias"]
    save_file(bad, str(tmp_path / "bad2.safetensors"))
    with pytest.raises(CheckpointError, match=r"post_quant_conv\.bias"):
        load_hunyuan_vae_checkpoint(HunyuanVAEDecoder(cfg), str(tmp_path / "bad2.safetensors"))


def test_sharded_checkpoint_into_meta_module(pair, tmp_path):
    """A sharded vae/ (index json) fills a module built on the meta device, without a random init."""
    from safetensors.torch import save_file
    cfg, ref, ours, _ = pair
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    keys = sorted(state)
    shards = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2:]}
    for name, ks in shards.items():
        save_file({k: state[k] for k in ks}, str(tmp_path / name))
    with open(tmp_path / "diffusion_pytorch_model.safetensors.index.json", "w") as f:
        json.dump({"weight_map": {k: n for n, ks in shards.items() for k in ks}}, f)
    with torch.device("meta"):
        empty = HunyuanVAEDecoder(cfg)
    load_hunyuan_vae_checkpoint(empty, str(tmp_path), dtype=torch.float32)
    lat = _latents(1, 2, 3, 3, seed=4)
    with torch.no_grad():
        assert torch.equal(empty.eval().decode(lat), ours.decode(lat))


def test_bf16_scripted_close_to_fp32(pair):
    import copy
    cfg, _, ours, _ = pair
    half = torch.jit.script(copy.deepcopy(ours).to(torch.bfloat16))
    lat = _latents(1, 3, 5, 5, seed=9)
    with torch.no_grad():
        out = half.decode_tiled(lat, **SMALL_TILES)  # fp32 latents are cast to the weights' dtype
        assert out.dtype == torch.bfloat16
        assert rel_err(out, ours.decode_tiled(lat, **SMALL_TILES)) < 5e-2
        assert half.decode_video(lat).dtype == torch.uint8
