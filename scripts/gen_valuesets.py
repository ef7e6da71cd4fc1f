#!/usr/bin/env python3
"""Generate ``dmp_connector/cda/valuesets.py`` from the ANS value-set files (IHE SVS XML).

    python scripts/gen_valuesets.py            # rewrite the module
    python scripts/gen_valuesets.py --check    # exit 1 if the committed module is out of date

The ANS publishes each *jeu de valeurs* (JDV) as an IHE SVS ``RetrieveValueSetResponse``;
the CDA conformance kit ships them in ``jeuxDeValeurs/``. This script reads the few the SDK
needs (listed in :data:`VALUE_SETS`, each with the reason it is needed) through the
package's hardened parser and writes them out as typed, frozen Python objects, plus named
constants (:data:`NAMED`) for the codes the SDK refers to by meaning. The data is never
typed by hand: a code named below that is missing from its file stops the generation.

The output is deterministic (concepts sorted by code system then code, sets by name) and
laid out the way ``ruff format`` would lay it out, so that ``--check`` can compare bytes.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "cda-2025" / "jeuxDeValeurs"
DEFAULT_OUTPUT = ROOT / "dmp_connector" / "cda" / "valuesets.py"
LINE = 120
SVS = "{urn:ihe:iti:svs:2008}"

# The value sets the SDK needs, by name (the kit's file stem when the set was added), with why.
# Keep this list short: the module is imported by every CDA user, and a set nobody checks against
# is dead weight.
VALUE_SETS: dict[str, str] = {
    # Header (CI-SIS "structuration minimale") and the XDS metadata derived from it.
    "JDV_J01_XdsAuthorSpecialty_CISIS": "author and legal authenticator profession/specialty (assignedAuthor/code)",
    "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS": "care facility type (healthCareFacility/code)",
    "JDV_J04_XdsPracticeSettingCode_CISIS": "practice setting (performer's standardIndustryClassCode)",
    "JDV_J07_XdsTypeCode_CISIS": "document type (ClinicalDocument/code)",
    "JDV_J08_XdsConfidentialityCode_CISIS": "confidentiality of the document and of the XDS entry",
    "JDV_HL7_XBasicConfidentialityKind_CISIS": "confidentiality of the CDA header (confidentialityCode: N, R or V)",
    "JDV_J11_RelationPatient_CISIS": "relation of an informant or guardian to the patient",
    "JDV_J47_FunctionCode_CISIS": "function of an author or participant (e.g. PCP, the médecin traitant)",
    "JDV_J140_EncounterParticipationType_CISIS": "encounterParticipant/@typeCode",
    "JDV_J141_RoleClass_CISIS": "participant associatedEntity/@classCode",
    "JDV_J142_TypeRencontre_CISIS": "encounter type (encompassingEncounter/code)",
    "JDV_J143_AdministrativeGender_CISIS": "patient administrative gender",
    "JDV_J144_ParticipationType_CISIS": "participant/@typeCode",
    "JDV_J245_Civilite_CISIS": "civility prefix of a person's name",
    "JDV_J246_Titre_CISIS": "title suffix of a professional's name (DR, PR …)",
    # Bodies of the structured volets (VSM, LDL-SES).
    "JDV_ProblemCodes_CISIS": "kind of problem in an FR-Probleme entry (observation/code)",
    "JDV_HL7_ConditionClinical_CISIS": "clinical status of a problem (FR-Statut-du-probleme)",
    "JDV_HL7_allergyintolerance_clinical_CISIS": "clinical status of an allergy (FR-Statut-du-probleme)",
    "JDV_HL7_allergy_intolerance_criticality_CISIS": "criticality of an allergy",
    "JDV_RouteofAdministration_CISIS": "route of administration of a treatment (EDQM)",
    "JDV_AbsentOrUnknownMedication_CISIS": "a treatment list that states no known medication, or no information",
    "JDV_StatutDoc_CISIS": "LDL-SES document status (FR-Statut-du-document)",
    "JDV_ModaliteEntree_CISIS": "LDL-SES admission mode (FR-Modalite-entree; checked by the volet schematron)",
    "JDV_ModaliteSortie_CISIS": "LDL-SES discharge mode (FR-Modalite-sortie)",
    # CR-IMG 2024.01 (imaging report) and VAC-NOTE 2023.01 (vaccination note).
    "JDV_ModaliteAcquisition_CISIS": "CR-IMG acquisition modality (methodCode, series and header translations)",
    "JDV_LocalisationAnatomique_CISIS": "CR-IMG anatomical site of an imaging technique (targetSiteCode)",
    "JDV_RegionAnatomique_CISIS": "CR-IMG anatomical region of the documented act (header translation)",
    "JDV_SopClass_CISIS": "CR-IMG SOP class of a DICOM instance (FR-DICOM-SOP-instance-observation code)",
    "JDV_ContreIndication_CISIS": "CR-IMG contraindication (FR-DICOM-Observation 64100-1 value)",
    "JDV_QuantiteExpositionRayonnements_CISIS": "CR-IMG radiation dose measured (FR-DICOM-Quantite code)",
    "JDV_StatutGrossesse_CISIS": "CR-IMG pregnancy status in the radiation exposure subsection",
    "JDV_ImmunizationCode_CISIS": "VAC-NOTE kind of vaccination act (substanceAdministration/code)",
    "JDV_ImmunizationRouteCode_CISIS": "VAC-NOTE route of a vaccination (routeCode)",
    "JDV_ImmunizationApproachSiteCode_CISIS": "VAC-NOTE body site of a vaccination (approachSiteCode)",
}

# Where the kit keeps a set today, when its file name is no longer the set's name: the 2025 kit
# (TestContenuCDA 3.0, 2025-10) renamed many files in kebab-case. The SDK keeps the names it
# published (constants, ``VALUE_SETS`` keys); the file is found here, and a missing one stops the
# generation: no set is ever taken from an older copy.
SOURCE_FILES: dict[str, str] = {
    "JDV_HL7_XBasicConfidentialityKind_CISIS": "jdv-hl7-v3-xBasicConfidentialityKind-cisis",
    "JDV_ProblemCodes_CISIS": "jdv-code-probleme-cisis",
    "JDV_HL7_ConditionClinical_CISIS": "jdv-hl7-condition-clinical-cisis",
    "JDV_HL7_allergyintolerance_clinical_CISIS": "jdv-hl7-allergyintolerance-clinical-cisis",
    "JDV_HL7_allergy_intolerance_criticality_CISIS": "jdv-hl7-allergy-intolerance-criticality-cisis",
    "JDV_RouteofAdministration_CISIS": "jdv-route-of-administration-cisis",
    "JDV_AbsentOrUnknownMedication_CISIS": "jdv-absent-or-unknown-medication-cisis",
    "JDV_StatutDoc_CISIS": "jdv-statut-document-cisis",
    "JDV_ModaliteEntree_CISIS": "jdv-modalite-entree-cisis",
    "JDV_ModaliteSortie_CISIS": "jdv-modalite-sortie-cisis",
    "JDV_ModaliteAcquisition_CISIS": "jdv-modalite-acquisition-cisis",
    "JDV_LocalisationAnatomique_CISIS": "jdv-localisation-anatomique-cisis",
    "JDV_RegionAnatomique_CISIS": "jdv-region-anatomique-cisis",
    "JDV_SopClass_CISIS": "jdv-sop-class-cisis",
    "JDV_ContreIndication_CISIS": "jdv-contre-indication-cisis",
    "JDV_QuantiteExpositionRayonnements_CISIS": "jdv-quantite-exposition-rayonnements-cisis",
    "JDV_StatutGrossesse_CISIS": "jdv-statut-grossesse-cisis",
    "JDV_ImmunizationCode_CISIS": "jdv-hl7-v3-ActSubstanceAdministrationImmunizationCode-cisis",
    "JDV_ImmunizationRouteCode_CISIS": "jdv-immunization-route-code-cisis",
    "JDV_ImmunizationApproachSiteCode_CISIS": "jdv-immunization-approach-site-code-cisis",
}


def source_file(name: str) -> str:
    """The kit's file (without ``.xml``) holding the set ``name``."""
    return SOURCE_FILES.get(name, name)


