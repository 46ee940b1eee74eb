"""The lowest layer: helpers every stage may import (atomic writes, running over cases in worker processes);
it imports no stage (documentation/architecture.md)."""
