"""Stand-in for leaderboard.autoagents."""
