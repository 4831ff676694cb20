"""The errors a user can cause. Each message is one line naming the bad value and the valid choices."""

import argparse
import sys
from typing import NoReturn


class AblateError(Exception):
    """Base class: the command-line entry points print these as one line and exit non-zero."""


class ConfigError(AblateError, ValueError):
    """A bad config value: unknown variant, impossible sizes, a sequence longer than the model allows."""


class DataError(AblateError, ValueError):
    """Unusable data: a missing, empty, binary or non-UTF-8 file, or one shorter than one block."""


class CheckpointError(AblateError, ValueError):
    """A checkpoint that cannot be used with this model."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a bad command line is one line, ``error: ...``, and exit status 2, as everywhere
    else in ablate (argparse prints its usage block first; ``--help`` still shows it)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)
