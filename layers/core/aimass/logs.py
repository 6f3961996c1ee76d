"""One logging configuration for every function: aimass's own modules write through the function's
Powertools Logger, so their lines are JSON with its service name and Lambda context, whatever
POWERTOOLS_SERVICE_NAME says.

Domain modules log with `logging.getLogger(__name__)` and know nothing of Powertools. The Logger is the
standard logger named after the service, so the `aimass.*` loggers would be its children only while the
service is called "aimass"; under any other name their records would reach the runtime's plain-text
handler instead. The `aimass` logger is therefore given the Logger's handler and level, as Powertools
does for other libraries' loggers."""

from __future__ import annotations

import logging
import warnings

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

PACKAGE = "aimass"

# An invocation that counted nothing (health, the registry's routes, a file handed to the state
# machine, a pipeline task) publishes no application metric: expected, not a warning in the log.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def function_logger() -> Logger:
    """The function's Powertools Logger, with every aimass module logging through it. Called once, at
    the function's import."""
    logger = Logger()
    logging.getLogger(PACKAGE)  # registered, so that the copy finds it before any module has logged
    copy_config_to_registered_loggers(source_logger=logger, include={PACKAGE})
    return logger
