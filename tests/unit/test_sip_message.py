"""SIP message parsing and serialisation: whole, byte by byte, trailing data, RFC 4475."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from click2call.engines.sip.message import (
    Address,
    ParseError,
    Request,
    Response,
    SipUri,
    StreamReader,
    UnsafeValue,
    Via,
    bad_request,
    parse_datagram,
)


def wire(text: str, body: str = "") -> bytes:
    """RFC text → bytes: LF line ends become CRLF, Content-Length made to fit the body."""
    head = text.strip("\n").replace("\n", "\r\n")
    payload = body.replace("\n", "\r\n").encode()
    head = head.replace("{length}", str(len(payload)))
    return head.encode() + b"\r\n\r\n" + payload


INVITE = wire(
    """
INVITE sip:200@127.0.0.1:5070 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: <sip:200@127.0.0.1:5070>
From: "Alice" <sip:0502760206@127.0.0.1>;tag=1928301774
Call-ID: a84b4c76e66710@127.0.0.1
CSeq: 314159 INVITE
Contact: <sip:click2call@127.0.0.1:5060;transport=UDP>
Content-Type: application/sdp
Content-Length: {length}
""",
    "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
)


def test_a_request_parses_and_reencodes_byte_for_byte() -> None:
    message = parse_datagram(INVITE)
    assert isinstance(message, Request)
    assert (message.method, message.uri) == ("INVITE", "sip:200@127.0.0.1:5070")
    assert message.cseq() == (314159, "INVITE")
    assert message.call_id == "a84b4c76e66710@127.0.0.1"
    assert message.from_().tag == "1928301774"
    assert message.from_().display == '"Alice"'
    assert message.to().tag is None
    assert message.via()[0].branch == "z9hG4bK776asdhds"
    assert message.via()[0].params[-1] == ("rport", None)
    assert message.body.startswith(b"v=0\r\n")
    assert bytes(message) == INVITE


def test_uri_parameters_are_case_insensitive() -> None:
    contact = parse_datagram(INVITE).addresses("m")[0]
    assert contact.uri.transport == "udp"  # written transport=UDP
    assert SipUri.parse("sips:a@b").transport == "tls"
    assert SipUri.parse("SIP:[::1]:5062;TRANSPORT=Tcp").transport == "tcp"


def test_byte_by_byte_on_a_stream_gives_the_same_message() -> None:
    reader = StreamReader()
    out = []
    for i in range(len(INVITE)):
        out += reader.feed(INVITE[i : i + 1])
        if i < len(INVITE) - 1:
            assert out == []
    assert len(out) == 1 and bytes(out[0]) == INVITE


def test_stream_keeps_trailing_data_for_the_next_message() -> None:
    reader = StreamReader()
    first = reader.feed(b"\r\n\r\n" + INVITE + INVITE[:50])  # keep-alives, one and a bit
    assert len(first) == 1
    second = reader.feed(INVITE[50:] + INVITE)
    assert [bytes(m) for m in second] == [INVITE, INVITE]


def test_stream_without_content_length_is_refused() -> None:
    with pytest.raises(ParseError, match="Content-Length"):
        StreamReader().feed(INVITE.replace(b"Content-Length: ", b"X-Length: "))


def test_a_datagram_drops_bytes_past_content_length() -> None:
    message = parse_datagram(INVITE + b"garbage")
    assert bytes(message) == INVITE


def test_a_response_parses() -> None:
    data = wire(
        """
