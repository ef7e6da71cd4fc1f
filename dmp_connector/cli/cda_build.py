"""``dmp-connector cda build``: a PDF-body CDA document from a PDF and a small TOML or JSON description.

The description names the patient (traits, INS, status), the document (type, title,
times, practice setting) and, optionally, the author and organisation; without them the
configured ``[professional]`` and ``[organisation]`` are used. The format is in
``docs/documents.md``. Exit 0 with the document written, 4 with the reasons when the
description or the PDF breaks a rule.
"""

from __future__ import annotations

import json
import sys
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dmp_connector import (
    INS,
    Code,
    DmpConnectorError,
    Identity,
    IdentityStatus,
    IdentityTraits,
    Organisation,
    Professional,
    ProfessionalIdKind,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
    ValidationError,
    __version__,
)
from dmp_connector.cda import (
    ClinicalDocument,
    InstanceId,
    NonXmlBody,
    Patient,
    Timestamp,
    build,
    extract_metadata,
)
from dmp_connector.cda.valuesets import (
    JDV_J02_XDS_HEALTHCARE_FACILITY_TYPE_CODE,
    JDV_J04_XDS_PRACTICE_SETTING_CODE,
    JDV_J07_XDS_TYPE_CODE,
    JDV_J08_XDS_CONFIDENTIALITY_CODE,
    ValueSet,
)
from dmp_connector.ins import InsOid

from ._main import CliState, pass_state
from .cda import cda

__all__ = ["BuildDescription", "cda_build"]

_OIDS = {"nir": InsOid.NIR, "nia": InsOid.NIA, "test": InsOid.NIR_TEST, "demo": InsOid.NIR_DEMO}
_PROFESSIONAL_KINDS = {"RPPS": ProfessionalIdKind.RPPS, "ADELI": ProfessionalIdKind.ADELI}
_STRUCTURE_KINDS = {kind.name: kind for kind in StructureIdKind}
_CLOSED = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")
FACILITY_TYPES = JDV_J02_XDS_HEALTHCARE_FACILITY_TYPE_CODE


class _CodeSpec(BaseModel):
    model_config = _CLOSED
    code: str
    code_system: str | None = None
    display_name: str | None = None


CodeText = str | _CodeSpec


class _IdSpec(BaseModel):
    model_config = _CLOSED
    root: str
    extension: str | None = None

    def instance(self) -> InstanceId:
        return InstanceId(root=self.root, extension=self.extension)


class _PatientSpec(BaseModel):
    model_config = _CLOSED
    ins: str
    ins_oid: str = "nir"
    status: IdentityStatus = IdentityStatus.QUAL
    birth_name: str
    birth_first_names: str | list[str]
    sex: str
    birth_date: str | date
    birth_place: str | None = None
    used_name: str | None = None
    used_first_name: str | None = None
    ipp: _IdSpec | None = None