@dataclass(frozen=True)
class Named:
    """A class of named constants over one value set: ``{attribute: code}``; ``system`` breaks ties."""

    value_set: str
    doc: str
    codes: dict[str, str | tuple[str, str]]


# Codes the SDK refers to by meaning. Names are chosen here; code systems and display
# names come from the files.
NAMED: dict[str, Named] = {
    "DocumentType": Named(
        "JDV_J07_XdsTypeCode_CISIS",
        "Document types (JDV_J07) the SDK builds or names; any other J07 code is accepted as a type.",
        {
            "MEDICAL_SUMMARY": "SYNTH",
            "DISCHARGE_LETTER": "11490-0",
            "ADMISSION_LETTER": "18761-7",
            "HOSPITAL_REPORT": "34112-3",
            "CONSULTATION_REPORT": "11488-4",
            "LABORATORY_REPORT": "11502-2",
            "IMAGING_REPORT": "18748-4",
            "OPERATIVE_REPORT": "34874-8",
            "EMERGENCY_REPORT": "15507-7",
            "PRESCRIPTION": "57833-6",
            "DISPENSATION": "60593-1",
            "PATIENT_SUMMARY": "60591-5",
            "VACCINATION_HISTORY": "11369-6",
            "CERTIFICATE": "CERT_DECL",
            "TELEMEDICINE_REPORT": "85208-7",
        },
    ),
    "Confidentiality": Named(
        "JDV_J08_XdsConfidentialityCode_CISIS",
        "Confidentiality codes (JDV_J08): the CDA carries N, R or V; the masking codes are XDS-only.",
        {
            "NORMAL": "N",
            "RESTRICTED": "R",
            "VERY_RESTRICTED": "V",
            "INVISIBLE_TO_PATIENT": "INVISIBLE_PATIENT",
            "INVISIBLE_TO_LEGAL_REPRESENTATIVES": "INVISIBLE_REPRESENTANTS_LEGAUX",
            "MASKED_FROM_PROFESSIONALS": "MASQUE_PS",
        },
    ),
    "PracticeSetting": Named(
        "JDV_J04_XdsPracticeSettingCode_CISIS",
        "Practice settings (JDV_J04), the XDS practiceSettingCode.",
        {
            "AMBULATORY": "AMBULATOIRE",
            "HOSPITAL": "ETABLISSEMENT",
            "HEALTH_INSURANCE": "AMO",
            "SCREENING": "DEPISTAGE",
            "SOCIAL_OR_MEDICO_SOCIAL": "ESSMS",
            "HOME_HOSPITALISATION": "HAD",
            "HOME_SUPPORT": "MAD",
            "HOME_CARE": "SAD",
            "PALLIATIVE_CARE": "PALLIATIF",
            "EMERGENCY_MEDICAL_SERVICE": "SAMU_SMUR",
            "PATIENT_EXPRESSION": "EXP_PATIENT",
            "REFERENCED_DIGITAL_SERVICE": "SNR",
        },
    ),
    "EncounterType": Named(
        "JDV_J142_TypeRencontre_CISIS",
        "Encounter types (JDV_J142) for componentOf/encompassingEncounter/code.",
        {
            "INPATIENT": "IMP",
            "EMERGENCY": "EMER",
            "AMBULATORY": "AMB",
            "FIELD": "FLD",
            "HOME": "HH",
            "VIRTUAL": "VR",
            "OUTPATIENT_HOSPITAL": "EXTERNE",
            "SESSION": "SEANCE",
        },
    ),
    "AdministrativeGender": Named(
        "JDV_J143_AdministrativeGender_CISIS",
        "Administrative genders (JDV_J143) of the patient.",
        {"FEMALE": "F", "MALE": "M", "UNKNOWN": "UN"},
    ),
    "ParticipationType": Named(
        "JDV_J144_ParticipationType_CISIS",
        "Participation types (JDV_J144) for header participants.",
        {
            "REFERRER": "REF",
            "REFERRED_BY": "REFB",
            "INFORMANT": "INF",
            "RESPONSIBLE": "RESP",
            "PERFORMER": "PRF",
            "CONSULTANT": "CON",
            "VERIFIER": "VRF",
        },
    ),
    "FunctionCode": Named(
        "JDV_J47_FunctionCode_CISIS",
        "Functions (JDV_J47) of an author or participant.",
        {
            "PRIMARY_CARE_PHYSICIAN": "PCP",
            "ADMITTING_PHYSICIAN": "ADMPHYS",
            "ATTENDING_PHYSICIAN": "ATTPHYS",
            "DISCHARGING_PHYSICIAN": "DISPHYS",
            "CORRESPONDENT": "CORRE",
            "SAMPLER": "PRELV",
        },
    ),
    "Civility": Named(
        "JDV_J245_Civilite_CISIS",
        "Civilities (JDV_J245), the name prefix.",
        {"MR": "M", "MRS": "MME"},
    ),
    "Title": Named(
        "JDV_J246_Titre_CISIS",
        "Titles (JDV_J246), the name suffix of a professional.",
        {
            "DOCTOR": "DR",
            "PROFESSOR": "PR",
            "CHIEF_PHYSICIAN": "MC",
            "GENERAL_PHYSICIAN": "MG",
            "CHIEF_PHARMACIST": "PC",
            "GENERAL_PHARMACIST": "PG",
        },
    ),
    "ProblemKind": Named(
        "JDV_ProblemCodes_CISIS",
        "Kinds of problem (JDV_ProblemCodes) for the code of an FR-Probleme entry.",
        {
            "FINDING": "404684003",
            "PROBLEM": "55607006",
            "DISEASE": "64572001",
            "SYMPTOM": "418799008",
            "DIAGNOSIS": "282291009",
        },
    ),
    "ProblemClinicalStatus": Named(
        "JDV_HL7_ConditionClinical_CISIS",
        "Clinical statuses of a problem (HL7 condition-clinical).",
        {
            "ACTIVE": "active",
            "RECURRENCE": "recurrence",
            "RELAPSE": "relapse",
            "INACTIVE": "inactive",
            "REMISSION": "remission",
            "RESOLVED": "resolved",
        },
    ),
    "AllergyClinicalStatus": Named(
        "JDV_HL7_allergyintolerance_clinical_CISIS",
        "Clinical statuses of an allergy (HL7 allergyintolerance-clinical).",
        {"ACTIVE": "active", "INACTIVE": "inactive", "RESOLVED": "resolved"},
    ),
    "AllergyCriticality": Named(
        "JDV_HL7_allergy_intolerance_criticality_CISIS",
        "Criticalities of an allergy (HL7 allergy-intolerance-criticality).",
        {"LOW": "low", "HIGH": "high", "UNABLE_TO_ASSESS": "unable-to-assess"},
    ),
    "MedicationAbsence": Named(
        "JDV_AbsentOrUnknownMedication_CISIS",
        "Why a treatment list is empty (JDV_AbsentOrUnknownMedication): none known, or no information.",
        {"NO_KNOWN_MEDICATIONS": "no-known-medications", "NO_INFORMATION": "no-medication-info"},
    ),
    "DocumentStatus": Named(
        "JDV_StatutDoc_CISIS",
        "Statuses of an LDL-SES document (JDV_StatutDoc), e.g. a letter still being written.",
        {"IN_PROGRESS": "385651009", "DONE": "398166005", "APPROVED": "9571008", "CLOSED": "29179001"},
    ),
    "AdmissionMode": Named(
        "JDV_ModaliteEntree_CISIS",
        "Admission modes (JDV_ModaliteEntree) of an LDL-SES.",
        {"EMERGENCY": "183452005", "SCHEDULED": "8715000", "TRANSFER": "107724000", "OTHER": "GEN-092.06.07"},
    ),
    "DischargeMode": Named(
        "JDV_ModaliteSortie_CISIS",
        "Discharge modes (JDV_ModaliteSortie) of an LDL-SES.",
        {
            "HOME": "160849004",
            "REHABILITATION_FACILITY": "109",
            "HOME_HOSPITALISATION": "127",
            "NURSING_HOME": "500",
            "OTHER_HEALTH_FACILITY": "GEN-092.06.01",
            "OTHER_DESTINATION": "GEN-092.06.03",
        },
    ),
}

