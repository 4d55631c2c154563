"""payrail's load generator and benchmark (``python -m bench``, ``make bench``).

Open loop: requests leave at a fixed arrival rate whatever the server does, and every
latency is measured from the moment the request was *scheduled*, so a stalled server
shows up as latency instead of silently slowing the generator down (no coordinated
omission). See docs/performance.md for the method and the latest figures.
"""
