"""Webhook delivery: signing, the SSRF guard, events from completed turns, retries."""