# The hand-written head of the generated module; ValueSet itself lives in cda/_valueset.py.
PRELUDE = """
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from dmp_connector.codes import Code

from ._valueset import ValueSet, value_set

__all__ = [
{all_names}
]
"""


@dataclass(frozen=True)
class Concept:
    code: str
    system: str
    display: str | None


@dataclass(frozen=True)
class ParsedSet:
    stem: str
    """The set's name in the SDK (see SOURCE_FILES)."""
    file: str
    """The kit's file it was read from, without ``.xml``."""
    oid: str
    version: str | None
    revision_date: str | None
    concepts: tuple[Concept, ...]

    @property
    def constant(self) -> str:
        return constant_name(self.stem)


def constant_name(stem: str) -> str:
    """``JDV_J07_XdsTypeCode_CISIS`` → ``JDV_J07_XDS_TYPE_CODE``; ``JDV_HL7_allergy…`` → ``JDV_HL7_ALLERGY…``."""
    core = stem.removesuffix("_CISIS")
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", core)
    return re.sub(r"_+", "_", snake.replace("-", "_")).upper()


def read_set(path: Path, name: str | None = None) -> ParsedSet:
    sys.path.insert(0, str(ROOT))
    from dmp_connector.xml import parse_xml_file  # the hardened parser, even for the ANS files

    root = parse_xml_file(path)
    value_set = root.find(f"{SVS}ValueSet")
    if value_set is None:
        raise SystemExit(f"{path.name}: no SVS ValueSet element")
    concepts: dict[tuple[str, str], Concept] = {}
    for element in value_set.iter(f"{SVS}Concept"):
        code, system = element.get("code"), element.get("codeSystem")
        if not code or not system:
            raise SystemExit(f"{path.name}: a Concept lacks its code or codeSystem")
        concepts[(system, code)] = Concept(code, system, element.get("displayName") or None)
    oid = value_set.get("id")
    if not oid or not concepts:
        raise SystemExit(f"{path.name}: no OID or no concept")
    return ParsedSet(
        stem=name or path.stem,
        file=path.stem,
        oid=oid,
        version=value_set.get("version") or None,
        revision_date=value_set.get("revisionDate") or None,
        concepts=tuple(concepts[key] for key in sorted(concepts)),
    )


