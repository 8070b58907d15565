"""Runnable scenarios that exercise Tidal end to end; ``tidal demo`` runs the retail one."""
