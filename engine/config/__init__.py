"""The configuration service (AliECS apricot): interface and embedded implementation."""
from engine.config.service import (
    ComponentQuery,
    ConfigurationError,
    ConfigurationService,
    parse_component_path,
)
from engine.config.embedded import EmbeddedConfiguration

__all__ = ["ComponentQuery", "ConfigurationError", "ConfigurationService", "EmbeddedConfiguration",
           "parse_component_path"]
