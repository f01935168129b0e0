"""A small 2x super-resolution network of our own, and the batch upscaler the pipelines call.

    sr = Upscaler.from_pretrained("assets/models/demo-upscaler")   # a diffusers-style folder
    big = upscale_images(sr, images)                              # PIL in, PIL at twice the size out

The network follows two published ideas (the code is written here, not copied):
- ESPCN (Shi et al., 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
  Sub-Pixel Convolutional Neural Network"): all convolutions run at the low resolution and a
  sub-pixel convolution (`nn.PixelShuffle`) makes the high-resolution image at the end.
- EDSR (Lim et al., 2017, "Enhanced Deep Residual Networks for Single Image Super-Resolution"):
  residual blocks without batch norm, with a scaled residual.
The output is added to a bicubic upsample of the input (residual learning, as in VDSR), so an
untrained network already gives bicubic and training only has to learn the missing detail.
With `consistency=True` (the shipped demo upscaler), the output is projected so that its
scale x scale box average equals the input exactly (one step of back-projection, Irani & Peleg
1991, with a nearest-neighbour correction): the upscaler adds detail, never changes what the small
image says (its colors, and so what the attribute judge reads from it).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image
from torch import nn


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with a scaled skip (EDSR's block, no batch norm)."""

    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


class Upscaler(ModelMixin, ConfigMixin):
    """Images in [-1, 1] (N, 3, H, W) -> (N, 3, sH, sW): bicubic upsample + a learned residual."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, scale: int = 2, channels: int = 32, num_blocks: int = 4, res_scale: float = 0.2,
                 consistency: bool = False):
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlock(channels, res_scale) for _ in range(num_blocks)])
        self.body_end = nn.Conv2d(channels, channels, 3, padding=1)
        self.tail = nn.Conv2d(channels, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        nn.init.zeros_(self.tail.weight)  # starts as exactly bicubic
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.config.scale
        base = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        feat = self.head(x)
        feat = feat + self.body_end(self.body(feat))
        out = base + self.shuffle(self.tail(feat))
        if self.config.consistency:  # box-average of the output == the input
            out = out + F.interpolate(x - F.avg_pool2d(out, scale), scale_factor=scale, mode="nearest")
        return out


def bicubic(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """The baseline the network is measured against (and adds its residual to)."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB PIL images of one size -> float (N, 3, H, W) in [-1, 1]."""
    import numpy as np

    arr = np.stack([np.asarray(im.convert("RGB")) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_pil(x: torch.Tensor) -> list[Image.Image]:
    """Inverse of `pil_to_tensor` (clamped, rounded)."""
    arr = x.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


@torch.no_grad()
def upscale_images(model: Upscaler, images: list[Image.Image], batch_size: int = 16) -> list[Image.Image]:
    """Each PIL image at `model.config.scale` times its size (images of one size per batch keep their order)."""
    if not images:
        return []
    model.eval()
    param = next(model.parameters())
    out: list[Image.Image] = []
    for i in range(0, len(images), batch_size):
        chunk = images[i : i + batch_size]
        if len({im.size for im in chunk}) > 1:  # mixed sizes: one at a time
            out += [upscale_images(model, [im])[0] for im in chunk]
            continue
        x = pil_to_tensor(chunk).to(device=param.device, dtype=param.dtype)
        out += tensor_to_pil(model(x).float())
    return out


def load_upscaler(folder: str | Path, device=None, dtype=None) -> Upscaler:
    """An `Upscaler` folder (config.json + safetensors) on `device`; InputError when it is not one."""
    from core.errors import InputError

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError("not an upscaler folder (no config.json)", folder)
    if not list(folder.glob("*.safetensors")):
        raise InputError("upscaler folder has no *.safetensors weights", folder)
    try:
        model = Upscaler.from_pretrained(folder, use_safetensors=True, dtype=dtype or torch.float32)
    except (OSError, ValueError, TypeError) as e:
        raise InputError(f"could not load the upscaler: {str(e).splitlines()[0]}", folder) from None
    model = model.to(device=device or "cpu").eval()
    model.requires_grad_(False)
    return model
