"""Hypothesis strategies for legal identities (shared by the FHIR and Datamatrix property tests)."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from dmp_connector.ins import (
    INS,
    BirthDate,
    Identity,
    IdentityDocument,
    IdentityDocumentKind,
    IdentityStatus,
    IdentityTraits,
    InsOid,
    Sex,
    compute_key,
)

word = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=1, max_size=12)
name = st.lists(word, min_size=1, max_size=3).flatmap(
    lambda words: st.sampled_from(["-", " ", "'"]).map(lambda sep: sep.join(words))
)
first_names = st.lists(word, min_size=1, max_size=4).map(tuple)
cog = st.one_of(st.from_regex(r"[0-9]{5}", fullmatch=True), st.from_regex(r"2[AB][0-9]{3}", fullmatch=True))
calendar_date = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2025, 12, 31)).map(BirthDate.from_date)
partial_date = st.builds(BirthDate, year=st.integers(1900, 2025), month=st.one_of(st.none(), st.integers(1, 12)))
birth_date = st.one_of(calendar_date, partial_date)


@st.composite
def ins_values(draw: st.DrawFn) -> INS:
    sex = draw(st.sampled_from("12"))
    body = sex + draw(st.from_regex(r"[0-9]{2}(0[1-9]|1[0-2])[0-9]{8}", fullmatch=True))
    oid = draw(st.sampled_from(list(InsOid)))
    return INS.from_parts(body, compute_key(body), oid)


@st.composite
def traits(draw: st.DrawFn, *, sexes: tuple[Sex, ...] = (Sex.M, Sex.F, Sex.I), place: bool = True) -> IdentityTraits:
    return IdentityTraits(
        birth_name=draw(name),
        birth_first_names=draw(first_names),
        sex=draw(st.sampled_from(sexes)),
        birth_date=draw(birth_date),
        birth_place=draw(cog) if place else draw(st.one_of(st.none(), cog)),
        used_name=draw(st.one_of(st.none(), name)),
        used_first_name=draw(st.one_of(st.none(), word)),
    )


documents = st.builds(
    IdentityDocument,
    kind=st.sampled_from([k for k in IdentityDocumentKind if k.high_trust]),
    checked_on=st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2025, 12, 31)),
)


@st.composite
def identities(draw: st.DrawFn, *, statuses: tuple[IdentityStatus, ...] = tuple(IdentityStatus)) -> Identity:
    status = draw(st.sampled_from(statuses))
    ins = draw(ins_values()) if status.ins_retrieved else None
    document = draw(documents) if status.document_checked else None
    attribute = draw(st.sampled_from(["doubtful", "fictitious", None])) if status is IdentityStatus.PROV else None
    return Identity(
        traits=draw(traits(place=status is IdentityStatus.QUAL)),
        ins=ins,
        status=status,
        document=document,
        homonym=draw(st.booleans()),
        **({attribute: True} if attribute else {}),
    )


def qualified(**traits_options: object) -> st.SearchStrategy[Identity]:
    """QUAL identities with a birth place (what a Datamatrix can print)."""
    return st.builds(
        Identity,
        traits=traits(**traits_options),  # type: ignore[arg-type]
        ins=ins_values(),
        status=st.just(IdentityStatus.QUAL),
        document=documents,
    )