def py_str(value: str | None) -> str:
    """A string literal as ruff format writes it: double quotes unless single quotes need fewer escapes."""
    if value is None:
        return "None"
    body = value.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    if '"' in body and "'" not in body:
        return "'" + body + "'"
    return '"' + body.replace('"', '\\"') + '"'


def call(prefix: str, args: list[str], indent: int, suffix: str = "") -> list[str]:
    """``prefix(args)suffix`` laid out as ruff does for a call: one line, else hugged, else exploded."""
    pad = " " * indent
    flat = f"{pad}{prefix}({', '.join(args)}){suffix}"
    if len(flat) <= LINE:
        return [flat]
    inner = f"{pad}    {', '.join(args)}"
    if len(inner) <= LINE:
        return [f"{pad}{prefix}(", inner, f"{pad}){suffix}"]
    return [f"{pad}{prefix}(", *(f"{pad}    {a}," for a in args), f"{pad}){suffix}"]


def tuple_item(items: list[str], indent: int) -> list[str]:
    """A tuple literal as an element of a collection: one line, else one item per line (black's rule)."""
    pad = " " * indent
    flat = f"{pad}({', '.join(items)}),"
    if len(flat) <= LINE:
        return [flat]
    lines = [f"{pad}    {i}," for i in items]
    # A display name longer than a line stays whole (the kit's own text): ruff is told so.
    lines = [line if len(line) <= LINE else f"{line}  # noqa: E501" for line in lines]
    return [f"{pad}(", *lines, f"{pad}),"]


