/* GIS-staff page: API key (session only), upload a boundary draft, read and map its validation report, compare it
   with the current version, publish or roll back, and read the version history and the audit log. */
(function () {
  "use strict";
  const { esc, num, api, showError } = MZL;
  const $ = (id) => document.getElementById(id);
  const KEY = "mzl.apiKey";
  const ACTION_ZH = { upload: "上传草稿", publish: "发布", rollback: "回滚", bootstrap: "初始化", abandon: "作废未完成版本",
    key_create: "创建密钥", key_revoke: "吊销密钥", export: "导出" };
  const ROLE_ZH = { officer: "审批人员", editor: "GIS 编辑", admin: "管理员", system: "系统" };
  const STATUS_ZH = { draft: "草稿", published: "已发布" };
  const DIFF_COLORS = { added: "#1a9850", removed: "#d73027" };

  const state = { config: null, base: null, version: null, report: null, issues: null, diff: null };
  window.mzlAdmin = state;

  init().catch((err) => showError("upload-error", "页面初始化失败：" + err));

  async function init() {
    const [cfg, ds] = await Promise.all([api("GET", "/ui/config"), api("GET", "/v1/dataset")]);
    if (!cfg.ok) { showError("upload-error", "页面配置加载失败：" + cfg.message); return; }
    state.config = cfg.data;
    showDataset(ds.ok ? ds.data : null);
    $("upload-layer").innerHTML = `<option value="">按文件中的图层名识别</option>` +
      state.config.upload_layers.map((l) => `<option value="${esc(l.name)}">${esc(l.title_zh)}（${esc(l.name)}）</option>`).join("");
    $("api-key").value = sessionStorage.getItem(KEY) || "";
    updateKeyStatus();
    $("key-save").addEventListener("click", () => {
      const k = $("api-key").value.trim();
      if (k) sessionStorage.setItem(KEY, k); else sessionStorage.removeItem(KEY);
      updateKeyStatus();
    });
    $("key-clear").addEventListener("click", () => { sessionStorage.removeItem(KEY); $("api-key").value = ""; updateKeyStatus(); });
    $("upload-submit").addEventListener("click", upload);
    $("publish-submit").addEventListener("click", publish);
    $("impact-run").addEventListener("click", runImpact);
    $("audit-load").addEventListener("click", loadAudit);
    document.querySelectorAll("[data-btab]").forEach((b) => b.addEventListener("click", () => {
      document.querySelectorAll("[data-btab]").forEach((x) => x.classList.toggle("active", x === b));
      document.querySelectorAll(".btab").forEach((x) => x.classList.toggle("hidden", x.id !== "btab-" + b.dataset.btab));
      if (b.dataset.btab === "audit" && key()) loadAudit();
    }));
    await buildMap();
    await loadHistory();
    document.body.dataset.ready = "1";
  }

  function key() { return sessionStorage.getItem(KEY) || $("api-key").value.trim(); }

  function updateKeyStatus() {
    const has = !!sessionStorage.getItem(KEY);
    $("key-status").innerHTML = has
      ? `<span class="status-ok">已设置密钥</span>（仅保存在本标签页的会话中，关闭即清除）`
      : `尚未设置密钥。上传需要 GIS 编辑权限，发布、回滚和查看审计日志需要管理员权限。`;
  }

  function showDataset(ds) {
    if (!ds) return;
    $("dataset-badge").textContent = `当前数据版本 ${ds.dataset_version}`;
    if (ds.illustrative) {
      const b = $("illustrative-banner");
      b.innerHTML = `<strong>⚠ 示意性数据：</strong>${esc(ds.provenance_zh || "")}。`;
      b.classList.remove("hidden");
    } else {
      $("illustrative-banner").classList.add("hidden");
    }
  }

  async function buildMap() {
    if (state.base) state.base.map.remove();
    const legend = `<div class="group">草稿</div>` +
      `<div class="sub" style="margin-left:0"><div><span class="swatch" style="background:#d73027;border-color:#7f0000"></span>校验错误</div>` +
      `<div><span class="swatch" style="background:#fdae61;border-color:#b35806"></span>校验警告</div>` +
      `<div><span class="swatch" style="background:${DIFF_COLORS.added};border-color:${DIFF_COLORS.added}"></span>草稿新增部分</div>` +
      `<div><span class="swatch" style="background:transparent;border-color:${DIFF_COLORS.removed};border-style:dashed"></span>草稿删除部分</div></div>` +
      `<div class="group">当前版本</div>`;
    state.base = await MZL.createBaseMap("map", state.config, { extraLegend: legend });
    state.diffLayer = L.featureGroup().addTo(state.base.map);
    state.issueLayer = L.featureGroup().addTo(state.base.map);
    if (state.diff) drawDiff(state.diff);
    if (state.report) drawIssues(state.report);
  }

  /* ---------------------------------------------------------------------------------------------------------
     Upload and validation report */

  async function upload() {
    showError("upload-error", "");
    const file = $("upload-file").files[0];
    if (!file) { showError("upload-error", "请先选择要上传的边界文件"); return; }
    if (!key()) { showError("upload-error", "请先在上方填写 API 密钥（GIS 编辑或管理员）"); return; }
    const form = new FormData();
    form.append("file", file);
    if ($("upload-layer").value) form.append("layer", $("upload-layer").value);
    if ($("upload-crs").value) form.append("crs", $("upload-crs").value);
    form.append("note", $("upload-note").value);
    if ($("upload-approval").value.trim()) form.append("approval_ref", $("upload-approval").value.trim());
    const btn = $("upload-submit");
    btn.disabled = true; btn.textContent = "正在上传并校验…";
    const r = await api("POST", "/v1/versions", { form, key: key() });
    btn.disabled = false; btn.textContent = "上传并校验";
    if (!r.ok) { showError("upload-error", r.message); return; }
    showVersion(r.data.version, r.data.report);
    await Promise.all([loadDiff(r.data.version.id), loadHistory()]);
  }

  function showVersion(version, report) {
    state.version = version;
    state.report = report;
    $("report-card").classList.remove("hidden");
    $("report-version").innerHTML = `${esc(version.id)} <span class="${version.status === "draft" ? "draft-tag" : "current-tag"}">` +
      `${esc(STATUS_ZH[version.status] || version.status)}</span>`;
    if (!report) {
      $("report-summary").innerHTML = `<div class="muted">该版本没有校验报告（初始数据）。</div>`;
      $("report-errors").innerHTML = ""; $("report-warnings").innerHTML = "";
    } else {
      renderReport(report);
    }
    drawIssues(report);
    const draft = version.status === "draft";
    $("publish-card").classList.toggle("hidden", !draft);
    $("publish-submit").disabled = !draft;
    $("publish-version").textContent = draft ? version.id : "";
    showError("publish-error", ""); showError("publish-ok", "");
    $("impact-result").innerHTML = ""; showError("impact-error", "");
    $("publish-ack").checked = false;
  }

  function renderReport(report) {
    const errors = report.errors || [], warnings = report.warnings || [];
    let html = errors.length
      ? `<div class="status-bad" id="report-status">未通过：${errors.length} 个错误，须修正后重新上传，不能发布</div>`
      : `<div class="status-ok" id="report-status">通过：无错误${warnings.length ? `，${warnings.length} 个警告须在发布时确认` : ""}</div>`;
    html += `<div class="small">替换图层：${(report.replaced || []).map((n) => esc(titleOf(n))).join("、") || "—"}</div>`;
    const rl = report.red_line || {};
    if (rl.before_m2 !== null && rl.before_m2 !== undefined && rl.after_m2 !== null && rl.after_m2 !== undefined) {
      html += `<div class="small">生态保护红线面积：${num(rl.before_m2 / 1e6, 4)} → ${num(rl.after_m2 / 1e6, 4)} 平方千米` +
        `（变化 ${num(rl.change_m2, 1)} m²${rl.decrease ? "，减少须附批准文号" : ""}）</div>`;
    }
    if (report.units) {
      html += `<div class="small">管控单元：共 ${report.units.count} 个（优先保护 ${report.units.priority}，重点管控 ${report.units.key}，一般管控 ${report.units.general}）</div>`;
    }
    $("report-summary").innerHTML = html;
    $("report-errors").innerHTML = errors.length ? `<h3>错误（${errors.length}）</h3>` + errors.map((x, i) => issueHtml(x, "error", i)).join("") : "";
    $("report-warnings").innerHTML = warnings.length ? `<h3>警告（${warnings.length}）</h3>` + warnings.map((x, i) => issueHtml(x, "warning", i)).join("") : "";
    document.querySelectorAll("#report-card .issue").forEach((el) => el.addEventListener("click", () => zoomIssue(el.dataset.kind, Number(el.dataset.i))));
  }

  function titleOf(name) {
    const l = state.config.upload_layers.find((x) => x.name === name);
    return l ? l.title_zh : name;
  }

  function featureText(feature) {
    if (!feature) return "";
    if (typeof feature !== "object") return String(feature);
    const keys = Object.entries(feature).filter(([k, v]) => k !== "row" && v !== null && v !== undefined && v !== "")
      .map(([, v]) => v);
    if (feature.row !== undefined) keys.push(`第 ${feature.row + 1} 个要素`);
    return keys.join(" ");
  }

  function issueHtml(x, kind, i) {
    const where = x.geometry || x.location ? "（点击在地图上定位）" : "";
    return `<div class="issue ${kind}" data-kind="${kind}" data-i="${i}"><div>${esc(x.message)}</div>` +
      `<div class="code">${esc(x.code)} · ${esc(titleOf(x.layer || ""))}${x.feature ? " · " + esc(featureText(x.feature)) : ""}${where}</div></div>`;
  }

  function drawIssues(report) {
    if (!state.issueLayer) return;
    state.issueLayer.clearLayers();
    state.issues = { error: [], warning: [] };
    if (!report) return;
    [["error", report.errors || [], "#d73027", "#7f0000"], ["warning", report.warnings || [], "#fdae61", "#b35806"]]
      .forEach(([kind, list, fill, stroke]) => {
        list.forEach((x, i) => {
          let layer = null;
          if (x.geometry) {
            layer = L.geoJSON(x.geometry, { pane: "issues", style: { color: stroke, weight: 2, fillColor: fill, fillOpacity: 0.6 },
              pointToLayer: (f, ll) => L.circleMarker(ll, { pane: "issues", radius: 7, color: stroke, fillColor: fill, fillOpacity: 0.9 }) });
          } else if (x.location) {
            layer = L.circleMarker([x.location[1], x.location[0]], { pane: "issues", radius: 7, color: stroke, weight: 2,
              fillColor: fill, fillOpacity: 0.9 });
          }
          if (layer) {
            layer.bindTooltip(esc(x.message), { sticky: true, className: "issue-tip" });
            layer.addTo(state.issueLayer);
          }
          state.issues[kind][i] = { layer, issue: x };
        });
      });
    const bounds = state.issueLayer.getBounds();
    if (bounds.isValid()) state.base.map.fitBounds(bounds, { padding: [40, 40], maxZoom: 14 });
  }

  function zoomIssue(kind, i) {
    const entry = state.issues && state.issues[kind] && state.issues[kind][i];
    if (!entry || !entry.layer) return;
    const map = state.base.map;
    if (entry.layer.getBounds) map.fitBounds(entry.layer.getBounds(), { padding: [60, 60], maxZoom: 15 });
    else map.setView(entry.layer.getLatLng(), 14);
    entry.layer.openTooltip && entry.layer.openTooltip();
  }

  /* ---------------------------------------------------------------------------------------------------------
     Diff with the current version */

  async function loadDiff(versionId) {
    $("diff-card").classList.remove("hidden");
    $("diff-summary").innerHTML = `<span class="muted">正在比较…</span>`;
    showError("diff-error", "");
    const r = await api("GET", `/v1/versions/${encodeURIComponent(versionId)}/diff`);
    if (!r.ok) { $("diff-summary").innerHTML = ""; showError("diff-error", r.message); return; }
    state.diff = r.data;
    renderDiff(r.data);
    drawDiff(r.data);
  }

  function layerDiffs(diff) {
    return Object.entries(diff).filter(([name, d]) => name !== "summary" && d && typeof d === "object" && "added" in d);
  }

  function renderDiff(diff) {
    const rows = layerDiffs(diff).filter(([, d]) => d.added.length || d.removed.length || d.changed.length);
    let html = `<div class="small muted">从 ${esc(diff.from)} 到 ${esc(diff.to)}</div>`;
    html += `<div class="diff-legend"><span><span class="swatch" style="background:${DIFF_COLORS.added};border-color:${DIFF_COLORS.added}"></span> 新增部分</span>` +
      `<span><span class="swatch" style="border-color:${DIFF_COLORS.removed};border-style:dashed"></span> 删除部分</span></div>`;
    if (!rows.length) {
      html += `<div>两个版本的边界和属性没有差异。</div>`;
    } else {
      html += `<table class="data" id="diff-table"><tr><th>图层</th><th class="num">新增</th><th class="num">删除</th><th class="num">变更</th><th class="num">未变</th></tr>` +
        rows.map(([name, d]) => `<tr><td>${esc(d.title_zh || name)}</td><td class="num">${d.added.length}</td>` +
          `<td class="num">${d.removed.length}</td><td class="num">${d.changed.length}</td><td class="num">${d.unchanged}</td></tr>`).join("") +
        `</table>`;
      const details = [];
      rows.forEach(([name, d]) => {
        d.added.forEach((e) => details.push(`<li>新增 ${esc(e.label)}</li>`));
        d.removed.forEach((e) => details.push(`<li>删除 ${esc(e.label)}</li>`));
        d.changed.forEach((e) => {
          const parts = [];
          if (e.geometry_changed) parts.push(`边界（增加 ${num(e.area_m2_added || e.length_m_added, 1)}，减少 ${num(e.area_m2_removed || e.length_m_removed, 1)} ${e.length_m_added !== undefined ? "米" : "m²"}）`);
          (e.attributes || []).forEach((a) => parts.push(`${esc(a.field)}：${esc(a.before)} → ${esc(a.after)}`));
          details.push(`<li>变更 ${esc(e.label)}：${parts.join("；")}</li>`);
        });
      });
      html += `<ul class="small" style="margin:6px 0 0 16px;padding:0;max-height:160px;overflow-y:auto">${details.slice(0, 200).join("")}</ul>`;
    }
    const s = diff.summary && diff.summary.red_line;
    if (s && s.change_m2) html += `<div class="small">生态保护红线面积变化 ${num(s.change_m2, 1)} m²</div>`;
    $("diff-summary").innerHTML = html;
  }

  function drawDiff(diff) {
    if (!state.diffLayer) return;
    state.diffLayer.clearLayers();
    layerDiffs(diff).forEach(([, d]) => {
      [...d.added, ...d.removed, ...d.changed].forEach((e) => {
        if (e.geometry_added) {
          L.geoJSON(e.geometry_added, { pane: "draft", style: { color: DIFF_COLORS.added, weight: 2, fillColor: DIFF_COLORS.added, fillOpacity: 0.45 } })
            .bindTooltip(`新增：${esc(e.label)}`, { sticky: true }).addTo(state.diffLayer);
        }
        if (e.geometry_removed) {
          L.geoJSON(e.geometry_removed, { pane: "draft", style: { color: DIFF_COLORS.removed, weight: 2, dashArray: "5 4", fillColor: DIFF_COLORS.removed, fillOpacity: 0.25 } })
            .bindTooltip(`删除：${esc(e.label)}`, { sticky: true }).addTo(state.diffLayer);
        }
      });
    });
  }

  /* ---------------------------------------------------------------------------------------------------------
     Publish, roll back, history, audit */

  const VERDICT_ZH = { prohibited: "禁止", conditional: "有条件准入", permitted: "准入", needs_review: "需补充信息后复核",
    outside_jurisdiction: "不在管辖范围内" };

  async function runImpact() {
    showError("impact-error", "");
    if (!state.version) return;
    if (!key()) { showError("impact-error", "请先在上方填写 GIS 编辑或管理员 API 密钥"); return; }
    $("impact-result").innerHTML = `<span class="muted">正在重新筛查已存档的分析…</span>`;
    const r = await api("GET", `/v1/versions/${encodeURIComponent(state.version.id)}/impact`, { key: key() });
    if (!r.ok) { $("impact-result").innerHTML = ""; showError("impact-error", r.message); return; }
    const d = r.data;
    let html = `<div>相对 ${esc(d.base)}：已筛查 ${d.screened} 项，<b>${d.changed}</b> 项将发生变化。</div>`;
    if (d.assessments.length) {
      html += `<table class="data"><tr><th>分析编号</th><th>项目</th><th>结论</th><th>红线内</th></tr>` +
        d.assessments.slice(0, 200).map((a) => `<tr><td><a href="/assessments/${encodeURIComponent(a.assessment)}" target="_blank">${esc(a.assessment)}</a></td>` +
          `<td>${esc(a.project || "")}</td><td>${esc(VERDICT_ZH[a.verdict.before] || a.verdict.before)} → ${esc(VERDICT_ZH[a.verdict.after] || a.verdict.after)}</td>` +
          `<td>${a.red_line_inside.before ? "是" : "否"} → ${a.red_line_inside.after ? "是" : "否"}</td></tr>`).join("") + `</table>`;
    }
    $("impact-result").innerHTML = html;
  }

  async function publish() {
    showError("publish-error", ""); showError("publish-ok", "");
    if (!state.version) return;
    if (!key()) { showError("publish-error", "请先在上方填写管理员 API 密钥"); return; }
    const body = { acknowledge_warnings: $("publish-ack").checked, note: $("publish-note").value };
    const btn = $("publish-submit");
    btn.disabled = true;
    const r = await api("POST", `/v1/versions/${encodeURIComponent(state.version.id)}/publish`, { json: body, key: key() });
    btn.disabled = false;
    if (!r.ok) { showError("publish-error", r.message); return; }
    showError("publish-ok", `已发布：当前版本为 ${r.data.current}（原版本 ${r.data.previous || "—"}）`);
    await afterMove();
  }

  async function rollback(versionId, cell) {
    const errEl = cell.querySelector(".error");
    showError(errEl, "");
    showError("history-error", ""); showError("history-ok", "");
    if (!key()) { showError(errEl, "请先在左上方填写管理员 API 密钥"); return; }
    const r = await api("POST", `/v1/versions/${encodeURIComponent(versionId)}/rollback`, { json: { note: "" }, key: key() });
    if (!r.ok) { showError(errEl, r.message); return; }
    showError("history-ok", `已回滚：当前版本为 ${r.data.current}（原版本 ${r.data.previous || "—"}）`);
    await afterMove();
  }

  async function afterMove() {
    const ds = await api("GET", "/v1/dataset");
    showDataset(ds.ok ? ds.data : null);
    const cfg = await api("GET", "/ui/config");
    if (cfg.ok) { state.config = cfg.data; }
    if (state.version) {
      const v = await api("GET", `/v1/versions/${encodeURIComponent(state.version.id)}`);
      // Keep the outcome visible next to the button; a published version cannot be published again.
      if (v.ok) { state.version = v.data.version; $("publish-submit").disabled = v.data.version.status !== "draft"; }
    }
    await Promise.all([loadHistory(), buildMap()]);
    if ($("btab-audit") && !$("btab-audit").classList.contains("hidden")) loadAudit();
  }

  async function loadHistory() {
    const r = await api("GET", "/v1/versions");
    if (!r.ok) { showError("history-error", r.message); return; }
    const { current, versions } = r.data;
    const rows = versions.slice().reverse().map((v) => {
      const isCurrent = v.id === current;
      const tag = isCurrent ? `<span class="current-tag">当前版本</span>` : v.status === "draft" ? `<span class="draft-tag">草稿</span>` : "";
      let action = `<button type="button" data-view="${esc(v.id)}">查看</button>`;
      if (v.status === "published" && !isCurrent) action += ` <button type="button" class="danger" data-rollback="${esc(v.id)}">回滚到此版本</button>`;
      return `<tr data-version="${esc(v.id)}"${state.version && state.version.id === v.id ? ' class="selected"' : ""}>` +
        `<td><strong>${esc(v.id)}</strong> ${tag}</td><td>${esc(STATUS_ZH[v.status] || v.status)}</td>` +
        `<td class="nowrap">${esc(fmtTime(v.created_at))}<br><span class="small muted">${esc(v.created_by)}</span></td>` +
        `<td>${esc(v.note || "")}${v.approval_ref ? `<br><span class="small muted">批准文号 ${esc(v.approval_ref)}</span>` : ""}</td>` +
        `<td>${(v.replaced_layers || []).map((n) => esc(titleOf(n))).join("、") || "—"}</td>` +
        `<td class="num">${v.errors} / ${v.warnings}</td>` +
        `<td class="nowrap">${v.published_at ? esc(fmtTime(v.published_at)) + `<br><span class="small muted">${esc(v.published_by || "")}</span>` : "—"}</td>` +
        `<td class="nowrap">${action}<div class="error"></div></td></tr>`;
    });
    $("history").innerHTML = `<table class="data" id="history-table"><tr><th>版本</th><th>状态</th><th>创建</th><th>说明</th>` +
      `<th>替换图层</th><th class="num">错误/警告</th><th>发布</th><th>操作</th></tr>${rows.join("")}</table>`;
    $("history").querySelectorAll("[data-view]").forEach((b) => b.addEventListener("click", () => viewVersion(b.dataset.view)));
    $("history").querySelectorAll("[data-rollback]").forEach((b) => b.addEventListener("click", () => {
      if (b.dataset.armed) { rollback(b.dataset.rollback, b.closest("td")); return; }
      b.dataset.armed = "1";
      b.textContent = `确认回滚到 ${b.dataset.rollback}？`;
    }));
  }

  async function viewVersion(id) {
    const r = await api("GET", `/v1/versions/${encodeURIComponent(id)}`);
    if (!r.ok) { showError("history-error", r.message); return; }
    showVersion(r.data.version, r.data.report);
    document.querySelectorAll("#history-table tr[data-version]").forEach((tr) => tr.classList.toggle("selected", tr.dataset.version === id));
    if (r.data.version.parent) await loadDiff(id); else { state.diff = null; state.diffLayer.clearLayers(); $("diff-card").classList.add("hidden"); }
  }

  async function loadAudit() {
    showError("audit-error", "");
    if (!key()) { showError("audit-error", "请先在左上方填写管理员 API 密钥"); return; }
    const r = await api("GET", "/v1/audit?limit=200", { key: key() });
    if (!r.ok) { $("audit").innerHTML = ""; showError("audit-error", r.message); return; }
    $("audit").innerHTML = `<table class="data" id="audit-table"><tr><th>时间</th><th>操作者</th><th>操作</th><th>版本</th><th>详情</th></tr>` +
      r.data.map((a) => `<tr><td class="nowrap">${esc(fmtTime(a.at))}</td><td>${esc(a.actor)}<br><span class="small muted">${esc(ROLE_ZH[a.role] || a.role)}</span></td>` +
        `<td>${esc(ACTION_ZH[a.action] || a.action)}</td><td class="nowrap">${esc(a.from_version || "")}${a.to_version ? " → " + esc(a.to_version) : ""}</td>` +
        `<td class="small">${esc(detailText(a.detail))}</td></tr>`).join("") + `</table>`;
  }

  function detailText(detail) {
    if (!detail || typeof detail !== "object") return "";
    return Object.entries(detail).filter(([, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length))
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("；");
  }

  function fmtTime(t) { return t ? String(t).replace("T", " ").replace("Z", "") : ""; }
})();
