"""One exception type per failure kind, each message naming the file and what to do."""


class GnftError(Exception):
    """Base class of every error the engine raises on purpose (bad input, refused files)."""


class DataError(GnftError):
    """An audio file or dataset folder cannot be used as it is."""


class CheckpointError(GnftError):
    """A model file is missing, malformed, untrusted or does not match what was asked for."""


class AttackError(GnftError):
    """An attack or trigger was configured in a way that cannot work."""


class ConfigError(GnftError):
    """A setting (command-line option, dataclass field) has an invalid value."""


class Diverged(GnftError):
    """A training or repair run's loss became NaN or infinite: the run was stopped, nothing of it kept."""
