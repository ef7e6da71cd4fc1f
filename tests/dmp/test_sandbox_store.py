"""The DMP simulator's store: seeds, patients, authorisations, registry and repository, in memory and on file."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest

from dmp_connector.codes import Code
from dmp_connector.dmp._td import AuthorisationStatus, DmpState
from dmp_connector.errors import ConfigurationError
from dmp_connector.ins import INS, InsOid
from dmp_connector.sandbox.dmp import (
    DEFAULT_DMP_AUTHORISATIONS,
    DEFAULT_DMP_PATIENTS,
    DEFAULT_DMP_PROFESSIONALS,
    AuthorisationRecord,
    DmpStore,
    PatientRecord,
    StoredEntry,
    StoredSubmissionSet,
)
from dmp_connector.sandbox.insi import DEFAULT_INSI_IDENTITIES
from dmp_connector.signature import AccessMode
from dmp_connector.xds import (
    Association,
    AvailabilityStatus,
    Cx,
    DocumentEntry,
    SubmissionSet,
    XdsTime,
)

NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
ADRUN = DEFAULT_DMP_PATIENTS[0]


def seeded(path: Path | None = None) -> DmpStore:
    store = DmpStore(path)
    store.seed(
        patients=DEFAULT_DMP_PATIENTS,
        professionals=DEFAULT_DMP_PROFESSIONALS,
        authorisations=DEFAULT_DMP_AUTHORISATIONS,
    )
    return store


def entry(number: int, *, patient: Cx | None = None, unique_id: str | None = None) -> StoredEntry:
    uuid = f"urn:uuid:00000000-0000-4000-8000-{number:012d}"
    document = DocumentEntry(
        entry_uuid=uuid,
        unique_id=unique_id or f"1.2.250.1.999.7.{number}",
        patient_id=patient or ADRUN.cx,
        mime_type="application/pdf",
        availability_status=AvailabilityStatus.APPROVED,
        logical_id=uuid,
        version="1",
        creation_time=XdsTime.of(NOW),
    )
    return StoredEntry(entry=document, submission_set="urn:uuid:ss", submitter="899700000001", recorded=NOW)


def test_the_default_seeds_show_every_case_and_reuse_the_insi_identities() -> None:
    insi = {seed.ins.matricule: seed for seed in DEFAULT_INSI_IDENTITIES if seed.ins is not None}
    for patient in DEFAULT_DMP_PATIENTS:
        assert patient.ins == insi[patient.ins.matricule].ins
        assert patient.traits == insi[patient.ins.matricule].traits
        assert patient.note
    states = {p.dmp for p in DEFAULT_DMP_PATIENTS}
    assert states == {DmpState.ACTIVE, DmpState.CLOSED, None}
    assert any(p.oppositions == {AccessMode.BRIS_DE_GLACE, AccessMode.CENTRE_15} for p in DEFAULT_DMP_PATIENTS)
    assert any(p.ins.oid is InsOid.NIR_TEST for p in DEFAULT_DMP_PATIENTS)
    statuses = {a.status for a in DEFAULT_DMP_AUTHORISATIONS}
    assert statuses == {AuthorisationStatus.VALID, AuthorisationStatus.FORBIDDEN, AuthorisationStatus.EXPIRED}


def test_a_patient_is_found_by_cx_ins_or_key_and_only_under_its_own_oid() -> None:
    store = seeded()
    assert store.patient(ADRUN.cx) == ADRUN
    assert store.patient(ADRUN.ins) == ADRUN
    assert store.patient(ADRUN.key) == ADRUN
    assert store.patient(Cx(id=ADRUN.ins.matricule, assigning_authority=ADRUN.ins.oid.value)) == ADRUN
    other_oid = INS(matricule=ADRUN.ins.matricule, oid=InsOid.NIR_TEST)
    assert store.patient(other_oid) is None
    assert ADRUN.key == "275126322074974^^^&1.2.250.1.213.1.4.8&ISO^NH"
    assert len(store.patients()) == len(DEFAULT_DMP_PATIENTS)


def test_put_patient_replaces_and_seeding_again_keeps_what_changed(tmp_path: Path) -> None:
    store = seeded(tmp_path / "dmp.sqlite")
    closed = ADRUN.model_copy(update={"dmp": DmpState.CLOSED, "closed": NOW, "closing_reason": "DECES"})
    store.put_patient(closed)
    store.seed(patients=DEFAULT_DMP_PATIENTS)
    assert store.patient(ADRUN.cx) == closed
    store.close()
    with seeded(tmp_path / "dmp.sqlite") as reopened:
        assert reopened.patient(ADRUN.cx) == closed


def test_authorisations_are_kept_per_patient_and_professional() -> None:
    store = seeded()
    record = AuthorisationRecord(patient=ADRUN.key, professional_id="899700000001", since=NOW)
    store.put_authorisation(record)
    assert store.authorisation(ADRUN.key, "899700000001") == record
    assert store.authorisations(patient=ADRUN.key) == [record]
    expired = [a.patient for a in DEFAULT_DMP_AUTHORISATIONS if a.professional_id == "899700000001"]
    assert sorted(a.patient for a in store.authorisations(professional_id="899700000001")) == sorted(
        [ADRUN.key, *expired]
    )
    assert len(store.authorisations()) == len(DEFAULT_DMP_AUTHORISATIONS) + 1
    store.put_authorisation(record.model_copy(update={"attending_physician": True}))
    stored = store.authorisation(ADRUN.key, "899700000001")
    assert stored is not None and stored.attending_physician
    assert store.remove_authorisation(ADRUN.key, "899700000001")
    assert not store.remove_authorisation(ADRUN.key, "899700000001")
    assert store.authorisation(ADRUN.key, "899700000001") is None


def test_professionals_by_national_id() -> None:
    store = seeded()
    known = store.professional("810001234567")
    assert known is not None and known.family_name == "DUPONT"
    assert known.profession == Code.of("10", "1.2.250.1.71.1.2.7", "Médecin")
    assert store.professional("800000000000") is None


def test_registry_entries_submission_sets_and_associations_round_trip() -> None:
    store = seeded()
    ss = SubmissionSet(
        entry_uuid="urn:uuid:00000000-0000-4000-8000-00000000aaaa",
        unique_id="1.2.250.1.999.7.100",
        source_id="1.2.250.1.999",
        patient_id=ADRUN.cx,
        submission_time=XdsTime.of(NOW),
        availability_status=AvailabilityStatus.APPROVED,
    )
    store.add_submission_set(StoredSubmissionSet(submission_set=ss, submitter="899700000001", recorded=NOW))
    first, second = entry(1), entry(2)
    store.add_entry(first)
    store.add_entry(second)
    association = Association.has_member(
        "urn:uuid:00000000-0000-4000-8000-00000000bbbb", ss.entry_uuid, first.entry.entry_uuid
    )
    store.add_association(association)

    assert store.submission_set(entry_uuid=ss.entry_uuid) == store.submission_set(unique_id=ss.unique_id)
    assert [s.submission_set for s in store.submission_sets(ADRUN.key)] == [ss]
    assert store.entry(first.entry.entry_uuid) == first
    assert store.entries(patient=ADRUN.key) == [first, second]
    assert store.entries(unique_id="1.2.250.1.999.7.2") == [second]
    assert store.entries(logical_id=first.entry.entry_uuid) == [first]
    assert store.entry_count() == 2 and store.entry_count(ADRUN.key) == 2
    assert store.associations([first.entry.entry_uuid]) == [association]
    assert store.associations([ss.entry_uuid]) == [association]
    assert store.associations([]) == []

    deprecated = first.model_copy(
        update={"entry": first.entry.model_copy(update={"availability_status": AvailabilityStatus.DEPRECATED})}
    )
    store.replace_entry(deprecated)
    assert store.entry(first.entry.entry_uuid) == deprecated
    assert first.author_ids == {"899700000001"}


def test_a_registered_id_cannot_be_registered_twice() -> None:
    store = seeded()
    store.add_entry(entry(1))
    with pytest.raises(sqlite3.IntegrityError):
        store.add_entry(entry(1))
    assert store.entry_count() == 1


def test_document_bytes_are_kept_once_with_their_hash_and_size() -> None:
    store = seeded()
    kept = store.put_content("1.2.3", b"%PDF-1.4 first", mime_type="application/pdf")
    assert kept.sha1 == hashlib.sha1(b"%PDF-1.4 first").hexdigest()
    assert kept.size == len(b"%PDF-1.4 first")
    again = store.put_content("1.2.3", b"other bytes", mime_type="text/plain")
    stored = store.content("1.2.3")
    assert stored is not None and stored.data == b"%PDF-1.4 first" and stored.mime_type == "application/pdf"
    assert again.sha1 != stored.sha1  # what the caller tried to put, not what is kept
    assert store.content("9.9.9") is None
    assert store.content_count() == 1


def test_a_transaction_is_all_or_nothing() -> None:
    store = seeded()

    def half_way() -> None:
        with store.transaction():
            store.add_entry(entry(1))
            store.put_content("1.2.250.1.999.7.1", b"data", mime_type="application/pdf")
            raise RuntimeError("refused half-way")

    with pytest.raises(RuntimeError):
        half_way()
    assert store.entry_count() == 0 and store.content_count() == 0
    with store.transaction(), store.transaction():  # nested: joins the outer one
        store.add_entry(entry(2))
    assert store.entry_count() == 1


def test_concurrent_writers_all_land(tmp_path: Path) -> None:
    store = seeded(tmp_path / "dmp.sqlite")
    errors: list[BaseException] = []

    def write(start: int) -> None:
        try:
            for number in range(start, start + 20):
                with store.transaction():
                    store.add_entry(entry(number))
                    store.put_content(f"1.2.250.1.999.7.{number}", b"x" * number, mime_type="application/pdf")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n * 100,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.entry_count() == 80 and store.content_count() == 80
    assert store.dump()["entries"] == 80


def test_a_file_store_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "dmp.sqlite"
    with seeded(path) as store:
        store.add_entry(entry(1))
        store.put_content("1.2.250.1.999.7.1", b"%PDF", mime_type="application/pdf")
    with DmpStore(path) as reopened:
        assert reopened.entry_count() == 1
        content = reopened.content("1.2.250.1.999.7.1")
        assert content is not None and content.data == b"%PDF"
        assert reopened.patient(ADRUN.cx) == ADRUN
        assert repr(reopened).endswith("dmp.sqlite)")
    assert repr(DmpStore()) == "DmpStore(:memory:)"


def test_an_unusable_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot open"):
        DmpStore(tmp_path / "missing-directory" / "dmp.sqlite")
    path = tmp_path / "old.sqlite"
    with DmpStore(path) as store, store.transaction():
        store._db.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    with pytest.raises(ConfigurationError, match="schema 0"):
        DmpStore(path)


def test_a_patient_record_validates_its_ins() -> None:
    record = PatientRecord(ins=ADRUN.ins, traits=ADRUN.traits)
    assert record.dmp is DmpState.ACTIVE and record.oppositions == frozenset()
    assert record.cx.text == ADRUN.key
