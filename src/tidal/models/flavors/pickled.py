"""The refusal shared by every flavor whose stored format is pickle (or can run code as pickle
does): such a model is loaded only when the caller says, in so many words, that it trusts it."""

from __future__ import annotations

from tidal.errors import TidalError


class UntrustedModelError(TidalError):
    """The model's stored format can run code when loaded, and the caller did not pass
    trust=True."""

    status_code = 403


def refuse_untrusted(flavor_name: str, fmt: str) -> UntrustedModelError:
    """The error a flavor raises, before reading a byte, when asked to load an unsafe format
    without trust: the message says why and how to load it anyway."""
    return UntrustedModelError(
        f"the model is stored with {fmt} by the {flavor_name} flavor, which can run arbitrary "
        "code when loaded; load it only if you trust where it came from, with trust=True "
        "(Python) / --trust (CLI)", field="trust")
