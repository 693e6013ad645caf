"""HTTP plumbing shared by the gateway and the edge agent."""
