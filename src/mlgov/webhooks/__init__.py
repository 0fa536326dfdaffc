"""Governance webhooks: subscriptions to governance events, delivered by a worker.

A governance action (a transition requested, approved, applied; evidence added) calls
:meth:`WebhookService.enqueue` inside its own change transaction: one delivery row per
subscribed webhook is written with the action and its audit event, or not at all (the
transactional outbox). The :class:`~mlgov.webhooks.worker.WebhookWorker` (``mlgov worker``, or
the server's embedded one) sends them later, signed, retrying with backoff; a failing receiver
never blocks or undoes the action. See docs/webhooks.md.
"""
