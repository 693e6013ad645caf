"""The progressive path: sketch on the cloud, expand on the edges, merge in order."""
