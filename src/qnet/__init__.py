"""qnet: a quantum network stack.

The quantum layer is simulated from published physics; everything above it (key management, relay,
control, management, services) is real software. Layers, from the bottom (DESIGN.md):

``units``, ``errors`` -> ``physics``, ``sim`` -> ``quantum`` -> ``keys`` -> ``control`` ->
``service`` / ``management`` -> ``servers``, ``clients``, ``scenarios``, ``cli``.

Importing ``qnet`` imports nothing else, so the CLI and each layer load only what they use.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
