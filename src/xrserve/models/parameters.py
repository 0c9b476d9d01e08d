"""Request parameters shared by several built-in models.

Each built-in model declares the parameters it reads as a `ModelParameters` class (its
`Parameters` attribute), next to the code that reads them; the scheduler validates a
request's parameters against it before queuing. A model that reads none declares
`NoParameters`, so a misspelt or misplaced parameter is a 400 naming it, not silently
ignored.
"""

from __future__ import annotations

from xrserve.core.model import ModelParameters


class NoParameters(ModelParameters):
    """This model reads no request parameters."""
