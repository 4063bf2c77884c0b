"""Code systems and codes to catalogue concepts, and loading the catalogue."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.clinical import codes
from streams.clinical.codes import CANONICAL_SYSTEMS, CodeMap, CodeMapping
from streams.errors import ConfigError

CODE_MAP = CodeMap.load()
HF = ("heart_failure", "heart_failure_broad")


def concepts(system: str | None, code: str | None) -> tuple[str, ...]:
    return CODE_MAP.map(system, code).concepts


@pytest.mark.parametrize(("raw", "system"), [
    ("ICD-10", "ICD10"), ("icd10", "ICD10"), ("ICD10WHO", "ICD10"), ("ICD-10 WHO", "ICD10"),
    ("I10", "ICD10"), ("http://hl7.org/fhir/sid/icd-10", "ICD10"),
    ("2.16.840.1.113883.6.3", "ICD10"), ("urn:oid:2.16.840.1.113883.6.3", "ICD10"),
    ("ICD-10-CM", "ICD10CM"), ("icd_10_cm", "ICD10CM"), ("I10C", "ICD10CM"),
    ("http://hl7.org/fhir/sid/icd-10-cm", "ICD10CM"), ("2.16.840.1.113883.6.90", "ICD10CM"),
    ("ICD-10-GM", "ICD10GM"), ("http://fhir.de/CodeSystem/bfarm/icd-10-gm", "ICD10GM"),
    ("https://fhir.de/CodeSystem/bfarm/icd-10-gm/", "ICD10GM"),
    ("http://fhir.de/CodeSystem/bfarm/icd-10-gm|2024", "ICD10GM"),
    ("ICD-10-GM 2024", "ICD10GM"), ("http://hl7.org/fhir/sid/icd-10-gm", "ICD10GM"),
    ("ICD-10-PCS", "ICD10PCS"), ("2.16.840.1.113883.6.4", "ICD10PCS"),
    ("SNOMED", "SNOMED"), ("SNOMED CT", "SNOMED"), ("SCT", "SNOMED"),
    ("http://snomed.info/sct", "SNOMED"), ("2.16.840.1.113883.6.96", "SNOMED"),
    ("SNOMEDCT_US", "SNOMED"),
    ("LOINC", "LOINC"), ("LN", "LOINC"), ("http://loinc.org", "LOINC"),
    ("2.16.840.1.113883.6.1", "LOINC"),
    ("ATC", "ATC"), ("http://www.whocc.no/atc", "ATC"),
    ("OPS", "OPS"), ("http://fhir.de/CodeSystem/bfarm/ops", "OPS"),
    ("OPCS", "OPCS"), ("OPCS-4", "OPCS"),
    (" snomed ct ", "SNOMED"),
])
def test_canonical_system(raw: str, system: str) -> None:
    assert CODE_MAP.canonical_system(raw) == system


@pytest.mark.parametrize("raw", [None, "", "  ", "ICD-9", "ICD-9-CM", "ICD", "READ", "foo",
                                 "2.16.840.1.113883.6.2", "icd10xx"])
def test_unknown_system(raw: str | None) -> None:
    assert CODE_MAP.canonical_system(raw) is None
    mapping = CODE_MAP.map(raw, "I50.9")
    assert mapping.system is None
    assert not mapping.mapped


def test_every_canonical_name_is_its_own_alias() -> None:
    for system in CANONICAL_SYSTEMS:
        assert CODE_MAP.canonical_system(system) == system


@pytest.mark.parametrize("code", ["I50.9", "I509", "i509", "i50.9", " I50.9 ", "I50.9\t"])
def test_icd10_dot_and_case(code: str) -> None:
    mapping = CODE_MAP.map("ICD-10", code)
    assert mapping == CodeMapping("ICD10", "I50.9", HF)
    assert mapping.mapped


@pytest.mark.parametrize(("system", "code", "canonical"), [
    ("ICD10", "C61", "C61"),
    ("ICD10", "I50", "I50"),
    ("ICD10", "I50.", "I50"),
    ("ICD10CM", "C9201", "C92.01"),
    ("ICD10CM", "i21a1", "I21.A1"),
    ("ICD10CM", "S72001A", "S72.001A"),
    ("ICD10CM", "T36.0X1A", "T36.0X1A"),
    ("ICD10GM", "I50.01", "I50.01"),
    ("ICD10PCS", "0vt00zz", "0VT00ZZ"),
    ("ATC", "l01bc01", "L01BC01"),
    ("SNOMED", " 84114007 ", "84114007"),
    ("LOINC", "2857-1", "2857-1"),
    ("OPS", "5-604.12", "5-604.12"),
    ("OPS", "5-60412", "5-604.12"),
    ("OPS", "5-83B.50", "5-83b.50"),
    ("OPCS", "m611", "M61.1"),
])
def test_canonical_code(system: str, code: str, canonical: str) -> None:
    assert CODE_MAP.map(system, code).code == canonical


@pytest.mark.parametrize(("system", "code", "expected"), [
    # heart failure and the broad definition
    ("ICD10", "I50.0", HF),
    ("ICD10", "I11.0", ("heart_failure_broad",)),
    ("ICD10", "I11.9", ()),
    ("ICD10", "I42.0", ("heart_failure_broad",)),
    ("ICD10CM", "I50.21", HF),
    ("ICD10GM", "I50.13", HF),
    # AMI; old MI I25.2 is not AMI
    ("ICD10", "I21.4", ("acute_myocardial_infarction",)),
    ("ICD10", "I22.0", ("acute_myocardial_infarction",)),
    ("ICD10", "I25.2", ()),
    ("ICD10CM", "I25.2", ()),
    ("ICD10", "C61", ("prostate_cancer",)),
    ("ICD10", "C61.9", ("prostate_cancer",)),
    # AML: remission and relapse are CM (and GM 5th-character) concepts
    ("ICD10", "C92.0", ("aml",)),
    ("ICD10CM", "C92.00", ("aml",)),
    ("ICD10CM", "C92.01", ("aml", "aml_in_remission")),
    ("ICD10CM", "C92.02", ("aml", "aml_relapse")),
    ("ICD10GM", "C92.01", ("aml", "aml_in_remission")),
    ("ICD10GM", "C92.02", ("aml",)),
    ("ICD10", "C92.1", ()),
    ("ICD10", "C90.0", ("multiple_myeloma",)),
    ("ICD10", "C91.1", ("cll",)),
    ("ICD10", "C83.3", ("lymphoma",)),
    ("ICD10", "C87", ()),
    # dementia: F00 exists in WHO and GM only; G31.83 and G31.09 are CM only
    ("ICD10", "F00.1", ("alzheimers_disease", "dementia")),
    ("ICD10GM", "F00.1", ("alzheimers_disease", "dementia")),
    ("ICD10CM", "F00.1", ()),
    ("ICD10CM", "G31.83", ("dementia",)),
    ("ICD10", "G31.83", ()),
    ("ICD10GM", "G31.83", ()),
    ("ICD10CM", "G31.09", ("dementia",)),
    ("ICD10", "G31.0", ()),
    ("ICD10", "G31.1", ("dementia",)),
    ("ICD10CM", "G30.9", ("alzheimers_disease", "dementia")),
    ("ICD10CM", "F03.90", ("dementia",)),
])
def test_icd10_variants(system: str, code: str, expected: tuple[str, ...]) -> None:
    assert concepts(system, code) == expected


@pytest.mark.parametrize(("code", "canonical", "certainty", "expected"), [
    ("I50.9 G", "I50.9", "G", HF),
    ("I50.9G", "I50.9", "G", HF),
    ("I50.9 V", "I50.9", "V", HF),
    ("I50.9 Z", "I50.9", "Z", HF),
    ("I50.9 A", "I50.9", "A", HF),
    ("i50.9 g", "I50.9", "G", HF),
    ("I21.0+", "I21.0", None, ("acute_myocardial_infarction",)),
    ("I21.0\u2020", "I21.0", None, ("acute_myocardial_infarction",)),
    ("F00.1*", "F00.1", None, ("alzheimers_disease", "dementia")),
    ("G30.1+ G", "G30.1", "G", ("alzheimers_disease", "dementia")),
    ("E11.9!", "E11.9", None, ()),
    ("S72.0 R G", "S72.0", "G", ()),  # laterality dropped, certainty kept
])
def test_gm_suffix_markers(code: str, canonical: str, certainty: str | None,
                           expected: tuple[str, ...]) -> None:
    mapping = CODE_MAP.map("ICD-10-GM", code)
    assert (mapping.code, mapping.certainty, mapping.concepts) == (canonical, certainty, expected)


def test_cm_7th_character_is_not_a_certainty() -> None:
    mapping = CODE_MAP.map("ICD10CM", "S72.001A")
    assert mapping.code == "S72.001A"
    assert mapping.certainty is None


def test_cm_accepts_a_space_separated_certainty() -> None:
    assert CODE_MAP.map("ICD10CM", "I50.9 G") == CodeMapping("ICD10CM", "I50.9", HF, None, "G")


@pytest.mark.parametrize(("system", "code", "expected"), [
    ("OPS", "5-604", ("radical_prostatectomy",)),
    ("OPS", "5-604.12", ("radical_prostatectomy",)),
    ("OPS", "5-60412", ("radical_prostatectomy",)),
    ("OPS", "5-605.0", ()),
    ("OPS", "5-60", None),
    ("OPCS", "M61.1", ("radical_prostatectomy",)),
    ("OPCS", "M61.2", ()),  # other open excision of prostate: not radical
    ("OPCS", "M62.1", ()),
    ("ICD10PCS", "0VT00ZZ", ("radical_prostatectomy",)),
    ("ICD10PCS", "0VT07ZZ", ()),
    ("SNOMED", "26294005", ("radical_prostatectomy",)),
    ("SNOMED", "2629400", ()),  # exact, no prefix matching
    ("SNOMED", "262940051", ()),
    ("ATC", "L01BC01", ("aml_induction_chemotherapy",)),
    ("ATC", "L01BC", ()),  # exact: the class is not the drug
    ("ATC", "L01BC011", None),
    ("LOINC", "2857-1", ("psa",)),
    ("LOINC", "2857", None),
])
def test_other_systems(system: str, code: str, expected: tuple[str, ...] | None) -> None:
    mapping = CODE_MAP.map(system, code)
    if expected is None:  # malformed
        assert mapping.code is None
        assert not mapping.mapped
    else:
        assert mapping.concepts == expected


def test_loinc_of_a_lab_carries_the_lab() -> None:
    mapping = CODE_MAP.map("http://loinc.org", "2160-0")
    assert mapping.concepts == ("creatinine",)
    assert mapping.lab is CODE_MAP.labs["creatinine"]
    assert CODE_MAP.map("LN", "14682-9").lab is CODE_MAP.labs["creatinine"]
    assert CODE_MAP.map("ICD10", "I50.9").lab is None
    assert CODE_MAP.map("LOINC", "1234-5").lab is None


@pytest.mark.parametrize(("system", "code"), [
    ("ICD10", None), ("ICD10", ""), ("ICD10", "   "),
    ("ICD10", "garbage"), ("ICD10", "50.9"), ("ICD10", "I5"), ("ICD10", "I50.999"),
    ("ICD10", "I50AV"), ("ICD10", "I50.9 G V"), ("ICD10", "I50.9 hello"),
    ("ICD10", "G30.1\u2020 F00.1*"), ("ICD10CM", "I50.9X1AB"), ("ICD10CM", "I50..9"),
    ("SNOMED", "abc"), ("SNOMED", "0123456"), ("SNOMED", "123"),
    ("LOINC", "abc-1"), ("ATC", "123"), ("OPS", "x-604"), ("OPCS", "MM1"),
    ("ICD10PCS", "0VT00ZZ0"), ("ICD10", "I50.9\x00"), ("ICD10", "\u0130\u0131"),
    ("ICD10", "I\u0665\u0660"), ("SNOMED", "\u0668\u0664114007"),  # other scripts' digits
])
def test_garbage_codes_are_unmapped_with_no_code(system: str, code: str | None) -> None:
    mapping = CODE_MAP.map(system, code)
    assert mapping.system == system
    assert mapping.code is None
    assert not mapping.mapped


def test_unknown_system_keeps_a_code_like_code_but_not_free_text() -> None:
    assert CODE_MAP.map("READ", "G58..") == CodeMapping(None, "G58..")
    assert CODE_MAP.map("READ", "Mr Smith has heart failure").code is None
    assert CODE_MAP.map(None, None) == CodeMapping(None, None)


@pytest.mark.parametrize(("system", "code"), [
    ("SNOMED", 84114007), ("ICD10", ["I50"]), (["ICD10"], "I50"), ("ICD10", 3.5), (7, "I50"),
])
def test_wrong_types_never_raise(system: object, code: object) -> None:
    mapping = CODE_MAP.map(system, code)  # type: ignore[arg-type]
    assert isinstance(mapping, CodeMapping)


def test_integer_snomed_id_maps() -> None:
    assert CODE_MAP.map("SNOMED", 84114007).concepts == HF  # type: ignore[arg-type]


def test_results_are_cached_per_raw_pair() -> None:
    code_map = CodeMap.load()
    first = code_map.map("ICD-10", "i509")
    assert code_map.map("ICD-10", "i509") is first
    assert len(code_map._cache) == 1


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codes, "_CACHE_MAX", 10)
    code_map = CodeMap.load()
    for i in range(25):
        code_map.map("SNOMED", str(100000 + i))
    assert len(code_map._cache) <= 10
    assert code_map.map("SNOMED", "84114007").mapped


def test_every_catalogue_code_maps_to_its_concept() -> None:
    for concept in CODE_MAP.concept_names:
        for system, entries in CODE_MAP.concepts_for(concept).items():
            for code in entries:
                assert concept in concepts(system, code), (concept, system, code)


def test_concepts_for() -> None:
    dementia = CODE_MAP.concepts_for("dementia")
    assert "F00" in dementia["ICD10"]
    assert "F00" in dementia["ICD10GM"]
    assert "F00" not in dementia["ICD10CM"]
    assert "G3183" in dementia["ICD10CM"]
    assert dementia["SNOMED"][:3] == ("52448006", "26929004", "429998004")  # named, then descendants
    assert CODE_MAP.concepts_for("psa") == {"LOINC": ("2857-1",)}
    with pytest.raises(KeyError, match="no concept"):
        CODE_MAP.concepts_for("no_such_thing")


@pytest.mark.parametrize(("code", "concept"), [
    ("432504007", "ischaemic_stroke"),      # Cerebral infarction, a child of Ischemic stroke 422504002
    ("195190007", "ischaemic_stroke"),      # Cerebral infarction due to embolism of cerebral arteries
    ("88805009", "heart_failure_broad"),    # Chronic congestive heart failure
    ("703272007", "heart_failure"),         # Heart failure with reduced ejection fraction
    ("399020009", "heart_failure_broad"),   # Dilated cardiomyopathy (I42): broad only
    ("440028005", "atrial_fibrillation"),   # Permanent atrial fibrillation
    ("401303003", "acute_myocardial_infarction"),  # Acute STEMI
    ("254900004", "prostate_cancer"),       # Carcinoma of prostate
    ("708919000", "radical_prostatectomy"),  # Robot-assisted laparoscopic radical prostatectomy
    ("429998004", "dementia"),              # Vascular dementia
])
def test_a_snomed_child_concept_maps_to_its_ancestors_concept(code: str, concept: str) -> None:
    assert concept in concepts("http://snomed.info/sct", code)


def test_snomed_descendants_match_exactly(tmp_path: Path) -> None:
    code_map = load_text(tmp_path, 'version = "t"\n[concept.x]\nsource = "t"\nsnomed = ["422504002"]\n'
                                   'snomed_descendants = ["432504007"]\n')
    assert code_map.map("SNOMED", "432504007").concepts == ("x",)
    assert code_map.map("SNOMED", "4325040").concepts == ()  # no prefix matching in SNOMED CT


def test_the_broad_heart_failure_codes_are_broad_only() -> None:
    for code in ("I11.0", "I13.0", "I13.2", "I42.0", "I42.9"):
        assert concepts("ICD-10", code) == ("heart_failure_broad",)
    assert concepts("ICD-10", "I50.9") == HF
    assert concepts("SNOMED", "399020009") == ("heart_failure_broad",)


@pytest.mark.parametrize(("raw", "concept"), [
    ("CR", "aml_response_cr"), ("cr", "aml_response_cr"), ("CRi", "aml_response_cri"),
    ("CRh", "aml_response_crh"), ("CR MRD-", "aml_response_cr_mrd_negative"),
    ("CR_MRD_NEG", "aml_response_cr_mrd_negative"), ("CR MRD negative", "aml_response_cr_mrd_negative"),
    ("MLFS", "aml_response_mlfs"), ("PR", "aml_response_pr"), ("SD", "aml_response_sd"),
    ("PD", "aml_response_pd"), ("Relapse", "aml_relapse"),
])
def test_eln_2022_response_codes_map_to_their_category(raw: str, concept: str) -> None:
    assert concepts("ELN-2022", raw) == (concept,)


def test_every_shipped_concept_and_lab_names_its_source() -> None:
    data = tomllib.loads(codes.DEFAULT_CONCEPTS_FILE.read_text())
    for kind in ("concept", "lab"):
        for name, entry in data[kind].items():
            assert entry.get("source", "").strip(), f"{kind} {name} has no source"


def test_the_source_of_each_code_list_is_kept_for_catalogue_show() -> None:
    assert "CALIBER" in CODE_MAP.provenance["heart_failure_broad"]
    assert CODE_MAP.provenance["psa"].startswith("LOINC 2857-1")


def test_a_concept_without_source_is_rejected(tmp_path: Path) -> None:
    message = bad(tmp_path, 'version = "t"\n[concept.x]\nicd10 = ["I50"]\n')
    assert "concept x" in message and "source" in message


def test_catalogue_metadata() -> None:
    assert CODE_MAP.version == "2026.12.2"
    assert CODE_MAP.areas["aml"] == "hematologic"
    assert {"psa", "mmse", "creatinine"} <= set(CODE_MAP.labs)
    assert CODE_MAP.labs["mmse"].unitless


@given(system=st.one_of(st.none(), st.text(max_size=40),
                        st.sampled_from(["ICD10", "ICD10CM", "ICD10GM", "ICD-10-GM", "SNOMED",
                                         "LOINC", "ATC", "OPS", "OPCS", "ICD10PCS"])),
       code=st.one_of(st.none(), st.text(max_size=40),
                      st.from_regex(r"[A-Za-z][0-9]{2}\.?[0-9A-Za-z]{0,4} ?[GVZA+*!]?",
                                    fullmatch=True)))
def test_map_never_raises(system: str | None, code: str | None) -> None:
    mapping = CODE_MAP.map(system, code)
    assert mapping.system in (None, *CANONICAL_SYSTEMS)
    assert mapping.concepts == tuple(sorted(mapping.concepts))
    assert mapping.mapped == bool(mapping.concepts)
    if mapping.mapped:
        assert mapping.code is not None


# --------------------------------------------------------------- loading a catalogue
GOOD_LAB = '[lab.psa]\nsource = "t"\nloinc = ["2857-1"]\nunit = "ng/mL"\nrange = [0.0, 100.0]\n'


def load_text(tmp_path: Path, text: str) -> CodeMap:
    path = tmp_path / "concepts.toml"
    path.write_text(text)
    return CodeMap.load(path)


def bad(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "concepts.toml") in message
    return message


def test_exclude_prefix_wins(tmp_path: Path) -> None:
    code_map = load_text(tmp_path, 'version = "t"\n[concept.chronic_ihd]\nsource = "t"\n'
                                   'icd10 = ["I25"]\nexclude = ["I25.2"]\n')
    assert code_map.map("ICD10", "I25.1").concepts == ("chronic_ihd",)
    assert code_map.map("ICD10", "I25.2").concepts == ()
    assert code_map.map("ICD10CM", "I25.20").concepts == ()
    assert code_map.map("ICD10GM", "I252").concepts == ()


def test_exclude_applies_only_to_its_concept(tmp_path: Path) -> None:
    code_map = load_text(tmp_path, 'version = "t"\n[concept.a]\nsource = "t"\nicd10 = ["I25"]\nexclude = ["I252"]\n'
                                   '[concept.b]\nsource = "t"\nicd10 = ["I25"]\n')
    assert code_map.map("ICD10", "I25.2").concepts == ("b",)


def test_lab_without_canonical_unit_in_convert_gets_factor_one(tmp_path: Path) -> None:
    code_map = load_text(tmp_path, f'version = "t"\n{GOOD_LAB}')
    assert dict(code_map.labs["psa"].factors) == {"ng/ml": 1.0}


def test_lab_missing_unit(tmp_path: Path) -> None:
    message = bad(tmp_path, 'version = "t"\n[lab.psa]\nsource = "t"\nloinc = ["2857-1"]\nrange = [0.0, 1.0]\n')
    assert "lab psa" in message
    assert "unit" in message


def test_non_list_icd10(tmp_path: Path) -> None:
    message = bad(tmp_path, 'version = "t"\n[concept.heart_failure]\nsource = "t"\nicd10 = "I50"\n')
    assert "concept heart_failure" in message
    assert "field icd10" in message


@pytest.mark.parametrize(("text", "words"), [
    ('[concept.x]\nsource = "t"\nicd10 = ["I50"]\n', ("version",)),
    ('version = "t"\n[concept.x]\nsource = "t"\nicd10_cm = ["I50"]\n', ("concept x", "icd10_cm")),
    ('version = "t"\n[concept.x]\nsource = "t"\nicd10 = []\n', ("concept x", "field icd10")),
    ('version = "t"\n[concept.x]\nsource = "t"\nicd10 = ["I50", 3]\n', ("concept x", "field icd10")),
    ('version = "t"\n[concept.x]\nsource = "t"\nicd10 = ["not a code"]\n', ("concept x", "field icd10")),
    ('version = "t"\n[concept.x]\nsource = "t"\nicd10 = ["I50 G"]\n', ("concept x", "field icd10")),
    ('version = "t"\n[concept.x]\nsource = "t"\nicd10 = ["I21+"]\n', ("concept x", "field icd10")),
    ('version = "t"\n[concept.x]\nsource = "t"\nsnomed = ["I50"]\n', ("concept x", "field snomed")),
    ('version = "t"\n[concept.x]\nsource = "t"\nloinc = ["2857"]\n', ("concept x", "field loinc")),
    ('version = "t"\n[concept.x]\nsource = "t"\narea = "cardio"\n', ("concept x", "no codes")),
    ('version = "t"\n[concept.x]\nsource = "t"\narea = 3\nicd10 = ["I50"]\n', ("concept x", "field area")),
    ('version = "t"\n[concept.x]\nsource = "t"\nicd10 = ["I50"]\n[lab.x]\nsource = "t"\nloinc = ["1-1"]\nunit = "%"\n'
     'range = [0, 1]\n', ("lab x", "already used")),
    (f'version = "t"\n{GOOD_LAB}[lab.other]\nsource = "t"\nloinc = ["2857-1"]\nunit = "%"\nrange = [0, 1]\n',
     ("lab other", "field loinc", "2857-1")),
    ('version = "t"\n[lab.psa]\nsource = "t"\nunit = "ng/mL"\nrange = [0.0, 1.0]\n', ("lab psa", "loinc")),
    ('version = "t"\n[lab.psa]\nsource = "t"\nloinc = ["2857-1"]\nunit = "ng/mL"\n', ("lab psa", "range")),
    ('version = "t"\n[lab.psa]\nsource = "t"\nloinc = ["2857-1"]\nunit = "ng/mL"\nrange = [2.0, 1.0]\n',
     ("lab psa", "range")),
    ('version = "t"\n[lab.psa]\nsource = "t"\nloinc = ["2857-1"]\nunit = "ng/mL"\nrange = [0, "1"]\n',
     ("lab psa", "range")),
    (f'version = "t"\n{GOOD_LAB}convert = {{ "ug/L" = "one" }}\n', ("lab psa", "convert")),
    (f'version = "t"\n{GOOD_LAB}convert = {{ "ug/L" = -1.0 }}\n', ("lab psa", "convert")),
    (f'version = "t"\n{GOOD_LAB}convert = {{ "ug/L" = 1.0, "UG/L" = 2.0 }}\n',
     ("lab psa", "convert")),
    (f'version = "t"\n{GOOD_LAB}convert = {{ "ng/mL" = 2.0 }}\n', ("lab psa", "convert")),
    (f'version = "t"\n{GOOD_LAB}unitless = "yes"\n', ("lab psa", "unitless")),
    ('version = "t"\nconcept = 3\n', ("concept",)),
    ('version = "t"\n[concept]\nx = 3\n', ("concept x", "table")),
    ('version = "t"\nextra = 1\n', ("extra",)),
    ('version = "t"\n[concept.x\n', ("line",)),
])
def test_bad_catalogue(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    message = bad(tmp_path, text)
    for word in words:
        assert word in message


def test_missing_catalogue_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        CodeMap.load(tmp_path / "nope.toml")
