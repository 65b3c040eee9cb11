"""The lightning-local command line (installed as ``lightning_local.cli``)."""
