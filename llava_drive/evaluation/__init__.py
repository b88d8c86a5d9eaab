"""Closed-loop driving: drive, evaluate against the expert, leaderboard metrics, reports."""
