"""The dataset contract: which layers a zoning dataset holds and which fields each carries.

The reference-data builder writes to this contract, the catalog loader checks a dataset against it, and the
rule-base validator checks every clause binding against it. One definition, three users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STORAGE_EPSG = 4490  # CGCS2000 geographic, the CRS of every stored layer
METRIC_EPSG = 4548  # CGCS2000 / 3-degree Gauss-Krüger CM 117E (zone 39 without prefix): areas and distances
MU_PER_M2 = 15 / 10000  # 1 亩 = 10000/15 m²

PROVENANCE_ILLUSTRATIVE = "illustrative reference data built from public facts, not official boundaries"
PROVENANCE_ILLUSTRATIVE_ZH = "示意性参考数据：依据公开资料构建，并非官方边界"

UNIT_TYPES = {"1": "priority", "2": "key", "3": "general"}
UNIT_TYPE_NAMES_ZH = {"priority": "优先保护单元", "key": "重点管控单元", "general": "一般管控单元"}

DIMENSIONS = ("spatial_layout", "emission_control", "risk_prevention", "resource_efficiency")
DIMENSION_NAMES_ZH = {
    "spatial_layout": "空间布局约束",
    "emission_control": "污染物排放管控",
    "risk_prevention": "环境风险防控",
    "resource_efficiency": "资源开发效率要求",
}
# Deliverable text fields of a control unit, one per access-list dimension (domain brief §4).
DIMENSION_FIELDS = {
    "spatial_layout": "KJBJYS",
    "emission_control": "PWWPFGK",
    "risk_prevention": "HJFXFK",
    "resource_efficiency": "ZYKFXLYQ",
}


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the contract: name, Chinese title, geometry kind and the attribute fields with their types."""

    name: str
    title_zh: str
    geometry: str  # "polygon" or "line"
    fields: dict[str, str]  # field -> "str" | "int" | "float" | "date"
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    required: bool = True
    protected: bool = False  # distances to it are reported (protected layers)
    key: tuple[str, ...] = ()  # fields that identify a feature across versions (diffs, duplicate checks)


CONTROL_UNIT_FIELDS = {
    "HJZHGKDYBM": "str",  # unit code
    "HJZHGKDYMC": "str",  # unit name
    "ZHGKDYFL": "str",  # unit type digit 1/2/3
    "PROV": "str",
    "CITY": "str",
    "AREA": "str",  # county (district) name
    "XZQDM": "str",  # county code
    "DYLB": "str",  # category as Plan 3.3 lists it
    "KJBJYS": "str",
    "PWWPFGK": "str",
    "HJFXFK": "str",
    "ZYKFXLYQ": "str",
    "REMARK": "str",
}

LAYERS: dict[str, LayerSpec] = {
    spec.name: spec
    for spec in (
        LayerSpec("admin_boundary", "行政区划", "polygon", {"county_code": "str", "county_name": "str"}, key=("county_code",)),
        LayerSpec("control_units", "环境管控单元", "polygon", CONTROL_UNIT_FIELDS, enums={"ZHGKDYFL": ("1", "2", "3")}, key=("HJZHGKDYBM",)),
        LayerSpec(
            "red_line",
            "生态保护红线",
            "polygon",
            {"patch_id": "str", "function": "str", "function_name": "str", "county_code": "str"},
            enums={"function": ("wetland", "grassland", "water_conservation", "windbreak_sand_fixation")},
            protected=True, key=("patch_id",)),
        LayerSpec(
            "nature_reserve",
            "自然保护区",
            "polygon",
            {
                "name": "str",
                "zone": "str",
                "zone_name": "str",
                "level": "str",
                "established": "int",
                "effective_date": "date",
                "basis": "str",
            },
            enums={"zone": ("core", "general_control")},
            protected=True, key=("name", "zone")),
        LayerSpec("wetland_parks", "国家湿地公园", "polygon", {"name": "str", "level": "str", "area_ha_published": "float"},
                  protected=True, key=("name",)),
        LayerSpec(
            "drinking_water",
            "集中式饮用水水源保护区",
            "polygon",
            {"source_name": "str", "zone": "str", "zone_name": "str"},
            enums={"zone": ("level1", "level2", "quasi")},
            protected=True, key=("source_name", "zone")),
        LayerSpec("basic_grassland", "基本草原", "polygon", {"name": "str"}, protected=True, key=("name",)),
        LayerSpec("basic_farmland", "永久基本农田", "polygon", {"name": "str"}, protected=True, key=("name",)),
        LayerSpec("urban_boundary", "城镇开发边界", "polygon", {"name": "str"}, key=("name",)),
        LayerSpec("no_burn_zone", "高污染燃料禁燃区", "polygon", {"name": "str"}, key=("name",)),
        LayerSpec(
            "mining_areas",
            "采矿用地（露天采场、排土场、采煤沉陷区）",
            "polygon",
            {"name": "str", "kind": "str", "kind_name": "str"},
            enums={"kind": ("open_pit", "dump", "subsidence")}, key=("name",)),
        LayerSpec(
            "water_env_zones",
            "水环境管控分区",
            "polygon",
            {
                "catchment": "str",
                "section": "str",
                "target_class": "str",
                "measured_class": "str",
                "compliant": "int",
                "zone_type": "str",
            }, key=("catchment",)),
        LayerSpec(
            "air_env_zones",
            "大气环境管控分区",
            "polygon",
            {"zone_type": "str", "zone_name": "str"},
            enums={"zone_type": ("priority", "high_emission", "layout_sensitive", "receptor_sensitive", "general")}, key=("zone_type",)),
        LayerSpec("rivers", "河流", "line", {"name": "str", "kind": "str"}, required=False, key=("name",)),
        LayerSpec("lakes", "湖泊", "polygon", {"name": "str"}, required=False, key=("name",)),
    )
}

# Non-spatial tables every dataset GeoPackage carries.
PROVENANCE_TABLE = "layer_provenance"  # layer, title_zh, source, provenance, generated_by
DATASET_TABLE = "dataset_info"  # key, value
LAND_COVER_CLASS_TABLE = "land_cover_classes"  # code, key, name_zh, color

# Land-cover classes of the raster (uint8 codes, 0 = nodata outside the territory).
LAND_COVER_CLASSES: dict[int, tuple[str, str, str]] = {
    1: ("cropland", "耕地", "#f2d36b"),
    2: ("forest", "林地", "#2f7d32"),
    3: ("grassland", "草地", "#a8d08d"),
    4: ("wetland", "湿地", "#5fb3b3"),
    5: ("water", "水体", "#3a7bd5"),
    6: ("built_up", "建设用地", "#d9534f"),
    7: ("mining", "采矿用地", "#7b5a45"),
    8: ("bare_sand", "裸地/沙地", "#e8dcc0"),
}
LAND_COVER_NODATA = 0
LAND_COVER_KEYS = {key: code for code, (key, _, _) in LAND_COVER_CLASSES.items()}
