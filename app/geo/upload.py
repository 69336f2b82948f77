"""Read uploaded boundary files (zipped Shapefile, GeoPackage, GeoJSON, KML) safely into EPSG:4490 GeoDataFrames.

Uploads are hostile until proven otherwise. What this module guarantees:

* The format is taken from the content (magic bytes); the filename is only a hint and is never used as a path:
  the bytes are written to server-named files in a private temp dir (pyogrio/GDAL would open URLs and /vsi… paths).
* ZIP members are checked one by one before anything is written (absolute paths, ``..``, symlinks and other
  special files, nested archives, member count, declared and actual uncompressed size, compression ratio) and
  extracted by our own code with a running byte cap; ``zipfile.extractall`` is never used.
* Shapefile text encoding is never guessed silently: ``.cpg``, then the DBF language driver id (with a warning),
  then "all text is ASCII/UTF-8"; otherwise the uploader must say. The chosen encoding is checked against the
  DBF bytes before GDAL reads them, and passed to pyogrio explicitly.
* A GeoPackage is inspected with sqlite3 read-only first; only real feature tables are read (views, virtual tables
  and non-feature contents are ignored) and triggers never fire (nothing is written).
* Every GDAL read runs in a child process (forkserver) under ``UploadLimits.read_timeout_s`` and is killed on
  timeout; a crash of GDAL in the child becomes an InvalidInput, not a dead worker.
* CRS comes from the file (or the caller when the file has none; a conflict is refused), only CGCS2000/WGS84 datums
  are accepted (no silent Beijing 1954 / Xian 1980 shifts), and the result must be finite and inside China.
* Geometry is never repaired: invalid geometries are kept as read; only Z/M are dropped.

The reader child comes from a multiprocessing fork server (preloading this module, set once per process). As with
any non-fork start method, the child imports the parent's ``__main__`` unless it was started with ``-m``: scripts
that call read_upload need the usual ``if __name__ == "__main__":`` guard (uvicorn, gunicorn and pytest are fine).
"""

from __future__ import annotations

import multiprocessing
import re
import resource
import shutil
import sqlite3
import stat
import struct
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import geopandas
import numpy as np
import pyogrio
import shapely
from pyproj import CRS

from app.errors import InputTooLarge, InvalidInput, UnknownCRS, ZoningError
from app.geo.crs import CHINA_LAT, CHINA_LON, CRSSpec, json_num, parse_crs

STORAGE_EPSG = 4490

FORMATS = ("shapefile", "gpkg", "geojson", "kml")
ACCEPTED_FORMATS_ZH = "Shapefile 压缩包（.zip，内含 .shp、.shx、.dbf、.prj，可含 .cpg）、GeoPackage（.gpkg）、GeoJSON（.geojson）、KML（.kml）"
_FORMAT_ZH = {"shapefile": "Shapefile 压缩包", "gpkg": "GeoPackage", "geojson": "GeoJSON", "kml": "KML"}
_FORMAT_EXTS = {"shapefile": {".zip"}, "gpkg": {".gpkg"}, "geojson": {".geojson", ".json"}, "kml": {".kml"}}

# A member is a bomb suspect when it expands more than this ratio (deflate tops out near 1032:1) and is big enough
# to matter; the total uncompressed cap is the hard limit either way.
MAX_COMPRESSION_RATIO = 200
RATIO_CHECK_MIN_BYTES = 8 * 1024 * 1024
_CHUNK = 1 << 20
_GPKG_INSPECT_MAX_S = 10.0

_NESTED_ARCHIVE_EXTS = frozenset(
    ".zip .7z .rar .gz .tgz .tar .bz2 .tbz .tbz2 .xz .txz .lz .lzma .zst .z .cab .kmz .jar .arj .lzh .iso".split()
)
_ARCHIVE_MAGIC = (
    b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"\x1f\x8b", b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07",
    b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"BZh",
)
_SHAPE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
_OTHER_VECTOR_EXTS = {".gpkg": "GeoPackage", ".geojson": "GeoJSON", ".json": "GeoJSON", ".kml": "KML"}

# Encodings: canonical name -> Python codec. GDAL/iconv understands the canonical names.
_CODECS = {"GBK": "gbk", "GB18030": "gb18030", "UTF-8": "utf-8"}
_ENCODING_ALIASES = {
    "UTF8": "UTF-8", "65001": "UTF-8", "UTF8BOM": "UTF-8",
    "GBK": "GBK", "CP936": "GBK", "936": "GBK", "MS936": "GBK", "WINDOWS936": "GBK", "ANSI936": "GBK",
    "GB2312": "GBK", "CP20936": "GBK", "20936": "GBK", "EUCCN": "GBK",
    "GB18030": "GB18030", "54936": "GB18030", "CP54936": "GB18030",
}
# DBF language driver ids (byte 29) that declare a Chinese code page. Other ids declare code pages (Western,
# Cyrillic...) that cannot hold Chinese text: for non-ASCII text they are not trusted.
_LDID_ENCODINGS = {0x4D: "GBK", 0x7A: "GBK"}


@dataclass(frozen=True)
class UploadLimits:
    """Caps on one upload. Sizes in bytes; the time limit covers all GDAL reads of the upload."""

    max_bytes: int = 200_000_000
    max_members: int = 50
    max_uncompressed: int = 1_000_000_000
    max_features: int = 200_000
    max_vertices: int = 5_000_000
    read_timeout_s: float = 60.0
    max_memory_bytes: int = 4 * 2**30  # the reader child's data segment (RLIMIT_DATA): a crafted file cannot
    #                                     take the server's memory, only fail its own read


@dataclass(frozen=True)
class UploadedLayer:
    """One layer of an upload, in EPSG:4490, geometry as read (not repaired; Z/M dropped)."""

    name: str
    frame: geopandas.GeoDataFrame
    source_crs: str
    encoding: str | None
    geometry_types: tuple[str, ...]


@dataclass(frozen=True)
class Upload:
    """What an uploaded file held: its format, its layers and Chinese notes for the uploader."""

    format: str
    layers: tuple[UploadedLayer, ...]
    warnings: tuple[str, ...]


# ---------------------------------------------------------------------------------------------------------------
# Entry point


