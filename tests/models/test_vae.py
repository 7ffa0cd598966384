"""VAEDecoder vs diffusers' AutoencoderKL decoder: parity (eager, scripted), tiled decode vs diffusers'
tiled_decode and vs untiled decode, TorchScript round trip, full-size (FLUX.1 VAE) name/shape mapping on the
meta device, strict safetensors loading."""
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from models.encoder_configs import CheckpointError, flux_vae_config, vae_tiny_config  # noqa: E402
from models.vae import VAEDecoder, load_vae_checkpoint, vae_checkpoint_key  # noqa: E402

TOL = 1e-4


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


@pytest.fixture(scope="module")
def pair():
    cfg = vae_tiny_config()
    torch.manual_seed(0)
    ref = diffusers.AutoencoderKL(**cfg.reference_kwargs()).eval()
    ours = VAEDecoder(cfg).eval()
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if vae_checkpoint_key(k)}, strict=True)
    return cfg, ref, ours, torch.jit.script(ours)


def _latents(batch, h, w, seed):
    return torch.randn(batch, 16, h, w, generator=torch.Generator().manual_seed(seed))


def _ref_decode(cfg, ref, latents, tile=0):
    """What diffusers' FluxPipeline does after denoising (unpacked latents -> vae.decode)."""
    z = latents / cfg.scaling_factor + cfg.shift_factor
    if tile:
        ref.enable_tiling()
        ref.tile_latent_min_size, ref.tile_sample_min_size = tile, tile * cfg.upscale
    else:
        ref.disable_tiling()
    return ref.decode(z).sample


@pytest.mark.parametrize("batch,h,w", [(1, 4, 4), (2, 6, 10)])
def test_parity_with_diffusers(pair, batch, h, w):
    cfg, ref, ours, scripted = pair
    lat = _latents(batch, h, w, seed=h * w)
    with torch.no_grad():
        want = _ref_decode(cfg, ref, lat)
        assert want.shape == (batch, 3, 8 * h, 8 * w)
        assert rel_err(ours(lat), want) < TOL
        assert rel_err(scripted(lat), want) < TOL
        z = lat / cfg.scaling_factor + cfg.shift_factor
        assert rel_err(scripted.decode(z), want) < TOL


def test_tiled_decode_equals_diffusers_tiled_decode(pair):
    cfg, ref, ours, scripted = pair
    lat = _latents(1, 21, 30, seed=7)  # ragged: last tiles are partial on both axes
    with torch.no_grad():
        want = _ref_decode(cfg, ref, lat, tile=8)
        assert want.shape == (1, 3, 168, 240)
        assert rel_err(ours(lat, 8), want) < TOL
        assert rel_err(scripted(lat, 8), want) < TOL


def test_tiled_vs_untiled(pair):
    """Tiles see only their own area (GroupNorm statistics, mid-block attention), so with random weights tiled
    and untiled decodes are not equal (the same holds for diffusers); check what must hold: one tile covering
    the latents is exactly the untiled decode, and small overlapping tiles stay close to it on average with
    the blend leaving no seam larger than the image's own variation."""
    cfg, _, ours, _ = pair
    lat = _latents(1, 24, 40, seed=11)
    with torch.no_grad():
        full = ours(lat)
        assert torch.equal(ours(lat, 40), full)  # tiling only when the latents exceed the tile
        tiled = ours(lat, 16)
    assert tiled.shape == full.shape
    assert ((tiled - full).abs().mean() / full.abs().mean()).item() < 0.3
    # seams: vertical/horizontal jumps at tile borders (every 96 px) no larger than elsewhere
    for dim in (2, 3):
        d = tiled.diff(dim=dim).abs().mean(dim=(0, 1, 5 - dim))
        borders = d[torch.arange(95, d.shape[0], 96)]
        assert borders.max() < 3 * d.mean() + 1e-6


