"""Built-in learning rules, registered as ``lightning_local.learners`` entry points.

Installed as ``lightning_local.plugins`` (see ``package-dir`` in pyproject.toml).
"""