def read_upload(
    data: bytes,
    filename: str,
    *,
    crs: str | None = None,
    encoding: str | None = None,
    limits: UploadLimits = UploadLimits(),
    workdir: Path | None = None,
) -> Upload:
    """Read an uploaded boundary file into EPSG:4490 layers, refusing anything unsafe or ambiguous.

    `crs` names the CRS of a file that declares none (an accepted name of app.geo.crs); `encoding` states a
    Shapefile's attribute encoding (GBK, GB18030, UTF-8) and wins over the file's declarations, but is checked.
    Raises InvalidInput (and subclasses) or InputTooLarge with a Chinese message.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInput("上传内容应为文件的二进制数据。", detail=f"data is {type(data).__name__}, not bytes")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise InputTooLarge(
            f"文件过大（{len(data):,} 字节），上限为 {limits.max_bytes:,} 字节。请拆分后分批上传。",
            detail=f"upload of {len(data)} bytes exceeds max_bytes {limits.max_bytes}",
            size=len(data), limit=limits.max_bytes,
        )
    if not data or (len(data) <= 65_536 and not data.strip()):
        raise InvalidInput("上传的文件是空的。请选择边界数据文件重新上传。", detail="empty upload")
    shown_name = _display_name(filename)
    caller_crs = _parse_caller_crs(crs) if crs is not None else None
    caller_encoding = _parse_encoding_param(encoding) if encoding is not None else None
    warnings: list[str] = []
    fmt = _sniff_format(data, shown_name, warnings)
    if caller_encoding is not None and fmt != "shapefile":
        warnings.append(f"encoding 参数只适用于 Shapefile，{_FORMAT_ZH[fmt]} 的文本按 UTF-8 读取，已忽略该参数。")

    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="upload-", dir=workdir))
    try:
        jobs: list[dict[str, Any]]
        if fmt == "shapefile":
            jobs = _prepare_shapefiles(data, tmp, limits, caller_encoding, warnings)
        elif fmt == "gpkg":
            path = _write(tmp / "upload.gpkg", data)
            tables = _gpkg_feature_tables(path, limits)
            jobs = [{"name": t, "path": str(path), "layer": t} for t in tables]
        elif fmt == "geojson":
            path = _write(tmp / "upload.geojson", data)
            stem = PurePosixPath(shown_name).stem if shown_name else ""
            jobs = [{"name": stem or "upload", "path": str(path), "implicit_crs": not _geojson_has_crs(data)}]
        else:
            _check_kml(data)
            jobs = [{"path": str(tmp / "upload.kml")}]
            _write(tmp / "upload.kml", data)
        raw_layers = _run_in_child(_read_layers, (fmt, jobs, limits), limits.read_timeout_s,
                                   memory_bytes=limits.max_memory_bytes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    layers: list[UploadedLayer] = []
    for raw in raw_layers:
        if len(raw["frame"]) == 0:
            warnings.append(f"图层“{raw['name']}”没有要素，已跳过。")
            continue
        layers.append(_finish_layer(raw, fmt, caller_crs, warnings))
    if not layers:
        raise InvalidInput(
            f"文件中没有任何要素（{_FORMAT_ZH[fmt]}）。请确认导出的图层包含边界数据后重新上传。",
            detail=f"no features in {fmt} upload ({len(raw_layers)} empty layers)",
            format=fmt,
        )
    return Upload(format=fmt, layers=tuple(layers), warnings=tuple(warnings))


# ---------------------------------------------------------------------------------------------------------------
# Format detection and small helpers


def _display_name(filename: Any) -> str:
    """The user's file name for messages only: last path component, no control characters, bounded length."""
    text = str(filename or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if ch.isprintable())
    return text[:120]


def _sniff_format(data: bytes, shown_name: str, warnings: list[str]) -> str:
    ext = PurePosixPath(shown_name.lower()).suffix
    head = data[:16]
    fmt: str | None = None
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        fmt = "shapefile"
    elif head.startswith(b"SQLite format 3\x00"):
        fmt = "gpkg"
    else:
        text_head = data[:4096].removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
        if text_head.startswith(b"{"):
            fmt = "geojson"
        elif text_head.startswith(b"<"):
            fmt = "kml"
    if fmt is None:
        hint = ""
        if ext in {".shp", ".shx", ".dbf", ".prj"} or head.startswith(b"\x00\x00\x27\x0a"):
            hint = "Shapefile 请将同名的 .shp、.shx、.dbf、.prj（及 .cpg）一起压缩为一个 .zip 文件上传。"
        elif ext in {".rar", ".7z", ".gz", ".tar", ".tgz", ".bz2", ".xz"}:
            hint = f"不支持 {ext} 压缩格式，请改用 .zip 压缩。"
        elif ext == ".kmz":
            hint = "KMZ 请解压后上传其中的 .kml 文件。"
        raise InvalidInput(
            f"无法识别的文件格式（{shown_name or '未命名文件'}）。可接受的格式：{ACCEPTED_FORMATS_ZH}。{hint}",
            detail=f"unrecognised upload content; first bytes {data[:8]!r}, extension {ext!r}",
            accepted=list(FORMATS),
        )
    if ext and ext not in _FORMAT_EXTS[fmt]:
        warnings.append(f"文件扩展名 {ext} 与内容不符，已按内容识别为 {_FORMAT_ZH[fmt]}。")
    return fmt


def _write(path: Path, data: bytes) -> Path:
    with open(path, "xb") as out:
        out.write(data)
    return path


def _parse_caller_crs(crs: Any) -> CRSSpec:
    spec = parse_crs(crs)  # UnknownCRS with the accepted list
    if spec.epsg is None:
        raise UnknownCRS(
            f"边界文件不接受 {spec.name}（网络地图加密坐标）。请先在 GIS 软件中转换为 CGCS2000（EPSG:4490、EPSG:4527 或 "
            "EPSG:4548）后上传。",
            detail=f"obfuscated CRS {spec.name} not accepted for uploads",
            given=spec.name,
        )
    return spec


def _canonical_encoding(name: str) -> str | None:
    key = re.sub(r"[\s_\-.]", "", name).upper()
    return _ENCODING_ALIASES.get(key)


def _parse_encoding_param(encoding: Any) -> str:
    canon = _canonical_encoding(str(encoding)) if isinstance(encoding, str) else None
    if canon is None:
        shown = str(encoding)[:40]
        raise InvalidInput(
            f"不支持的编码“{shown}”。Shapefile 属性编码请填写 GBK（GB2312/CP936 同）、GB18030 或 UTF-8。",
            detail=f"unknown encoding parameter {shown!r}",
            given=shown,
            accepted=list(_CODECS),
        )
    return canon


