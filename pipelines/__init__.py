"""Floor 2: generation pipelines on diffusers, model loading, the scorer and the attribute classifier."""

import core._offline  # noqa: F401  (offline defaults before diffusers/transformers load)
