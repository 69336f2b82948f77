"""The access list: load and validate the clause files in `zones/`, and evaluate clause conditions.

Loading checks every file against `zones/schema/clauses.schema.json`, then checks what the schema cannot: ids are
unique, every fact a condition tests is declared in `facts.yaml` with a valid value, every industry prefix is in
`industries.yaml`. `check_against_dataset` then checks bindings against a loaded dataset: unit codes, layer names,
field names and enum values must exist. Every failure names the file and the clause.

Conditions use three-valued logic: a fact the applicant did not give is unknown unless `facts.yaml` declares a
default, and an unknown condition leaves its clause undecided instead of silently passing it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
import yaml

from app.domain.schema import DIMENSIONS, LAND_COVER_KEYS, LAYERS, LayerSpec
from app.errors import RuleBaseError

SCHEMA_FILE = Path("schema") / "clauses.schema.json"
FACTS_FILE = "facts.yaml"
INDUSTRIES_FILE = "industries.yaml"
EFFECTS = ("prohibit", "conditional", "encourage", "note")


@dataclass(frozen=True)
class Fact:
    """A project attribute clauses may test."""

    name: str
    type: str
    label_zh: str
    values: Mapping[str, str] = field(default_factory=dict)
    default: Any = None
    has_default: bool = False
    default_reason_zh: str = ""
    unit: str = ""


@dataclass(frozen=True)
class Binding:
    """Where a clause applies: a layer (optionally filtered), a land-cover share, a unit type or unit list."""

    layer: str | None = None
    where: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    land_cover: tuple[str, ...] = ()
    min_share: float = 0.0
    unit_type: str | None = None
    units: tuple[str, ...] = ()


@dataclass(frozen=True)
class Clause:
    """One access-list clause, as authored."""

    id: str
    dimension: str
    effect: str
    text: str
    source_document: str
    source_section: str
    file: str
    illustrative: bool = False
    unit: str | None = None  # set for clauses of a unit file
    binding: Binding | None = None  # None with unit=None: applies anywhere in the territory
    condition: Any = None
    conditions: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return f"{self.source_document} {self.source_section}".strip()


@dataclass(frozen=True)
class RuleBase:
    """Every clause, the fact vocabulary and the industry code table, with the content hash of them all."""

    clauses: tuple[Clause, ...]  # in access-list order: the four dimensions, then id
    facts: Mapping[str, Fact]
    industries: Mapping[str, str]
    version: str

    def by_id(self, clause_id: str) -> Clause | None:
        return next((c for c in self.clauses if c.id == clause_id), None)

    def for_unit(self, code: str) -> list[Clause]:
        return [c for c in self.clauses if c.unit == code]

    @cached_property
    def _positions(self) -> tuple[list[int], dict[str, list[int]]]:
        general: list[int] = []
        by_unit: dict[str, list[int]] = {}
        for i, c in enumerate(self.clauses):
            (by_unit.setdefault(c.unit, []) if c.unit else general).append(i)
        return general, by_unit

    def candidates(self, unit_codes: Iterable[str]) -> list[Clause]:
        """The clauses that can bind a site in these units (city-wide ones and theirs), in access-list order."""
        general, by_unit = self._positions
        picked = general + [i for code in set(unit_codes) for i in by_unit.get(code, ())]
        return [self.clauses[i] for i in sorted(picked)]


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml(path: Path) -> Any:
    try:
        # libyaml's parser when the wheel has it: the same documents, about 9× faster on big rule bases
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise RuleBaseError(f"规则文件无法读取：{path.name}", detail=f"{path}: {exc}", file=path.name) from exc


@lru_cache(maxsize=4)
def _validator(schema_path: Path) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def clause_files(zones_dir: Path) -> list[Path]:
    """The clause files of a rule base, in a fixed order: city-wide first, then unit files by code."""
    files = sorted(p for p in zones_dir.glob("*.yaml") if p.name not in (FACTS_FILE, INDUSTRIES_FILE))
    return files + sorted((zones_dir / "units").glob("*.yaml"))


def load_rule_base(zones_dir: Path) -> RuleBase:
    """Load and validate every clause file, the fact vocabulary and the industry table under `zones_dir`."""
    facts = _load_facts(zones_dir / FACTS_FILE)
    industries = _load_industries(zones_dir / INDUSTRIES_FILE)
    validator = _validator(zones_dir / SCHEMA_FILE)
    clauses: list[Clause] = []
    digest = hashlib.sha256()
    for path in [zones_dir / FACTS_FILE, zones_dir / INDUSTRIES_FILE, *clause_files(zones_dir)]:
        rel = path.relative_to(zones_dir).as_posix()
        doc = _yaml(path)
        digest.update(rel.encode() + b"\0" + json.dumps(doc, sort_keys=True, ensure_ascii=False).encode() + b"\0")
        if path.name in (FACTS_FILE, INDUSTRIES_FILE):
            continue
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            where = "/".join(str(p) for p in err.absolute_path)
            clause_id = _clause_id_at(doc, err.absolute_path)
            raise RuleBaseError(
                f"规则文件 {rel} 不符合条款格式（位置 {where or '文件根'}{'，条款 ' + clause_id if clause_id else ''}）：{err.message}",
                detail=f"{rel}: {where}: {err.message}", file=rel, clause=clause_id, path=where,
            )
        if doc["scope"] == "unit" and path.stem != doc["unit"]:
            raise RuleBaseError(f"规则文件 {rel} 的文件名应与单元编码 {doc['unit']} 一致",
                                detail=f"{rel}: file name does not match unit {doc['unit']}", file=rel)
        for raw in doc["clauses"]:
            clauses.append(_clause(raw, rel, doc.get("unit")))
    seen: dict[str, str] = {}
    for clause in clauses:
        if clause.id in seen:
            raise RuleBaseError(f"条款编号 {clause.id} 重复（{seen[clause.id]} 与 {clause.file}）",
                                detail=f"duplicate clause id {clause.id}", file=clause.file, clause=clause.id)
        seen[clause.id] = clause.file
        _check_condition(clause, clause.condition, facts, industries)
        if clause.binding and clause.binding.land_cover:
            unknown = [c for c in clause.binding.land_cover if c not in LAND_COVER_KEYS]
            if unknown:
                raise _binding_error(clause, f"未知的土地覆被类别 {unknown}")
    return RuleBase(tuple(sorted(clauses, key=dimension_order)), facts, industries, digest.hexdigest())


def check_against_dataset(rules: RuleBase, unit_codes: set[str], layers: Mapping[str, LayerSpec] = LAYERS) -> None:
    """Raise RuleBaseError if a clause binds to a unit, layer, field or value the dataset does not have."""
    for clause in rules.clauses:
        if clause.unit and clause.unit not in unit_codes:
            raise _binding_error(clause, f"单元 {clause.unit} 不在数据集中")
        b = clause.binding
        if b is None:
            continue
        for code in b.units:
            if code not in unit_codes:
                raise _binding_error(clause, f"单元 {code} 不在数据集中")
        if b.layer is not None:
            spec = layers.get(b.layer)
            if spec is None:
                raise _binding_error(clause, f"图层 {b.layer} 不存在")
            for fld, values in b.where.items():
                if fld not in spec.fields:
                    raise _binding_error(clause, f"图层 {b.layer} 没有字段 {fld}")
                allowed = spec.enums.get(fld)
                if allowed is not None:
                    bad = [v for v in values if str(v) not in allowed]
                    if bad:
                        raise _binding_error(clause, f"图层 {b.layer} 字段 {fld} 没有取值 {bad}（可用：{list(allowed)}）")


def _binding_error(clause: Clause, what: str) -> RuleBaseError:
    return RuleBaseError(f"规则文件 {clause.file} 条款 {clause.id}：{what}",
                         detail=f"{clause.file}: {clause.id}: {what}", file=clause.file, clause=clause.id)


def _clause_id_at(doc: Any, path) -> str | None:
    parts = list(path)
    if len(parts) >= 2 and parts[0] == "clauses" and isinstance(parts[1], int):
        try:
            return str(doc["clauses"][parts[1]].get("id"))
        except (KeyError, IndexError, AttributeError, TypeError):
            return None
    return None


def _clause(raw: Mapping[str, Any], file: str, unit: str | None) -> Clause:
    binding = None
    if "binds" in raw:
        b = raw["binds"]
        lc = b.get("land_cover") or {}
        binding = Binding(
            layer=b.get("layer"),
            where={k: tuple(v) if isinstance(v, list) else (v,) for k, v in (b.get("where") or {}).items()},
            land_cover=tuple(lc.get("classes", ())),
            min_share=float(lc.get("min_share", 0.0)),
            unit_type=b.get("unit_type"),
            units=tuple(b.get("units", ())),
        )
    if unit and binding is not None:
        raise RuleBaseError(f"规则文件 {file} 条款 {raw['id']}：单元文件中的条款已绑定到本单元，不应再写 binds",
                            detail=f"{file}: {raw['id']}: binds in a unit file", file=file, clause=raw["id"])
    return Clause(
        id=raw["id"], dimension=raw["dimension"], effect=raw["effect"], text=raw["text"].strip(),
        source_document=raw["source"]["document"], source_section=str(raw["source"]["section"]), file=file,
        illustrative=bool(raw.get("illustrative", False)), unit=unit, binding=binding,
        condition=raw.get("when"), conditions=tuple(raw.get("conditions", ())),
    )


def _load_facts(path: Path) -> dict[str, Fact]:
    doc = _yaml(path)
    facts: dict[str, Fact] = {}
    for name, spec in (doc or {}).get("facts", {}).items():
        if spec.get("type") not in ("bool", "number", "enum", "string", "industry"):
            raise RuleBaseError(f"{path.name}：事实 {name} 的类型无效", detail=f"{path.name}: {name}: bad type",
                                file=path.name)
        values = {str(k): str(v) for k, v in (spec.get("values") or {}).items()}
        if spec["type"] == "enum" and not values:
            raise RuleBaseError(f"{path.name}：枚举事实 {name} 缺少取值", detail=f"{path.name}: {name}: no values",
                                file=path.name)
        facts[name] = Fact(name=name, type=spec["type"], label_zh=spec.get("label_zh", name), values=values,
                           default=spec.get("default"), has_default="default" in spec,
                           default_reason_zh=spec.get("default_reason_zh", ""), unit=spec.get("unit", ""))
    return facts


def _load_industries(path: Path) -> dict[str, str]:
    doc = _yaml(path)
    table: dict[str, str] = {}
    for row in (doc or {}).get("industries", []):
        code = str(row["code"])
        if code in table:
            raise RuleBaseError(f"{path.name}：行业代码 {code} 重复", detail=f"{path.name}: duplicate {code}",
                                file=path.name)
        table[code] = str(row["name_zh"])
    return table


def _check_condition(clause: Clause, cond: Any, facts: Mapping[str, Fact], industries: Mapping[str, str]) -> None:
    if cond is None:
        return
    if "all" in cond or "any" in cond:
        for sub in cond.get("all", cond.get("any")):
            _check_condition(clause, sub, facts, industries)
    elif "not" in cond:
        _check_condition(clause, cond["not"], facts, industries)
    elif "industry" in cond:
        unknown = [p for p in cond["industry"] if p not in industries]
        if unknown:
            raise _binding_error(clause, f"行业代码前缀 {unknown} 不在 {INDUSTRIES_FILE} 中")
    else:
        name = cond["fact"]
        fact = facts.get(name)
        if fact is None:
            raise _binding_error(clause, f"未知的项目事实 {name}（见 {FACTS_FILE}）")
        op, value = next((k, v) for k, v in cond.items() if k != "fact")
        values = value if isinstance(value, list) else [value]
        if fact.type == "enum" and any(str(v) not in fact.values for v in values):
            raise _binding_error(clause, f"事实 {name} 没有取值 {values}（可用：{list(fact.values)}）")
        if fact.type == "bool" and (op != "eq" or not isinstance(value, bool)):
            raise _binding_error(clause, f"布尔事实 {name} 只能用 eq: true/false")
        if op in ("gt", "gte", "lt", "lte") and fact.type != "number":
            raise _binding_error(clause, f"事实 {name} 不是数值，不能比较大小")


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """The value of a condition (True, False or None for unknown), the facts that decided it and those missing."""

    value: bool | None
    used: list[dict[str, Any]] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)


def resolve_facts(given: Mapping[str, Any], facts: Mapping[str, Fact]) -> dict[str, Any]:
    """The applicant's facts plus declared defaults for those not given (None values count as not given)."""
    out = {k: v for k, v in given.items() if v is not None}
    for name, fact in facts.items():
        if name not in out and fact.has_default:
            out[name] = fact.default
    return out


