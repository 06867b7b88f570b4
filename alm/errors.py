"""User-facing errors: one line, naming the problem, raised at the boundary (config, files, shapes)."""


class ALMError(Exception):
    """An error caused by the user's input or environment; `run.py` prints it on one line and exits 1."""


class ConfigError(ALMError):
    """An invalid or unknown configuration value or combination."""


class DataError(ALMError):
    """A missing, corrupt or mis-shaped input (data folder, image, mask)."""


class CheckpointError(ALMError):
    """A model checkpoint that is not available locally."""


class NumericalError(ALMError):
    """A non-finite value produced during sampling."""