# ---------------------------------------------------------------------------------------------------------------
# ZIP (Shapefile) handling


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The member name as the uploader's tool meant it: names without the UTF-8 flag are often GBK (Chinese
    Windows), which zipfile decodes as CP437."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            raw = name.encode("cp437")
        except UnicodeEncodeError:
            return name
        for codec in ("utf-8", "gbk"):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError:
                continue
    return name


def _zip_entry_upper_bound(data: bytes) -> int | None:
    """Count central-directory signatures in the central directory before zipfile builds one object per entry
    (a 200 MB archive of empty entries would cost gigabytes). None when the end record is not where it should be."""
    tail_start = max(0, len(data) - 65_557)
    pos = data.rfind(b"PK\x05\x06", tail_start)
    if pos < 0 or pos + 22 > len(data):
        return None
    _sig, _disk, _cd_disk, _n_disk, n_total, cd_size, _cd_offset, _clen = struct.unpack("<4s4H2LH", data[pos:pos + 22])
    if n_total == 0xFFFF or cd_size == 0xFFFFFFFF:
        return 1 << 30  # ZIP64: only needed beyond our caps
    start = max(0, pos - cd_size)
    return max(n_total, data.count(b"PK\x01\x02", start, pos))


def _check_member(info: zipfile.ZipInfo, name: str) -> None:
    norm = name.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    shown = name[:120]
    if not parts or "\x00" in norm:
        raise InvalidInput("压缩包中有名称为空或含非法字符的文件。请重新打包后上传。", detail=f"bad member name {name!r}")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise InvalidInput(
            f"压缩包中的文件“{shown}”使用了绝对路径，已拒绝。请只打包数据文件本身（相对路径）后重新上传。",
            detail=f"absolute member path {name!r}", member=shown,
        )
    if ".." in parts:
        raise InvalidInput(
            f"压缩包中的文件“{shown}”的路径含“..”（指向压缩包外），已拒绝。请重新打包后上传。",
            detail=f"member path escapes the archive: {name!r}", member=shown,
        )
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise InvalidInput(
            f"压缩包中的“{shown}”是符号链接，已拒绝。请打包真实的数据文件后重新上传。",
            detail=f"symlink member {name!r}", member=shown,
        )
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise InvalidInput(
            f"压缩包中的“{shown}”不是普通文件，已拒绝。", detail=f"special file member {name!r} mode {oct(mode)}",
            member=shown,
        )
    if info.flag_bits & 0x1:
        raise InvalidInput(
            f"压缩包中的“{shown}”已加密。请上传未加密的压缩包。", detail=f"encrypted member {name!r}", member=shown,
        )
    ext = PurePosixPath(parts[-1].lower()).suffix
    if not info.is_dir() and ext in _NESTED_ARCHIVE_EXTS:
        raise InvalidInput(
            f"压缩包中含有另一个压缩文件“{shown}”，不支持嵌套压缩包。请解压后将 Shapefile 各文件直接打包为一个 .zip。",
            detail=f"nested archive member {name!r}", member=shown,
        )


def _prepare_shapefiles(
    data: bytes, tmp: Path, limits: UploadLimits, caller_encoding: str | None, warnings: list[str]
) -> list[dict[str, Any]]:
    bound = _zip_entry_upper_bound(data)
    if bound is not None and bound > limits.max_members:
        raise InputTooLarge(
            f"压缩包中的文件过多（{limits.max_members} 个以上）。每个压缩包最多 {limits.max_members} 个文件，请只打包需要的图层。",
            detail=f"zip central directory holds ~{bound} entries > {limits.max_members}",
            limit=limits.max_members,
        )
    zip_path = _write(tmp / "upload.zip", data)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInput(
            "压缩包已损坏或不是有效的 ZIP 文件。请重新压缩后上传。", detail=f"bad zip: {exc}"
        ) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise InputTooLarge(
                f"压缩包中有 {len(infos)} 个文件，上限为 {limits.max_members} 个。请只打包需要的图层。",
                detail=f"{len(infos)} zip members > {limits.max_members}",
                members=len(infos), limit=limits.max_members,
            )
        named = [(info, _zip_name(info)) for info in infos]
        for info, name in named:
            _check_member(info, name)
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_uncompressed:
            raise InputTooLarge(
                f"压缩包解压后共 {declared:,} 字节，超过上限 {limits.max_uncompressed:,} 字节。请拆分后分批上传。",
                detail=f"declared uncompressed total {declared} > {limits.max_uncompressed}",
                uncompressed=declared, limit=limits.max_uncompressed,
            )
        for info, name in named:
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size >= RATIO_CHECK_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
                raise InputTooLarge(
                    f"压缩包中的“{name[:120]}”压缩比异常（{info.compress_size:,} 字节解压为 {info.file_size:,} 字节），"
                    "疑似压缩炸弹，已拒绝。",
                    detail=f"member {name!r} ratio {info.file_size}/{info.compress_size}",
                    member=name[:120], compressed=info.compress_size, uncompressed=info.file_size,
                )

        # Group the Shapefile parts by folder and stem (case-insensitive), ignoring macOS resource forks.
        groups: dict[tuple[str, str], dict[str, tuple[zipfile.ZipInfo, str]]] = {}
        others: list[str] = []
        for info, name in named:
            if info.is_dir():
                continue
            path = PurePosixPath(name.replace("\\", "/"))
            if "__MACOSX" in path.parts or path.name.startswith("._"):
                continue
            ext = path.suffix.lower()
            if ext not in _SHAPE_PARTS:
                if ext in _OTHER_VECTOR_EXTS:
                    others.append(ext)
                continue
            key = (str(path.parent).lower(), path.stem.lower())
            parts = groups.setdefault(key, {})
            if ext in parts:
                raise InvalidInput(
                    f"压缩包中有重名文件“{name[:120]}”（仅大小写不同）。请删除重复文件后重新打包。",
                    detail=f"duplicate shapefile part {name!r}", member=name[:120],
                )
            parts[ext] = (info, name)

        layers = [(key, parts) for key, parts in sorted(groups.items()) if ".shp" in parts]
        if not layers:
            if others:
                kinds = "、".join(sorted({_OTHER_VECTOR_EXTS[e] for e in others}))
                hint = f"压缩包中是 {kinds} 文件，请直接上传该文件（不要压缩）。"
            else:
                hint = "请将同名的 .shp、.shx、.dbf、.prj（及 .cpg）一起压缩后上传。"
            raise InvalidInput(f"压缩包中没有 Shapefile（.shp 文件）。{hint}", detail="no .shp member in zip")
        stems = [PurePosixPath(parts[".shp"][1]).stem for _, parts in layers]
        total_written = [0]
        jobs: list[dict[str, Any]] = []
        total_records = 0
        for index, (key, parts) in enumerate(layers):
            shp_name = parts[".shp"][1]
            stem = PurePosixPath(shp_name.replace("\\", "/")).stem
            name = stem if stems.count(stem) == 1 else str(PurePosixPath(shp_name.replace("\\", "/")).with_suffix(""))
            missing = [ext for ext in (".shx", ".dbf") if ext not in parts]
            if missing:
                raise InvalidInput(
                    f"Shapefile“{name}”缺少 {'、'.join(missing)} 文件。Shapefile 至少需要同名的 .shp、.shx、.dbf"
                    "（以及说明坐标系的 .prj），请一起打包后上传。",
                    detail=f"shapefile {shp_name!r} lacks {missing}", layer=name, missing=missing,
                )
            base = tmp / f"layer_{index:03d}"
            for ext in (".shp", ".shx", ".dbf", ".prj"):
                if ext in parts:
                    _extract(zf, parts[ext][0], parts[ext][1], base.with_suffix(ext), limits, total_written)
            cpg = None
            if ".cpg" in parts:
                cpg = _read_member(zf, parts[".cpg"][0], parts[".cpg"][1], 4096, limits, total_written)
            dbf = _DbfInfo.read(base.with_suffix(".dbf"), name)
            total_records += dbf.records
            if total_records > limits.max_features:
                raise _too_many_features(total_records, limits)
            enc = _choose_encoding(dbf, cpg, caller_encoding, name, warnings)
            jobs.append({
                "name": name, "path": str(base.with_suffix(".shp")), "encoding": enc,
                "has_prj": ".prj" in parts,
            })
    return jobs


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, cap: int, limits: UploadLimits, total: list[int]
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        with zf.open(info) as src:
            while chunk := src.read(min(_CHUNK, cap + 1)):
                size += len(chunk)
                total[0] += len(chunk)
                _check_running(size, info, name, total[0], limits)
                if size > cap:
                    raise InputTooLarge(
                        f"压缩包中的“{name[:120]}”过大（应为几十字节的文本）。", detail=f"member {name!r} over {cap} bytes",
                        member=name[:120],
                    )
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise _bad_member(name, exc) from None
    return b"".join(chunks)


