"""edgenas: hardware-aware neural architecture search and deployment for edge devices."""

__version__ = "0.1.0"
