"""Layout helpers for the SQL text the compiler and ``explain`` write."""

from __future__ import annotations


def parenthesised(sql: str) -> str:
    """``sql`` in parentheses unless it is a rendered group, which already has them."""
    return sql if sql.startswith("(") else f"({sql})"


def indent(sql: str, prefix: str) -> str:
    """Shift continuation lines; safe because literals never hold a raw newline."""
    return sql.replace("\n", "\n" + prefix)