def render(sets: list[ParsedSet]) -> str:
    by_stem = {s.stem: s for s in sets}
    named_lines: list[str] = []
    for class_name, named in NAMED.items():
        parsed = by_stem[named.value_set]
        named_lines += ["", "", f"class {class_name}:", f'    """{named.doc}"""', ""]
        for attribute, wanted in named.codes.items():
            code, system = wanted if isinstance(wanted, tuple) else (wanted, None)
            matches = [c for c in parsed.concepts if c.code == code and system in (None, c.system)]
            if len(matches) != 1:
                raise SystemExit(f"{class_name}.{attribute}: {code!r} matches {len(matches)} concepts of {parsed.stem}")
            found = matches[0]
            named_lines += call(
                f"{attribute}: Final = Code.of", [py_str(found.code), py_str(found.system), py_str(found.display)], 4
            )

    set_lines: list[str] = []
    for parsed in sets:
        set_lines += ["", "", f"{parsed.constant}: Final = value_set("]
        set_lines += [
            f"    {py_str(parsed.stem)},",
            f"    {py_str(parsed.oid)},",
            f"    {py_str(VALUE_SETS[parsed.stem])},",
            f"    {py_str(parsed.version)},",
            f"    {py_str(parsed.revision_date)},",
            "    (",
        ]
        for concept in parsed.concepts:
            set_lines += tuple_item([py_str(concept.code), py_str(concept.system), py_str(concept.display)], 8)
        set_lines += ["    ),", ")"]

    registry = ["", "", "VALUE_SETS: Final[Mapping[str, ValueSet]] = MappingProxyType("]
    registry += ["    {"] + [f"        {s.constant}.name: {s.constant}," for s in sets] + ["    }", ")"]
    registry += ['"""Every value set of this module by name (``JDV_J07_XdsTypeCode_CISIS`` …)."""']
    registry += ["", "", "def by_oid(oid: str) -> ValueSet | None:"]
    registry += ['    """The value set whose OID is ``oid``, or None if the SDK does not carry it."""']
    registry += ["    return next((s for s in VALUE_SETS.values() if s.oid == oid), None)"]

    exported = sorted(["ValueSet", "VALUE_SETS", "by_oid", *NAMED, *(s.constant for s in sets)])
    header = [
        '"""The ANS value sets (*jeux de valeurs*) the SDK needs, as typed constants.',
        "",
        "GENERATED by scripts/gen_valuesets.py — do not edit; run the script again instead.",
        "Source: the IHE SVS files of the ANS CDA conformance kit (jeuxDeValeurs/), revision dates:",
        "",
        *(
            f"* {s.file}.xml ({s.revision_date or 'undated'})" + (f":\n  {s.stem}" if s.file != s.stem else "")
            for s in sets
        ),
        '"""',
    ]
    prelude = PRELUDE.replace("{all_names}", "\n".join(f"    {py_str(n)}," for n in _ruff_sorted(exported)))
    return "\n".join([*header, *prelude.split("\n")[:-1], *named_lines, *set_lines, *registry]) + "\n"


