import base64
import hashlib
import hmac

import pytest

from orchestrator.cluster.hostkeys import host_matches, parse_known_hosts
from orchestrator.cluster.ssh import parse_jump
from orchestrator.errors import TransportError

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIMXz0000000000000000000000000000000000000000"


def test_marker_lines_are_set_aside_and_plain_lines_kept():
    kh = parse_known_hosts(f"""# comment
login.example.org ssh-ed25519 {KEY}
@cert-authority *.example.org ssh-ed25519 {KEY}
@revoked old.example.org ssh-ed25519 {KEY}2
[10.78.0.2]:22 ssh-ed25519 {KEY}
""")
    assert kh.plain_lines == [f"login.example.org ssh-ed25519 {KEY}", f"[10.78.0.2]:22 ssh-ed25519 {KEY}"]
    assert kh.is_revoked("ssh-ed25519", KEY + "2") and not kh.is_revoked("ssh-ed25519", KEY)
    assert kh.has_ca_for("login.example.org") and not kh.has_ca_for("login.other.org")


def test_host_patterns_negation_and_hashed_names():
    assert host_matches("a.example.org", "*.example.org,!b.example.org")
    assert not host_matches("b.example.org", "*.example.org,!b.example.org")
    salt = b"0123456789abcdefghij"
    digest = hmac.new(salt, b"login", hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    assert host_matches("login", hashed) and not host_matches("other", hashed)


@pytest.mark.parametrize("spec,expected", [
    ("bastion", (None, "bastion", None)),
    ("alice@bastion", ("alice", "bastion", None)),
    ("bastion:2222", (None, "bastion", 2222)),
    ("alice@bastion:2222", ("alice", "bastion", 2222)),
    ("ssh://alice@bastion:2222", ("alice", "bastion", 2222)),
    ("ssh://bastion", (None, "bastion", None)),
    ("[2001:db8::1]:2200", (None, "2001:db8::1", 2200)),
    ("alice@[2001:db8::1]", ("alice", "2001:db8::1", None)),
])
def test_proxyjump_forms(spec, expected):
    assert parse_jump(spec) == expected


def test_proxyjump_without_host_is_an_error():
    with pytest.raises(TransportError, match="no host"):
        parse_jump("alice@")


def test_bracketed_names_with_ports_are_literal_not_character_classes():
    assert host_matches("[10.78.0.2]:2222", "[10.78.0.2]:2222")
    assert not host_matches("1", "[10.78.0.2]:2222") and not host_matches("[10.78.0.2]:22", "[10.78.0.2]:2222")
    assert host_matches("n1.example.org", "n?.example.org") and not host_matches("n12.example.org", "n?.example.org")
    kh = parse_known_hosts(f"[10.78.0.2]:2222 ssh-ed25519 {KEY}\n10.78.0.2 ssh-ed25519 {KEY}2\n")
    assert kh.keys_for("[10.78.0.2]:2222") == [("ssh-ed25519", KEY)]
