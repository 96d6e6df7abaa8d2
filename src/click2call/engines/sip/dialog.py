"""SIP dialogs from the UAC side (RFC 3261 §12) and replies to requests. Pure.

A `Dialog` is created from the 2xx (or tagged 1xx) answering our INVITE and knows
what every later request in it needs: Call-ID and tags, the route set taken from
Record-Route in reverse (§12.1.2; loose routing, §16.12), the remote target (the
peer's Contact, refreshed by re-INVITE and UPDATE, §12.2), and both CSeq counters.
Its fields are plain values, so the dialog can be stored and rebuilt after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from click2call.engines.sip.message import (
    Address,
    ParseError,
    Request,
    Response,
    SipUri,
)

REASONS = {
    100: "Trying",
    200: "OK",
    400: "Bad Request",
    405: "Method Not Allowed",
    481: "Call/Transaction Does Not Exist",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
}
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"


def reply(request: Request, code: int, to_tag: str | None = None) -> Response:
    """A response to `request` (§8.2.6): its Via, From, Call-ID and CSeq; To with our tag."""
    headers = [h for h in request.headers if h[0] in ("Via", "Record-Route")]
    to = request.required("To")
    if to_tag is not None and request.to().tag is None:
        to = f"{to};tag={to_tag}"
    headers += [
        ("From", request.required("From")),
        ("To", to),
        ("Call-ID", request.call_id),
        ("CSeq", request.required("CSeq")),
    ]
    if code == 405:
        headers.append(("Allow", ALLOW))
    return Response(headers=headers, code=code, reason=REASONS.get(code, "Unknown"))


@dataclass(slots=True)
class Dialog:
    call_id: str
    local: str  # our From value, with our tag
    remote: str  # the peer's To value, with its tag
    remote_target: str  # URI from the peer's Contact
    # Route values, next hop first; a tuple, as most dialogs have none (the empty tuple is
    # shared, where each of thousands of connected legs kept an empty list of 56 bytes).
    route_set: tuple[str, ...] = ()
    local_cseq: int = 1
    remote_cseq: int | None = None

    @classmethod
    def from_response(cls, invite: Request, response: Response) -> Dialog:
        """The dialog a tagged response to our INVITE sets up (§12.1.2)."""
        to = response.to()
        if to.tag is None:
            raise ParseError("a dialog needs a To tag")
        contacts = response.addresses("Contact")
        target = str(contacts[0].uri) if contacts else invite.uri
        routes = tuple(reversed(response.values("Record-Route")))
        return cls(
            call_id=invite.call_id,
            local=invite.required("From"),
            remote=response.required("To"),
            remote_target=target,
            route_set=routes,
            local_cseq=invite.cseq()[0],
        )

    # The tags are read from `local` and `remote` when asked for (rarely: a request from
    # the peer), not kept beside them: two strings more for each of thousands of legs up.
    @property
    def local_tag(self) -> str:
        return Address.parse(self.local).tag or ""

    @property
    def remote_tag(self) -> str:
        return Address.parse(self.remote).tag or ""

    def matches(self, request: Request) -> bool:
        """Is `request` (from the peer) inside this dialog: Call-ID and both tags."""
        try:
            to_tag, from_tag = request.to().tag, request.from_().tag
        except ParseError:
            return False
        return (
            request.call_id == self.call_id
            and to_tag == self.local_tag
            and from_tag == self.remote_tag
        )

    def next_hop(self) -> SipUri:
        """Where an in-dialog request goes: the first route if loose, else the target."""
        if self.route_set:
            return Address.parse(self.route_set[0]).uri
        return SipUri.parse(self.remote_target)

    def request(self, method: str, via: str, cseq: int | None = None) -> Request:
        """A request inside the dialog (§12.2.1.1). ACK passes the INVITE's CSeq."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        uri = self.remote_target
        routes = list(self.route_set)
        if routes and "lr" not in dict(Address.parse(routes[0]).uri.params):
            # A strict router (RFC 2543) takes the Request-URI; the target goes last.
            uri = str(Address.parse(routes.pop(0)).uri)
            routes.append(f"<{self.remote_target}>")
        headers = [("Via", via), ("Max-Forwards", "70")]
        headers += [("Route", route) for route in routes]
        headers += [
            ("From", self.local),
            ("To", self.remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        return Request(headers=headers, method=method, uri=uri)

    def refresh_target(self, message: Request | Response) -> None:
        """A re-INVITE, UPDATE or their 2xx may move the peer (§12.2.1.2, §12.2.2)."""
        contacts = message.addresses("Contact")
        if contacts:
            self.remote_target = str(contacts[0].uri)

    def accept_cseq(self, request: Request) -> bool:
        """False for a request older than the last one seen (§12.2.2: answer it 500)."""
        number = request.cseq()[0]
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_cseq is not None and number <= self.remote_cseq:
            return False
        self.remote_cseq = number
        return True
