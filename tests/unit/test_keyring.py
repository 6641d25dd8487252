"""Keys by id (workflow/keyring.py): tags name their key, an untagged hex MAC from before key
ids is the key k1, an unknown id never verifies, and no key material is ever shown."""

from __future__ import annotations

import hashlib
import hmac
import pickle

import pytest

from workflow.keyring import AnchorKeys, KeyRing, as_ring, key_id_of, next_id, verify_ed25519

K1, K2 = b"\x01" * 32, b"\x02" * 32


def test_new_tags_name_the_current_key_and_old_ones_verify():
    """R-SEC-11: after a rotation the new key writes, both verify, each only its own."""
    ring = KeyRing.single(K1)
    old = ring.sign(b"data")
    assert old.startswith("k1:") and len(old) == 46
    both = ring.with_key("k2", K2)
    new = both.sign(b"data")
    assert new.startswith("k2:") and key_id_of(new) == "k2"
    assert both.verify(b"data", old) and both.verify(b"data", new)
    assert not ring.verify(b"data", new)  # k1 alone does not know k2
    assert not both.verify(b"other", old)
    assert both.ids == ["k1", "k2"] and both.current_id == "k2"


def test_a_legacy_hex_mac_is_the_key_k1():
    """R-SEC-11: hex MACs written before key ids verify under k1, never under another key."""
    legacy = hmac.new(K1, b"data", hashlib.sha256).hexdigest()
    assert KeyRing.single(K1).verify(b"data", legacy)
    assert key_id_of(legacy) == "k1"
    assert not KeyRing.single(K2, "k2").verify(b"data", legacy)
    assert legacy in KeyRing.single(K1).with_key("k2", K2).candidates(b"data")


@pytest.mark.parametrize("tag", ["", None, "k9:abc", "k1:", "zz", "k1:" + "A" * 43])
def test_malformed_or_unknown_tags_never_verify(tag):
    assert not KeyRing.single(K1).verify(b"data", tag)


def test_no_key_material_is_shown_and_rings_pickle():
    """R-SEC-12: repr names ids only; a ring crosses to verify-audit's worker processes."""
    ring = KeyRing.single(K1).with_key("k2", K2)
    assert K1.hex() not in repr(ring) and "k2" in repr(ring)
    copy = pickle.loads(pickle.dumps(ring))
    assert copy.verify(b"x", ring.sign(b"x")) and copy.current_id == "k2"
    assert as_ring(K1) is as_ring(K1) and as_ring(ring) is ring


def test_bad_rings_are_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        KeyRing.single(b"short")
    with pytest.raises(ValueError, match="key id"):
        KeyRing({"K1!": K1}, "K1!")
    with pytest.raises(ValueError, match="taken"):
        KeyRing.single(K1).with_key("k1", K2)
    assert next_id(["k1", "k7", "a3"], "k") == "k8" and next_id([], "a") == "a1"


def test_anchor_keys_sign_and_verify_with_the_public_key():
    """R-SEC-13: Ed25519 by id; the public key verifies, a changed byte does not."""
    keys = AnchorKeys.from_seeds({"a1": b"\x03" * 32, "a2": b"\x04" * 32}, "a2")
    key_id, sig = keys.sign(b"payload")
    assert key_id == "a2"
    assert verify_ed25519(keys.public_key("a2"), b"payload", sig)
    assert not verify_ed25519(keys.public_key("a1"), b"payload", sig)
    assert not verify_ed25519(keys.public_key("a2"), b"payload!", sig)
    assert not verify_ed25519(keys.public_key("a2"), b"payload", "not base64!")
    assert "BEGIN PUBLIC KEY" in keys.public_pem("a1") and "\\x03" not in repr(keys)
