"""Call engines: one `Engine` interface (base.py), one package per backend."""
