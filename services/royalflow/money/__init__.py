"""Exact money: integer amounts in a per-currency asset scale, and exact splits."""

from royalflow.money.apportion import apportion, split_pool
from royalflow.money.currency import CURRENCIES, Currency, currency_for

__all__ = ["CURRENCIES", "Currency", "apportion", "currency_for", "split_pool"]
