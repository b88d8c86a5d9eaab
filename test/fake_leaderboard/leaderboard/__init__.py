"""Stand-in for carla-simulator/leaderboard (its agent base class only), for tests."""
