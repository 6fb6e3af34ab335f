"""The taskcounts domain: events, counting rules, the Table Storage store and the HTTP contract.

Imported absolutely (``from shared import store``); nothing here imports ``azure.functions``.
"""
