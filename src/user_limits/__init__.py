"""user-limits: a read model of players' responsible-gambling limits, projected from Kinesis."""

__version__ = "0.1.0"
