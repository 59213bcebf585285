"""Nexus: reproducible, staged capability training for small language models.

The package is split by job: :mod:`nexus.registry` (capabilities as data), :mod:`nexus.config`
(the only reader of params.yaml), :mod:`nexus.organize` (dataset organizer), :mod:`nexus.modality`
(what a model folder can see and hear), :mod:`nexus.controller` (pause/resume/cooldown/thermal
callback), :mod:`nexus.trainer` (the one trainer every stage uses) and :mod:`nexus.capabilities`
(one formatter + evaluator per capability).

Importing ``nexus`` is cheap: torch is imported only by the modules that train or generate.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
