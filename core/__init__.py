"""GN-FT Workbench engine: data, attacks, models, training, defenses, analysis (no Qt)."""

__version__ = "0.1.0"
