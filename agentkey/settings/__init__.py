"""Settings: ``base`` (the embedded default), ``test`` and ``production``."""