def _extract(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, dest: Path, limits: UploadLimits, total: list[int]
) -> None:
    size = 0
    try:
        with zf.open(info) as src, open(dest, "xb") as out:
            first = True
            while chunk := src.read(_CHUNK):
                if first and chunk.startswith(_ARCHIVE_MAGIC):
                    raise InvalidInput(
                        f"压缩包中的“{name[:120]}”实际上是另一个压缩文件，不支持嵌套压缩包。",
                        detail=f"member {name!r} has archive magic {chunk[:6]!r}", member=name[:120],
                    )
                first = False
                size += len(chunk)
                total[0] += len(chunk)
                _check_running(size, info, name, total[0], limits)
                out.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise _bad_member(name, exc) from None


def _check_running(size: int, info: zipfile.ZipInfo, name: str, total: int, limits: UploadLimits) -> None:
    if size > info.file_size or total > limits.max_uncompressed:
        raise InputTooLarge(
            f"压缩包中的“{name[:120]}”解压后超出声明大小或总上限（{limits.max_uncompressed:,} 字节），已拒绝。",
            detail=f"member {name!r}: {size} bytes read, declared {info.file_size}; running total {total}",
            member=name[:120], limit=limits.max_uncompressed,
        )


def _bad_member(name: str, exc: BaseException) -> InvalidInput:
    return InvalidInput(
        f"无法解压压缩包中的“{name[:120]}”（文件损坏或使用了不支持的压缩方式）。请用常规 ZIP（Deflate）重新压缩后上传。",
        detail=f"cannot extract {name!r}: {type(exc).__name__}: {exc}", member=name[:120],
    )


# ---------------------------------------------------------------------------------------------------------------
# DBF encoding


