"""Public face of the rule registry: ``seqlrp.rules.register/get/available`` and the rule classes."""

from .core import rules as _rules
from .core.registry import available, get, register, resolve
from .core.rules import *  # noqa: F403  (the rule classes)

__all__ = [*_rules.__all__, "available", "get", "register", "resolve"]
