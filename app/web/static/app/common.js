/* Shared helpers of the map pages: API calls with Chinese error messages, formatting, and the base map
   (the service's own layers on a plain background, a layer switcher with legend, a scale bar). */
(function () {
  "use strict";

  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(value) {
    return String(value === null || value === undefined ? "" : value).replace(/[&<>"']/g, (c) => ESC[c]);
  }

  function num(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    return Number(value).toLocaleString("zh-CN", { minimumFractionDigits: digits || 0, maximumFractionDigits: digits || 0 });
  }

  /** "6,466.80 m² · 0.6467 公顷 · 9.70 亩" from an {m2, ha, mu} object or from the overlap_* fields. */
  function area(m2, ha, mu) {
    if (m2 && typeof m2 === "object") { ha = m2.ha; mu = m2.mu; m2 = m2.m2; }
    return `${num(m2, 2)} m² · ${num(ha, 4)} 公顷 · ${num(mu, 2)} 亩`;
  }

  function pct(share) { return `${num((share || 0) * 100, 1)}%`; }

  const STATUS_ZH = { 400: "请求有误", 401: "未授权", 403: "权限不足", 404: "未找到", 409: "状态冲突", 413: "内容过大",
    422: "输入有误", 500: "服务内部错误" };

  /** Call the API. Resolves to {ok, status, data}; a failure carries `message` (the API's Chinese message). */
  async function api(method, url, opts) {
    opts = opts || {};
    const headers = Object.assign({}, opts.headers || {});
    let body;
    if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(opts.json); }
    if (opts.form) body = opts.form;
    if (opts.key) headers["X-API-Key"] = opts.key;
    let resp;
    try {
      resp = await fetch(url, { method, headers, body });
    } catch (err) {
      return { ok: false, status: 0, data: null, message: "无法连接服务，请检查网络后重试" };
    }
    let data = null;
    const type = resp.headers.get("content-type") || "";
    if (type.includes("json")) { try { data = await resp.json(); } catch (e) { data = null; } }
    if (resp.ok) return { ok: true, status: resp.status, data };
    let message = (data && data.error && data.error.message) || STATUS_ZH[resp.status] || "请求失败";
    if (data && data.error && data.error.context && data.error.context.fields && !data.error.message) {
      message += `（${data.error.context.fields.join("，")}）`;
    }
    const prefix = resp.status === 403 ? "权限不足（403）：" : resp.status === 401 ? "未授权（401）：" : "";
    return { ok: false, status: resp.status, data, message: prefix + message, error: data && data.error };
  }

  function showError(el, message) {
    if (typeof el === "string") el = document.getElementById(el);
    if (!el) return;
    el.textContent = message || "";
  }

  /* ------------------------------------------------------------------------------------------------------------
     The base map */

  const PANES = { landcover: 250, units: 310, element: 320, red_line: 330, base: 340, draft: 420, issues: 430, site: 450 };

  function styleFor(layer, feature, colors) {
    const s = Object.assign({}, layer.style);
    if (layer.name === "control_units") {
      s.fillColor = colors[feature.properties.type] || "#cccccc";
    }
    if (layer.geometry === "line") { s.fill = false; }
    if (!("fillColor" in s)) s.fillColor = s.color;
    if (!("fillOpacity" in s)) s.fillOpacity = 0;
    return s;
  }

  function swatchHtml(style, geometry) {
    if (geometry === "line") return `<span class="swatch line" style="border-top-color:${esc(style.color)}"></span>`;
    const fill = style.fillOpacity ? (style.fillColor || style.color) : "transparent";
    const dash = style.dashArray ? "dashed" : "solid";
    return `<span class="swatch" style="background:${esc(fill)};border-color:${esc(style.color)};border-style:${dash}"></span>`;
  }

  /**
   * Build the map in `elementId` from /ui/config: every layer switchable (loaded when first shown), a legend in the
   * same control, the land-cover image overlay and a metric scale bar. Returns {map, config, visibleLayers(), ...}.
   */
  async function createBaseMap(elementId, config, options) {
    options = options || {};
    const map = L.map(elementId, { zoomSnap: 0.25, minZoom: 7, maxZoom: 18, attributionControl: false,
      boxZoom: true });
    Object.entries(PANES).forEach(([name, z]) => { map.createPane(name).style.zIndex = String(z); });
    const lc = config.land_cover;
    // Leave room on the right for the layer switcher so the whole territory is visible.
    map.fitBounds(lc.bounds, { paddingTopLeft: [10, 10], paddingBottomRight: [options.rightPad || 200, 10] });
    L.control.scale({ imperial: false, maxWidth: 160, position: "bottomleft" }).addTo(map);

    const colors = {};
    config.unit_types.forEach((t) => { colors[t.key] = t.color; });
    const entries = {};
    const loading = document.createElement("div");
    loading.className = "loading hidden";
    loading.textContent = "正在加载图层…";
    map.getContainer().appendChild(loading);
    let pending = 0;

    async function load(entry) {
      if (entry.leaflet) return entry.leaflet;
      pending += 1; loading.classList.remove("hidden");
      try {
        const resp = await fetch(entry.url);
        const data = await resp.json();
        const pane = entry.group === "units" ? "units" : entry.group === "red_line" ? "red_line"
          : entry.group === "base" ? "base" : "element";
        entry.leaflet = L.geoJSON(data, {
          pane, renderer: L.canvas({ pane, padding: 0.3 }), interactive: false,
          style: (f) => styleFor(entry, f, colors),
        });
        entry.data = data;
        return entry.leaflet;
      } finally {
        pending -= 1; if (pending <= 0) loading.classList.add("hidden");
      }
    }

    async function setVisible(name, on) {
      const entry = entries[name];
      if (!entry) return;
      entry.visible = on;
      if (entry.kind === "image") {
        if (on) entry.leaflet.addTo(map); else entry.leaflet.remove();
      } else if (on) {
        const layer = await load(entry);
        if (entry.visible) layer.addTo(map);
      } else if (entry.leaflet) {
        entry.leaflet.remove();
      }
      const box = document.querySelector(`input[data-layer="${name}"]`);
      if (box) box.checked = on;
      const sub = document.querySelector(`[data-sub="${name}"]`);
      if (sub) sub.classList.toggle("hidden", !on);
    }

    const only = options.layers ? new Set(options.layers) : null;
    config.layers.forEach((layer) => {
      if (only && !only.has(layer.name)) return;
      entries[layer.name] = Object.assign({}, layer, { kind: "vector", visible: false });
    });
    entries.land_cover = { name: "land_cover", title_zh: "土地覆被（30 米栅格）", kind: "image", visible: false,
      leaflet: L.imageOverlay(lc.url, lc.bounds, { pane: "landcover", opacity: 0.85, interactive: false }) };

    // The layer switcher and legend, one control.
    const Control = L.Control.extend({
      options: { position: "topright" },
      onAdd() {
        const div = L.DomUtil.create("div", "map-layers");
        div.id = "layer-control";
        L.DomEvent.disableClickPropagation(div);
        L.DomEvent.disableScrollPropagation(div);
        const order = Object.values(entries).filter((e) => e.kind === "vector").reverse();
        const rows = order.map((e) => {
          let sub = "";
          if (e.legend) {
            sub = `<div class="sub" data-sub="${e.name}">` + e.legend.map((l) =>
              `<div>${swatchHtml({ color: "#555", fillColor: l.color, fillOpacity: 1 }, "polygon")}${esc(l.label)}</div>`
            ).join("") + "</div>";
          }
          return `<label title="${esc(e.title_zh)}（${e.features} 个要素）"><input type="checkbox" data-layer="${e.name}">` +
            `${swatchHtml(e.style, e.geometry)}<span class="t">${esc(e.title_zh)}</span></label>${sub}`;
        });
        const lcRows = `<div class="sub hidden" data-sub="land_cover">` + lc.legend.map((c) =>
          `<div>${swatchHtml({ color: "#888", fillColor: c.color, fillOpacity: 1 }, "polygon")}${esc(c.name_zh)}</div>`
        ).join("") + "</div>";
        div.innerHTML = `<div class="head"><span>图层与图例</span><button type="button" data-toggle>收起</button></div>` +
          `<div class="body">${(options.extraLegend || "")}${rows.join("")}` +
          `<div class="group">栅格</div><label><input type="checkbox" data-layer="land_cover">` +
          `<span class="swatch" style="background:linear-gradient(90deg,#a8d08d,#f2d36b,#d9534f)"></span>` +
          `土地覆被（30 米）</label>${lcRows}</div>`;
        div.addEventListener("change", (ev) => {
          const name = ev.target.getAttribute("data-layer");
          if (name) setVisible(name, ev.target.checked);
        });
        div.querySelector("[data-toggle]").addEventListener("click", () => {
          collapseLegend(!div.querySelector(".body").classList.contains("hidden"));
        });
        return div;
      },
    });
    const control = new Control().addTo(map);

    /** Fold the layer list to its title bar (to give a narrow map room) or open it again. */
    function collapseLegend(folded) {
      const div = control.getContainer();
      div.querySelector(".body").classList.toggle("hidden", folded);
      div.querySelector("[data-toggle]").textContent = folded ? "展开" : "收起";
    }

    const initial = config.layers.filter((l) => l.visible && entries[l.name]).map((l) => l.name);
    Object.values(entries).forEach((e) => { if (!initial.includes(e.name)) setVisible(e.name, false); });
    await Promise.all(initial.map((name) => setVisible(name, true)));

    return {
      map, config, entries, setVisible, collapseLegend,
      visibleLayers: () => Object.values(entries).filter((e) => e.kind === "vector" && e.visible).map((e) => e.name),
      landCoverVisible: () => entries.land_cover.visible,
    };
  }

  function effectBadge(effect, label) {
    return `<span class="effect ${esc(effect)}">${esc(label)}</span>`;
  }

  // File pickers: show the chosen file's name next to the Chinese button.
  document.querySelectorAll(".filepick input[type=file]").forEach((input) => {
    input.addEventListener("change", () => {
      const name = input.files && input.files[0] ? input.files[0].name : "未选择文件";
      input.parentElement.querySelector(".fname").textContent = name;
    });
  });

  window.MZL = { esc, num, area, pct, api, showError, createBaseMap, effectBadge, swatchHtml };
})();
