"""The command-line modules: each parses its options, calls the library and prints.

``python -m core.train`` (and ``defend``, ``analyze``, ``grid``, ``demo``, ``attacks``,
``data.synth``) run these through two-line shims; nothing in the library or the application
imports them (import-linter contracts in ``pyproject.toml``).
"""
