"""Persistence: the metadata database, its migrations, the artifact store, the workspace."""