@dataclass
class _DbfInfo:
    """What the DBF header says plus views of its text columns, for encoding checks before GDAL reads."""

    layer: str
    ldid: int
    records: int
    names: list[bytes]  # raw field names
    text_fields: list[tuple[bytes, np.ndarray]]  # (raw name, rows × width uint8 view) for character fields

    @classmethod
    def read(cls, path: Path, layer: str) -> _DbfInfo:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(32)
            if len(head) < 32:
                raise _bad_dbf(layer, "header shorter than 32 bytes")
            records, header_len, record_len = struct.unpack("<IHH", head[4:12])
            if header_len < 33 or record_len < 1 or header_len > size:
                raise _bad_dbf(layer, f"header length {header_len}, record length {record_len}, size {size}")
            descriptors = f.read(header_len - 32)
        names: list[bytes] = []
        fields: list[tuple[bytes, str, int, int]] = []
        offset = 1  # the deletion flag
        for i in range(0, len(descriptors) - 31, 32):
            desc = descriptors[i:i + 32]
            if desc[0] == 0x0D:
                break
            raw_name = desc[:11].split(b"\x00", 1)[0]
            ftype = chr(desc[11])
            width = desc[16] if ftype in "NF" else desc[16] + 256 * desc[17]
            names.append(raw_name)
            fields.append((raw_name, ftype, offset, width))
            offset += width
        if offset > record_len:
            raise _bad_dbf(layer, f"fields need {offset} bytes, record length is {record_len}")
        rows = min(records, (size - header_len) // record_len)
        text_fields: list[tuple[bytes, np.ndarray]] = []
        if rows > 0 and any(ftype == "C" for _, ftype, _, _ in fields):
            table = np.memmap(path, dtype=np.uint8, mode="r", offset=header_len, shape=(rows, record_len))
            for raw_name, ftype, start, width in fields:
                if ftype == "C" and width > 0:
                    text_fields.append((raw_name, table[:, start:start + width]))
        return cls(layer, head[29], records, names, text_fields)

    def all_ascii(self) -> bool:
        if any(b >= 0x80 for name in self.names for b in name):
            return False
        return not any(bool((block >= 0x80).any()) for _, block in self.text_fields)

    def first_error(self, codec: str) -> tuple[str, int | None] | None:
        """(field, 1-based record or None for the field name) of the first text that does not decode with codec."""
        for raw in self.names:
            try:
                raw.decode(codec)
            except UnicodeDecodeError:
                return raw.decode("latin-1"), None
        step = 20_000
        for raw, block in self.text_fields:
            if not bool((block >= 0x80).any()):
                continue
            width = block.shape[1] + 1
            for start in range(0, block.shape[0], step):
                part = block[start:start + step]
                padded = np.zeros((part.shape[0], width), dtype=np.uint8)  # NUL ends every value: no pair spans two
                padded[:, :-1] = part
                try:
                    padded.tobytes().decode(codec)
                except UnicodeDecodeError as exc:
                    return raw.decode(codec, errors="replace"), start + exc.start // width + 1
        return None


def _bad_dbf(layer: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"Shapefile“{layer}”的属性表（.dbf）已损坏，无法读取。请重新导出后上传。",
        detail=f"damaged DBF of {layer!r}: {why}", layer=layer,
    )


def _where(field: str, record: int | None) -> str:
    return f"字段名“{field}”" if record is None else f"字段“{field}”第 {record} 条记录"


def _looks_utf8(dbf: _DbfInfo) -> bool:
    """Non-ASCII text that is valid UTF-8: GBK text almost never is (beyond a character or two), so a GBK
    declaration over it would read as mojibake without any decoding error."""
    return not dbf.all_ascii() and dbf.first_error("utf-8") is None


def _utf8_over_gbk(layer: str, declared: str, *, detail: str) -> InvalidInput:
    return InvalidInput(
        f"Shapefile“{layer}”{declared}，但属性文本是有效的 UTF-8，按声明读取会成为乱码。"
        "请确认实际编码：在上传时指定 encoding=UTF-8（或 encoding=GBK），或改正 .cpg 文件。",
        detail=f"{layer}: {detail} declares a Chinese code page but the text is valid UTF-8",
        layer=layer,
    )


def _choose_encoding(
    dbf: _DbfInfo, cpg: bytes | None, caller: str | None, layer: str, warnings: list[str]
) -> str:
    declared_cpg = cpg.removeprefix(b"\xef\xbb\xbf").decode("latin-1").strip()[:40] if cpg is not None else None
    cpg_enc = _canonical_encoding(declared_cpg) if declared_cpg else None
    ldid_enc = _LDID_ENCODINGS.get(dbf.ldid)

    if caller is not None:
        bad = dbf.first_error(_CODECS[caller])
        if bad is not None:
            raise InvalidInput(
                f"Shapefile“{layer}”的属性文本不能按指定的 {caller} 编码解读（{_where(*bad)}）。"
                "请确认实际编码（常见为 GBK 或 UTF-8）后重新指定。",
                detail=f"{layer}: text does not decode as {caller} at field {bad[0]!r} record {bad[1]}",
                layer=layer, encoding=caller, field=bad[0], record=bad[1],
            )
        other = cpg_enc or (declared_cpg if declared_cpg else None) or ldid_enc
        if other and other != caller and not dbf.all_ascii():
            warnings.append(f"图层“{layer}”按指定的 {caller} 编码读取（文件自身声明为 {other}）。")
        if caller != "UTF-8" and _looks_utf8(dbf):
            warnings.append(f"图层“{layer}”的属性文本也是有效的 UTF-8，已按指定的 {caller} 读取；请核对中文是否为乱码。")
        return caller

    if declared_cpg:
        if cpg_enc is None:
            if dbf.all_ascii():
                warnings.append(f"图层“{layer}”的 .cpg 声明编码“{declared_cpg}”不受支持；属性均为 ASCII 字符，按 UTF-8 读取。")
                return "UTF-8"
            raise InvalidInput(
                f"Shapefile“{layer}”的 .cpg 文件声明编码为“{declared_cpg}”，本系统不能据此可靠读取中文属性。"
                "请说明属性编码：在上传时指定 encoding=GBK 或 encoding=UTF-8，或将 .cpg 改为 GBK / UTF-8。",
                detail=f"{layer}: unsupported .cpg {declared_cpg!r} with non-ASCII text",
                layer=layer, cpg=declared_cpg,
            )
        bad = dbf.first_error(_CODECS[cpg_enc])
        if bad is not None:
            alt = "GBK" if cpg_enc == "UTF-8" else "UTF-8"
            alt_ok = dbf.first_error(_CODECS[alt]) is None
            hint = f"文本看起来是 {alt} 编码，" if alt_ok else ""
            raise InvalidInput(
                f"Shapefile“{layer}”的 .cpg 声明编码为 {declared_cpg}，但属性文本不是有效的 {cpg_enc}（{_where(*bad)}）。"
                f"{hint}请改正 .cpg 文件，或在上传时用 encoding 参数指定实际编码（GBK 或 UTF-8）。",
                detail=f"{layer}: .cpg says {declared_cpg!r} but text does not decode as {cpg_enc} "
                f"(field {bad[0]!r}, record {bad[1]})",
                layer=layer, cpg=declared_cpg, field=bad[0], record=bad[1],
            )
        if cpg_enc != "UTF-8" and _looks_utf8(dbf):
            raise _utf8_over_gbk(layer, f".cpg 声明编码为 {declared_cpg}", detail=f".cpg {declared_cpg!r}")
        return cpg_enc

    if ldid_enc is not None:
        bad = dbf.first_error(_CODECS[ldid_enc])
        if bad is not None:
            raise InvalidInput(
                f"Shapefile“{layer}”的 .dbf 文件头声明编码为 {ldid_enc}（语言驱动 0x{dbf.ldid:02X}），"
                f"但属性文本不是有效的 {ldid_enc}（{_where(*bad)}）。请在上传时用 encoding 参数指定实际编码（GBK 或 UTF-8）。",
                detail=f"{layer}: LDID 0x{dbf.ldid:02X} says {ldid_enc} but text does not decode",
                layer=layer, ldid=dbf.ldid, field=bad[0], record=bad[1],
            )
        if _looks_utf8(dbf):
            raise _utf8_over_gbk(
                layer, f"没有 .cpg 文件，.dbf 文件头声明编码为 {ldid_enc}（语言驱动 0x{dbf.ldid:02X}）",
                detail=f"LDID 0x{dbf.ldid:02X}",
            )
        if not dbf.all_ascii():
            warnings.append(
                f"图层“{layer}”没有 .cpg 文件，已按 .dbf 文件头声明的编码 {ldid_enc}（语言驱动 0x{dbf.ldid:02X}）读取属性；"
                "请核对中文是否正确，以后导出时请附上 .cpg 文件。"
            )
        return ldid_enc

    if dbf.all_ascii():
        return "UTF-8"
    if dbf.first_error("utf-8") is None:
        warnings.append(f"图层“{layer}”没有声明编码（无 .cpg），属性文本是有效的 UTF-8，已按 UTF-8 读取；请核对中文是否正确。")
        return "UTF-8"
    raise InvalidInput(
        f"Shapefile“{layer}”没有 .cpg 文件，也未在 .dbf 中声明编码，属性中的中文无法确定编码。"
        "请在上传时指定编码（encoding=GBK 或 encoding=UTF-8；国内桌面 GIS 导出的数据多为 GBK），"
        "或在压缩包中加入内容为 GBK 或 UTF-8 的同名 .cpg 文件。",
        detail=f"{layer}: no .cpg, LDID 0x{dbf.ldid:02X}, text is not UTF-8",
        layer=layer, ldid=dbf.ldid,
    )


# ---------------------------------------------------------------------------------------------------------------
# GeoPackage, GeoJSON and KML pre-checks


def _gpkg_feature_tables(path: Path, limits: UploadLimits) -> list[str]:
    """Real feature tables listed in gpkg_contents, found with sqlite3 read-only before GDAL opens the file."""
    deadline = time.monotonic() + min(limits.read_timeout_s, _GPKG_INSPECT_MAX_S)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise _not_gpkg(f"cannot open: {exc}") from None
    try:
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
        conn.execute("PRAGMA query_only = ON")
        try:
            conn.execute("PRAGMA trusted_schema = OFF")
        except sqlite3.Error:
            pass
        master: dict[str, tuple[str, str]] = {}
        for name, kind, sql in conn.execute("SELECT name, type, sql FROM sqlite_master"):
            if isinstance(name, str):
                master[name.lower()] = (str(kind), str(sql or ""))
        if master.get("gpkg_contents", ("", ""))[0] != "table":
            raise _not_gpkg("no gpkg_contents table")
        rows = conn.execute("SELECT table_name FROM gpkg_contents WHERE data_type = 'features'").fetchall()
    except sqlite3.OperationalError as exc:
        if "interrupt" in str(exc).lower():
            raise _timeout_s(min(limits.read_timeout_s, _GPKG_INSPECT_MAX_S)) from None
        raise _not_gpkg(str(exc)) from None
    except sqlite3.Error as exc:
        raise _not_gpkg(str(exc)) from None
    finally:
        conn.close()
    tables: list[str] = []
    for (name,) in rows:
        if not isinstance(name, str):
            continue
        kind, sql = master.get(name.lower(), ("", ""))
        if kind == "table" and not sql.lstrip().upper().startswith("CREATE VIRTUAL") and name not in tables:
            tables.append(name)
    if not tables:
        raise InvalidInput(
            "GeoPackage 中没有可读取的要素表（视图和非要素数据不会读取）。请将边界数据导出为普通要素图层后重新上传。",
            detail=f"no real feature tables among gpkg_contents rows {[r[0] for r in rows][:20]}",
        )
    return tables


def _not_gpkg(why: str) -> InvalidInput:
    return InvalidInput(
        "文件是 SQLite 数据库，但不是有效的 GeoPackage（缺少 gpkg_contents 表或文件已损坏）。"
        "请在 GIS 软件中导出为 GeoPackage（.gpkg）后重新上传。",
        detail=f"not a GeoPackage: {why}",
    )


_CRS_MEMBER = re.compile(rb'"crs"\s*:')


def _geojson_has_crs(data: bytes) -> bool:
    """Whether the text carries a legacy `crs` member (a cheap scan; a property value spelling it counts too)."""
    return _CRS_MEMBER.search(data) is not None


_KML_ROOT = re.compile(rb"^(?:\s*<\?xml[^>]*\?>|\s*<!--.*?-->)*\s*<(?:[A-Za-z_][\w.\-]*:)?kml[\s>/]", re.S)


def _check_kml(data: bytes) -> None:
    head = data[:65_536].removeprefix(b"\xef\xbb\xbf")
    if b"<!DOCTYPE" in head or b"<!ENTITY" in data:
        raise InvalidInput(
            "KML 文件中含有 DOCTYPE/ENTITY 声明，出于安全考虑不予读取。请从 GIS 软件重新导出标准 KML 后上传。",
            detail="XML with DOCTYPE/ENTITY declaration",
        )
    if not _KML_ROOT.match(head):
        raise InvalidInput(
            f"文件是 XML，但不是 KML（根元素不是 <kml>）。GML、GPX 等格式不受支持；可接受的格式：{ACCEPTED_FORMATS_ZH}。",
            detail=f"XML without a kml root: {head[:80]!r}",
            accepted=list(FORMATS),
        )


# ---------------------------------------------------------------------------------------------------------------
# Reading in a child process


def _mp_context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # Imported once in the fork server, so each read forks a ready interpreter in milliseconds.
        ctx.set_forkserver_preload(["app.geo.upload"])
        return ctx
    return multiprocessing.get_context("spawn")


def _child_main(conn: Any, func: Callable[..., Any], args: tuple[Any, ...], memory_bytes: int | None) -> None:
    try:
        if memory_bytes:
            resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
        message: tuple[Any, ...] = ("ok", func(*args))
    except MemoryError:
        message = ("zoning", "InputTooLarge", f"读取文件所需内存超过上限（{memory_bytes / 2**20:,.0f} MiB），文件过大或结构异常。"
                   "请简化或拆分后重新上传。", f"reader child hit RLIMIT_DATA {memory_bytes}",
                   {"limit_bytes": memory_bytes})
    except ZoningError as exc:
        message = ("zoning", type(exc).__name__, exc.message_zh, exc.detail, exc.context)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as text
        message = ("error", f"{type(exc).__name__}: {exc}"[:2000])
    try:
        conn.send(message)
    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
        conn.send(("error", f"cannot send result: {type(exc).__name__}: {exc}"[:2000]))
    finally:
        conn.close()


def _run_in_child(func: Callable[..., Any], args: tuple[Any, ...], timeout_s: float, *,
                  memory_bytes: int | None = None) -> Any:
    """Run func(*args) in a child process with at most `memory_bytes` of data; kill it after timeout_s.
    ZoningErrors raised there are raised here."""
    ctx = _mp_context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(sender, func, args, memory_bytes), daemon=True)
    proc.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise _timeout_s(timeout_s)
        try:
            message = receiver.recv()
        except (EOFError, OSError):
            proc.join(1)
            raise InvalidInput(
                "读取文件时解析程序异常退出，文件可能已损坏或结构异常。请在 GIS 软件中检查并重新导出后上传。",
                detail=f"reader process died (exit code {proc.exitcode})",
            ) from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        receiver.close()
    if message[0] == "ok":
        return message[1]
    if message[0] == "zoning":
        _, cls_name, message_zh, detail, context = message
        cls = {"InputTooLarge": InputTooLarge, "UnknownCRS": UnknownCRS}.get(cls_name, InvalidInput)
        raise cls(message_zh, detail=detail, **context)
    raise InvalidInput(
        "读取文件时出错，文件可能已损坏或不是所声明的格式。请在 GIS 软件中检查并重新导出后上传。",
        detail=f"reader failed: {message[1]}",
    )


