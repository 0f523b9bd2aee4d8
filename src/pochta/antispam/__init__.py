"""Anti-spam: DNS block lists (RFC 5782), greylisting, a score from the
authentication verdicts, and per-user Bayesian learning from Junk moves."""

from pochta.antispam.bayes import Bayes, JunkTrainer, tokens
from pochta.antispam.dnsbl import DNSBL, Listing
from pochta.antispam.greylist import Greylist, GreyVerdict
from pochta.antispam.score import Score, Verdicts, decide, score, spam_headers

__all__ = [
    "DNSBL",
    "Bayes",
    "GreyVerdict",
    "Greylist",
    "JunkTrainer",
    "Listing",
    "Score",
    "Verdicts",
    "decide",
    "score",
    "spam_headers",
    "tokens",
]
