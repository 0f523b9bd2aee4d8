"""Anti-spam: DNS block lists (RFC 5782), greylisting, a score from the
authentication verdicts, and per-user Bayesian learning from Junk moves."""