def natural(text: str) -> tuple[str | int, ...]:
    """Sort key that orders ``J47`` before ``J140``, as ruff's RUF022 does."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _ruff_sorted(names: list[str]) -> list[str]:
    # RUF022 sorts __all__ "isort-style": SCREAMING_CASE first, then CamelCase, then the rest.
    def key(name: str) -> tuple[int, tuple[str | int, ...]]:
        if name.upper() == name:
            return (0, natural(name))
        if name[0].isupper():
            return (1, natural(name))
        return (2, natural(name))

    return sorted(names, key=key)


def generate(source: Path) -> str:
    missing = [f"{source_file(name)}.xml" for name in VALUE_SETS if not (source / f"{source_file(name)}.xml").is_file()]
    if missing:
        raise SystemExit(f"value-set files missing from {source}: {', '.join(missing)}")
    sets = sorted(
        (read_set(source / f"{source_file(name)}.xml", name) for name in VALUE_SETS), key=lambda s: natural(s.constant)
    )
    return render(sets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the jeuxDeValeurs/ directory")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the module to write or check")
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 if different")
    args = parser.parse_args(argv)
    text = generate(args.source)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current == text:
            return 0
        diff = difflib.unified_diff(current.splitlines(), text.splitlines(), "committed", "generated", lineterm="", n=1)
        print("\n".join(list(diff)[:40]), file=sys.stderr)
        print(f"{args.output} is out of date: run scripts/gen_valuesets.py", file=sys.stderr)
        return 1
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
