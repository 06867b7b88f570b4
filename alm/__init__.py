"""alm: training-free diffusion content completion (ALM and its baselines)."""

__version__ = "0.1.0"
