"""The lowest layer: helpers every stage may import (atomic writes, running over cases in worker processes,
data workers and torch threads); it imports no stage (documentation/architecture.md)."""
