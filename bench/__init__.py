"""`make bench`: the agent's performance figures, each beside a baseline measured in the same run."""
