"""A masked autoencoder (MAE, He et al. 2022) whose encoder is RETFound's ViT.

The encoder is exactly `ablate.backbones.retfound.build_vit(arch)`; its modules
and parameters are registered at the top level of this module, so the encoder's
state-dict keys are RETFound's own (patch_embed.*, cls_token, pos_embed,
blocks.N.*, norm.*). The decoder uses the names of MAE's models_mae.py
(decoder_embed, mask_token, decoder_pos_embed, decoder_blocks, decoder_norm,
decoder_pred). A file written by `save_retfound_format` therefore has the same
top-level structure as RETFound_mae_natureCFP.pth and loads through
`load_vit_checkpoint(build_vit(arch), path, format="retfound_mae")`, which drops
the decoder_* and mask_token keys exactly as it does for RETFound.

Inputs. `forward` takes RGB images in [0, 1] and applies the ImageNet mean/std
normalisation itself, as RETFound's pretraining pipeline did. A checkpoint from
here is therefore a model of *normalised* inputs: use it in the `foundation`
term with `imagenet_norm: true` (the saved file's args say `imagenet_norm: True`).

Position embeddings are fixed 2-D sin-cos tables, as in MAE (encoder pos_embed and
decoder_pos_embed, with a zero row for the CLS token), frozen during training;
they are still saved under RETFound's key `pos_embed`.

Loss: mean squared error over the masked patches only; with norm_pix_loss each
target patch is normalised by its own mean and variance first (MAE's default for
its best models). Targets are patches of the ImageNet-normalised image, as in MAE.
"""

from __future__ import annotations

import os
from functools import partial
from typing import TYPE_CHECKING

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ablate.backbones.retfound import build_vit
from ablate.io import atomic_path

if TYPE_CHECKING:
    from timm.layers import PatchEmbed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_KIND = "ablate.fm MAE v1"