def _timeout_s(seconds: float) -> InvalidInput:
    return InvalidInput(
        f"文件读取超时（超过 {seconds:g} 秒），已中止。文件可能过大或结构异常（例如含复杂视图）。"
        "请简化或拆分后重新上传。",
        detail=f"read timed out after {seconds} s",
        timeout_s=seconds,
    )


def _too_many_features(count: int, limits: UploadLimits) -> InputTooLarge:
    return InputTooLarge(
        f"文件中的要素过多（超过 {limits.max_features:,} 个）。请拆分后分批上传。",
        detail=f"{count} features > max_features {limits.max_features}",
        limit=limits.max_features,
    )


def _read_layers(fmt: str, jobs: list[dict[str, Any]], limits: UploadLimits) -> list[dict[str, Any]]:
    """Child side: read every layer with pyogrio, dropping Z/M and enforcing the feature and vertex caps."""
    pyogrio.set_gdal_config_options({"OGR_SQLITE_PRAGMA": "trusted_schema=OFF", "GDAL_HTTP_TIMEOUT": "1"})
    if fmt == "kml":
        path = jobs[0]["path"]
        try:
            listed = pyogrio.list_layers(path)
        except Exception as exc:  # noqa: BLE001
            raise _unreadable("KML", "", exc) from None
        jobs = [{"name": str(row[0]), "path": path, "layer": i} for i, row in enumerate(listed)]
    results: list[dict[str, Any]] = []
    features = 0
    vertices = 0
    for job in jobs:
        label = job["name"]
        try:
            if fmt in ("geojson", "kml"):
                info = pyogrio.read_info(job["path"], layer=job.get("layer"))
                expected = ("GeoJSON",) if fmt == "geojson" else ("LIBKML", "KML")
                if info.get("driver") not in expected:
                    raise InvalidInput(
                        f"文件内容不是有效的 {_FORMAT_ZH[fmt]}。可接受的格式：{ACCEPTED_FORMATS_ZH}。",
                        detail=f"GDAL opened the {fmt} upload with driver {info.get('driver')!r}",
                    )
            frame = pyogrio.read_dataframe(
                job["path"], layer=job.get("layer"), encoding=job.get("encoding"), force_2d=True,
                max_features=limits.max_features - features + 1,
            )
        except (ZoningError, MemoryError):
            raise  # MemoryError: the child's memory cap, answered by _child_main
        except Exception as exc:  # noqa: BLE001 - GDAL, geometry parsing, decoding
            raise _unreadable(_FORMAT_ZH[fmt], label, exc) from None
        if not isinstance(frame, geopandas.GeoDataFrame):
            raise InvalidInput(
                f"图层“{label}”没有几何字段，不是边界数据。", detail=f"layer {label!r} has no geometry", layer=label
            )
        features += len(frame)
        if features > limits.max_features:
            raise _too_many_features(features, limits)
        geoms = frame.geometry.values
        has_m = getattr(shapely, "has_m", shapely.has_z)
        if len(frame) and (bool(shapely.has_z(geoms).any()) or bool(has_m(geoms).any())):
            frame = frame.set_geometry(shapely.force_2d(np.asarray(geoms)), crs=frame.crs)
        vertices += int(shapely.get_num_coordinates(np.asarray(frame.geometry.values)).sum())
        if vertices > limits.max_vertices:
            raise InputTooLarge(
                f"文件中的节点过多（超过 {limits.max_vertices:,} 个）。请简化边界或拆分后分批上传。",
                detail=f"{vertices} vertices > max_vertices {limits.max_vertices}",
                limit=limits.max_vertices,
            )
        results.append({**{k: v for k, v in job.items() if k != "path"}, "frame": frame})
    return results


