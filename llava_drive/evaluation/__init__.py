"""
Closed-loop driving: drive, evaluate against the expert, leaderboard metrics, reports.

Public API: :func:`~.drive.drive` (+ ``DriveOptions``), :func:`~.evaluate.evaluate`
(+ ``EvaluationOptions``), :func:`~.metrics.aggregate` and ``EpisodeResult``,
:func:`~.report.score_sets`, ``write_markdown``, ``plot_routes``; the ``drive`` and
``evaluate`` commands in :mod:`.cli`.
"""