def sincos_pos_embed(embed_dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """(1, [1 +] grid*grid, embed_dim) fixed 2-D sin-cos table (MAE's get_2d_sincos_pos_embed)."""
    if embed_dim % 4:
        raise ValueError(f"sin-cos position embedding needs a dim divisible by 4, got {embed_dim}")
    coords = torch.arange(grid, dtype=torch.float64)
    gw, gh = torch.meshgrid(coords, coords, indexing="xy")  # MAE: np.meshgrid(grid_w, grid_h), w first

    def one_d(dim: int, pos: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([one_d(embed_dim // 2, gw), one_d(embed_dim // 2, gh)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.float().unsqueeze(0)


class MaskedAutoencoderViT(nn.Module):
    """MAE with a RETFound-configured timm ViT encoder (see the module docstring).

    forward(imgs in [0, 1], shape (B, 3, S, S)) -> (loss, pred, mask):
      loss  scalar, MSE over masked patches
      pred  (B, N, patch*patch*3) predicted patches (normalised space, see `reconstruct`)
      mask  (B, N), 1 = masked (removed from the encoder's input), 0 = visible
    """
    # Set in __init__ by name (build_vit's modules, parameters and buffers; register_buffer),
    # so declared here for type checkers.
    patch_embed: PatchEmbed
    pos_embed: nn.Parameter
    cls_token: nn.Parameter
    blocks: nn.Sequential
    norm: nn.Module
    in_mean: torch.Tensor
    in_std: torch.Tensor

    def __init__(self, arch: dict, decoder_embed_dim: int = 128, decoder_depth: int = 2,
                 decoder_num_heads: int = 4, mask_ratio: float = 0.75, norm_pix_loss: bool = True,
                 decoder_mlp_ratio: float | None = None):
        super().__init__()
        vit = build_vit(arch)
        self.arch = dict(arch)
        self.patch_size = arch["patch_size"]
        self.grid = arch["img_size"] // arch["patch_size"]
        self.num_patches = self.grid * self.grid
        self.len_keep = round((1 - mask_ratio) * self.num_patches)
        if not 0 < self.len_keep < self.num_patches:
            raise ValueError(f"mask_ratio {mask_ratio} keeps {self.len_keep} of {self.num_patches} patches; "
                             "at least one must stay visible and one be masked")
        self.mask_ratio = float(mask_ratio)
        self.norm_pix_loss = bool(norm_pix_loss)
        self.decoder_cfg = {"decoder_embed_dim": decoder_embed_dim, "decoder_depth": decoder_depth,
                            "decoder_num_heads": decoder_num_heads,
                            "decoder_mlp_ratio": decoder_mlp_ratio or arch.get("mlp_ratio", 4.0)}
        if vit.num_prefix_tokens != 1 or vit.no_embed_class:
            raise ValueError("MAE needs a ViT with one CLS token carried in pos_embed")

        # ---- encoder: build_vit's own modules and parameters, at the top level.
        self._encoder_keys = tuple(vit.state_dict())
        for name, child in vit.named_children():
            self.add_module(name, child)
        for name, p in vit.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for name, b in vit.named_buffers(recurse=False):
            self.register_buffer(name, b)
        embed_dim = arch["embed_dim"]

        # ---- decoder: MAE's names.
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            # timm annotates norm_layer as a class; its own ViT passes a partial like this one.
            Block(decoder_embed_dim, decoder_num_heads, self.decoder_cfg["decoder_mlp_ratio"], qkv_bias=True,
                  norm_layer=norm)  # type: ignore[arg-type]
            for _ in range(decoder_depth)
        )
        self.decoder_norm = norm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, self.patch_size**2 * 3, bias=True)

        # Not persistent: a checkpoint holds only RETFound's keys plus the decoder's.
        self.register_buffer("in_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_weights()

    # ------------------------------------------------------------ init

    def _init_weights(self) -> None:
        """MAE's initialisation (fixed sin-cos positions, xavier linears, N(0, .02) tokens)."""
        self.pos_embed.data.copy_(sincos_pos_embed(self.pos_embed.shape[-1], self.grid))
        self.pos_embed.requires_grad_(False)
        self.decoder_pos_embed.data.copy_(sincos_pos_embed(self.decoder_pos_embed.shape[-1], self.grid))
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------ encoder view

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's tensors under RETFound's keys (== build_vit(arch).state_dict() keys)."""
        sd = self.state_dict()
        return {k: sd[k] for k in self._encoder_keys}

    def encoder(self) -> nn.Module:
        """A fresh `build_vit(arch)` holding a copy of the encoder's weights."""
        vit = build_vit(self.arch)
        vit.load_state_dict(self.encoder_state_dict(), strict=True)
        return vit

    # ------------------------------------------------------------ patches

    def normalize(self, imgs: torch.Tensor) -> torch.Tensor:
        return (imgs - self.in_mean) / self.in_std

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, p*p*3), MAE's layout (p, p, C per patch)."""
        p, h = self.patch_size, imgs.shape[2] // self.patch_size
        x = imgs.reshape(imgs.shape[0], 3, h, p, h, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(imgs.shape[0], h * h, p * p * 3)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, h = self.patch_size, round(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, h, p, p, 3)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], 3, h * p, h * p)

    def random_masking(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample random masking by argsort of uniform noise; keeps `len_keep` patches."""
        b, n, d = x.shape
        noise = torch.rand(b, n, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, : self.len_keep]
        x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
        mask = torch.ones(b, n, device=x.device)
        mask[:, : self.len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_masked, mask, ids_restore

    # ------------------------------------------------------------ forward

    def forward_encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: ImageNet-normalised images -> (latent (B, 1 + len_keep, C), mask, ids_restore)."""
        x = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:]
        x, mask, ids_restore = self.random_masking(x)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(x)
        b, n = ids_restore.shape
        masks = self.mask_token.expand(b, n + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:], masks], dim=1)  # no cls token
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # unshuffle
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def targets(self, imgs_norm: torch.Tensor) -> torch.Tensor:
        target = self.patchify(imgs_norm)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def forward_loss(self, imgs_norm: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        loss = (pred - self.targets(imgs_norm)).pow(2).mean(dim=-1)  # per patch
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """imgs in [0, 1] (B, 3, S, S); ImageNet normalisation is applied here."""
        x = self.normalize(imgs)
        latent, mask, ids_restore = self.forward_encoder(x)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(x, pred, mask), pred, mask

    @torch.no_grad()
    def reconstruct(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For viewing: (masked input, reconstruction), both in [0, 1].

        The reconstruction shows the visible patches of the input and the predicted
        masked ones. With norm_pix_loss the predictions are per-patch normalised, so
        each is shown with its true patch's mean and variance (colour and brightness
        of masked patches thus come from the input; structure from the model).
        """
        x = self.normalize(imgs)
        pred = pred.detach().float()
        if self.norm_pix_loss:
            t = self.patchify(x)
            pred = pred * (t.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5 + t.mean(dim=-1, keepdim=True)
        rec = self.unpatchify(pred) * self.in_std + self.in_mean
        m = self.unpatchify(mask.unsqueeze(-1).expand(-1, -1, self.patch_size**2 * 3).to(imgs.dtype))
        masked = imgs * (1 - m)
        return masked.clamp(0, 1), (imgs * (1 - m) + rec * m).clamp(0, 1)


def checkpoint_args(model: MaskedAutoencoderViT, arch: dict, extra: dict | None = None) -> dict:
    """The `args` entry of a saved file: plain Python values only (weights_only-loadable)."""
    return {
        "kind": CHECKPOINT_KIND,
        "arch": dict(arch),
        "mask_ratio": model.mask_ratio,
        "norm_pix_loss": model.norm_pix_loss,
        "decoder": dict(model.decoder_cfg),
        # The model saw ImageNet-normalised inputs (normalisation inside forward):
        # the foundation term must use imagenet_norm: true.
        "imagenet_norm": True,
        "pos_embed": "fixed 2-D sin-cos",
        **(extra or {}),
    }


def save_retfound_format(model: nn.Module, path: str | os.PathLike, arch: dict, epoch: int, extra: dict | None = None) -> None:
    """Write {"model": full MAE state dict, "epoch", "args"} atomically (RETFound's layout).

    `model` may be DDP-wrapped. `args` is a plain dict (RETFound's holds an
    argparse.Namespace, which torch.load(weights_only=True) refuses).
    """
    m = model.module if hasattr(model, "module") else model
    if not isinstance(m, MaskedAutoencoderViT):
        raise TypeError(f"expected a MaskedAutoencoderViT, got {type(m).__name__}")
    if dict(arch) != m.arch:
        raise ValueError(f"arch {arch} differs from the model's {m.arch}")
    state = {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
    ckpt = {"model": state, "epoch": int(epoch), "args": checkpoint_args(m, arch, extra)}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_mae(path: str | os.PathLike) -> tuple[MaskedAutoencoderViT, dict]:
    """Rebuild the whole MAE (decoder included) from a file written by save_retfound_format."""
    from ablate.weights.load import read_weights_file

    ckpt = read_weights_file(path, "a fundus MAE checkpoint", "Pretrain one with `ablate fm pretrain --data DIR`.")
    args = ckpt.get("args") if isinstance(ckpt, dict) else None
    if not isinstance(ckpt, dict) or not isinstance(args, dict) or args.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path}: not a checkpoint written by ablate fm (args.kind != {CHECKPOINT_KIND!r})")
    dec = args["decoder"]
    model = MaskedAutoencoderViT(args["arch"], mask_ratio=args["mask_ratio"], norm_pix_loss=args["norm_pix_loss"], **dec)
    model.load_state_dict(ckpt["model"], strict=True)
    return model, args
