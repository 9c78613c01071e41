"""user-limits: a read model of players' responsible-gambling limits, projected from Kinesis.

Entry points: ``aws_lambda`` (``handler``, ``api_handler``), ``cli`` (``main``: the ``user-limits``
command), ``replay``. The composition root: ``bootstrap``. Where the rules meet the engine:
``family``. Packages: ``domain`` (the rules, pure), ``stream`` (the generic batch engine),
``kinesis``, ``stores``, ``api``, ``cli``, ``web``, ``testing`` (inputs for tests and benchmarks).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