def _unreadable(kind: str, label: str, exc: BaseException) -> InvalidInput:
    where = f"图层“{label}”" if label else "文件"
    text = str(exc)
    why = ""
    if "LinearRing" in text or "closed" in text or "GEOS" in type(exc).__name__ or "Geometry" in type(exc).__name__:
        why = "存在无法构造的几何（如未闭合或点数不足的环），"
    return InvalidInput(
        f"无法读取{kind}{where}：{why}文件可能已损坏。请在 GIS 软件中检查并重新导出后上传。",
        detail=f"reading {kind} layer {label!r} failed: {type(exc).__name__}: {text[:500]}",
        layer=label,
    )


# ---------------------------------------------------------------------------------------------------------------
# CRS and transformation (parent side)

_NO_CRS_HINT = (
    "满洲里的数据通常为 CGCS2000：经纬度 EPSG:4490，高斯-克吕格 3 度带第 39 带东坐标含带号（39xxxxxx）EPSG:4527，"
    "不含带号（中央经线 117°E）EPSG:4548。"
)


def _datum_ok(crs: CRS) -> tuple[bool, str]:
    try:
        base = crs.sub_crs_list[0] if crs.is_compound else crs
        datum = base.datum.name if base.datum is not None else ""
    except Exception:  # noqa: BLE001
        return False, ""
    key = re.sub(r"[^a-z0-9]", "", datum.lower())
    wgs84 = key.startswith(("worldgeodeticsystem1984", "wgs1984", "wgs84", "dwgs1984"))
    ok = wgs84 or "china2000" in key or "cgcs2000" in key
    return ok, datum


