"""Answering a leg's digest challenges (RFC 3261 §22, RFC 7616): which challenge may be
answered, and the credentials that answer it. Pure, one per leg that was challenged.

A challenge is answered once per nonce; a server that asks again for the same realm
after our credentials (even with a new nonce: one-time nonces) has refused them, and
they are not sent again, unless it says the nonce was only stale. A proxy's and a PBX's
realms are answered side by side, each in its own header.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from click2call.engines.sip.auth import authorization, best_challenge
from click2call.engines.sip.message import Request, Response

# A challenging response's code → the header it challenges in, the one answering it.
CHALLENGES = {
    401: ("WWW-Authenticate", "Authorization"),
    407: ("Proxy-Authenticate", "Proxy-Authorization"),
}


def answer_header(response: Response) -> str:
    """The header that answers `response`'s challenge (Authorization or Proxy-…)."""
    return CHALLENGES[response.code][1]


@dataclass(slots=True)
class Answers:
    nonce_counts: dict[str, int] = field(default_factory=dict)
    # (CSeq, realm) of each request sent with credentials: a challenge to it for that
    # realm says they were refused.
    sent: tuple[tuple[int, str], ...] = ()

    def may_answer(self, response: Response) -> bool:
        """A challenge we can answer: one we support, not a refusal of what we sent."""
        if response.code not in CHALLENGES:
            return False
        challenge = best_challenge(response.values(CHALLENGES[response.code][0]))
        if challenge is None:
            return False
        if challenge.stale:  # the credentials were right, the nonce old
            return True
        if (response.cseq()[0], challenge.realm) in self.sent:
            return False  # RFC 3261 §22.2: refused credentials are not sent again
        return self.nonce_counts.get(challenge.nonce, 0) == 0

    def answer(
        self, request: Request, response: Response, username: str, password: str, cnonce: str
    ) -> None:
        """Put into `request` the credentials answering `response` (may_answer said yes)."""
        challenge = best_challenge(response.values(CHALLENGES[response.code][0]))
        assert challenge is not None
        count = self.nonce_counts.get(challenge.nonce, 0) + 1
        self.nonce_counts[challenge.nonce] = count
        self.sent = (*self.sent, (request.cseq()[0], challenge.realm))
        value = authorization(
            challenge,
            method=request.method,
            uri=request.uri,
            username=username,
            password=password,
            cnonce=cnonce,
            nonce_count=count,
        )
        request.set(answer_header(response), value)
