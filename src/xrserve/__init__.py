"""xrserve: AI models as a service for virtual and augmented reality."""

__version__ = "0.1.0"

from xrserve.core.model import Model  # noqa: E402

__all__ = ["Model", "__version__"]