def test_decode_image_uint8(pair):
    cfg, ref, _, scripted = pair
    lat = _latents(2, 4, 6, seed=5)
    with torch.no_grad():
        img = scripted.decode_image(lat, 0)
        want = ((_ref_decode(cfg, ref, lat) / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    assert img.dtype == torch.uint8 and img.shape == (2, 32, 48, 3)
    assert (img.int() - want.permute(0, 2, 3, 1).int()).abs().max() <= 1


def test_scripted_save_load_runs_several_shapes(pair, tmp_path):
    cfg, _, ours, scripted = pair
    path = str(tmp_path / "vae.pt")
    torch.jit.save(scripted, path)
    loaded = torch.jit.load(path)
    with torch.no_grad():
        for batch, h, w, tile in [(1, 4, 6, 0), (3, 8, 4, 0), (2, 13, 9, 8)]:
            lat = _latents(batch, h, w, seed=batch)
            out = loaded(lat, tile)
            assert out.shape == (batch, 3, 8 * h, 8 * w)
            assert rel_err(out, ours(lat, tile)) < TOL
        with pytest.raises(Exception, match="latent_channels"):
            loaded(torch.zeros(1, 4, 8, 8))
        with pytest.raises(Exception, match="multiple of 4"):
            loaded(_latents(1, 8, 8, 0), 6)


def test_full_size_names_and_shapes_match_diffusers_on_meta():
    cfg = flux_vae_config()
    kw = cfg.reference_kwargs()
    assert (kw["latent_channels"], kw["block_out_channels"], kw["layers_per_block"], kw["norm_num_groups"],
            kw["scaling_factor"], kw["shift_factor"], kw["use_post_quant_conv"], kw["use_quant_conv"]) == \
        (16, (128, 256, 512, 512), 2, 32, 0.3611, 0.1159, False, False)
    with torch.device("meta"):
        ref = diffusers.AutoencoderKL(**kw)
        ours = VAEDecoder(cfg)
    ref_sd = {}
    for k, v in ref.state_dict().items():
        name = vae_checkpoint_key(k)
        if name is None:
            assert k.startswith("encoder."), k  # the encoder half: not ours
            continue
        ref_sd[name] = tuple(v.shape)
    ours_sd = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert set(ref_sd) - set(ours_sd) == set(), "reference tensors we lack"
    assert set(ours_sd) - set(ref_sd) == set(), "our tensors the reference lacks"
    assert ref_sd == ours_sd
    assert sum(p.numel() for p in ref.decoder.parameters()) == sum(p.numel() for p in ours.parameters())


def test_strict_loader(pair, tmp_path):
    from safetensors.torch import save_file
    cfg, ref, ours, _ = pair
    state = {k: v.clone() for k, v in ref.state_dict().items()}  # a whole AutoencoderKL: encoder is skipped
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    fresh = VAEDecoder(cfg).eval()
    load_vae_checkpoint(fresh, str(tmp_path))
    lat = _latents(1, 4, 4, seed=2)
    with torch.no_grad():
        assert torch.equal(fresh(lat), ours(lat))
    bad = dict(state)
    del bad["decoder.mid_block.attentions.0.to_q.weight"]
    bad["post_quant_conv.weight"] = torch.zeros(16, 16, 1, 1)  # an SD-style VAE, not FLUX's
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_vae_checkpoint(VAEDecoder(cfg), str(tmp_path / "bad.safetensors"))
    assert "decoder.mid_block.attentions.0.to_q.weight" in str(e.value)
    assert "post_quant_conv.weight" in str(e.value)


def test_meta_module_loads_by_assignment(pair, tmp_path):
    """A full-size model can be built on the meta device and filled from the checkpoint without a random init."""
    from safetensors.torch import save_file
    cfg, ref, ours, _ = pair
    save_file({k: v.clone() for k, v in ref.state_dict().items()}, str(tmp_path / "vae.safetensors"))
    with torch.device("meta"):
        empty = VAEDecoder(cfg)
    load_vae_checkpoint(empty, str(tmp_path / "vae.safetensors"), dtype=torch.float32)
    lat = _latents(1, 4, 4, seed=4)
    with torch.no_grad():
        assert torch.equal(empty.eval()(lat), ours(lat))


def test_bf16_scripted_close_to_fp32(pair):
    import copy
    cfg, _, ours, _ = pair
    half = torch.jit.script(copy.deepcopy(ours).to(torch.bfloat16))
    lat = _latents(1, 10, 12, seed=9)
    with torch.no_grad():
        out = half(lat.to(torch.bfloat16), 8)
        assert out.dtype == torch.bfloat16
        assert rel_err(out, ours(lat, 8)) < 5e-2
        assert half.decode_image(lat.to(torch.bfloat16), 0).dtype == torch.uint8


def _to_ldm(diffusers_state, num_up_blocks):
    """diffusers AutoencoderKL decoder keys -> the original (BFL ae.safetensors / LDM) layout."""
    out = {}
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for k, v in diffusers_state.items():
        if not k.startswith("decoder."):
            continue
        n = k.replace("conv_shortcut", "nin_shortcut").replace("decoder.conv_norm_out.", "decoder.norm_out.")
        for r in (0, 1):
            n = n.replace(f"decoder.mid_block.resnets.{r}.", f"decoder.mid.block_{r + 1}.")
        if n.startswith("decoder.mid_block.attentions.0."):
            layer, leaf = n[len("decoder.mid_block.attentions.0."):].rsplit(".", 1)
            n = f"decoder.mid.attn_1.{attn[layer]}.{leaf}"
            if leaf == "weight" and v.dim() == 2:
                v = v[:, :, None, None]  # 1x1 convolutions in the original
        for i in range(num_up_blocks):
            b = num_up_blocks - 1 - i
            n = n.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{b}.block.")
            n = n.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{b}.upsample.")
        out[n] = v.clone().contiguous()
    return out


def test_loader_original_flux_layout(pair, tmp_path):
    """The original FLUX ae.safetensors layout loads to the same decoder; the layout used here is checked
    against diffusers' own converter (convert_ldm_vae_checkpoint)."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.torch import save_file
    cfg, ref, ours, _ = pair
    state = ref.state_dict()
    n = len(cfg.block_out_channels)
    ldm = _to_ldm(state, n)
    assert "decoder.mid.attn_1.q.weight" in ldm and "decoder.up.0.block.0.conv1.weight" in ldm
    back = convert_ldm_vae_checkpoint(dict(ldm), cfg.reference_kwargs())
    assert set(back) == {k for k in state if k.startswith("decoder.")}
    assert all(torch.equal(back[k], state[k]) for k in back)
    ldm["encoder.conv_in.weight"] = torch.zeros(1)  # the encoder half is skipped
    save_file(ldm, str(tmp_path / "ae.safetensors"))
    fresh = VAEDecoder(cfg).eval()
    load_vae_checkpoint(fresh, str(tmp_path / "ae.safetensors"))
    lat = _latents(1, 4, 4, seed=6)
    with torch.no_grad():
        assert torch.equal(fresh(lat), ours(lat))
    del ldm["decoder.up.1.upsample.conv.bias"]
    save_file(ldm, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"decoder\.up_blocks\.2\.upsamplers\.0\.conv\.bias"):
        load_vae_checkpoint(VAEDecoder(cfg), str(tmp_path / "bad.safetensors"))
