"""`realchat bench latency`: a 1:1 message on an idle stack, from send to delivery, and where the
milliseconds go (issue 17's acceptance: p50 <= 10 ms, p95 <= 20 ms)."""
