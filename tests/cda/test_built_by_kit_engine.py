"""Documents built from scratch with the public API pass the ANS kit's own engine with no finding.

One document of each kind the SDK builds — a PDF body (level 1), a VSM, an LDL-SES, an LDL-EES — each
with a participant (the header part whose time the builder now requires), through the
kit's own ISO skeleton (``kit_engine``): the volet's schematron and the kit-wide ones. The
project's validator must agree (``report.ok``). StrucMin, the slowest of the kit-wide
schematrons through the kit's engine, runs with ``-m kit_exhaustive`` (as ``.ci/run`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import pytest

from dmp_connector.cda import (
    AssociatedEntity,
    ClinicalDocument,
    InstanceId,
    Participant,
    Period,
    PersonName,
    build,
)
from dmp_connector.cda.validation import GENERIC_SCHEMATRONS, CdaValidator
from dmp_connector.cda.valuesets import DocumentStatus, PracticeSetting
from dmp_connector.cda.volets import LdlSesContent, ldl_ees_document, ldl_ses_document, vsm_document
from dmp_connector.codes import Code
from dmp_connector.config import CdaSettings, Settings
from dmp_connector.ins import Identity

from .conftest import KIT, PARIS
from .kit_engine import kit_findings, volet_schematron
from .test_ldl_ees import ADMISSION
from .test_ldl_ees import full_content as full_admission_letter
from .test_ldl_ses import SA01, stay
from .test_ldl_ses import full_content as full_letter
from .test_vsm import full_content as full_vsm

SCHEMATRONS = KIT / "schematrons"
QUICK = ("IHE", "Modeles_ANS", "ModelesDeContenusCDA", "terminologie")


def referring_physician() -> Participant:
    """The referring physician (REF), with the time the CI-SIS header requires."""
    return Participant(
        type_code="REF",
        time=Period(low=datetime(2024, 3, 1, 9, 0, tzinfo=PARIS)),
        entity=AssociatedEntity(
            class_code="PROV",
            ids=(InstanceId.of("1.2.250.1.71.4.2.1", "810001234567"),),
            code=Code.of("G15_10/SM26", "1.2.250.1.213.1.1.4.5", "Médecin - Qualifié en Médecine Générale (SM)"),
            person=PersonName(family="DURAND", given="Anne", prefix="MME", suffix="DR"),
        ),
    )


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    pytest.importorskip("saxonche")
    if not KIT.is_dir():
        pytest.skip(f"the ANS kit is not at {KIT}")
    return CdaValidator(CdaSettings(kit_dir=KIT, cache_dir=tmp_path_factory.getbasetemp() / "built-kit-cache"))


@pytest.fixture
def documents(
    make_pdf_document: Callable[..., ClinicalDocument],
    cda_settings: Settings,
    qualified_patient: Identity,
    effective_time: datetime,
) -> dict[str, ClinicalDocument]:
    participants: dict[str, Any] = {"participants": (referring_physician(),)}
    vsm = vsm_document(
        full_vsm(),
        settings=cda_settings,
        patient=qualified_patient,
        effective_time=effective_time,
        service_start=date(2024, 3, 12),
        practice_setting=PracticeSetting.AMBULATORY,
        **participants,
    )
    letter = ldl_ses_document(
        full_letter(),
        settings=cda_settings,
        patient=qualified_patient,
        effective_time=effective_time,
        practice_setting=PracticeSetting.HOSPITAL,
        facility_type=SA01,
        **participants,
    )
    minimal = LdlSesContent(status=DocumentStatus.IN_PROGRESS, reason_for_admission="Chute", stay=stay())
    return {
        "pdf": make_pdf_document(**participants),
        "vsm": vsm,
        "ldl-ses": letter,
        "ldl-ses minimal": ldl_ses_document(
            minimal,
            settings=cda_settings,
            patient=qualified_patient,
            effective_time=effective_time,
            practice_setting=PracticeSetting.HOSPITAL,
            facility_type=SA01,
        ),
        "ldl-ees": ldl_ees_document(
            full_admission_letter(),
            settings=cda_settings,
            patient=qualified_patient,
            effective_time=effective_time,
            admission=ADMISSION,
            practice_setting=PracticeSetting.HOSPITAL,
            facility_type=SA01,
            **participants,
        ),
    }


def _check(
    kind: str, documents: dict[str, ClinicalDocument], validator: CdaValidator, generic: tuple[str, ...]
) -> None:
    data = build(documents[kind])
    report = validator.validate(data)
    assert report.ok, report.to_text()
    volet = volet_schematron(data, validator)
    assert (volet is None) == (kind == "pdf")
    paths = [SCHEMATRONS / GENERIC_SCHEMATRONS[name] for name in generic]
    for path in [volet, *paths] if volet is not None else paths:
        assert kit_findings(data, path) == frozenset(), f"{kind}: {path.name}"


@pytest.mark.parametrize("kind", ["pdf", "vsm", "ldl-ses", "ldl-ses minimal", "ldl-ees"])
def test_a_built_document_passes_the_kits_own_engine(
    kind: str, documents: dict[str, ClinicalDocument], validator: CdaValidator
) -> None:
    _check(kind, documents, validator, QUICK)


@pytest.mark.kit_exhaustive
@pytest.mark.parametrize("kind", ["pdf", "vsm", "ldl-ses", "ldl-ees"])
def test_a_built_document_passes_every_kit_schematron_by_the_kits_engine(
    kind: str, documents: dict[str, ClinicalDocument], validator: CdaValidator, request: pytest.FixtureRequest
) -> None:
    if "kit_exhaustive" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("StrucMin through the kit's engine runs with -m kit_exhaustive (as .ci/run does)")
    _check(kind, documents, validator, tuple(GENERIC_SCHEMATRONS))


def test_a_participant_without_time_is_refused_before_the_kit_would(
    make_pdf_document: Callable[..., ClinicalDocument],
) -> None:
    from dmp_connector.errors import ValidationError

    participant = referring_physician().model_copy(update={"time": None})
    with pytest.raises(ValidationError, match=r"participant/time 1\.\.1"):
        build(make_pdf_document(participants=(participant,)))