SIP/2.0 180 Ringing
v: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;received=192.0.2.1;rport=5062
f: <sip:a@127.0.0.1>;tag=1
t: <sip:b@127.0.0.1>;tag=2
i: abc
CSeq: 1 INVITE
l: 0
"""
    )
    message = parse_datagram(data)
    assert isinstance(message, Response)
    assert (message.code, message.reason) == (180, "Ringing")
    via = message.via()[0]
    assert (via.param("received"), via.param("rport")) == ("192.0.2.1", "5062")
    assert message.header("Call-ID") == "abc"  # compact i
    assert message.to().tag == "2"


def test_multiple_and_comma_separated_headers_are_entries() -> None:
    data = INVITE.replace(
        b"Max-Forwards",
        b"Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nRecord-Route: <sip:p3;lr>\r\nMax-Forwards",
    )
    message = parse_datagram(data)
    assert [str(a.uri) for a in message.addresses("Record-Route")] == [
        "sip:p1;lr",
        "sip:p2;lr",
        "sip:p3;lr",
    ]


def test_address_forms() -> None:
    assert Address.parse("sip:a@b;tag=x").tag == "x"  # addr-spec: params belong to the header
    assert Address.parse("<sip:a@b;tag=x>").tag is None  # inside <>: a URI parameter
    assert Address.parse("Bob <sip:b@h>").display == "Bob"
    assert str(Address.parse("<sip:a@b>").with_tag("t")) == "<sip:a@b>;tag=t"
    with pytest.raises(ParseError):
        Address.parse("sip:a@b?x=y")  # needs <>


def test_parsed_values_are_kept_for_short_texts_only() -> None:
    # A call reads its From and To many times: parsed once. A peer's huge values are
    # parsed each time rather than kept, so they cannot fill the caches.
    short = "<sip:200@pbx.example>;tag=a1"
    assert Address.parse(short) is Address.parse(short)
    huge = f"<sip:{'9' * 600}@pbx.example>;tag=a1"
    assert Address.parse(huge) == Address.parse(huge)
    assert Address.parse(huge) is not Address.parse(huge)


def test_via_with_odd_whitespace() -> None:
    via = Via.parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw")
    assert (via.transport, via.host, via.branch) == ("UDP", "192.0.2.2", "390skdjuw")
    assert str(Via("UDP", "::1", 5060)) == "SIP/2.0/UDP [::1]:5060"


@pytest.mark.parametrize("bad", ["\r\nX-Evil: 1", "a\nb", "nul\x00"])
def test_serialisation_refuses_line_breaks_and_nul(bad: str) -> None:
    message = parse_datagram(INVITE)
    message.set("Subject", bad)
    with pytest.raises(UnsafeValue):
        bytes(message)
    with pytest.raises(UnsafeValue):
        bytes(Request(method="INVITE", uri="sip:a@b" + bad))
    with pytest.raises(UnsafeValue):
        bytes(Response(code=200, reason="OK" + bad))


def test_set_replaces_in_place_and_content_length_is_computed() -> None:
    message = parse_datagram(INVITE)
    message.set("CSeq", "2 INVITE")
    message.body = b""
    assert message.headers[5] == ("CSeq", "2 INVITE")
    assert bytes(message).endswith(b"Content-Length: 0\r\n\r\n")


# --- RFC 4475 (SIP torture test messages), constructed from the RFC's text -----------

WSINV = wire(
    """
INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : {length}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33
""",
    "v=0\no=mhandley 29739 7272939 IN IP4 192.0.2.3\ns=-\nc=IN IP4 192.0.2.4\n"
    "t=0 0\nm=audio 49217 RTP/AVP 0 12\nm=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n",
)

# The RFC's To also holds an escaped NUL inside the quoted display name; we refuse NUL
# anywhere in the headers (it would reach logs and peers), so this copy leaves it out.
INTMETH = wire(
    """
!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: "BEL:\\\x07 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~:\ufeff\u5927\u505c\u96fb
Content-Length: 0
"""  # noqa: E501 — the RFC's long lines, as written
)

VALID = {
    "wsinv": WSINV,
    "intmeth": INTMETH,
    "esc01": wire(
        """
INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 0
"""
    ),
    "lwsdisp": wire(
        """
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0
"""
    ),
    "semiuri": wire(
        """
OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sipfrag, message/http
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0
"""
    ),
    "transports": wire(
        """
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0
"""
    ),
    "noreason": wire(
        """
SIP/2.0 100 \n\
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
"""
    ),
    "unreason": wire(
        """
SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e - \u043f\u0440\u043e\u0441\u0442\u043e\u0435
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 0
"""  # noqa: E501
    ),
}

INVALID = {
    "badinv01": wire(
        """
INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Content-Length: 0
"""
    ),
    "clerr": INVITE.replace(b"Content-Length: 87", b"Content-Length: 9999"),
    "ncl": INVITE.replace(b"Content-Length: 87", b"Content-Length: -999"),
    "scalarlg": INVITE.replace(b"CSeq: 314159", b"CSeq: 36893488147419103232"),
    "maxfwd300": INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 300"),
    "quotbal": INVITE.replace(b'From: "Alice" <', b'From: "Alice <'),
    "ltgtruri": INVITE.replace(b"INVITE sip:200@127.0.0.1:5070", b"INVITE <sip:200@127.0.0.1>"),
    "lwsruri": INVITE.replace(b"INVITE sip:200@127.0.0.1:5070", b"INVITE sip:200@h; lr"),
    "lwsstart": INVITE.replace(b"INVITE sip:200@127.0.0.1:5070", b"INVITE  sip:200@h "),
    "trws": INVITE.replace(b"SIP/2.0\r\nVia", b"SIP/2.0  \r\nVia"),
    "escruri": INVITE.replace(b"sip:200@127.0.0.1:5070 ", b"sip:u@h?Route=%3Csip:x%3E "),
    "badvers": INVITE.replace(b"SIP/2.0\r\nVia", b"SIP/7.0\r\nVia"),
    "mismatch01": INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 OPTIONS"),
    "multi01": INVITE.replace(b"Call-ID:", b"Call-ID: other\r\nCall-ID:"),
    "insuf": INVITE.replace(b"Call-ID: a84b4c76e66710@127.0.0.1\r\n", b""),
    "bigcode": wire(
        """
SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
"""
    ),
    "nul_in_header": INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 7\x000"),
    "no_blank_line": INVITE.split(b"\r\n\r\n")[0],
}


@pytest.mark.parametrize("name", VALID)
def test_rfc4475_valid_messages_parse(name: str) -> None:
    message = parse_datagram(VALID[name])
    message.via()
    message.from_()
    assert message.to().uri.host.endswith(("example.com", "example.edu"))
    reader = StreamReader()
    assert [bytes(m) for m in reader.feed(VALID[name])] == [bytes(message)]


def test_rfc4475_wsinv_details() -> None:
    message = parse_datagram(WSINV)
    assert message.to().tag == "1918181833n"
    assert message.from_().tag == "98asjd8"
    assert message.cseq() == (9, "INVITE")
    assert [v.branch for v in message.via()] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    contact = message.addresses("Contact")[0]
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))


def test_rfc4475_escaped_contact_and_odd_uri_users() -> None:
    contact = parse_datagram(VALID["esc01"]).addresses("Contact")[0]
    assert contact.uri.user == "cal%6Cer"
    to = parse_datagram(INTMETH).to()
    assert to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"


@pytest.mark.parametrize("name", INVALID)
def test_rfc4475_invalid_messages_are_refused(name: str) -> None:
    with pytest.raises(ParseError):
        parse_datagram(INVALID[name])


def test_oversized_messages_are_refused() -> None:
    with pytest.raises(ParseError, match="larger"):
        parse_datagram(INVITE + b"x" * 70000)
    with pytest.raises(ParseError, match="headers longer"):
        StreamReader().feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"y" * 70000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzzed_bytes_raise_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_datagram(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(INVITE) - 1), st.binary(min_size=1, max_size=8))
def test_mutated_messages_raise_only_parse_error(at: int, noise: bytes) -> None:
    data = INVITE[:at] + noise + INVITE[at + len(noise) :]
    try:
        message = parse_datagram(data)
        StreamReader().feed(data)
        for name in ("Contact", "Route", "Record-Route"):
            message.addresses(name)
    except ParseError:
        pass


def test_a_malformed_request_gets_400_with_its_identifying_headers() -> None:
    broken = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: many INVITE")
    with pytest.raises(ParseError):
        parse_datagram(broken)
    reply = bad_request(broken)
    assert reply is not None
    answer = parse_datagram(reply.replace(b"CSeq: many INVITE", b"CSeq: 1 INVITE"))
    assert isinstance(answer, Response) and answer.code == 400
    assert answer.call_id == "a84b4c76e66710@127.0.0.1"
    assert answer.via()[0].branch == "z9hG4bK776asdhds"
    assert reply.endswith(b"CSeq: many INVITE\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize(
    "data",
    [
        INVITE.replace(b"Call-ID: a84b4c76e66710@127.0.0.1\r\n", b""),  # nothing to copy
        INVITE.replace(b"INVITE sip:", b"ACK sip:", 1),  # an ACK is never answered
        b"SIP/2.0 200 OK\r\n\r\n",
        b"\x00\xff" * 40,
    ],
)
def test_what_cannot_be_answered_is_dropped(data: bytes) -> None:
    assert bad_request(data) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_bad_request_never_raises(data: bytes) -> None:
    reply = bad_request(data)
    assert reply is None or reply.startswith(b"SIP/2.0 400 Bad Request\r\n")


def test_a_good_message_before_a_bad_one_in_the_same_read_is_delivered() -> None:
    """A BYE and a malformed message in one TCP segment: the BYE is handled, then the
    connection ends (the error raised only after the good messages were returned)."""
    reader = StreamReader()
    bad = b"BYE sip:a@b SIP/2.0\r\nBad Header\r\nContent-Length: 0\r\n\r\n"
    assert [bytes(m) for m in reader.feed(INVITE + bad)] == [INVITE]
    assert reader.error is not None
    with pytest.raises(ParseError):
        reader.feed(INVITE)
