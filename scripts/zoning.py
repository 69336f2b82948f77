"""Command-line tool for GIS staff: validate, upload, publish, roll back, diff and export dataset versions.

    python -m scripts.zoning versions
    python -m scripts.zoning validate units.zip --layer control_units [--report issues.gpkg]
    python -m scripts.zoning upload units.zip --layer control_units --note "2026 年调整"
    python -m scripts.zoning publish v2 [--acknowledge-warnings]
    python -m scripts.zoning rollback v1
    python -m scripts.zoning diff v1 v2
    python -m scripts.zoning export v2 out.gpkg
    python -m scripts.zoning keys create --name 张三 --role admin      # prints the key once
    python -m scripts.zoning audit

It works on the same local store as the service (settings from MZL_* environment variables), through the same
domain code, and records the operating-system user in the audit log. A running service notices a publish or
roll back made here within one request.
"""

from __future__ import annotations

import argparse
import getpass
import json
import shutil
import sys
import time
from pathlib import Path

from app.domain.datasets import DatasetService, stage_upload
from app.domain.validation import report_to_gpkg, validate_draft
from app.domain.versions import Actor, VersionStore
from app.errors import ZoningError
from app.geo.upload import read_upload
from app.geo.vector_io import read_layer
from app.settings import Settings


class Progress:
    """Progress lines on stderr with the elapsed time, for long steps."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, step: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f} s] {step}", file=sys.stderr, flush=True)


def _service(progress: Progress) -> DatasetService:
    settings = Settings()
    progress("打开数据版本库")
    service = DatasetService(VersionStore(settings.data.versions_dir), settings.data.zones_dir)
    progress("加载当前版本")
    service.start(settings.data.dataset_dir)
    return service


def _store(progress: Progress) -> VersionStore:
    """The store, imported from the embedded data first if it is still empty (as the service would at start-up)."""
    store = VersionStore(Settings().data.versions_dir)
    return store if store.current() is not None else _service(progress).store


def _actor() -> Actor:
    user = getpass.getuser()
    return Actor(f"cli:{user}", f"命令行 {user}", "admin")


def _read(path: Path, args: argparse.Namespace, progress: Progress):
    progress(f"读取 {path.name}")
    return read_upload(path.read_bytes(), path.name, crs=args.crs, encoding=args.encoding)


def _print_report(report: dict) -> None:
    for issue in report.get("errors", []):
        print(f"错误  {issue.get('code')}  {issue.get('layer')}  {issue.get('feature') or ''}  {issue.get('message')}")
    for issue in report.get("warnings", []):
        print(f"警告  {issue.get('code')}  {issue.get('layer')}  {issue.get('feature') or ''}  {issue.get('message')}")
    red = report.get("red_line") or {}
    if red:
        print(f"生态保护红线面积：{red.get('before_m2', 0) / 1e6:.4f} → {red.get('after_m2', 0) / 1e6:.4f} km²")
    print(f"共 {len(report.get('errors', []))} 个错误，{len(report.get('warnings', []))} 个警告")


def cmd_validate(args, progress):
    service = _service(progress)
    upload = _read(args.file, args, progress)
    current = {name: read_layer(service.export_path(service.current.version), name) for name in service.current.layers}
    staged = stage_upload(upload, current, target=args.layer, field_map=json.loads(args.fields or "{}"))
    progress("校验")
    report = validate_draft(staged.layers, current, replaced=staged.replaced, rules=service.rules,
                            approval_ref=args.approval_ref)
    _print_report(report)
    if args.report:
        report_to_gpkg(report, args.report)
        print(f"问题图层已写入 {args.report}")
    return 1 if report.get("errors") else 0


def cmd_upload(args, progress):
    service = _service(progress)
    upload = _read(args.file, args, progress)
    version_id, report = service.upload(_actor(), upload, filename=args.file.name, target=args.layer,
                                        field_map=json.loads(args.fields or "{}"), note=args.note,
                                        approval_ref=args.approval_ref, progress=progress)
    _print_report(report)
    print(f"草稿版本 {version_id} 已创建")
    return 1 if report.get("errors") else 0


def cmd_publish(args, progress):
    service = _service(progress)
    progress(f"校验并加载 {args.version}")
    previous = service.publish(_actor(), args.version, acknowledge_warnings=args.acknowledge_warnings, note=args.note)
    print(f"当前版本：{previous} → {args.version}")
    return 0


def cmd_rollback(args, progress):
    service = _service(progress)
    progress(f"校验并加载 {args.version}")
    previous = service.rollback(_actor(), args.version, note=args.note)
    print(f"当前版本：{previous} → {args.version}")
    return 0


def cmd_diff(args, progress):
    service = _service(progress)
    progress(f"比较 {args.base} 与 {args.version}")
    print(json.dumps(service.diff(args.base, args.version), ensure_ascii=False, indent=2))
    return 0


def cmd_export(args, progress):
    service = _service(progress)
    shutil.copy2(service.export_path(args.version), args.out)
    service.store.record(_actor(), "export", to_version=args.version, path=str(args.out))
    print(f"{args.version} 已导出到 {args.out}")
    return 0


def cmd_versions(args, progress):
    store = _store(progress)
    current = store.current()
    for v in store.list():
        mark = "*" if v.id == current else " "
        errors = len((v.report or {}).get("errors", []))
        print(f"{mark} {v.id:6s} {v.status:9s} {v.created_at}  {v.created_by}  错误 {errors}  {v.note}")
    return 0


def cmd_keys(args, progress):
    store = _store(progress)
    if args.action == "create":
        key_id, key = store.create_key(args.name, args.role, _actor())
        print(f"密钥 {key_id}（{args.role}）：{key}")
        print("请妥善保存：密钥只显示这一次，服务只保存其哈希值。")
    elif args.action == "revoke":
        store.revoke_key(args.id, _actor())
        print(f"密钥 {args.id} 已吊销")
    else:
        for k in store.keys():
            print(f"{k['id']}  {k['role']:7s}  {k['name']}  创建于 {k['created_at']}  {'已吊销' if k['revoked_at'] else ''}")
    return 0


def cmd_audit(args, progress):
    for entry in _store(progress).audit_log(args.limit):
        print(f"{entry['at']}  {entry['actor']}  {entry['action']}  {entry['from_version'] or ''} → "
              f"{entry['to_version'] or ''}  {json.dumps(entry['detail'], ensure_ascii=False)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.zoning", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def file_options(p):
        p.add_argument("file", type=Path)
        p.add_argument("--layer", help="target layer for a one-layer file (control_units, red_line, …)")
        p.add_argument("--fields", help='JSON {"file field": "contract field"}')
        p.add_argument("--crs", help="CRS when the file declares none (EPSG:4527, EPSG:4548, EPSG:4490)")
        p.add_argument("--encoding", help="attribute encoding when the file declares none (GBK, UTF-8)")
        p.add_argument("--approval-ref", help="approval document for a red-line decrease")

    p = sub.add_parser("validate", help="validate a file against the current version (nothing is stored)")
    file_options(p)
    p.add_argument("--report", type=Path, help="write the issues to this GeoPackage")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("upload", help="upload a file as a draft version")
    file_options(p)
    p.add_argument("--note", default="")
    p.set_defaults(func=cmd_upload)
    for name, func in (("publish", cmd_publish), ("rollback", cmd_rollback)):
        p = sub.add_parser(name)
        p.add_argument("version")
        p.add_argument("--note", default="")
        if name == "publish":
            p.add_argument("--acknowledge-warnings", action="store_true")
        p.set_defaults(func=func)
    p = sub.add_parser("diff")
    p.add_argument("base")
    p.add_argument("version")
    p.set_defaults(func=cmd_diff)
    p = sub.add_parser("export")
    p.add_argument("version")
    p.add_argument("out", type=Path)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("versions")
    p.set_defaults(func=cmd_versions)
    p = sub.add_parser("keys")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("--name")
    p.add_argument("--role", choices=["officer", "editor", "admin"])
    p.add_argument("--id")
    p.set_defaults(func=cmd_keys)
    p = sub.add_parser("audit")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_audit)
    args = parser.parse_args(argv)
    if args.command == "keys" and args.action == "create" and not (args.name and args.role):
        parser.error("keys create needs --name and --role")
    if args.command == "keys" and args.action == "revoke" and not args.id:
        parser.error("keys revoke needs --id")
    try:
        return args.func(args, Progress())
    except ZoningError as exc:
        print(f"失败：{exc.message_zh}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