def evaluate(cond: Any, values: Mapping[str, Any]) -> Outcome:
    """Evaluate a condition against resolved project facts with Kleene three-valued logic."""
    if cond is None:
        return Outcome(True)
    if "all" in cond:
        parts = [evaluate(c, values) for c in cond["all"]]
        if any(p.value is False for p in parts):
            decisive = [p for p in parts if p.value is False]
            return Outcome(False, [u for p in decisive for u in p.used])
        return _combine(parts, None if any(p.value is None for p in parts) else True)
    if "any" in cond:
        parts = [evaluate(c, values) for c in cond["any"]]
        if any(p.value is True for p in parts):
            decisive = [p for p in parts if p.value is True]
            return Outcome(True, [u for p in decisive for u in p.used])
        return _combine(parts, None if any(p.value is None for p in parts) else False)
    if "not" in cond:
        inner = evaluate(cond["not"], values)
        return Outcome(None if inner.value is None else not inner.value, inner.used, inner.missing)
    if "industry" in cond:
        code = values.get("industry_code")
        if code is None:
            return Outcome(None, missing={"industry_code"})
        code = str(code)
        match = next((p for p in cond["industry"] if code.startswith(p)), None)
        if match is None and any(p.startswith(code) for p in cond["industry"]):
            # A division or group code is coarser than the clause's class: it may or may not be one of them.
            return Outcome(None, missing={"industry_code"})
        return Outcome(match is not None, [{"fact": "industry_code", "value": code, "test": "prefix",
                                             "expected": match or cond["industry"]}])
    name = cond["fact"]
    if name not in values:
        return Outcome(None, missing={name})
    actual = values[name]
    op, expected = next((k, v) for k, v in cond.items() if k != "fact")
    result = _compare(op, actual, expected)
    return Outcome(result, [{"fact": name, "value": actual, "test": op, "expected": expected}])


def _combine(parts: list[Outcome], value: bool | None) -> Outcome:
    out = Outcome(value)
    for p in parts:
        out.used.extend(p.used)
        out.missing |= p.missing
    return out


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return actual == expected
    if op == "in":
        return actual in expected
    a, e = float(actual), float(expected)
    return {"gt": a > e, "gte": a >= e, "lt": a < e, "lte": a <= e}[op]


def dimension_order(clause: Clause) -> tuple[int, str]:
    """Sort key: the four access-list dimensions in their regulatory order, then clause id."""
    return DIMENSIONS.index(clause.dimension), clause.id
