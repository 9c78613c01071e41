"""Stores of the read model. Each one implements :class:`~user_limits.stores.base.LimitStore`."""
