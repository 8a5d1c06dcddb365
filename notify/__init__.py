"""Incident notifications: rules, bilingual messages, e-mail / signed webhook / Telegram, grouping and rate limits."""
