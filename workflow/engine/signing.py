"""The signature gate (Part 11 Subpart C): verify the signer's credentials, check their role
and separation of duties, count the quorum, and store the signature bound to the record's
content hash with a server-keyed MAC."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflow import canonical
from workflow.audit import trail as audit
from workflow.db.models import Record, Signature, User
from workflow.db.seals import compute_mac
from workflow.engine import access
from workflow.engine import statements as st
from workflow.engine.context import Ctx
from workflow.errors import NotAuthorized, SegregationOfDuties, SignatureRejected
from workflow.identity import enablement
from workflow.spec import content as spec
from workflow.spec.model import SignatureSpec, TransitionSpec


def sign(ctx: Ctx, rec: Record, user: User, signature: Any, *, transition: str, meaning: str,
         roles: tuple[str, ...], data: Mapping[str, Any], quorum: Any = None,
         separation: TransitionSpec | None = None,
         covers: TransitionSpec | None = None) -> tuple[int, int]:
    """Verify, check and store a signature; returns (its id, how many signatures this
    step has now, counting it). ``covers``: the step whose ``locks`` the signature covers
    (its sign event records the covered content's hash, to show it superseded later)."""
    session = ctx.session
    signer = ctx.verifier.verify(session, signature, user)
    if signer.user.id != user.id:
        raise SignatureRejected(
            "The signer must be the person performing the action; signing on behalf of "
            "someone else is not possible.")
    # 21 CFR 11.100(b), 11.10(j): identity verified, e-signature policy accepted
    enablement.require_enabled(session, signer.user)
    held = ctx.roles(signer.user)
    eligible = [r for r in roles if r in held]
    if not eligible:
        raise NotAuthorized(
            f"Signing {meaning!r} needs one of these roles: {', '.join(roles)}.",
            required_roles=roles)
    if separation is not None:
        access.separation(session, rec, separation, signer.user)
    earlier = session.execute(st.EARLIER_SIGNATURES, {
        "rid": rec.id, "transition": transition, "visit": rec.state_visit}).all()
    if any(s == signer.user.id for s, _ in earlier):
        raise SegregationOfDuties(
            f"You have already signed {transition!r} on {rec.number}; another person "
            "must give the next signature.", rule="distinct_signers")
    role = eligible[0]
    have = len(earlier) + 1
    if quorum is not None and quorum.one_per_role:
        role, have, covered = roles_to_fill(transition, rec.number, roles, eligible,
                                            [r for _, r in earlier])
        if have < quorum.quorum:
            # that role's part is done: its task leaves the inboxes, the others' stay
            session.execute(st.CLOSE_ROLE_TASK, {
                "rid": rec.id, "b_role": covered, "now": ctx.now, "uid": signer.user.id,
                "transition": transition})
    sig_id = store(ctx, rec, signer.user, transition=transition, meaning=meaning, role=role,
                   method=signer.method, data=data, covers=covers)
    # the record row lock serialises signers, so the count read above is still current
    return sig_id, have


def required(sig: SignatureSpec, names: Mapping[str, Any]) -> SignatureSpec:
    """The signature gate as it applies to this record now (``SignatureSpec.required``)."""
    return sig.required(names)


def store(ctx: Ctx, rec: Record, user: User, *, transition: str, meaning: str, role: str,
          method: str, data: Mapping[str, Any], covers: TransitionSpec | None = None) -> int:
    """Write a verified signature row and its audit event; returns the signature id."""
    content_hash = canonical.sha256(canonical.record_content(
        rec.number, rec.workflow_key, rec.definition_hash, dict(data)))
    row = dict(record_id=rec.id, record_version=rec.version, state_visit=rec.state_visit,
               transition=transition, meaning=meaning, signer_id=user.id,
               signer_name=user.full_name, signer_username=user.username,
               signer_role=role, method=method, signed_at=ctx.now, content_hash=content_hash)
    # the MAC covers no row id, so it is computed before the (append-only) insert; the
    # row goes in as one Core INSERT rather than through an ORM flush (which would also
    # write the record row early, and again at commit)
    row["mac"] = compute_mac(ctx.signing_key, Signature(**row), rec.number)
    sig_id = st.inserted_id(ctx.session.execute(st.INSERT_SIGNATURE, row))
    manifest: dict[str, Any] = {"id": sig_id, "meaning": meaning, "role": role,
                                "method": method, "content_hash": content_hash}
    if covers is not None:
        # what the signature locks (R-P11-70-2): shown "superseded" once that content changes
        manifest.update(covers=[f for f in covers.locks if f not in spec.whole_free(covers)],
                        free={k: sorted(v) for k, v in spec.free_columns(covers).items()},
                        covered_hash=spec.covered_hash(spec.covered(covers, data)))
    audit.record_event(ctx.session, rec, at=ctx.now, actor=user, action="sign",
                       transition=transition, changes={"signature": manifest})
    return sig_id


def roles_to_fill(transition: str, number: str, roles: tuple[str, ...],
                  eligible: list[str], earlier: list[str]) -> tuple[str, int, str]:
    """One signer per role (e.g. QA *and* process owner). Each signature records every
    required role its signer held (``qa+process_owner``); the step is complete when the
    signers can be matched to distinct roles, so someone holding both roles never blocks
    a valid pair. A signer who cannot enlarge the matching is refused. Returns (the role
    text to record, the matching's size with this signer, the role they cover)."""
    sets = [r.split("+") for r in earlier]
    before = matching(sets)
    after = matching([*sets, eligible])
    if len(after) <= len(before):
        needed = [r for r in roles if r not in before.values()]
        raise SegregationOfDuties(
            f"The signatures already given on {number} cover the roles you hold; "
            f"{transition!r} still needs a signature as {' or '.join(needed)}, by "
            "another person.", rule="one_per_role")
    return "+".join(eligible), len(after), after[len(sets)]


def matching(sets: list[list[str]]) -> dict[int, str]:
    """Maximum matching of signers (by index) to distinct roles (augmenting paths; the sets
    are tiny)."""
    owner: dict[str, int] = {}

    def place(i: int, seen: set[str]) -> bool:
        for r in sets[i]:
            if r in seen:
                continue
            seen.add(r)
            if r not in owner or place(owner[r], seen):
                owner[r] = i
                return True
        return False

    for i in range(len(sets)):
        place(i, set())
    return {i: r for r, i in owner.items()}
