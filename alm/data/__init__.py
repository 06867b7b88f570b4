"""Data sets of completion problems (source image + label); masks come from ``alm.masks``."""