def _same_crs(file_crs: CRS, code: int | None, spec: CRSSpec) -> bool:
    if code is not None and code == spec.epsg:
        return True
    try:
        return bool(file_crs.equals(CRS.from_epsg(spec.epsg), ignore_axis_order=True))
    except Exception:  # noqa: BLE001
        return False


def _finish_layer(raw: dict[str, Any], fmt: str, caller: CRSSpec | None, warnings: list[str]) -> UploadedLayer:
    name: str = raw["name"]
    frame: geopandas.GeoDataFrame = raw["frame"]
    file_crs: CRS | None = frame.crs
    implicit = bool(raw.get("implicit_crs"))  # GeoJSON without a crs member: WGS84 by RFC 7946 unless told

    if file_crs is None or (implicit and caller is not None):
        if caller is None:
            if fmt == "shapefile" and raw.get("has_prj"):
                why = f"Shapefile“{name}”的 .prj 文件内容无法识别为坐标系"
            elif fmt == "shapefile":
                why = f"Shapefile“{name}”没有 .prj 文件，无法确定坐标系"
            else:
                why = f"图层“{name}”没有定义坐标系"
            how = "请在压缩包中附上同名 .prj 文件，或" if fmt == "shapefile" else "请在 GIS 软件中为图层设置坐标系，或"
            raise InvalidInput(
                f"{why}。{_NO_CRS_HINT}{how}在上传时用 crs 参数指定坐标系（如 crs=EPSG:4548）。",
                detail=f"layer {name!r} ({fmt}) declares no usable CRS",
                layer=name, expected=["EPSG:4490", "EPSG:4527", "EPSG:4548"],
            )
        src = CRS.from_epsg(caller.epsg)
        source_name = caller.name
        if implicit and caller.epsg != 4326:
            warnings.append(
                f"GeoJSON 图层“{name}”未带 crs 成员（按 RFC 7946 应为 WGS84 经纬度），已按指定的 {caller.name} 读取。"
            )
        elif not implicit:
            warnings.append(f"图层“{name}”未声明坐标系，已按指定的 {caller.name} 读取。")
    else:
        src = file_crs
        if src.is_geographic and len(src.axis_info) == 3:
            src = src.to_2d()  # e.g. GeoJSON with Z reports WGS 84 3D (EPSG:4979); Z is dropped
        code = src.to_epsg(min_confidence=70)
        source_name = f"EPSG:{code}" if code else src.name
        ok, datum = _datum_ok(src)
        if not ok:
            raise UnknownCRS(
                f"图层“{name}”的坐标系为 {source_name}（大地基准 {datum or '未知'}），不是 CGCS2000 或 WGS84。"
                "北京54、西安80 等坐标转换需要当地参数，本系统不做近似转换；请先在 GIS 软件中转换为 CGCS2000 后上传。",
                detail=f"layer {name!r}: CRS {source_name} datum {datum!r} not CGCS2000/WGS84",
                layer=name, source_crs=source_name, datum=datum,
            )
        if caller is not None and not _same_crs(src, code, caller):
            raise InvalidInput(
                f"图层“{name}”文件中声明的坐标系为 {source_name}，与指定的 {caller.name} 不一致。"
                "请确认哪个正确：若文件声明正确，请不要指定 crs；否则请先修正文件中的坐标系。",
                detail=f"layer {name!r}: file CRS {source_name} != crs parameter {caller.name}",
                layer=name, file_crs=source_name, given_crs=caller.name,
            )

    before = frame.total_bounds if len(frame) else None
    frame = frame.set_crs(src, allow_override=True)
    try:
        out = frame.to_crs(epsg=STORAGE_EPSG)
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput(
            f"图层“{name}”无法从 {source_name} 转换到 CGCS2000 经纬度（EPSG:4490）。请核对坐标系。",
            detail=f"to_crs from {source_name} failed: {exc}", layer=name, source_crs=source_name,
        ) from None
    _check_transformed(out, name, source_name, before)
    ids = shapely.get_type_id(np.asarray(out.geometry.values))
    type_names = tuple(sorted({_TYPE_NAMES.get(int(t), str(int(t))) for t in np.unique(ids[ids >= 0])}))
    return UploadedLayer(
        name=name, frame=out, source_crs=source_name, encoding=raw.get("encoding"), geometry_types=type_names,
    )


_TYPE_NAMES = {
    0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
    6: "MultiPolygon", 7: "GeometryCollection",
}


def _check_transformed(out: geopandas.GeoDataFrame, name: str, source_name: str, before: Any) -> None:
    coords = shapely.get_coordinates(np.asarray(out.geometry.values))
    if coords.size == 0:
        return
    finite = np.isfinite(coords).all(axis=1)
    if not bool(finite.all()):
        i = int(np.flatnonzero(~finite)[0])
        raise InvalidInput(
            f"图层“{name}”的坐标按 {source_name} 无法转换为有效的经纬度（第 {i + 1} 个节点）。"
            f"坐标系可能不对，或坐标中有缺失值。请核对坐标系：{_NO_CRS_HINT}",
            detail=f"non-finite coordinate after transform from {source_name} at vertex {i}",
            layer=name, source_crs=source_name, vertex_index=i,
        )
    lon_min, lat_min = coords.min(axis=0)
    lon_max, lat_max = coords.max(axis=0)
    if lon_min < CHINA_LON[0] or lon_max > CHINA_LON[1] or lat_min < CHINA_LAT[0] or lat_max > CHINA_LAT[1]:
        orig = [float(v) for v in before] if before is not None else None
        hint = ""
        if orig is not None and max(abs(v) for v in orig) > 1000 and source_name in ("EPSG:4326", "EPSG:4490"):
            hint = "坐标数值像以米为单位的投影坐标，而文件按经纬度声明；"
        raise InvalidInput(
            f"图层“{name}”按 {source_name} 转换后位于中国境外（经度 {lon_min:.4f}～{lon_max:.4f}，纬度 {lat_min:.4f}～{lat_max:.4f}），"
            f"坐标系不对。{hint}请核对坐标系：{_NO_CRS_HINT}",
            detail=f"layer {name!r} bounds after transform from {source_name}: "
            f"({lon_min}, {lat_min}, {lon_max}, {lat_max})",
            layer=name, source_crs=source_name,
            bounds=[float(v) for v in (lon_min, lat_min, lon_max, lat_max)],
            source_bounds=[json_num(v) for v in orig] if orig is not None else None,
        )
