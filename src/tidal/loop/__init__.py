"""``tidal.loop``: the closed loop."""
