"""Architectures and training settings of the shipped demo models, as plain data.

Sizes come from measurements on a shared 2-core CPU (DESIGN.md section 10, and this run's): a
64 px image is encoded to an 8x8 latent with 8 channels (VAE factor 8, like SD's), so the UNet
works on 64 positions and learns whole silhouettes quickly; a small text encoder over the full
CLIP vocabulary; GroupNorm with few groups so flat colors survive in the VAE.
"""
from __future__ import annotations

from dataclasses import dataclass, field

IMAGE_SIZE = 64
LATENT_SIZE = 8
LATENT_CHANNELS = 8
MAX_TOKENS = 32  # shop captions are ~12 tokens; a short context keeps cross-attention cheap

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=IMAGE_SIZE,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 32, 64, 64), layers_per_block=1, norm_num_groups=4,
    mid_block_add_attention=False,  # fully convolutional: trains on crops, 2x cheaper
)

UNET_CONFIG = dict(
    sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
    block_out_channels=(64, 96, 128),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=1, cross_attention_dim=64, attention_head_dim=4, norm_num_groups=8,
)

TEXT_ENCODER_CONFIG = dict(
    vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
    max_position_embeddings=MAX_TOKENS, projection_dim=64, hidden_act="quick_gelu",
    bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
)

# The conditioning embedding downsamples 3 times (4 entries), matching the VAE's factor of 8.
CONTROLNET_EXTRA = dict(conditioning_embedding_out_channels=(16, 32, 64, 64))

# SD 1.x's noise schedule; training uses DDPMScheduler, the shipped folder DDIMScheduler
NOISE_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      clip_sample=False, steps_offset=1, prediction_type="epsilon")
SCHEDULER_CONFIG = dict(NOISE_SCHEDULE, set_alpha_to_one=False)

CLIP_MODEL_NAME = "atelier-demo-clip"
CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 4, "width": 96, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": MAX_TOKENS, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@dataclass
class TrainSettings:
    """Hyperparameters of one demo-model stage; the defaults are the shipped run's."""

    steps: int
    batch_size: int
    lr: float
    warmup: int = 100
    checkpoint_every: int = 500
    extra: dict = field(default_factory=dict)


DEFAULT_SETTINGS = {
    # VAE: cheap 32 px crops first (colors, patterns), then whole images (silhouettes, borders)
    "vae": TrainSettings(steps=1600, batch_size=32, lr=2e-3,
                         extra={"kl_weight": 1e-6, "phases": [(0, 32, 32), (1000, 64, 16)]}),
    # then the decoder alone (latents unchanged), with a loss on pooled colors
    "decoder": TrainSettings(steps=2400, batch_size=16, lr=1e-3, extra={"color_weight": 2.0}),
    "unet": TrainSettings(steps=5000, batch_size=32, lr=1e-3, checkpoint_every=500,
                          extra={"text_lr": 1e-3, "caption_dropout": 0.1, "ema_decay": 0.995, "snr_gamma": 5.0,
                                 "variant_p": [0.82, 0.07, 0.07, 0.04],
                                 "validate_every": 500}),
    "controlnet": TrainSettings(steps=1500, batch_size=32, lr=1e-3, extra={"caption_dropout": 0.5}),
    "clip": TrainSettings(steps=800, batch_size=128, lr=2e-3),
    "classifier": TrainSettings(steps=500, batch_size=32, lr=3e-3),
    # 2x upscaler: 32 px crops of VAE-decoded 64 px images against their 128 px renders (L1)
    "upscaler": TrainSettings(steps=2000, batch_size=16, lr=2e-3,
                              extra={"crop": 32, "fresh_per_combo": 2,
                                     "model": {"channels": 32, "num_blocks": 4, "res_scale": 0.2}}),
}
