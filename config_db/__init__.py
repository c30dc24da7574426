"""Configuration Database: the system's configuration model, YAML loading and validation."""
