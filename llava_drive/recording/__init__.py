"""
Recording sessions: pairing frames with labels, the recording stack and its command.

Public API: :class:`~.pairing.Pairer` (+ ``PairingConfig``), :func:`~.session.record`
(+ ``RecordingOptions``); the ``record`` command in :mod:`.cli`.
"""
