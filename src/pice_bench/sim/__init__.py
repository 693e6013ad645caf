"""``pice sim``: a discrete-event simulator that runs the gateway's placement policies at scale."""
