"""The search loop, the durable run store, and evaluation pools (in process or Ray actors)."""
