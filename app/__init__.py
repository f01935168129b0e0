"""Floor 4: the `atelier` CLI, the Gradio UI, batch campaigns and the A/B ranking store."""

import core._offline  # noqa: F401
