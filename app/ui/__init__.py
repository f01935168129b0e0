"""The Gradio UI: one module per tab, `server.build_app` mounts them with the A/B API on one FastAPI app.

Gradio is imported only inside the build functions, so importing this package stays cheap.
"""

from .workspace import UIConfig, Unavailable, Workspace

__all__ = ["UIConfig", "Unavailable", "Workspace"]
