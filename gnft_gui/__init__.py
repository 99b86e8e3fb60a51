"""GN-FT Workbench desktop application (Qt), built on the headless engine in ``core``."""
