/* Officer page: put in a site (click, draw, paste with a CRS, or a survey file), see where the service understood
   it, describe the project, assess, and read the verdict with its units, layers, areas and clauses. */
(function () {
  "use strict";
  const { esc, num, area, pct, api, showError, effectBadge } = MZL;
  const root = document.getElementById("officer");
  const $ = (id) => document.getElementById(id);
  const GEOM_ZH = { Point: "点位", Polygon: "多边形", MultiPolygon: "多个地块（多部分多边形）" };
  const SITE_STYLE = { pane: "site", color: "#4a148c", weight: 3, fillColor: "#7b1fa2", fillOpacity: 0.18 };
  const POINT_STYLE = { pane: "site", radius: 7, color: "#ffffff", weight: 3, fillColor: "#111111", fillOpacity: 1 };
  const VERDICT_WHY = {
    prohibited: "有禁止性条款适用于本项目用地",
    needs_review: "部分条款取决于尚未填写的项目情况，补充后重新分析",
    conditional: "可以准入，但须落实下列条件",
    permitted: "未发现限制性条款",
    outside_jurisdiction: "项目用地不在满洲里市管辖范围内",
  };

  // Page state, also readable by tests (window.mzl).
  const state = { config: null, base: null, site: null, pick: false, siteLayer: null, result: null, industry: null };
  window.mzl = state;

  init().catch((err) => { showError("assess-error", "页面初始化失败：" + err); });

  async function init() {
    const [cfg, ds] = await Promise.all([api("GET", "/ui/config"), api("GET", "/v1/dataset")]);
    if (!cfg.ok) { showError("assess-error", "页面配置加载失败：" + cfg.message); return; }
    state.config = cfg.data;
    showDataset(ds.ok ? ds.data : null);
    buildProjectForm();
    state.base = await MZL.createBaseMap("map", state.config);
    const map = state.base.map;
    map.pm.setLang("zh");
    state.siteLayer = L.featureGroup().addTo(map);
    map.on("click", onMapClick);
    map.on("pm:create", onDrawn);
    setupTabs();
    $("pick-point").addEventListener("click", () => setPick(!state.pick));
    $("draw-start").addEventListener("click", startDraw);
    $("draw-cancel").addEventListener("click", stopDraw);
    setupPaste();
    $("survey-file").addEventListener("change", onSurveyFile);
    $("assess").addEventListener("click", assess);
    window.addEventListener("popstate", () => {
      const m = location.pathname.match(/^\/assessments\/([^/]+)$/);
      if (m) loadStored(decodeURIComponent(m[1]), false); else hideResult();
    });
    if (root.dataset.assessmentId) await loadStored(root.dataset.assessmentId, false);
    document.body.dataset.ready = "1";
  }

  function showDataset(ds) {
    if (!ds) return;
    $("dataset-badge").textContent = `数据版本 ${ds.dataset_version}`;
    $("dataset-badge").title = `数据集 ${ds.dataset_id}，规则版本 ${String(ds.rules_version).slice(0, 12)}`;
    if (ds.illustrative) {
      const b = $("illustrative-banner");
      b.innerHTML = `<strong>⚠ 示意性数据：</strong>${esc(ds.provenance_zh || "本服务内置的数据为示意性参考数据")}。` +
        "地图与分析结果仅供演示和测试，不能作为审批依据。";
      b.classList.remove("hidden");
    }
  }

  /* ---------------------------------------------------------------------------------------------------------
     Site input */

  function setupTabs() {
    document.querySelectorAll(".tabs [data-tab]").forEach((btn) => {
      btn.addEventListener("click", () => {
        const tab = btn.dataset.tab;
        document.querySelectorAll(".tabs [data-tab]").forEach((b) => b.classList.toggle("active", b === btn));
        document.querySelectorAll("#site-card .tab").forEach((el) => el.classList.toggle("hidden", el.id !== "tab-" + tab));
        if (tab !== "point") setPick(false);
        if (tab !== "draw") stopDraw();
      });
    });
  }

  function setPick(on) {
    state.pick = on;
    document.body.classList.toggle("pick-mode", on);
    $("pick-point").textContent = on ? "取消点选（在地图上单击位置）" : "在地图上点选位置";
    $("pick-point").classList.toggle("primary", on);
  }

  function startDraw() {
    setPick(false);
    state.base.map.closePopup();
    state.base.map.pm.enableDraw("Polygon", { snappable: false, pathOptions: SITE_STYLE,
      templineStyle: { color: "#4a148c" }, hintlineStyle: { color: "#4a148c", dashArray: "5 5" } });
    $("draw-start").classList.add("hidden");
    $("draw-cancel").classList.remove("hidden");
  }

  function stopDraw() {
    if (state.base && state.base.map.pm.globalDrawModeEnabled()) state.base.map.pm.disableDraw();
    $("draw-start").classList.remove("hidden");
    $("draw-cancel").classList.add("hidden");
  }

  function onDrawn(ev) {
    const geometry = ev.layer.toGeoJSON().geometry;
    ev.layer.remove();
    stopDraw();
    preview({ site: geometry, crs: "EPSG:4490", axis_order: "xy" }, "assess-error", "地图绘制");
  }

  function onMapClick(ev) {
    if (state.base.map.pm.globalDrawModeEnabled()) return;
    if (state.pick) {
      setPick(false);
      pickPoint(ev.latlng);
      return;
    }
    identifyAt(ev.latlng);
  }

  function pickPoint(latlng) {
    const lon = Number(latlng.lng.toFixed(7)), lat = Number(latlng.lat.toFixed(7));
    state.base.map.closePopup();
    preview({ site: [lon, lat], crs: "EPSG:4490", axis_order: "xy" }, "assess-error", "地图点选");
  }

  function setupPaste() {
    const select = $("paste-crs");
    select.innerHTML = state.config.crs_choices.map((c) => `<option value="${esc(c.id)}">${esc(c.label)}</option>`).join("");
    const sync = () => {
      const c = choice();
      $("paste-text").placeholder = "例如：\n" + c.example;
      $("paste-crs-title").textContent = `${c.crs}${c.axis_order === "survey" ? "，X=北 Y=东" : ""}`;
    };
    select.addEventListener("change", () => { sync(); showError("paste-error", ""); });
    sync();
    $("paste-show").addEventListener("click", () => {
      const c = choice();
      showError("paste-error", "");
      preview({ site: $("paste-text").value, crs: c.crs, axis_order: c.axis_order }, "paste-error", "粘贴坐标");
    });
  }

  function choice() {
    const id = $("paste-crs").value;
    return state.config.crs_choices.find((c) => c.id === id) || state.config.crs_choices[0];
  }

  async function preview(input, errorId, sourceLabel) {
    showError(errorId, "");
    showError("assess-error", "");
    const r = await api("POST", "/ui/preview", { json: input, key: officerKey() });
    if (!r.ok) {
      askForKey(r);
      showError(errorId, r.message);
      return null;
    }
    const p = r.data;
    setSite({ kind: "site", input: { site: p.site, crs: p.crs, axis_order: p.axis_order }, preview: p, source: sourceLabel });
    return p;
  }

  async function onSurveyFile(ev) {
    const file = ev.target.files[0];
    showError("file-error", "");
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    const r = await api("POST", "/ui/preview/survey", { form, key: officerKey() });
    if (!r.ok) { askForKey(r); showError("file-error", r.message); clearSite(); return; }
    setSite({ kind: "survey", file, preview: r.data, source: "坐标文件：" + file.name });
  }

  function setSite(site, stored) {
    if (!stored && state.result) {
      // A new site makes the shown result stale: close it and leave the stored assessment's address.
      state.result = null;
      hideResult();
      if (location.pathname !== "/") history.pushState({}, "", "/");
    }
    state.site = site;
    drawSite(site);
    renderSiteSummary(site);
    $("assess").disabled = false;
  }

  function clearSite() {
    state.site = null;
    state.siteLayer.clearLayers();
    $("site-summary").classList.add("hidden");
    $("assess").disabled = true;
  }

  function drawSite(site) {
    const map = state.base.map;
    state.siteLayer.clearLayers();
    const data = site.kind === "survey" ? site.preview.parcels : site.preview.geometry;
    const layer = L.geoJSON(data, {
      pane: "site",
      style: (f) => (f && f.geometry && f.geometry.type === "Point" ? {} : SITE_STYLE),
      pointToLayer: (f, ll) => L.featureGroup([
        L.circleMarker(ll, Object.assign({}, POINT_STYLE, { radius: 16, weight: 2.5, color: "#111", fill: false })),
        L.circleMarker(ll, POINT_STYLE)]),
      onEachFeature: (f, l) => {
        if (site.kind === "survey") {
          l.bindTooltip(`${f.properties.index}. ${f.properties.name || f.properties.code || "地块"}`,
            { permanent: true, direction: "center", className: "parcel-label" });
        }
      },
    });
    layer.addTo(state.siteLayer);
    const g = site.preview.geometry;
    if (g.type === "Point") {
      map.setView([g.coordinates[1], g.coordinates[0]], Math.max(map.getZoom(), 12));
    } else {
      map.fitBounds(layer.getBounds(), { padding: [140, 140], maxZoom: 14 });
    }
  }

  function crsText(crs, axis) {
    const c = state.config.crs_choices.find((x) => x.crs === crs);
    return `${crs}${c ? "（" + c.title_zh + "）" : ""}${axis === "survey" ? "，按测量习惯 X=北、Y=东" : ""}`;
  }

  function renderSiteSummary(site) {
    const p = site.preview;
    const el = $("site-summary");
    let html = `<div class="title">已识别的用地范围 · ${esc(site.source)}</div>`;
    html += `<div>类型：${esc(GEOM_ZH[p.geometry_type] || p.geometry_type)}` +
      `${p.geometry_type === "Point" ? "" : `，${p.vertex_count} 个顶点`}</div>`;
    if (p.geometry_type !== "Point") html += `<div>面积：${area(p.area)}</div>`;
    if (site.kind === "survey") {
      html += `<div>坐标系：${esc(p.source_crs)}（${p.zone_width} 度带第 ${p.zone} 带），编码 ${esc(p.encoding)}</div>`;
      html += `<div id="parcel-count"><strong>${p.parcels.features.length} 个地块</strong>：</div><ol>` +
        p.parcels.features.map((f) => `<li>${esc(f.properties.name || f.properties.code)}` +
          `（${esc(f.properties.use || "")}，${num(f.properties.area.ha, 4)} 公顷）</li>`).join("") + "</ol>";
      (p.warnings || []).forEach((w) => { html += `<div class="warnbox">${esc(w)}</div>`; });
    } else {
      html += `<div>坐标系：${esc(crsText(site.input.crs, site.input.axis_order))}</div>`;
    }
    html += `<div>位置：经度 ${num(p.centroid[0], 6)}，纬度 ${num(p.centroid[1], 6)}（CGCS2000）</div>`;
    if (!p.inside_territory) {
      html += `<div class="error">该位置不在满洲里市行政区域内。请检查所选坐标系、坐标顺序（X/Y）和带号是否正确。</div>`;
    } else if (p.geometry_type !== "Point" && p.inside_area.m2 < p.area.m2 - 1) {
      html += `<div class="warnbox">范围有一部分在满洲里市行政区域之外（区内 ${area(p.inside_area)}）。</div>`;
    }
    html += `<div class="row" style="margin-top:4px"><span class="muted small grow">请核对地图上绘出的位置，确认无误后再分析。</span>` +
      `<button type="button" id="site-clear">清除</button></div>`;
    el.innerHTML = html;
    el.classList.remove("hidden");
    $("site-clear").addEventListener("click", clearSite);
  }

  /* ---------------------------------------------------------------------------------------------------------
     Identify: what is here */

  async function identifyAt(latlng) {
    const map = state.base.map;
    const lon = latlng.lng, lat = latlng.lat;
    const layers = state.base.visibleLayers().join(",");
    const popup = L.popup({ maxWidth: 380, className: "map-popup" }).setLatLng(latlng)
      .setContent("正在查询…").openOn(map);
    const r = await api("GET", `/ui/identify?lon=${lon.toFixed(7)}&lat=${lat.toFixed(7)}&layers=${encodeURIComponent(layers)}`);
    if (!r.ok) { popup.setContent(`<div class="error">${esc(r.message)}</div>`); return; }
    const d = r.data;
    let html = `<div class="map-popup"><div class="small muted">经度 ${lon.toFixed(6)}，纬度 ${lat.toFixed(6)}</div>`;
    if (!d.inside_territory) html += `<div class="small">不在满洲里市行政区域内</div>`;
    d.features.forEach((f) => {
      if (f.layer === "admin_boundary") {
        html += `<div class="feat"><strong>${esc(f.title_zh)}</strong>：${esc(f.label)}</div>`;
        return;
      }
      html += `<div class="feat"><h4>${esc(f.title_zh)}</h4>`;
      if (f.layer === "control_units") {
        html += `<div>编码：<strong>${esc(f.code)}</strong></div><div>名称：${esc(f.name)}</div>` +
          `<div>类型：${esc(f.type_zh)}</div><div data-unit="${esc(f.code)}" class="small muted">正在加载单元条款…</div>`;
      } else {
        const code = f.attributes.patch_id || f.attributes.name || f.attributes.source_name || f.attributes.catchment || "";
        html += `<div>编码/名称：<strong>${esc(code)}</strong></div>`;
        if (f.label && f.label !== code) html += `<div>${esc(f.label)}</div>`;
      }
      html += clauseList(f.clauses, f.layer === "control_units" ? "全市同类单元条款" : "适用条款") + "</div>";
    });
    if (d.land_cover && state.base.landCoverVisible()) {
      html += `<div class="feat">土地覆被：${esc(d.land_cover.name_zh)}</div>`;
    }
    if (!d.features.length) html += `<div class="feat muted">此处没有已显示图层的要素</div>`;
    html += `<div class="feat"><button type="button" class="primary" id="use-point">以此点为项目位置</button></div></div>`;
    // A DOM node (not a string) so that filling in the unit clauses later survives popup.update().
    const box = document.createElement("div");
    box.innerHTML = html;
    popup.setContent(box);
    box.querySelector("#use-point").addEventListener("click", () => pickPoint(latlng));
    d.features.filter((f) => f.layer === "control_units").forEach(async (f) => {
      const u = await api("GET", `/v1/units/${encodeURIComponent(f.code)}`);
      const el = box.querySelector(`[data-unit="${CSS.escape(f.code)}"]`);
      if (!el) return;
      if (!u.ok) { el.textContent = u.message; return; }
      el.classList.remove("muted");
      el.innerHTML = `<div>面积：${num(u.data.area_km2, 2)} 平方千米 · ${esc(u.data.county)}</div>` +
        clauseList(u.data.clauses, "单元管控要求");
      popup.update();
    });
  }

  function clauseList(clauses, title) {
    if (!clauses || !clauses.length) return "";
    let html = `<div class="small"><strong>${esc(title)}（${clauses.length} 条）</strong></div>`;
    let dim = null;
    clauses.forEach((c) => {
      if (c.dimension_zh !== dim) { dim = c.dimension_zh; html += `<div class="small muted">${esc(dim)}</div>`; }
      html += `<div class="clause">${effectBadge(c.effect, c.effect_zh)}${esc(c.text)}` +
        `<div class="small muted">${esc(c.id)} · 来源：${esc(c.source)}</div></div>`;
    });
    return html;
  }

  /* ---------------------------------------------------------------------------------------------------------
     Project form */

  function buildProjectForm() {
    const facts = state.config.facts;
    const ct = facts.find((f) => f.name === "construction_type");
    $("construction-type").innerHTML = `<option value="">未填写</option>` +
      (ct ? ct.values.map(([k, v]) => `<option value="${esc(k)}">${esc(v)}</option>`).join("") : "");
    $("construction-type").dataset.fact = "construction_type";
    const box = $("facts");
    box.innerHTML = facts.filter((f) => f.name !== "industry_code" && f.name !== "construction_type").map(factField).join("");
    setupIndustry();
  }

  function factField(f) {
    const id = `fact-${f.name}`;
    let control;
    if (f.type === "bool") {
      control = `<select id="${id}" data-fact="${f.name}" data-type="bool"><option value="">未填写</option>` +
        `<option value="true">是</option><option value="false">否</option></select>`;
    } else if (f.type === "enum") {
      control = `<select id="${id}" data-fact="${f.name}" data-type="enum"><option value="">未填写</option>` +
        f.values.map(([k, v]) => `<option value="${esc(k)}">${esc(v)}</option>`).join("") + "</select>";
    } else if (f.type === "number") {
      control = `<input type="number" id="${id}" data-fact="${f.name}" data-type="number" min="0" step="any"` +
        ` placeholder="${esc(f.unit || "")}">`;
    } else {
      control = `<input type="text" id="${id}" data-fact="${f.name}" data-type="string" maxlength="200">`;
    }
    const hint = f.has_default && f.default_reason_zh ? `<div class="hint">${esc(f.default_reason_zh)}</div>` : "";
    return `<label class="field" id="field-${f.name}"><span>${esc(f.label_zh)}</span>${control}${hint}</label>`;
  }

  function setupIndustry() {
    const input = $("industry-search"), list = $("industry-list");
    const all = state.config.industries;
    let active = -1;
    function render() {
      const q = input.value.trim();
      if (!q) { list.classList.add("hidden"); return; }
      const ql = q.toLowerCase();
      const hits = all.filter(([code, name]) => code.toLowerCase().startsWith(ql) || name.includes(q)).slice(0, 60);
      if (!hits.length) {
        list.innerHTML = `<div class="section">没有匹配的行业，请换一个代码或名称</div>`;
      } else {
        list.innerHTML = hits.map(([code, name]) => /^[0-9]+$/.test(code)
          ? `<div class="opt" data-code="${esc(code)}"><span class="code">${esc(code)}</span>${esc(name)}</div>`
          : `<div class="section">${esc(code)} ${esc(name)}（门类，请选择其下的大类、中类或小类）</div>`).join("");
      }
      active = -1;
      list.classList.remove("hidden");
    }
    input.addEventListener("input", () => { state.industry = null; $("industry-chosen").textContent = ""; render(); });
    input.addEventListener("focus", render);
    input.addEventListener("blur", () => setTimeout(() => list.classList.add("hidden"), 200));
    input.addEventListener("keydown", (ev) => {
      const opts = list.querySelectorAll(".opt");
      if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        ev.preventDefault();
        active = Math.max(0, Math.min(opts.length - 1, active + (ev.key === "ArrowDown" ? 1 : -1)));
        opts.forEach((o, i) => o.classList.toggle("active", i === active));
      } else if (ev.key === "Enter") {
        ev.preventDefault();
        const pick = opts[active >= 0 ? active : 0];
        if (pick) choose(pick.dataset.code);
      }
    });
    list.addEventListener("mousedown", (ev) => {
      const opt = ev.target.closest(".opt");
      if (opt) { ev.preventDefault(); choose(opt.dataset.code); }
    });
    function choose(code) {
      const hit = all.find(([c]) => c === code);
      state.industry = code;
      input.value = `${code} ${hit ? hit[1] : ""}`;
      $("industry-chosen").innerHTML = `已选行业代码：<strong>${esc(code)}</strong>`;
      list.classList.add("hidden");
    }
    state.chooseIndustry = choose;
  }

  function collectProject() {
    const project = {};
    const name = $("project-name").value.trim();
    if (name) project.name = name;
    if (state.industry) project.industry_code = state.industry;
    else {
      const typed = $("industry-search").value.trim().split(/\s+/)[0];
      if (/^[0-9]{2,4}$/.test(typed)) project.industry_code = typed;
    }
    if ($("construction-type").value) project.construction_type = $("construction-type").value;
    document.querySelectorAll("#facts [data-fact]").forEach((el) => {
      const v = el.value.trim();
      if (v === "") return;
      const t = el.dataset.type;
      project[el.dataset.fact] = t === "bool" ? v === "true" : t === "number" ? Number(v) : v;
    });
    return project;
  }

  function fillProject(project) {
    project = project || {};
    $("project-name").value = project.name || "";
    if (project.industry_code && state.chooseIndustry) state.chooseIndustry(project.industry_code);
    $("construction-type").value = project.construction_type || "";
    document.querySelectorAll("#facts [data-fact]").forEach((el) => {
      const v = project[el.dataset.fact];
      el.value = v === undefined || v === null ? "" : String(v);
    });
  }

  /* ---------------------------------------------------------------------------------------------------------
     Assess and show the result */

  const OFFICER_KEY = "mzl-officer-key";

  function officerKey() {
    const typed = $("officer-key").value.trim();
    if (typed) sessionStorage.setItem(OFFICER_KEY, typed);
    return typed || sessionStorage.getItem(OFFICER_KEY) || undefined;
  }

  function askForKey(r) {
    // The service may be set to require an officer key (MZL_REQUIRE_OFFICER_KEY): show the field beside the error.
    if (r.status === 401) $("officer-key-row").classList.remove("hidden");
  }

  async function assess() {
    if (!state.site) return;
    const btn = $("assess");
    btn.disabled = true;
    btn.textContent = "正在分析…";
    showError("assess-error", "");
    const project = collectProject();
    let r;
    if (state.site.kind === "survey") {
      const form = new FormData();
      form.append("file", state.site.file);
      form.append("project", JSON.stringify(project));
      r = await api("POST", "/v1/assessments/survey", { form, key: officerKey() });
    } else {
      r = await api("POST", "/v1/assessments", { json: Object.assign({}, state.site.input, { project }), key: officerKey() });
    }
    btn.disabled = false;
    btn.textContent = "③ 开始分析";
    if (!r.ok) { askForKey(r); showError("assess-error", r.message); return; }
    history.pushState({ id: r.data.id }, "", `/assessments/${encodeURIComponent(r.data.id)}`);
    renderResult(r.data);
  }

  async function loadStored(id, push) {
    const r = await api("GET", `/v1/assessments/${encodeURIComponent(id)}`, { key: officerKey() });
    if (!r.ok) { askForKey(r); showError("assess-error", `无法打开分析记录 ${id}：${r.message}`); return; }
    const doc = r.data;
    const site = doc.site;
    fillProject(doc.project);
    setSite({ kind: "site", input: { site: site.geometry, crs: "EPSG:4490", axis_order: "xy" },
      preview: Object.assign({ inside_territory: doc.verdict !== "outside_jurisdiction" }, site),
      source: `分析记录 ${doc.id}` }, true);
    if (push) history.pushState({ id }, "", `/assessments/${encodeURIComponent(id)}`);
    renderResult(doc);
  }

  function hideResult() {
    $("result-panel").classList.add("hidden");
    state.base.collapseLegend(false);
    state.base.map.invalidateSize();
  }

  function factLabel(name) {
    const f = state.config.facts.find((x) => x.name === name);
    return f ? f.label_zh : name;
  }

  function clauseHtml(c, undecided) {
    const badge = undecided ? effectBadge("undecided", "待定 · " + c.effect_zh) : effectBadge(c.effect, c.effect_zh);
    const conds = c.conditions && c.conditions.length
      ? `<ul>${c.conditions.map((x) => `<li>${esc(x)}</li>`).join("")}</ul>` : "";
    const missing = undecided && c.missing_facts && c.missing_facts.length
      ? `<div class="reason">缺少：${c.missing_facts.map((f) => esc(factLabel(f))).join("、")}</div>` : "";
    return `<div class="clause" data-clause="${esc(c.id)}">${badge}<span class="id">${esc(c.id)}` +
      `${c.illustrative ? "（示意条款）" : ""}</span><div>${esc(c.text)}</div>${conds}` +
      `<div class="reason">适用原因：${esc(c.reason)}</div>${missing}<div class="source">来源：${esc(c.source)}</div></div>`;
  }

  function renderResult(doc) {
    state.result = doc;
    const color = state.config.verdict_colors[doc.verdict] || "#555";
    const id = encodeURIComponent(doc.id);
    const permalink = `${location.origin}/assessments/${id}`;
    let why = VERDICT_WHY[doc.verdict] || "";
    if (doc.verdict === "prohibited") {
      const ids = doc.clauses.filter((c) => c.effect === "prohibit").map((c) => c.id);
      why += `：${ids.join("、")}`;
    } else if (doc.verdict === "conditional") {
      why += `（${doc.conditions.length} 项）`;
    }
    let html = `<div class="verdict" id="verdict" data-verdict="${esc(doc.verdict)}" style="background:${esc(color)}">` +
      `<button type="button" class="close" id="result-close" title="关闭">✕</button>` +
      `<div class="label">分析结论</div><div class="big" id="verdict-text">${esc(doc.verdict_zh)}</div>` +
      `<div class="why">${esc(why)}</div></div>`;

    html += `<div class="result-section"><div class="kv">` +
      `<span class="k">分析编号</span><span><strong>${esc(doc.id)}</strong></span>` +
      `<span class="k">分析时间</span><span>${esc(doc.created_at.replace("T", " ").replace("Z", " UTC"))}</span>` +
      (doc.project.name ? `<span class="k">项目名称</span><span>${esc(doc.project.name)}</span>` : "") +
      (doc.project.industry_code ? `<span class="k">行业代码</span><span>${esc(doc.project.industry_code)}</span>` : "") +
      `<span class="k">数据版本</span><span>${esc(doc.dataset_version)}${doc.dataset_illustrative ? "（示意性数据）" : ""}</span>` +
      `<span class="k">规则版本</span><span title="${esc(doc.rules_version)}">${esc(doc.rules_version.slice(0, 12))}</span>` +
      `</div><div class="result-links" style="margin-top:6px">` +
      `<a href="/v1/assessments/${id}/report" target="_blank" id="report-link">打印报告（PDF）</a>` +
      `<a href="/v1/assessments/${id}/report?f=html" target="_blank">网页版报告</a>` +
      `<a href="/assessments/${id}" id="permalink">永久链接</a>` +
      `<a href="/v1/assessments/${id}" target="_blank">原始数据（JSON）</a>` +
      `</div><div class="small muted">永久链接：${esc(permalink)}</div></div>`;

    if (doc.warnings && doc.warnings.length) {
      html += `<div class="result-section">${doc.warnings.map((w) => `<div class="warnbox">${esc(w.message)}</div>`).join("")}</div>`;
    }

    const missing = doc.missing_facts && doc.missing_facts.length
      ? `<ul>${doc.missing_facts.map((m) => `<li><button type="button" class="link" data-goto="${esc(m.fact)}">` +
          `${esc(m.label_zh)}</button> <span class="small muted">影响条款 ${m.clauses.map(esc).join("、")}</span></li>`).join("")}</ul>` +
        `<div class="small muted">在左侧表单中填写后，点击“开始分析”重新分析。</div>` : "";
    if (missing && doc.verdict === "needs_review") {
      html += `<div class="result-section missing" id="missing-facts"><h3>需要补充的项目情况（${doc.missing_facts.length} 项）</h3>${missing}</div>`;
    }

    const s = doc.site;
    html += `<div class="result-section"><h3>项目用地</h3><div class="kv">` +
      `<span class="k">类型</span><span>${esc(GEOM_ZH[s.geometry_type] || s.geometry_type)}</span>` +
      (s.geometry_type === "Point" ? "" : `<span class="k">面积</span><span>${area(s.area)}</span>`) +
      `<span class="k">输入坐标系</span><span>${esc(s.input_crs)}</span>` +
      `<span class="k">中心点</span><span>${num(s.centroid[0], 6)}, ${num(s.centroid[1], 6)}</span></div></div>`;

    const rl = doc.red_line;
    html += `<div class="result-section" id="red-line-result"><h3>生态保护红线</h3>`;
    if (rl.inside) {
      html += `<div class="redline-in">位于生态保护红线内</div>` +
        (s.geometry_type === "Point" ? "" : `<div>重叠：${area(rl.overlap_m2, rl.overlap_ha, rl.overlap_mu)}（占 ${pct(rl.share)}）</div>`) +
        rl.groups.map((g) => `<div class="small">${esc(g.function_name)}：${g.patches.map(esc).join("、")}</div>`).join("");
    } else if (rl.distance_m !== null && rl.distance_m !== undefined) {
      html += `<div>不在红线内，距最近的红线图斑 <strong>${num(rl.distance_m, 1)} 米</strong>` +
        `${rl.nearest_patch ? `（${esc(rl.nearest_patch)}）` : ""}</div>`;
    } else {
      html += `<div class="muted">无</div>`;
    }
    html += `</div>`;

    html += `<div class="result-section"><h3>涉及的环境管控单元（${doc.units.length} 个）</h3>`;
    if (doc.units.length) {
      html += `<table class="data"><tr><th>单元</th><th>类型</th><th class="num">重叠面积</th></tr>` +
        doc.units.map((u) => `<tr><td><strong>${esc(u.code)}</strong><br>${esc(u.name)}` +
          `${u.on_boundary ? '<br><span class="small muted">位于单元边界上</span>' : ""}</td><td>${esc(u.type_zh)}</td>` +
          `<td class="num">${s.geometry_type === "Point" ? "点位" : `${num(u.overlap_m2, 2)} m²<br>${num(u.overlap_ha, 4)} 公顷<br>${num(u.overlap_mu, 2)} 亩<br>${pct(u.share)}`}</td></tr>`).join("") +
        `</table>`;
    } else html += `<div class="muted">无</div>`;
    html += `</div>`;

    const featureRows = [];
    doc.layers.forEach((l) => l.features.forEach((f) => featureRows.push([l.title_zh, f])));
    html += `<div class="result-section"><h3>涉及的要素图层（${featureRows.length} 处）</h3>`;
    if (featureRows.length) {
      html += `<table class="data"><tr><th>图层</th><th>要素</th><th class="num">重叠面积</th></tr>` +
        featureRows.map(([t, f]) => `<tr><td>${esc(t)}</td><td>${esc(f.label)}</td><td class="num">` +
          `${s.geometry_type === "Point" ? "点位" : `${num(f.overlap_m2, 2)} m²<br>${num(f.overlap_ha, 4)} 公顷<br>${num(f.overlap_mu, 2)} 亩`}</td></tr>`).join("") +
        `</table>`;
    } else html += `<div class="muted">无</div>`;
    if (doc.proximity && doc.proximity.length) {
      html += `<h3>${num(doc.proximity_buffer_m)} 米范围内的保护目标</h3><table class="data">` +
        doc.proximity.map((p) => `<tr><td>${esc(p.title_zh)}</td><td>${esc(p.feature)}</td><td class="num">${num(p.distance_m, 1)} 米</td></tr>`).join("") +
        `</table>`;
    }
    if (doc.land_cover && doc.land_cover.length) {
      html += `<h3>土地覆被</h3><div class="small">` +
        doc.land_cover.map((c) => `${esc(c.name_zh)} ${pct(c.share)}`).join("；") + `</div>`;
    }
    html += `</div>`;

    html += `<div class="result-section" id="clauses"><h3>适用条款（按四个维度）</h3>`;
    state.config.dimensions.forEach((d) => {
      const ids = (doc.clauses_by_dimension[d.key] || []);
      const applied = ids.map((cid) => doc.clauses.find((c) => c.id === cid)).filter(Boolean);
      const pending = (doc.undecided || []).filter((c) => c.dimension === d.key);
      html += `<div class="dimension">${esc(d.name_zh)}（${applied.length} 条${pending.length ? `，待定 ${pending.length} 条` : ""}）</div>`;
      if (!applied.length && !pending.length) html += `<div class="small muted">无适用条款</div>`;
      html += applied.map((c) => clauseHtml(c, false)).join("") + pending.map((c) => clauseHtml(c, true)).join("");
    });
    html += `</div>`;
    if (missing && doc.verdict !== "needs_review") {
      html += `<div class="result-section missing" id="missing-facts"><details><summary>另有 ${doc.missing_facts.length} 项项目情况未填写` +
        `（不改变上述结论，但影响待定条款）</summary>${missing}</details></div>`;
    }

    const panel = $("result-panel");
    panel.innerHTML = html;
    panel.classList.remove("hidden");
    panel.scrollTop = 0;
    state.base.collapseLegend(true);
    $("result-close").addEventListener("click", hideResult);
    panel.querySelectorAll("[data-goto]").forEach((b) => b.addEventListener("click", () => gotoFact(b.dataset.goto)));
    state.base.map.invalidateSize();
    const layer = state.siteLayer.getLayers()[0];
    if (layer && s.geometry_type !== "Point") state.base.map.fitBounds(layer.getBounds(), { padding: [100, 100], maxZoom: 14 });
    else if (s.geometry_type === "Point") state.base.map.panTo([s.centroid[1], s.centroid[0]], { animate: false });
  }

  function gotoFact(name) {
    $("facts-box").open = true;
    const field = $(`field-${name}`);
    if (!field) return;
    field.scrollIntoView({ behavior: "smooth", block: "center" });
    field.classList.remove("flash"); void field.offsetWidth; field.classList.add("flash");
    const control = field.querySelector("select, input");
    if (control) control.focus({ preventScroll: true });
  }
})();
