"""Floor 3: LoRA, Diffusion-DPO, the CTR reward model, the preference adapter and demo-model training."""

import core._offline  # noqa: F401
