"""User-facing errors: one clear line naming the field or file, then a non-zero exit."""


class EvomergeError(Exception):
    """An error caused by the user's input or environment, printed as one line by the CLI.

    The message must name the offending field or file and say what is wrong, e.g.
    ``recipe.yaml: sources[1].parameters.density: 1.5 is outside [0, 1]``.
    """

    exit_code = 2


class ConfigError(EvomergeError):
    """A YAML file (recipe, experiment, search space, task) is malformed or invalid."""


class CheckpointError(EvomergeError):
    """A model checkpoint is missing, unsafe (pickled), or incompatible with the others."""