class BuildDescription(BaseModel):
    """The description file of ``cda build`` (TOML or JSON); see docs/documents.md for every key."""

    model_config = _CLOSED

    title: str = Field(min_length=1)
    type_code: CodeText
    effective_time: Timestamp
    service_start: Timestamp
    service_end: Timestamp | None = None
    practice_setting: CodeText
    facility_type: CodeText | None = None
    confidentiality: CodeText = "N"
    document_id: _IdSpec | None = None
    set_id: _IdSpec | None = None
    version: int = 1
    replaces: _IdSpec | None = None
    patient: _PatientSpec
    author: dict[str, Any] | None = None
    organisation: dict[str, Any] | None = None

    @field_validator("author")
    @classmethod
    def _author_kind(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and isinstance(value.get("id_kind"), str):
            value = {**value, "id_kind": _PROFESSIONAL_KINDS.get(value["id_kind"].upper(), value["id_kind"])}
        return value

    @field_validator("organisation")
    @classmethod
    def _organisation_kind(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and isinstance(value.get("id_kind"), str):
            value = {**value, "id_kind": _STRUCTURE_KINDS.get(value["id_kind"].upper(), value["id_kind"])}
        return value


@click.command("build")
@click.option(
    "--pdf",
    "pdf_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The PDF to carry: a PDF/A (see --pdfa).",
)
@click.option(
    "--pdfa",
    "pdfa_mode",
    type=click.Choice(["require", "convert-1", "convert-2", "off"]),
    default="require",
    show_default=True,
    help="require: refuse a PDF that is not PDF/A (exit 4, with what it lacks); convert-1/convert-2: carry a "
    "PDF/A-1b/-2b copy made by Ghostscript when it is not (the PDF file is not changed); off: no check.",
)
@click.option(
    "--description",
    "description_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML or JSON description of the patient and the document.",
)
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Where to write the document (default: standard output).",
)
@pass_state
def cda_build(state: CliState, pdf_path: Path, pdfa_mode: str, description_path: Path, output: Path | None) -> None:
    """Build a PDF-body (level 1) CI-SIS CDA document.

    \b
        dmp-connector cda build --pdf cr.pdf --description cr.toml --output cr.xml

    Without author and organisation in the description, the configured professional and
    organisation are used (--config). Exit 0 with the document written, 4 with the reasons
    when the description or the PDF breaks a rule (a PDF that is not PDF/A, unless --pdfa says
    otherwise), 3 when the PDF/A check or conversion lacks pikepdf or Ghostscript.
    """
    try:
        description = _read_description(description_path)
        settings = _settings(state, description)
        document = _document(description, settings, _body(pdf_path.read_bytes(), pdfa_mode))
        data = build(document)
        metadata = extract_metadata(document)
    except DmpConnectorError as exc:
        state.fail(exc)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    output.write_bytes(data)
    state.emit(
        f"{output}: {len(data)} bytes, uniqueId {metadata.unique_id}, SHA-1 {metadata.hash}",
        {
            "output": str(output),
            "size": metadata.size,
            "hash": metadata.hash,
            "unique_id": metadata.unique_id,
            "type_code": metadata.type_code.code,
            "class_code": metadata.class_code.code,
            "format_code": metadata.format_code.code,
        },
    )


# --------------------------------------------------------------------------- helpers


def _read_description(path: Path) -> BuildDescription:
    raw = path.read_bytes()
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(raw) if is_json else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(
            f"the description {path.name} is not valid {'JSON' if is_json else 'TOML'}: {exc}",
            hint="the format is described in docs/documents.md (section 'dmp-connector cda build')",
        ) from exc
    try:
        return BuildDescription.model_validate(data)
    except Exception as exc:  # pydantic's ValidationError: turned into ours with each problem named
        problems = _problems(exc)
        raise ValidationError(
            f"the description {path.name} is invalid: " + "; ".join(problems),
            problems=problems,
            hint="the format is described in docs/documents.md (section 'dmp-connector cda build')",
        ) from None


def _problems(exc: Exception) -> list[str]:
    errors = getattr(exc, "errors", None)
    if errors is None:
        return [str(exc)]
    return [
        f"{'.'.join(str(p) for p in err['loc']) or 'description'}: {err['msg']}"
        for err in errors(include_input=False, include_url=False)
    ]


def _settings(state: CliState, description: BuildDescription) -> Settings:
    if description.author is None and description.organisation is None:
        return state.settings()
    if description.author is None or description.organisation is None:
        raise ValidationError(
            "the description gives an author or an organisation: give both, or neither to use the configuration",
            problems=("author/organisation",),
        )
    try:
        return Settings(
            software=SoftwareIdentity(name="dmp-connector", version=__version__, editor="dmp-connector"),
            organisation=Organisation.model_validate(description.organisation),
            professional=Professional.model_validate(description.author),
        )
    except Exception as exc:  # pydantic's ValidationError, from the author and organisation tables
        problems = _problems(exc)
        raise ValidationError("the description's author or organisation is invalid: " + "; ".join(problems)) from None


def _code(value: CodeText, value_set: ValueSet, field: str) -> Code:
    """A code from the description: text is looked up in ``value_set``; a table is taken as given."""
    if isinstance(value, _CodeSpec):
        if value.code_system is None:
            found = value_set.get(value.code)
            if found is None:
                raise ValidationError(f"{field}: {value.code} is not in {value_set.name}; give its code_system")
            return Code(code=value.code, code_system=found.code_system, display_name=value.display_name)
        return Code(code=value.code, code_system=value.code_system, display_name=value.display_name)
    found = value_set.get(value)
    if found is None:
        raise ValidationError(
            f"{field}: {value!r} is not a code of {value_set.name}",
            problems=(field,),
            hint=f"use a code of {value_set.name} ({value_set.oid}), or a table with code, code_system, display_name",
        )
    return found


def _patient(spec: _PatientSpec) -> Patient:
    oid = _OIDS.get(spec.ins_oid.lower()) or InsOid.parse(spec.ins_oid)
    traits = IdentityTraits.build(
        birth_name=spec.birth_name,
        birth_first_names=spec.birth_first_names,
        sex=spec.sex,
        birth_date=spec.birth_date,
        birth_place=spec.birth_place,
        used_name=spec.used_name,
        used_first_name=spec.used_first_name,
    )
    identity = Identity(traits=traits, ins=INS.parse(spec.ins, oid=oid), status=spec.status)
    other_ids = (spec.ipp.instance(),) if spec.ipp is not None else ()
    return Patient.from_identity(identity, other_ids=other_ids)


def _body(pdf: bytes, mode: str) -> NonXmlBody:
    """The body the --pdfa mode asks for: checked, converted on the caller's word, or as given."""
    if mode == "off":
        return NonXmlBody(data=pdf)
    from dmp_connector.cda.pdfa import pdfa_body  # pikepdf only when asked for

    return pdfa_body(pdf, convert=None if mode == "require" else (1 if mode == "convert-1" else 2))


def _document(description: BuildDescription, settings: Settings, body: NonXmlBody) -> ClinicalDocument:
    fields: dict[str, Any] = {
        "confidentiality": _code(description.confidentiality, JDV_J08_XDS_CONFIDENTIALITY_CODE, "confidentiality"),
        "version": description.version,
    }
    if description.set_id is not None:
        fields["set_id"] = description.set_id.instance()
    if description.replaces is not None:
        fields["replaces"] = description.replaces.instance()
    facility = description.facility_type
    effective_time = description.effective_time
    if not isinstance(effective_time, datetime):
        raise ValidationError(
            "effective_time: the creation time is a date-time with its time zone", problems=("effective_time",)
        )
    return ClinicalDocument.from_settings(
        settings,
        patient=_patient(description.patient),
        type_code=_code(description.type_code, JDV_J07_XDS_TYPE_CODE, "type_code"),
        title=description.title,
        body=body,
        effective_time=effective_time,
        service_start=description.service_start,
        service_end=description.service_end,
        practice_setting=_code(description.practice_setting, JDV_J04_XDS_PRACTICE_SETTING_CODE, "practice_setting"),
        facility_type=_code(facility, FACILITY_TYPES, "facility_type") if facility is not None else None,
        document_id=description.document_id.instance() if description.document_id is not None else None,
        **fields,
    )


cda.add_command(cda_build)
